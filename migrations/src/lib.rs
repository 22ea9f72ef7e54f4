//! Mailgate's database schema as sea-orm migrations, portable to SQLite and PostgreSQL.
//! Each change is its own file, applied in name order; a file once released is never
//! edited, a later file changes what it made.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261122_000002_deliveries;
mod m20261122_000003_coordination;
mod m20261122_000004_lean_delivery_writes;
mod m20261202_000005_delivery_claims;
mod m20261203_000006_settings_health;
mod m20261203_000007_delivery_retention;
mod m20261203_000008_test_mail_callers;
mod m20261203_000009_enqueue_quotas;
mod m20261204_000010_webhooks;
mod m20261204_000011_delivery_trace;
mod m20261206_000012_contacts_and_retention_hashes;
mod m20261206_000013_oauth_states;
mod m20261206_000014_mail_connections;
mod m20261206_000015_settings_connection;
mod m20261206_000016_connection_directory;
mod m20261206_000017_connection_client_credentials;
mod m20261206_000018_failure_code;
mod m20261207_000019_delivery_retried_before;
mod m20261207_000020_server_standing;
mod m20261207_000021_finished_rows_leave_indexes;
mod m20261207_000022_archived_counts;
mod m20261207_000023_tenant_name_key;
mod m20261208_000024_fewer_index_entries_per_delivery;

/// Fills the per-tenant count marks of a table that has none (migration 22).
pub use m20261207_000022_archived_counts::fill as fill_count_marks;

/// A column holding an id as text: on PostgreSQL compared byte by byte (`COLLATE "C"`),
/// so its order is the order of the UUIDv7 text. For migrations from 22 on; the earlier
/// files keep their own copy (a released file is never edited).
fn id_text(name: impl IntoIden, backend: sea_orm_migration::sea_orm::DbBackend) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match backend {
        sea_orm_migration::sea_orm::DbBackend::Postgres => col.custom(Alias::new(r#"text COLLATE "C""#)),
        _ => col.text(),
    };
    col.not_null().take()
}

/// The list of Mailgate's migrations, for `persistence::migrate` and the CLI.
#[derive(Debug, Clone, Copy)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration),
            Box::new(m20261122_000002_deliveries::Migration),
            Box::new(m20261122_000003_coordination::Migration),
            Box::new(m20261122_000004_lean_delivery_writes::Migration),
            Box::new(m20261202_000005_delivery_claims::Migration),
            Box::new(m20261203_000006_settings_health::Migration),
            Box::new(m20261203_000007_delivery_retention::Migration),
            Box::new(m20261203_000008_test_mail_callers::Migration),
            Box::new(m20261203_000009_enqueue_quotas::Migration),
            Box::new(m20261204_000010_webhooks::Migration),
            Box::new(m20261204_000011_delivery_trace::Migration),
            Box::new(m20261206_000012_contacts_and_retention_hashes::Migration),
            Box::new(m20261206_000013_oauth_states::Migration),
            Box::new(m20261206_000014_mail_connections::Migration),
            Box::new(m20261206_000015_settings_connection::Migration),
            Box::new(m20261206_000016_connection_directory::Migration),
            Box::new(m20261206_000017_connection_client_credentials::Migration),
            Box::new(m20261206_000018_failure_code::Migration),
            Box::new(m20261207_000019_delivery_retried_before::Migration),
            Box::new(m20261207_000020_server_standing::Migration),
            Box::new(m20261207_000021_finished_rows_leave_indexes::Migration),
            Box::new(m20261207_000022_archived_counts::Migration),
            Box::new(m20261207_000023_tenant_name_key::Migration),
            Box::new(m20261208_000024_fewer_index_entries_per_delivery::Migration),
        ]
    }
}
