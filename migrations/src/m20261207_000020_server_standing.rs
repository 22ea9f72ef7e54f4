//! `mail_settings.server_reached_at` and `server_unreachable_at` (issue 28): what the
//! workers learnt of a settings version's server, kept for the workers that start later.
//! A worker used to know nothing after a start or a deploy, so every tenant's server had
//! to prove itself again through the small side budget of lanes, and thousands of
//! tenants with a few mails each waited in line. A version whose server last took mail
//! (`server_reached_at` later than `server_unreachable_at`) starts proven. Both are
//! written on a change only (a server proving itself in a worker, or failing for every
//! mail), never per delivery. Rows stored before know nothing: their servers prove
//! themselves once, as before. Safe to run again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailSettings {
    Table,
    ServerReachedAt,
    ServerUnreachableAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in [
            ("server_reached_at", MailSettings::ServerReachedAt),
            ("server_unreachable_at", MailSettings::ServerUnreachableAt),
        ] {
            if !manager.has_column("mail_settings", name).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(MailSettings::Table)
                            .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in [
            ("server_reached_at", MailSettings::ServerReachedAt),
            ("server_unreachable_at", MailSettings::ServerUnreachableAt),
        ] {
            if manager.has_column("mail_settings", name).await? {
                manager
                    .alter_table(Table::alter().table(MailSettings::Table).drop_column(column).to_owned())
                    .await?;
            }
        }
        Ok(())
    }
}
