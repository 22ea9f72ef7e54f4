//! Coordination between Mailgate processes through the database: per-tenant send slots
//! (the send interval holds across processes; on PostgreSQL the database's clock decides,
//! so hosts' clocks need not agree), recent test mails (the per-tenant limit holds across
//! processes). Change notifications between processes are in [`crate::changes`].

use std::time::Duration;

use domain::StoreError;
use domain::TenantId;
use domain::ports::{Coordination, TestMailLimit};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::convert::db_err;
use crate::store::SqlStore;

/// How long a send turn is held at most (a holder that died frees it after this).
const HOLD_MS: i64 = 30_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Coordination for SqlStore {
    async fn try_take_send_turn(&self, tenant: TenantId, holder: &str) -> Result<Option<Duration>, StoreError> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let key = tenant.to_string();
        // The database's clock decides on PostgreSQL (hosts' clocks need not agree);
        // SQLite serves one process, whose clock decides.
        let now = match backend {
            DbBackend::Postgres => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint".to_owned(),
            _ => now_ms().to_string(),
        };
        let (insert, take, look) = match backend {
            DbBackend::Postgres => (
                "INSERT INTO tenant_pacing (tenant_id, next_send_at_ms) VALUES ($1, 0) ON CONFLICT (tenant_id) DO NOTHING".to_owned(),
                format!(
                    "UPDATE tenant_pacing SET holder = $2, held_until_ms = {now} + {HOLD_MS} \
                     WHERE tenant_id = $1 AND next_send_at_ms <= {now} AND (holder IS NULL OR held_until_ms < {now}) \
                     RETURNING tenant_id"
                ),
                format!(
                    "SELECT GREATEST(next_send_at_ms, CASE WHEN holder IS NULL THEN 0 ELSE held_until_ms END) - {now} AS wait_ms \
                     FROM tenant_pacing WHERE tenant_id = $1"
                ),
            ),
            _ => (
                "INSERT INTO tenant_pacing (tenant_id, next_send_at_ms) VALUES (?, 0) ON CONFLICT (tenant_id) DO NOTHING".to_owned(),
                format!(
                    "UPDATE tenant_pacing SET holder = ?2, held_until_ms = {now} + {HOLD_MS} \
                     WHERE tenant_id = ?1 AND next_send_at_ms <= {now} AND (holder IS NULL OR held_until_ms < {now}) \
                     RETURNING tenant_id"
                ),
                format!(
                    "SELECT MAX(next_send_at_ms, CASE WHEN holder IS NULL THEN 0 ELSE held_until_ms END) - {now} AS wait_ms \
                     FROM tenant_pacing WHERE tenant_id = ?"
                ),
            ),
        };
        db.execute_raw(Statement::from_sql_and_values(backend, insert, [key.clone().into()]))
            .await
            .map_err(db_err)?;
        let taken = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                take,
                [key.clone().into(), holder.into()],
            ))
            .await
            .map_err(db_err)?;
        if taken.is_some() {
            return Ok(None);
        }
        let row = db
            .query_one_raw(Statement::from_sql_and_values(backend, look, [key.into()]))
            .await
            .map_err(db_err)?;
        let wait: i64 = row
            .map(|r| r.try_get("", "wait_ms"))
            .transpose()
            .map_err(db_err)?
            .unwrap_or(1);
        Ok(Some(Duration::from_millis(u64::try_from(wait.max(1)).unwrap_or(1))))
    }

    async fn send_turn_in(&self, tenant: TenantId, interval: Duration) -> Result<Duration, StoreError> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "SELECT next_send_at_ms - (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS wait_ms, \
                 COALESCE(holder IS NOT NULL AND held_until_ms >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint, FALSE) AS held \
                 FROM tenant_pacing WHERE tenant_id = $1"
                .to_owned(),
            _ => {
                let now = now_ms();
                format!(
                    "SELECT next_send_at_ms - {now} AS wait_ms, COALESCE(holder IS NOT NULL AND held_until_ms >= {now}, FALSE) AS held \
                     FROM tenant_pacing WHERE tenant_id = ?"
                )
            }
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [tenant.to_string().into()],
            ))
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(Duration::ZERO);
        };
        let wait: i64 = row.try_get("", "wait_ms").map_err(db_err)?;
        let held: bool = row.try_get("", "held").map_err(db_err)?;
        let wait = Duration::from_millis(u64::try_from(wait.max(0)).unwrap_or(0));
        // A send holding the turn sets the next one `interval` after it started.
        Ok(if held { wait.max(interval) } else { wait })
    }

    async fn finish_send_turn(&self, tenant: TenantId, holder: &str, interval: Duration) -> Result<(), StoreError> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "UPDATE tenant_pacing SET next_send_at_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $3, \
                 holder = NULL, held_until_ms = NULL WHERE tenant_id = $1 AND holder = $2"
                .to_owned(),
            _ => format!(
                "UPDATE tenant_pacing SET next_send_at_ms = {} + ?3, holder = NULL, held_until_ms = NULL WHERE tenant_id = ?1 AND holder = ?2",
                now_ms()
            ),
        };
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [tenant.to_string().into(), holder.into(), millis(interval).into()],
        ))
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn try_record_test_mail(
        &self,
        tenant: TenantId,
        caller: &str,
        limit: TestMailLimit,
    ) -> Result<bool, StoreError> {
        let window = limit.window;
        let db = self.connection();
        let backend = db.get_database_backend();
        let key = tenant.to_string();
        let now = now_ms();
        let since = now - millis(window);
        let txn = self.begin_write().await?;
        let p = |n: usize| {
            if backend == DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        if backend == DbBackend::Postgres {
            // One test-mail decision per tenant at a time, across processes.
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
                [key.clone().into()],
            ))
            .await
            .map_err(db_err)?;
            // And one per caller, whichever tenants it tests.
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("test-mail-caller:{caller}").into()],
            ))
            .await
            .map_err(db_err)?;
        }
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "DELETE FROM test_mail_events WHERE tenant_id = {} AND at_ms <= {}",
                p(1),
                p(2)
            ),
            [key.clone().into(), since.into()],
        ))
        .await
        .map_err(db_err)?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT COUNT(*) AS n FROM test_mail_events WHERE tenant_id = {}", p(1)),
                [key.clone().into()],
            ))
            .await
            .map_err(db_err)?;
        let count: i64 = row
            .map(|r| r.try_get("", "n"))
            .transpose()
            .map_err(db_err)?
            .unwrap_or(0);
        let by_caller = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT COUNT(*) AS n FROM test_mail_events WHERE caller = {} AND at_ms > {}",
                    p(1),
                    p(2)
                ),
                [caller.to_owned().into(), since.into()],
            ))
            .await
            .map_err(db_err)?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()
            .map_err(db_err)?
            .unwrap_or(0);
        if count >= i64::from(limit.per_tenant) || by_caller >= i64::from(limit.per_caller) {
            txn.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO test_mail_events (id, tenant_id, at_ms, caller) VALUES ({}, {}, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4)
            ),
            [
                uuid::Uuid::now_v7().to_string().into(),
                key.into(),
                now.into(),
                caller.to_owned().into(),
            ],
        ))
        .await
        .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(true)
    }
}
