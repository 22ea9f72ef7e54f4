//! Enqueue quotas: per tenant, how many notifications were taken in the current minute and
//! day (fixed UTC windows, one row per tenant and window, reserved by processes in small
//! chunks), and an operator's override of the platform defaults.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EnqueueCounters {
    Table,
    TenantId,
    WindowKind,
    WindowStartMs,
    Count,
}

#[derive(DeriveIden)]
enum TenantQuotas {
    Table,
    TenantId,
    PerMinute,
    PerDay,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
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
                    .table(EnqueueCounters::Table)
                    .col(id_text(EnqueueCounters::TenantId, backend))
                    .col(ColumnDef::new(EnqueueCounters::WindowKind).text().not_null())
                    .col(ColumnDef::new(EnqueueCounters::WindowStartMs).big_integer().not_null())
                    .col(ColumnDef::new(EnqueueCounters::Count).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .name("pk_enqueue_counters")
                            .col(EnqueueCounters::TenantId)
                            .col(EnqueueCounters::WindowKind),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantQuotas::Table)
                    .col(id_text(TenantQuotas::TenantId, backend).primary_key())
                    .col(ColumnDef::new(TenantQuotas::PerMinute).big_integer().null())
                    .col(ColumnDef::new(TenantQuotas::PerDay).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tenant_quotas_tenant")
                            .from(TenantQuotas::Table, TenantQuotas::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantQuotas::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EnqueueCounters::Table).to_owned())
            .await
    }
}
