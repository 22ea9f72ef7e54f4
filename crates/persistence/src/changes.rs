//! Change notifications between Mailgate processes (`LISTEN`/`NOTIFY` on PostgreSQL):
//! every write of a tenant's plan or settings announces the tenant, so every process
//! drops its cached view of it the moment any process changes it.

use std::time::Duration;

use domain::{StoreError, TenantId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::convert::db_err;

/// The `NOTIFY` channel carrying the id of a tenant whose plan or settings changed.
pub const CHANGE_CHANNEL: &str = "mailgate_tenant_changed";

/// Sends a change notification inside `txn` (PostgreSQL only; delivered on commit).
pub(crate) async fn notify_change(txn: &impl ConnectionTrait, tenant: &str) -> Result<(), StoreError> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANGE_CHANNEL.into(), tenant.into()],
    ))
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Listens for tenant changes made by any process and calls `on_change(Some(id))` for
/// each, and `on_change(None)` whenever the listening connection was (re)established —
/// notifications may have been missed then, so the caller should drop everything it
/// cached. Runs until the task is dropped. PostgreSQL only; returns at once on SQLite
/// (one process, whose own writes invalidate its caches).
pub async fn listen_for_changes<F, Fut>(db: DatabaseConnection, on_change: F)
where
    F: Fn(Option<TenantId>) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::str::FromStr as _;
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for tenant changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANGE_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        on_change(None).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Ok(id) = TenantId::from_str(n.payload()) {
                        on_change(Some(id)).await;
                    }
                }
                // The connection was lost; sqlx reconnects on the next call. Anything
                // sent meanwhile is lost, so everything cached is dropped.
                Ok(None) => {
                    tracing::warn!("change listener reconnected");
                    on_change(None).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
