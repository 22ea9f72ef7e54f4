//! Test mails are limited per caller (the token's `sub`) as well as per tenant, so one
//! operator or service token cannot send test mails through every tenant's server at
//! once: each event records who sent it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TestMailEvents {
    Table,
    Caller,
    AtMs,
}

const INDEX: &str = "idx_test_mail_events_caller_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TestMailEvents::Table)
                    .add_column(ColumnDef::new(TestMailEvents::Caller).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(TestMailEvents::Table)
                    .col(TestMailEvents::Caller)
                    .col(TestMailEvents::AtMs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(TestMailEvents::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TestMailEvents::Table)
                    .drop_column(TestMailEvents::Caller)
                    .to_owned(),
            )
            .await
    }
}
