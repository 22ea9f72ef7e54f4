//! The databases tests run on: SQLite in a temporary file, PostgreSQL in a fresh schema of
//! the test database, and [`each_backend!`](crate::each_backend) to run one test on both.

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait as _, DbErr};

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where PostgreSQL tests connect: `MAILGATE_TEST_POSTGRES_URL`, else the local test
/// database (trust auth on loopback in CI). The only place that knows it.
pub fn postgres_url() -> String {
    std::env::var("MAILGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A temporary SQLite database file, removed (with its WAL files) on drop.
#[derive(Debug)]
pub struct TempSqlite {
    path: PathBuf,
}

impl TempSqlite {
    /// A fresh file name `<temp dir>/mailgate-<label>-<uuid>.db` (not created yet).
    pub fn new(label: &str) -> Self {
        let name = format!("mailgate-{label}-{}.db", uuid::Uuid::new_v4().simple());
        Self {
            path: std::env::temp_dir().join(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The URL that creates the file on first connect.
    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A fresh schema name in the PostgreSQL test database (`<prefix>_<uuid>`), dropped with
/// everything in it when the guard goes, also when the test panicked.
#[derive(Debug)]
pub struct PgSchema {
    name: String,
    dropped: bool,
}

impl PgSchema {
    pub fn fresh(prefix: &str) -> Self {
        Self {
            name: format!("{prefix}_{}", uuid::Uuid::new_v4().simple()),
            dropped: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the schema now through `db` (a connection the test holds anyway).
    pub async fn drop_with(mut self, db: &impl sea_orm::ConnectionTrait) -> Result<(), DbErr> {
        self.dropped = true;
        db.execute_unprepared(&drop_statement(&self.name)).await.map(|_| ())
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if !self.dropped {
            drop_schema_blocking(&self.name);
        }
    }
}

fn drop_statement(schema: &str) -> String {
    format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")
}

/// Drops `schema` over a connection of its own (best effort: a leftover schema only costs
/// space). Runs on a thread of its own, so it works inside or outside a runtime.
pub fn drop_schema_blocking(schema: &str) {
    let schema = schema.to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime
            .block_on(async {
                let db = sea_orm::Database::connect(postgres_url()).await?;
                // A session of the test still in a transaction on the schema must not hold
                // this up for long.
                db.execute_unprepared("SET lock_timeout = '10s'").await?;
                db.execute_unprepared(&drop_statement(&schema)).await?;
                db.close().await
            })
            .map_err(std::io::Error::other)
    })
    .join();
    match dropped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("could not drop a test schema (left behind): {e}"),
        Err(_) => eprintln!("could not drop a test schema (left behind): the thread panicked"),
    }
}

/// Turns `async fn name(backend: Backend)` items of the calling module into the tests
/// `sqlite::name` and `postgres::name` (tokio, multi-thread, two workers).
///
/// With a runner first, each test is what the runner does with its backend and the
/// named item, e.g. an app per backend that the item gets by reference:
///
/// ```ignore
/// testkit::each_backend!(|backend, test| {
///     let app = spawn_app(backend).await;
///     test(&app).await;
///     app.finish().await;
/// }; first_test, second_test);
/// ```
#[macro_export]
macro_rules! each_backend {
    (|$backend:ident, $test:ident| $run:block; $($name:ident),* $(,)?) => {
        $crate::each_backend!(@module sqlite, Sqlite, |$backend, $test| $run; $($name),*);
        $crate::each_backend!(@module postgres, Postgres, |$backend, $test| $run; $($name),*);
    };
    (@module $module:ident, $variant:ident, |$backend:ident, $test:ident| $run:block; $($name:ident),*) => {
        mod $module {
            // The runner's names are the caller's.
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $backend = $crate::db::Backend::$variant;
                    let $test = super::$name;
                    $run
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::each_backend!(|backend, test| { test(backend).await; }; $($name),*);
    };
}
