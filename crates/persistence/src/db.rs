//! Opening the database and bringing its schema up to date: SQLite (a file, in WAL mode,
//! with foreign keys and a busy timeout on every connection) or PostgreSQL (a pool,
//! optionally confined to one schema, which is created when missing).

use std::time::Duration;

use migration::MigratorTrait;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait};

use crate::error::{Error, Result};

/// How long a SQLite connection waits for another writer before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in a SQLite pool: WAL lets readers run beside the one writer.
const SQLITE_POOL_SIZE: u32 = 4;
/// Key of the PostgreSQL advisory lock that lets one process migrate at a time
/// ("mailgate" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6d61_696c_6761_7465;

/// Opens a connection pool for `url` (`sqlite://path?mode=rwc`, `sqlite::memory:`, or
/// `postgres://…`). `schema` (PostgreSQL only) confines every connection to that schema
/// through `search_path` and creates it if missing, so tests and deployments can share
/// one database. `max_connections` sizes a PostgreSQL pool (SQLite uses a fixed small pool).
pub async fn connect(url: &str, schema: Option<&str>, max_connections: u32) -> Result<DatabaseConnection> {
    let backend = backend_of(url)?;
    let mut options = ConnectOptions::new(url);
    // Statement text at INFO would flood the service log; sea-orm's tracing spans remain.
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    match backend {
        DbBackend::Sqlite => {
            if schema.is_some() {
                return Err(Error::SchemaNotSupported);
            }
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            // Each connection to an in-memory database is a database of its own.
            options.max_connections(if in_memory { 1 } else { SQLITE_POOL_SIZE });
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
            });
        }
        _ => {
            options.max_connections(max_connections.max(1));
            if let Some(schema) = schema {
                check_schema_name(schema)?;
                options.set_schema_search_path(schema);
            }
        }
    }
    let db = Database::connect(options)
        .await
        .map_err(|e| Error::Connect(mask_url(&e.to_string(), url)))?;
    if let Some(schema) = schema {
        // The name was checked above: only [a-z0-9_], so quoting it is enough.
        db.execute_unprepared(&format!(r#"CREATE SCHEMA IF NOT EXISTS "{schema}""#))
            .await?;
    }
    Ok(db)
}

/// Applies every pending migration. On PostgreSQL this runs in one transaction under an
/// advisory lock, so several Mailgate processes starting together migrate once.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
            .await?;
        migration::Migrator::up(&txn, None).await.map_err(Error::Migration)?;
        fill_name_keys(&txn).await?;
        txn.commit().await?;
        Ok(())
    } else {
        // SQLite too changes its schema in one transaction on one connection: all pending
        // migrations apply or none (a migration that rebuilds a table never leaves it
        // half done), and no pooled connection works from an outdated schema.
        let txn = db.begin().await?;
        migration::Migrator::up(&txn, None).await.map_err(Error::Migration)?;
        fill_name_keys(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Tenants' names read per statement while their search keys are filled.
const NAME_KEY_BATCH: u64 = 500;

/// Fills `tenants.name_key` where a release before migration 23 left none (see that
/// migration): the key is computed here, in Rust, by the one function that computes it
/// for new tenants. A batch at a time, in the migration's transaction; nothing to do once
/// every row has one.
async fn fill_name_keys(txn: &impl ConnectionTrait) -> Result<()> {
    let backend = txn.get_database_backend();
    loop {
        let mut q = crate::sql::SqlBuilder::new(backend);
        q.sql("SELECT id, name FROM tenants WHERE name_key IS NULL ORDER BY id")
            .limit(i64::try_from(NAME_KEY_BATCH).unwrap_or(i64::MAX));
        let rows = txn.query_all_raw(q.build()).await?;
        for row in &rows {
            let id: String = row.try_get("", "id")?;
            let name: String = row.try_get("", "name")?;
            let mut q = crate::sql::SqlBuilder::new(backend);
            q.sql("UPDATE tenants SET name_key = ")
                .bind(domain::tenant::name_search_key(&name))
                .sql(" WHERE id = ")
                .bind(id);
            txn.execute_raw(q.build()).await?;
        }
        if (rows.len() as u64) < NAME_KEY_BATCH {
            return Ok(());
        }
    }
}

fn backend_of(url: &str) -> Result<DbBackend> {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => Ok(DbBackend::Sqlite),
        "postgres" | "postgresql" => Ok(DbBackend::Postgres),
        other => Err(Error::UnsupportedUrl(other.to_owned())),
    }
}

fn check_schema_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSchemaName(name.to_owned()))
    }
}

/// Replaces the password of `url` wherever it appears in `text` (drivers may quote the
/// URL in their errors).
fn mask_url(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        let url = "postgres://app:s3cr%21t@db.example.com:5432/mailgate";
        assert_eq!(
            mask_url(&format!("cannot parse '{url}'"), url),
            "cannot parse 'postgres://app:***@db.example.com:5432/mailgate'"
        );
        assert_eq!(mask_url("x", "sqlite://data/m.db?mode=rwc"), "x");
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema_name("persist_0190abcd").is_ok());
        for bad in ["", "Public", "a-b", "1abc", r#"x"; DROP"#, &"a".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_sqlite_and_postgres_urls() {
        assert!(backend_of("mysql://x").is_err());
        assert_eq!(backend_of("sqlite::memory:").ok(), Some(DbBackend::Sqlite));
        assert_eq!(backend_of("postgresql://h/d").ok(), Some(DbBackend::Postgres));
    }
}

/// How the connection pool is used right now (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open, and of those idle.
    pub open: u32,
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

/// The pool's use, whichever the backend.
pub fn pool_use(db: &DatabaseConnection) -> PoolUse {
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            PoolUse {
                open: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            PoolUse {
                open: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
    }
}
