//! Retention: after the configured window a SENT or FAILED delivery loses its content —
//! recipient, subject, bodies, the servers' reply texts — and keeps its status, times,
//! codes and a hash of the recipient. `content_removed_at` says when; the index lets the
//! background task find the next rows to clear without scanning the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    ContentRemovedAt,
    RecipientHash,
    UpdatedAt,
}

const INDEX: &str = "idx_deliveries_retention";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(
                        ColumnDef::new(Deliveries::ContentRemovedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(Deliveries::RecipientHash).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Deliveries::Table)
                    .col(Deliveries::ContentRemovedAt)
                    .col(Deliveries::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Deliveries::Table).to_owned())
            .await?;
        for column in [Deliveries::RecipientHash, Deliveries::ContentRemovedAt] {
            manager
                .alter_table(Table::alter().table(Deliveries::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
