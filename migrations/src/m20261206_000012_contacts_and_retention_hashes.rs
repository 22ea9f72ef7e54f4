//! Three columns for what a stranger must not be able to use:
//! - `tenants.contact_email`: the address an operator set for the tenant, the only one a
//!   notice about its settings (a suspension) goes to — never the sender address the
//!   tenant typed itself;
//! - `deliveries.payload_hash`: a hash of what an idempotency key stood for, kept when
//!   retention removes the content, so the same key with another payload is still told
//!   apart;
//! - `audit_events.content_removed_at`: when retention removed what an entry held of a
//!   person's data (a test mail's recipient, a server's reply); the index lets the
//!   background task find the next entries without scanning the trail.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    ContactEmail,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    PayloadHash,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Action,
    ContentRemovedAt,
    At,
}

const INDEX: &str = "idx_audit_events_retention";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(ColumnDef::new(Tenants::ContactEmail).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(Deliveries::PayloadHash).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(
                        ColumnDef::new(AuditEvents::ContentRemovedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(AuditEvents::Table)
                    .col(AuditEvents::Action)
                    .col(AuditEvents::ContentRemovedAt)
                    .col(AuditEvents::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(AuditEvents::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::ContentRemovedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::PayloadHash)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::ContactEmail)
                    .to_owned(),
            )
            .await
    }
}
