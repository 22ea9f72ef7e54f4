//! Settings go live only once proven: a tenant may have two settings rows for a while —
//! the version just saved (waiting for its test) and the version that still carries its
//! mail — so the key becomes (tenant, version). Each row gets its health: the state
//! (`PENDING_VERIFICATION`, `LIVE`, `SUSPENDED`), since when, the configuration failures
//! in a row and the last one, and a pending activation code (its hash only). Rows saved
//! before this migration were in force, so they are `LIVE`.
//!
//! A delivery may also be sent through the platform default whatever its tenant's route
//! (`via_platform`): time-critical mail that the tenant's server did not take in time,
//! and the notice that tells a tenant its settings were suspended.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum MailSettingsNew {
    Table,
}

#[derive(DeriveIden)]
enum MailSettings {
    TenantId,
    Version,
    ServerKind,
    Host,
    Port,
    FromAddress,
    FromName,
    SmtpAuth,
    Username,
    PasswordCiphertext,
    PasswordKeyId,
    Encryption,
    PopHost,
    PopPort,
    PopUsername,
    PopPasswordCiphertext,
    PopPasswordKeyId,
    PopTls,
    LocalHostname,
    SendIntervalMs,
    UpdatedAt,
    State,
    StateSince,
    ConsecutiveFailures,
    LastFailureAt,
    LastFailureStage,
    LastFailureSmtpCode,
    LastFailureEnhancedCode,
    LastFailureMessage,
    LastFailureHint,
    ActivationCodeHash,
    ActivationCodeExpiresAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    ViaPlatform,
}

/// The columns both shapes of the table have, in SQL.
const COMMON: &str = "tenant_id, version, server_kind, host, port, from_address, from_name, smtp_auth, username, \
     password_ciphertext, password_key_id, encryption, pop_host, pop_port, pop_username, pop_password_ciphertext, \
     pop_password_key_id, pop_tls, local_hostname, send_interval_ms, updated_at";

fn id_text(name: impl IntoIden, backend: DbBackend) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match backend {
        DbBackend::Postgres => col.custom(Alias::new(r#"text COLLATE "C""#)),
        _ => col.text(),
    };
    col.not_null().take()
}

/// The settings table's columns before this migration (without the key).
fn settings_columns(table: &mut TableCreateStatement, backend: DbBackend) {
    let ts = |c: MailSettings| ColumnDef::new(c).timestamp_with_time_zone().not_null().take();
    table
        .col(id_text(MailSettings::TenantId, backend))
        .col(ColumnDef::new(MailSettings::Version).big_integer().not_null())
        .col(ColumnDef::new(MailSettings::ServerKind).text().not_null())
        .col(ColumnDef::new(MailSettings::Host).text().not_null())
        .col(ColumnDef::new(MailSettings::Port).integer().not_null())
        .col(ColumnDef::new(MailSettings::FromAddress).text().not_null())
        .col(ColumnDef::new(MailSettings::FromName).text().null())
        .col(ColumnDef::new(MailSettings::SmtpAuth).boolean().not_null())
        .col(ColumnDef::new(MailSettings::Username).text().null())
        .col(ColumnDef::new(MailSettings::PasswordCiphertext).blob().null())
        .col(ColumnDef::new(MailSettings::PasswordKeyId).text().null())
        .col(ColumnDef::new(MailSettings::Encryption).text().not_null())
        .col(ColumnDef::new(MailSettings::PopHost).text().null())
        .col(ColumnDef::new(MailSettings::PopPort).integer().null())
        .col(ColumnDef::new(MailSettings::PopUsername).text().null())
        .col(ColumnDef::new(MailSettings::PopPasswordCiphertext).blob().null())
        .col(ColumnDef::new(MailSettings::PopPasswordKeyId).text().null())
        .col(ColumnDef::new(MailSettings::PopTls).boolean().null())
        .col(ColumnDef::new(MailSettings::LocalHostname).text().null())
        .col(ColumnDef::new(MailSettings::SendIntervalMs).big_integer().not_null())
        .col(ts(MailSettings::UpdatedAt));
}

fn tenant_fk(from: impl IntoIden + 'static) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name("fk_mail_settings_tenant")
        .from_tbl(from)
        .from_col(MailSettings::TenantId)
        .to(Tenants::Table, Tenants::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await.map(|_| ())
}

/// Puts `mail_settings_new` (filled) in the place of `mail_settings`. The old table is
/// renamed away before it is dropped, so a failure in between (SQLite runs a migration
/// outside a transaction) leaves both tables and loses no row.
async fn swap_in_new_table(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    run(manager, r#"ALTER TABLE "mail_settings" RENAME TO "mail_settings_old""#).await?;
    run(manager, r#"ALTER TABLE "mail_settings_new" RENAME TO "mail_settings""#).await?;
    run(manager, r#"DROP TABLE "mail_settings_old""#).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut table = Table::create();
        table.table(MailSettingsNew::Table);
        settings_columns(&mut table, backend);
        table
            .col(ColumnDef::new(MailSettings::State).text().not_null())
            .col(
                ColumnDef::new(MailSettings::StateSince)
                    .timestamp_with_time_zone()
                    .not_null(),
            )
            .col(
                ColumnDef::new(MailSettings::ConsecutiveFailures)
                    .integer()
                    .not_null()
                    .default(0),
            )
            .col(
                ColumnDef::new(MailSettings::LastFailureAt)
                    .timestamp_with_time_zone()
                    .null(),
            )
            .col(ColumnDef::new(MailSettings::LastFailureStage).text().null())
            .col(ColumnDef::new(MailSettings::LastFailureSmtpCode).integer().null())
            .col(ColumnDef::new(MailSettings::LastFailureEnhancedCode).text().null())
            .col(ColumnDef::new(MailSettings::LastFailureMessage).text().null())
            .col(ColumnDef::new(MailSettings::LastFailureHint).text().null())
            .col(ColumnDef::new(MailSettings::ActivationCodeHash).text().null())
            .col(
                ColumnDef::new(MailSettings::ActivationCodeExpiresAt)
                    .timestamp_with_time_zone()
                    .null(),
            )
            .primary_key(
                Index::create()
                    .name("pk_mail_settings_versions")
                    .col(MailSettings::TenantId)
                    .col(MailSettings::Version),
            )
            .foreign_key(&mut tenant_fk(MailSettingsNew::Table));
        manager.create_table(table.to_owned()).await?;
        run(
            manager,
            &format!(
                "INSERT INTO mail_settings_new ({COMMON}, state, state_since, consecutive_failures) \
                 SELECT {COMMON}, 'LIVE', updated_at, 0 FROM mail_settings"
            ),
        )
        .await?;
        swap_in_new_table(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(
                        ColumnDef::new(Deliveries::ViaPlatform)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::ViaPlatform)
                    .to_owned(),
            )
            .await?;
        let mut table = Table::create();
        table.table(MailSettingsNew::Table);
        settings_columns(&mut table, backend);
        table
            .primary_key(Index::create().col(MailSettings::TenantId))
            .foreign_key(&mut tenant_fk(MailSettingsNew::Table));
        manager.create_table(table.to_owned()).await?;
        // One row per tenant again: the newest version.
        run(
            manager,
            &format!(
                "INSERT INTO mail_settings_new ({COMMON}) SELECT {COMMON} FROM mail_settings m \
                 WHERE version = (SELECT MAX(version) FROM mail_settings n WHERE n.tenant_id = m.tenant_id)"
            ),
        )
        .await?;
        swap_in_new_table(manager).await
    }
}
