//! `mail_connections.directory_id`: for Microsoft app-only connections (client
//! credentials with `SMTP.SendAsApp`), the organisation's directory (tenant) id or
//! domain their tokens are asked for; null for every other kind.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailConnections {
    Table,
    DirectoryId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailConnections::Table)
                    .add_column(ColumnDef::new(MailConnections::DirectoryId).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailConnections::Table)
                    .drop_column(MailConnections::DirectoryId)
                    .to_owned(),
            )
            .await
    }
}
