//! Generic XOAUTH2 connections (client credentials at a token endpoint the tenant names,
//! as Keycloak 26.2 offers for SMTP): `mail_connections.token_url` and `client_id`, and
//! the client secret sealed with the key ring for the connection's id
//! (`client_secret_ciphertext`, `client_secret_key_id`). Null for every other kind.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailConnections {
    Table,
    TokenUrl,
    ClientId,
    ClientSecretCiphertext,
    ClientSecretKeyId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            ColumnDef::new(MailConnections::TokenUrl).text().null().to_owned(),
            ColumnDef::new(MailConnections::ClientId).text().null().to_owned(),
            ColumnDef::new(MailConnections::ClientSecretCiphertext)
                .blob()
                .null()
                .to_owned(),
            ColumnDef::new(MailConnections::ClientSecretKeyId)
                .text()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(MailConnections::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            MailConnections::TokenUrl,
            MailConnections::ClientId,
            MailConnections::ClientSecretCiphertext,
            MailConnections::ClientSecretKeyId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(MailConnections::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
