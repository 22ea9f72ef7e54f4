//! `oauth_states_used`: the nonces of sign-in `state`s already brought back to the
//! callback (issue 25), so each `state` is used once. A row may go once its `state` has
//! expired (an expired `state` is refused anyway); the index finds those.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthStatesUsed {
    Table,
    Nonce,
    TenantId,
    ExpiresAtMs,
}

const INDEX: &str = "idx_oauth_states_used_expires_at_ms";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthStatesUsed::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(OauthStatesUsed::Nonce).text().not_null().primary_key())
                    .col(ColumnDef::new(OauthStatesUsed::TenantId).text().not_null())
                    // Milliseconds since the epoch, like the queue's times.
                    .col(ColumnDef::new(OauthStatesUsed::ExpiresAtMs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(OauthStatesUsed::Table)
                    .col(OauthStatesUsed::ExpiresAtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OauthStatesUsed::Table).to_owned())
            .await
    }
}
