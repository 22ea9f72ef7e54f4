//! Webhooks: the endpoints operators register (URL, sealed signing secrets, event types,
//! optionally one tenant), one message row per event and endpoint — written in the
//! transaction of the change that caused the event, claimed by dispatchers under a lease
//! like deliveries —, and every attempt's status code.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    Url,
    Description,
    TenantId,
    EventTypes,
    Enabled,
    SecretCiphertext,
    SecretKeyId,
    PreviousSecretCiphertext,
    PreviousSecretKeyId,
    PreviousSecretExpiresAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookMessages {
    Table,
    Id,
    EventId,
    EndpointId,
    EventType,
    TenantId,
    Body,
    Status,
    Attempts,
    NextAttemptAtMs,
    LeaseOwner,
    LeaseUntilMs,
    CreatedAt,
    UpdatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    MessageId,
    At,
    StatusCode,
    Error,
    DurationMs,
    ResponseExcerpt,
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
                    .table(WebhookEndpoints::Table)
                    .col(id_text(WebhookEndpoints::Id, backend).primary_key())
                    .col(ColumnDef::new(WebhookEndpoints::Url).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Description).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::TenantId).text().null())
                    // Event type codes separated by commas.
                    .col(ColumnDef::new(WebhookEndpoints::EventTypes).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Enabled).boolean().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::SecretCiphertext).blob().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::SecretKeyId).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::PreviousSecretCiphertext).blob().null())
                    .col(ColumnDef::new(WebhookEndpoints::PreviousSecretKeyId).text().null())
                    .col(
                        ColumnDef::new(WebhookEndpoints::PreviousSecretExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookMessages::Table)
                    .col(id_text(WebhookMessages::Id, backend).primary_key())
                    .col(ColumnDef::new(WebhookMessages::EventId).text().not_null())
                    .col(id_text(WebhookMessages::EndpointId, backend))
                    .col(ColumnDef::new(WebhookMessages::EventType).text().not_null())
                    .col(ColumnDef::new(WebhookMessages::TenantId).text().not_null())
                    .col(ColumnDef::new(WebhookMessages::Body).text().not_null())
                    .col(ColumnDef::new(WebhookMessages::Status).text().not_null())
                    .col(ColumnDef::new(WebhookMessages::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(WebhookMessages::NextAttemptAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookMessages::LeaseOwner).text().null())
                    .col(ColumnDef::new(WebhookMessages::LeaseUntilMs).big_integer().null())
                    .col(
                        ColumnDef::new(WebhookMessages::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookMessages::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookMessages::DeliveredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_messages_endpoint")
                            .from(WebhookMessages::Table, WebhookMessages::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The dispatcher's claim: due messages by time.
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_messages_due")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::Status)
                    .col(WebhookMessages::NextAttemptAtMs)
                    .to_owned(),
            )
            .await?;
        // An endpoint's messages, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_messages_endpoint")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::EndpointId)
                    .col(WebhookMessages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(id_text(WebhookAttempts::Id, backend).primary_key())
                    .col(id_text(WebhookAttempts::MessageId, backend))
                    .col(
                        ColumnDef::new(WebhookAttempts::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookAttempts::StatusCode).integer().null())
                    .col(ColumnDef::new(WebhookAttempts::Error).text().null())
                    .col(ColumnDef::new(WebhookAttempts::DurationMs).integer().not_null())
                    .col(ColumnDef::new(WebhookAttempts::ResponseExcerpt).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhook_attempts_message")
                            .from(WebhookAttempts::Table, WebhookAttempts::MessageId)
                            .to(WebhookMessages::Table, WebhookMessages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_attempts_message")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::MessageId)
                    .col(WebhookAttempts::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookMessages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned())
            .await
    }
}
