//! `mail_connections`: a tenant's OAuth grants (issue 25): kind, mailbox, status, scopes,
//! the refresh token sealed with the key ring (associated data: the connection's id),
//! and the refresh lease (`refresh_holder` until `refresh_until_ms`) that lets one
//! process at a time refresh. A tenant's connections go with the tenant.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailConnections {
    Table,
    Id,
    TenantId,
    Kind,
    Mailbox,
    Status,
    Scopes,
    RefreshTokenCiphertext,
    RefreshTokenKeyId,
    RefreshHolder,
    RefreshUntilMs,
    LastRefreshedAtMs,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

const INDEX: &str = "idx_mail_connections_tenant_id";

fn id_text(name: impl IntoIden, backend: DbBackend) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match backend {
        DbBackend::Postgres => col.custom(Alias::new(r#"text COLLATE "C""#)),
        _ => col.text(),
    };
    col.not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(MailConnections::Table)
                    .if_not_exists()
                    .col(id_text(MailConnections::Id, backend).primary_key())
                    .col(id_text(MailConnections::TenantId, backend))
                    .col(ColumnDef::new(MailConnections::Kind).text().not_null())
                    .col(ColumnDef::new(MailConnections::Mailbox).text().not_null())
                    .col(ColumnDef::new(MailConnections::Status).text().not_null())
                    // The granted scopes separated by spaces, as OAuth writes them.
                    .col(ColumnDef::new(MailConnections::Scopes).text().not_null())
                    .col(ColumnDef::new(MailConnections::RefreshTokenCiphertext).blob().null())
                    .col(ColumnDef::new(MailConnections::RefreshTokenKeyId).text().null())
                    .col(ColumnDef::new(MailConnections::RefreshHolder).text().null())
                    // Milliseconds since the epoch, like the queue's times.
                    .col(ColumnDef::new(MailConnections::RefreshUntilMs).big_integer().null())
                    .col(ColumnDef::new(MailConnections::LastRefreshedAtMs).big_integer().null())
                    .col(ColumnDef::new(MailConnections::CreatedAtMs).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_mail_connections_tenant")
                            .from(MailConnections::Table, MailConnections::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(MailConnections::Table)
                    .col(MailConnections::TenantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MailConnections::Table).to_owned())
            .await
    }
}
