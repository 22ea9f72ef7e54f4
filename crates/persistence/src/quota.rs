//! Enqueue quotas on the database ([`domain::ports::EnqueueQuota`]). Each process reserves
//! takes from a tenant's window in small chunks ([`domain::quota::reservation`]) inside a
//! transaction that holds the tenant's quota lock (an advisory lock on PostgreSQL, the
//! write lock on SQLite), and hands them out from memory: the database decides how many
//! there are in all, so the limits hold across processes, with one round trip per chunk
//! instead of per enqueue. A chunk a process has not used when its window ends is not
//! handed out (the limit is never exceeded; it can be undershot by that much).
//!
//! A reservation remembers the limit it was taken under. When the limit changes (an
//! operator lowered or raised the override), what is left of it goes back to the
//! database's count and the next take reserves under the new limit, so a lower limit
//! holds from the next enqueue on, counting what the window already took. Other processes
//! drop their copy of the override when the change is announced (`changes`, PostgreSQL),
//! so it holds there from their next enqueue too; `OVERRIDE_TTL` bounds a copy's life
//! should a notification be missed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ports::EnqueueQuota;
use domain::quota::{EnqueueLimits, QuotaOverride, Window, grant, reservation};
use domain::{StoreError, TenantId};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::convert::db_err;
use crate::store::SqlStore;

/// Overrides are read again after this (a change through this process is seen at once).
const OVERRIDE_TTL: Duration = Duration::from_secs(30);

/// This process's reservations of a tenant's window.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    /// The window's start (ms since the epoch).
    start: i64,
    /// Takes reserved and not yet handed out.
    left: u32,
    /// The limit they were reserved under.
    limit: u32,
}

/// This process's reservations: (tenant, window) → its reservation.
type Reserved = HashMap<(TenantId, &'static str), Reservation>;

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
            let limit = windows.iter().find(|(w, _)| *w == window).map_or(0, |(_, l)| *l);
            let entry = reserved
                .entry((tenant, window.code()))
                .or_insert(Reservation { start, left: 0, limit });
            if entry.start != start || entry.limit != limit {
                *entry = Reservation { start, left: 0, limit };
            }
            entry.left = entry.left.saturating_add(k);
        }
        Ok(None)
    }

    /// Takes back what this process reserved of `tenant`'s windows under another limit
    /// than `limited` says now: the unused takes leave this process and the database's
    /// count, so the next reservation is decided under the new limit with what the
    /// window really took.
    async fn release_changed(
        &self,
        tenant: TenantId,
        limited: &[(Window, u32)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let stale: Vec<(Window, Reservation)> = {
            let mut reserved = self.lock();
            Window::ALL
                .into_iter()
                .filter_map(|w| {
                    let limit = limited.iter().find(|(l, _)| *l == w).map_or(0, |(_, l)| *l);
                    let key = (tenant, w.code());
                    let changed = reserved.get(&key).is_some_and(|r| r.limit != limit);
                    if changed {
                        reserved.remove(&key).map(|r| (w, r))
                    } else {
                        None
                    }
                })
                .collect()
        };
        let db = self.store.connection();
        let backend = db.get_database_backend();
        let p = |n: usize| {
            if backend == DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        for (window, r) in stale {
            // A window that has ended keeps its count: it no longer decides anything.
            if r.left == 0 || r.start != window.start_ms(now) {
                continue;
            }
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE enqueue_counters SET count = CASE WHEN count > {} THEN count - {} ELSE 0 END \
                     WHERE tenant_id = {} AND window_kind = {} AND window_start_ms = {}",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                ),
                // In the order they appear (SQLite's `?` are positional).
                [
                    i64::from(r.left).into(),
                    i64::from(r.left).into(),
                    tenant.to_string().into(),
                    window.code().into(),
                    r.start.into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }
}

impl QuotaGate {
    /// Drops this process's copy of `tenant`'s override (it changed, here or elsewhere).
    pub async fn forget_override(&self, tenant: TenantId) {
        self.overrides.invalidate(&tenant).await;
    }

    /// Drops every copied override (change notifications may have been missed).
    pub fn forget_all_overrides(&self) {
        self.overrides.invalidate_all();
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
        // Reservations made under another limit (an override changed) are given back
        // first, so the new limit counts from what the window really took.
        self.release_changed(tenant, &limited, now).await?;
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
                    .filter(|(w, limit)| {
                        reserved
                            .get(&(tenant, w.code()))
                            .is_none_or(|r| r.start != w.start_ms(now) || r.left == 0 || r.limit != *limit)
                    })
                    .collect();
                if missing.is_empty() {
                    for (w, _) in &limited {
                        if let Some(entry) = reserved.get_mut(&(tenant, w.code())) {
                            entry.left -= 1;
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
        change: &domain::change::ChangeRecord,
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
        // Its audit entry and its announcement (every other process drops its copy of the
        // override on commit); this process's copy is dropped by the caller.
        crate::SqlStore::write_change(&txn, change).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(())
    }
}
