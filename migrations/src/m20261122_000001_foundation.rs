//! The first schema: tenants with their plan and settings-version counter, each tenant's
//! mail-server settings (passwords only as ciphertext), and the audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    Plan,
    SettingsVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MailSettings {
    Table,
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
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    ActorSubject,
    ActorRole,
    Action,
    Changes,
    At,
}

/// A text column holding a UUID string that pages are ordered by. On PostgreSQL it
/// uses the "C" collation, so ordering is byte order (= creation order for UUIDv7)
/// whatever the database's default collation is; SQLite's default is already binary.
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
                    .table(Tenants::Table)
                    .col(id_text(Tenants::Id, backend).primary_key())
                    .col(ColumnDef::new(Tenants::Name).text().not_null())
                    .col(ColumnDef::new(Tenants::Plan).text().not_null())
                    .col(
                        ColumnDef::new(Tenants::SettingsVersion)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Tenants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Tenants::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_plan_id")
                    .table(Tenants::Table)
                    .col(Tenants::Plan)
                    .col(Tenants::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MailSettings::Table)
                    .col(id_text(MailSettings::TenantId, backend).primary_key())
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
                    .col(
                        ColumnDef::new(MailSettings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_mail_settings_tenant")
                            .from(MailSettings::Table, MailSettings::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(id_text(AuditEvents::Id, backend).primary_key())
                    .col(id_text(AuditEvents::TenantId, backend))
                    .col(ColumnDef::new(AuditEvents::ActorSubject).text().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorRole).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Action).text().not_null())
                    .col(ColumnDef::new(AuditEvents::Changes).text().not_null())
                    .col(ColumnDef::new(AuditEvents::At).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant_id_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MailSettings::Table).to_owned())
            .await?;
        manager.drop_table(Table::drop().table(Tenants::Table).to_owned()).await
    }
}
