//! `deliveries.retried_before` (issue 26): whether an attempt of the delivery was already
//! a retry or a deferral, so the worker that claims it knows, from the row it holds,
//! whether its next retry is the first (`delivery.retrying` is sent once per delivery)
//! instead of the finish reading the attempts back. The finish that records a `RETRY`
//! or `DEFERRED` attempt sets it; nothing clears it.
//!
//! Rows stored before are filled in from their attempts: those that can still be
//! retried — waiting, sending, and failed ones (a person can put a failed delivery back
//! in the queue) —; sent rows are done with and keep `FALSE`. During a rolling upgrade a
//! process of the release before does not set it, so a delivery it retried may announce
//! its first retry once more. Each step is safe to run again (SQLite runs a migration
//! without a transaction).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    RetriedBefore,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("deliveries", "retried_before").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Deliveries::Table)
                        .add_column(
                            ColumnDef::new(Deliveries::RetriedBefore)
                                .boolean()
                                .not_null()
                                .default(false),
                        )
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE deliveries SET retried_before = TRUE \
                 WHERE NOT retried_before AND status IN ('QUEUED', 'SENDING', 'RETRYING', 'FAILED') \
                 AND EXISTS (SELECT 1 FROM delivery_attempts \
                 WHERE delivery_attempts.delivery_id = deliveries.id \
                 AND delivery_attempts.outcome IN ('RETRY', 'DEFERRED'))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("deliveries", "retried_before").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Deliveries::Table)
                        .drop_column(Deliveries::RetriedBefore)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
