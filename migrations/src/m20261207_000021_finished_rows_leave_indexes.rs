//! Growth (issue 28): a year of mail in the `deliveries` table. Retention used to find
//! the next rows to clear through an index of every row ever stored
//! (`content_removed_at, updated_at`); it now reads a partial index of the rows that
//! still hold content (`updated_at` where `content_removed_at IS NULL`): the queue's
//! unfinished rows and the finished ones of the retention window. A cleared row leaves
//! it, so the index stays the size of the window, however many rows the table keeps.
//! The claim path already reads only partial indexes of unfinished rows (migration 2).
//! Rows past `MAILGATE_DELIVERY_HISTORY_DAYS` are deleted along the primary key (a
//! UUIDv7: text order is time order) and need no index of their own; their attempts are
//! deleted in the same transaction (on PostgreSQL `delivery_attempts.delivery_id` is no
//! foreign key since migration 4, which said rows were never deleted: they now are, past
//! the horizon, and only there). Safe to run again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    ContentRemovedAt,
    UpdatedAt,
}

/// The index of every row that this replaces (migration 7).
const FULL: &str = "idx_deliveries_retention";
/// Its replacement: rows that still hold content.
const PARTIAL: &str = "idx_deliveries_with_content";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_index("deliveries", PARTIAL).await? {
            manager
                .create_index(
                    Index::create()
                        .name(PARTIAL)
                        .table(Deliveries::Table)
                        .col(Deliveries::UpdatedAt)
                        .and_where(Expr::col(Deliveries::ContentRemovedAt).is_null())
                        .to_owned(),
                )
                .await?;
        }
        if manager.has_index("deliveries", FULL).await? {
            manager
                .drop_index(Index::drop().name(FULL).table(Deliveries::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_index("deliveries", FULL).await? {
            manager
                .create_index(
                    Index::create()
                        .name(FULL)
                        .table(Deliveries::Table)
                        .col(Deliveries::ContentRemovedAt)
                        .col(Deliveries::UpdatedAt)
                        .to_owned(),
                )
                .await?;
        }
        if manager.has_index("deliveries", PARTIAL).await? {
            manager
                .drop_index(Index::drop().name(PARTIAL).table(Deliveries::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
