//! What several Mailgate processes coordinate through the database: each tenant's send
//! turn (who may start the next send, and when — the send interval holds across
//! processes), and recent test mails (the per-tenant test-mail limit holds across
//! processes).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TenantPacing {
    Table,
    TenantId,
    NextSendAtMs,
    Holder,
    HeldUntilMs,
}

#[derive(DeriveIden)]
enum TestMailEvents {
    Table,
    Id,
    TenantId,
    AtMs,
}

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
                    .table(TenantPacing::Table)
                    .col(id_text(TenantPacing::TenantId, backend).primary_key())
                    .col(ColumnDef::new(TenantPacing::NextSendAtMs).big_integer().not_null())
                    .col(ColumnDef::new(TenantPacing::Holder).text().null())
                    .col(ColumnDef::new(TenantPacing::HeldUntilMs).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(TenantPacing::Table, TenantPacing::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TestMailEvents::Table)
                    .col(id_text(TestMailEvents::Id, backend).primary_key())
                    .col(id_text(TestMailEvents::TenantId, backend))
                    .col(ColumnDef::new(TestMailEvents::AtMs).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(TestMailEvents::Table, TestMailEvents::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_test_mail_events_tenant_at")
                    .table(TestMailEvents::Table)
                    .col(TestMailEvents::TenantId)
                    .col(TestMailEvents::AtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TestMailEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TenantPacing::Table).to_owned())
            .await
    }
}
