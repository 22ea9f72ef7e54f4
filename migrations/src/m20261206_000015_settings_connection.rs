//! `mail_settings.connection_id`: the OAuth connection (a sign-in with Microsoft or
//! Google, `mail_connections`) a settings version authenticates with instead of a
//! password; null for settings with a password or none. No foreign key: disconnecting
//! clears the settings that use the connection first (in the service), and settings that
//! name a connection that is gone read back fine and fail to send with their own hint.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailSettings {
    Table,
    ConnectionId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailSettings::Table)
                    .add_column(ColumnDef::new(MailSettings::ConnectionId).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailSettings::Table)
                    .drop_column(MailSettings::ConnectionId)
                    .to_owned(),
            )
            .await
    }
}
