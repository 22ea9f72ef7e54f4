//! The durable delivery queue (the outbox): one `deliveries` row per notification, with
//! its rendered message, its state and the lease of the worker sending it, and one
//! `delivery_attempts` row per try.
//!
//! Times the queue compares (`next_attempt_at_ms`, `lease_until_ms`) are epoch
//! milliseconds in integers, so comparisons are exact and identical on both backends.
//! The claim path reads two partial indexes that hold only the rows a worker may take
//! (due and expired-lease ones): sent and failed rows, which soon are nearly all of the
//! table, never sit in front of the due ones.

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
enum Deliveries {
    Table,
    Id,
    TenantId,
    Kind,
    ToAddress,
    Locale,
    Subject,
    TextBody,
    HtmlBody,
    MessageId,
    IdempotencyKey,
    Status,
    Retries,
    NextAttemptAtMs,
    LeaseOwner,
    LeaseUntilMs,
    CreatedAt,
    UpdatedAt,
    SentAt,
    FailureReason,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    DeliveryId,
    At,
    Outcome,
    Stage,
    SmtpCode,
    EnhancedCode,
    ServerMessage,
    SenderAddress,
    SenderSource,
}

/// A text column holding a UUID string that pages are ordered by: `text COLLATE "C"` on
/// PostgreSQL (byte order = creation order for UUIDv7), plain text on SQLite. A copy of
/// the first migration's helper, so that file never has to change.
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
                    .table(Deliveries::Table)
                    .col(id_text(Deliveries::Id, backend).primary_key())
                    .col(id_text(Deliveries::TenantId, backend))
                    .col(ColumnDef::new(Deliveries::Kind).text().not_null())
                    .col(ColumnDef::new(Deliveries::ToAddress).text().not_null())
                    .col(ColumnDef::new(Deliveries::Locale).text().not_null())
                    .col(ColumnDef::new(Deliveries::Subject).text().not_null())
                    .col(ColumnDef::new(Deliveries::TextBody).text().not_null())
                    .col(ColumnDef::new(Deliveries::HtmlBody).text().null())
                    .col(ColumnDef::new(Deliveries::MessageId).text().not_null())
                    .col(ColumnDef::new(Deliveries::IdempotencyKey).text().null())
                    .col(ColumnDef::new(Deliveries::Status).text().not_null())
                    .col(ColumnDef::new(Deliveries::Retries).integer().not_null().default(0))
                    .col(ColumnDef::new(Deliveries::NextAttemptAtMs).big_integer().not_null())
                    .col(ColumnDef::new(Deliveries::LeaseOwner).text().null())
                    .col(ColumnDef::new(Deliveries::LeaseUntilMs).big_integer().null())
                    .col(
                        ColumnDef::new(Deliveries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::SentAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Deliveries::FailureReason).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deliveries_tenant")
                            .from(Deliveries::Table, Deliveries::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // Enqueue's idempotency: NULL keys never collide (on both backends).
        manager
            .create_index(
                Index::create()
                    .name("uq_deliveries_tenant_idempotency_key")
                    .table(Deliveries::Table)
                    .col(Deliveries::TenantId)
                    .col(Deliveries::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The claim path. The predicates are literals that the claim query repeats word
        // for word, so both planners can prove the index applies.
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_due")
                    .table(Deliveries::Table)
                    .col(Deliveries::NextAttemptAtMs)
                    .and_where(Expr::col(Deliveries::Status).is_in(["QUEUED", "RETRYING"]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_leased")
                    .table(Deliveries::Table)
                    .col(Deliveries::LeaseUntilMs)
                    .and_where(Expr::col(Deliveries::Status).eq("SENDING"))
                    .to_owned(),
            )
            .await?;
        // A tenant's list, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_tenant_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::TenantId)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        // Counts by status, and a tenant's list filtered by status (hence the id).
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_tenant_status_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::TenantId)
                    .col(Deliveries::Status)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        if backend == DbBackend::Postgres {
            // Every claim and finish rewrites a row: vacuum and statistics must keep up
            // with a table that churns far faster than the 20 % default notices, and
            // free room on each page keeps a row's new version next to the old one.
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.02, \
                     autovacuum_analyze_scale_factor = 0.02, fillfactor = 80)",
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .col(id_text(DeliveryAttempts::Id, backend).primary_key())
                    .col(id_text(DeliveryAttempts::DeliveryId, backend))
                    .col(
                        ColumnDef::new(DeliveryAttempts::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeliveryAttempts::Outcome).text().not_null())
                    .col(ColumnDef::new(DeliveryAttempts::Stage).text().null())
                    .col(ColumnDef::new(DeliveryAttempts::SmtpCode).integer().null())
                    .col(ColumnDef::new(DeliveryAttempts::EnhancedCode).text().null())
                    .col(ColumnDef::new(DeliveryAttempts::ServerMessage).text().null())
                    .col(ColumnDef::new(DeliveryAttempts::SenderAddress).text().null())
                    .col(ColumnDef::new(DeliveryAttempts::SenderSource).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_attempts_delivery")
                            .from(DeliveryAttempts::Table, DeliveryAttempts::DeliveryId)
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempts_delivery_id_id")
                    .table(DeliveryAttempts::Table)
                    .col(DeliveryAttempts::DeliveryId)
                    .col(DeliveryAttempts::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeliveryAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Deliveries::Table).to_owned())
            .await
    }
}
