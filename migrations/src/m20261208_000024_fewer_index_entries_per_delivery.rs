//! Fewer index entries per delivery (issue 28). A delivery row is written three times
//! (enqueue, claim, finish) and PostgreSQL updates none of them in place (`status` is in
//! the indexes), so every index the row is in costs an entry at each write: with its
//! attempt, 16 B-tree inserts per delivery, a third of PostgreSQL's time in the
//! `delivery` benchmark. This takes away six of them (ten are left):
//!
//! - `idx_deliveries_tenant_id (tenant_id, id)` goes (three entries). A tenant's list of
//!   every status reads `idx_deliveries_tenant_status_id (tenant_id, status, id)` once per
//!   status, each read in id order, merged (`deliveries::queries::tenant_rows_statement`).
//! - Retention's index of rows still holding content holds only finished ones
//!   (`status IN ('SENT', 'FAILED')`, the literal the retention query repeats), so the
//!   enqueue and the claim no longer write it (two entries); the finish does.
//! - PostgreSQL: `delivery_attempts`' primary key becomes `(delivery_id, id)`, which is
//!   the order every read of attempts wants, and its second index of the same columns goes
//!   (one entry per attempt). Ids are UUIDv7: unique alone as before. SQLite keeps its
//!   table as it is (changing a primary key there means rebuilding the table).
//!
//! Safe to run again. The new partial index is built by reading the whole table once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    TenantId,
    Id,
    Status,
    ContentRemovedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    DeliveryId,
    Id,
}

/// A tenant's rows of every status (migration 2): goes.
const TENANT: &str = "idx_deliveries_tenant_id";
/// Rows holding content, any status (migration 21): replaced by [`FINISHED_WITH_CONTENT`].
const WITH_CONTENT: &str = "idx_deliveries_with_content";
const FINISHED_WITH_CONTENT: &str = "idx_deliveries_finished_with_content";
/// The attempts' second index (migration 2): on PostgreSQL the primary key takes its place.
const ATTEMPTS_BY_DELIVERY: &str = "idx_delivery_attempts_delivery_id_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_index("deliveries", FINISHED_WITH_CONTENT).await? {
            manager
                .create_index(
                    Index::create()
                        .name(FINISHED_WITH_CONTENT)
                        .table(Deliveries::Table)
                        .col(Deliveries::UpdatedAt)
                        .and_where(Expr::col(Deliveries::ContentRemovedAt).is_null())
                        .and_where(Expr::col(Deliveries::Status).is_in(["SENT", "FAILED"]))
                        .to_owned(),
                )
                .await?;
        }
        for name in [WITH_CONTENT, TENANT] {
            if manager.has_index("deliveries", name).await? {
                manager
                    .drop_index(Index::drop().name(name).table(Deliveries::Table).to_owned())
                    .await?;
            }
        }
        if manager.get_database_backend() == DbBackend::Postgres
            && manager.has_index("delivery_attempts", ATTEMPTS_BY_DELIVERY).await?
        {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey, \
                     ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (delivery_id, id)",
                )
                .await?;
            manager
                .drop_index(
                    Index::drop()
                        .name(ATTEMPTS_BY_DELIVERY)
                        .table(DeliveryAttempts::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_index("delivery_attempts", ATTEMPTS_BY_DELIVERY).await? {
            manager
                .create_index(
                    Index::create()
                        .name(ATTEMPTS_BY_DELIVERY)
                        .table(DeliveryAttempts::Table)
                        .col(DeliveryAttempts::DeliveryId)
                        .col(DeliveryAttempts::Id)
                        .to_owned(),
                )
                .await?;
            if manager.get_database_backend() == DbBackend::Postgres {
                manager
                    .get_connection()
                    .execute_unprepared(
                        "ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey, \
                         ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id)",
                    )
                    .await?;
            }
        }
        if !manager.has_index("deliveries", TENANT).await? {
            manager
                .create_index(
                    Index::create()
                        .name(TENANT)
                        .table(Deliveries::Table)
                        .col(Deliveries::TenantId)
                        .col(Deliveries::Id)
                        .to_owned(),
                )
                .await?;
        }
        if !manager.has_index("deliveries", WITH_CONTENT).await? {
            manager
                .create_index(
                    Index::create()
                        .name(WITH_CONTENT)
                        .table(Deliveries::Table)
                        .col(Deliveries::UpdatedAt)
                        .and_where(Expr::col(Deliveries::ContentRemovedAt).is_null())
                        .to_owned(),
                )
                .await?;
        }
        if manager.has_index("deliveries", FINISHED_WITH_CONTENT).await? {
            manager
                .drop_index(
                    Index::drop()
                        .name(FINISHED_WITH_CONTENT)
                        .table(Deliveries::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
