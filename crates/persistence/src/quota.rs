//! Enqueue quotas on the database ([`domain::ports::EnqueueQuota`]). Each process reserves
//! takes from a tenant's window in small chunks ([`domain::quota::reservation`]) inside a
//! transaction that holds the tenant's quota lock (an advisory lock on PostgreSQL, the
//! write lock on SQLite), and hands them out from memory: the database decides how many
//! there are in all, so the limits hold across processes, with one round trip per chunk
//! instead of per enqueue. A chunk a process has not used when its window ends is not
//! handed out (the limit is never exceeded; it can be undershot by that much).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::audit::AuditEntry;
use domain::ports::EnqueueQuota;
use domain::quota::{EnqueueLimits, QuotaOverride, Window, grant, reservation};
use domain::{StoreError, TenantId};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::convert::db_err;
use crate::store::SqlStore;

/// Overrides are read again after this (a change through this process is seen at once).
const OVERRIDE_TTL: Duration = Duration::from_secs(30);

/// This process's reservations: (tenant, window) → (window start, takes left).
type Reserved = HashMap<(TenantId, &'static str), (i64, u32)>;

/// [`EnqueueQuota`] on a [`SqlStore`], with this process's reservations.
pub struct QuotaGate {
    store: SqlStore,
    reserved: Mutex<Reserved>,
    overrides: moka::future::Cache<TenantId, QuotaOverride>,
}

impl std::fmt::Debug for QuotaGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaGate").finish_non_exhaustive()
    }
}

impl QuotaGate {
    async fn read_override(&self, tenant: TenantId) -> Result<QuotaOverride, StoreError> {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "SELECT per_minute, per_day FROM tenant_quotas WHERE tenant_id = $1",
            _ => "SELECT per_minute, per_day FROM tenant_quotas WHERE tenant_id = ?",
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [tenant.to_string().into()],
            ))
            .await
            .map_err(db_err)?;
        let limit = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
        Ok(match row {
            Some(r) => QuotaOverride {
                per_minute: limit(r.try_get("", "per_minute").map_err(db_err)?),
                per_day: limit(r.try_get("", "per_day").map_err(db_err)?),
            },
            None => QuotaOverride::default(),
        })
    }

    pub fn new(store: SqlStore) -> Self {
        Self {
            store,
            reserved: Mutex::new(HashMap::new()),
            overrides: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(OVERRIDE_TTL)
                .build(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reserved> {
        self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves takes for `windows` (those without any left here) from the database;
    /// `Some(window)` when one is used up.
    async fn reserve(
        &self,
        tenant: TenantId,
        windows: &[(Window, u32)],
        now: DateTime<Utc>,
    ) -> Result<Option<Window>, StoreError> {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let key = tenant.to_string();
        let p = |n: usize| {
            if backend == DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let txn = self.store.begin_write().await?;
        if backend == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("enqueue-quota:{key}").into()],
            ))
            .await
            .map_err(db_err)?;
        }
        let mut granted = Vec::new();
        for (window, limit) in windows {
            let start = window.start_ms(now);
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "SELECT window_start_ms, count FROM enqueue_counters WHERE tenant_id = {} AND window_kind = {}",
                        p(1),
                        p(2)
                    ),
                    [key.clone().into(), window.code().into()],
                ))
                .await
                .map_err(db_err)?;
            let used = match row {
                Some(r) => {
                    let stored_start: i64 = r.try_get("", "window_start_ms").map_err(db_err)?;
                    let count: i64 = r.try_get("", "count").map_err(db_err)?;
                    if stored_start == start { count } else { 0 }
                }
                None => 0,
            };
            let k = grant(*limit, used, reservation(*limit));
            if k == 0 {
                txn.rollback().await.map_err(db_err)?;
                return Ok(Some(*window));
            }
            let values: Vec<Value> = vec![
                key.clone().into(),
                window.code().into(),
                start.into(),
                (used + i64::from(k)).into(),
            ];
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO enqueue_counters (tenant_id, window_kind, window_start_ms, count) VALUES ({}, {}, {}, {}) \
                     ON CONFLICT (tenant_id, window_kind) DO UPDATE SET window_start_ms = excluded.window_start_ms, \
                     count = excluded.count",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                ),
                values,
            ))
            .await
            .map_err(db_err)?;
            granted.push((*window, start, k));
        }
        txn.commit().await.map_err(db_err)?;
        let mut reserved = self.lock();
        for (window, start, k) in granted {
            let entry = reserved.entry((tenant, window.code())).or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 = entry.1.saturating_add(k);
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl EnqueueQuota for QuotaGate {
    async fn try_take(
        &self,
        tenant: TenantId,
        limits: EnqueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let limited: Vec<(Window, u32)> = Window::ALL
            .into_iter()
            .map(|w| (w, w.limit(limits)))
            .filter(|(_, limit)| *limit > 0)
            .collect();
        if limited.is_empty() {
            return Ok(None);
        }
        // Take what is reserved here, else reserve and take again (another caller of this
        // process may take a fresh reservation first; then the next reservation decides).
        for _ in 0..3 {
            let missing: Vec<(Window, u32)> = {
                let mut reserved = self.lock();
                let missing: Vec<(Window, u32)> = limited
                    .iter()
                    .copied()
                    .filter(|(w, _)| {
                        reserved
                            .get(&(tenant, w.code()))
                            .is_none_or(|(start, left)| *start != w.start_ms(now) || *left == 0)
                    })
                    .collect();
                if missing.is_empty() {
                    for (w, _) in &limited {
                        if let Some(entry) = reserved.get_mut(&(tenant, w.code())) {
                            entry.1 -= 1;
                        }
                    }
                    return Ok(None);
                }
                missing
            };
            if let Some(full) = self.reserve(tenant, &missing, now).await? {
                return Ok(Some(full.retry_after_secs(now)));
            }
        }
        // Reserved three times and others of this process took it each time: a window is
        // as good as full.
        Ok(Some(1))
    }

    async fn quota_override(&self, tenant: TenantId) -> Result<QuotaOverride, StoreError> {
        // One read per tenant at a time: the enqueues of a burst wait for it together (and
        // so still reach the group commit together) instead of each reading.
        self.overrides
            .try_get_with(tenant, self.read_override(tenant))
            .await
            .map_err(|e: std::sync::Arc<StoreError>| StoreError::Database(e.to_string().into()))
    }

    async fn set_quota_override(
        &self,
        tenant: TenantId,
        value: QuotaOverride,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let p = |n: usize| {
            if backend == DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let txn = self.store.begin_write().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM tenant_quotas WHERE tenant_id = {}", p(1)),
            [tenant.to_string().into()],
        ))
        .await
        .map_err(db_err)?;
        if value != QuotaOverride::default() {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO tenant_quotas (tenant_id, per_minute, per_day) VALUES ({}, {}, {})",
                    p(1),
                    p(2),
                    p(3)
                ),
                [
                    tenant.to_string().into(),
                    value.per_minute.map(i64::from).into(),
                    value.per_day.map(i64::from).into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        }
        self.store.insert_audit_in(&txn, audit).await?;
        txn.commit().await.map_err(db_err)?;
        self.overrides.invalidate(&tenant).await;
        Ok(())
    }
}
