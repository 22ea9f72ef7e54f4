//! What a tenant's history counts, kept apart (`delivery_count_marks` and
//! `delivery_archived_counts`, migration 22), so counting by status reads the rows after
//! the tenant's mark (the queue and the retention window) and a few kept counts, not the
//! tenant's whole history, and sending writes nothing more.
//!
//! Every row of a tenant up to its mark has had its content removed, and such a row never
//! changes status again (a retry needs the content: `requeue` checks it), so its count by
//! status is kept. Retention moves the mark forward over the rows it cleared
//! ([`advance`]), the history horizon takes from the counts what it deletes at or before
//! the mark ([`marks_of`]); each in the transaction that changes the rows, and both under
//! one lock ([`lock`]) so that a mark never moves past a row being deleted uncounted.

use std::collections::{BTreeMap, HashMap};

use domain::StoreError;
use domain::delivery::DeliveryStatus;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};

use crate::convert::db_err;
use crate::leased_queue::in_list;
use crate::sql::SqlBuilder;

use super::queries::{TenantRows, tenant_rows_statement};
use super::queue::DELIVERY_QUEUE;

/// The most rows read after one tenant's mark in one move (a longer stretch of cleared
/// rows, e.g. after a row that held the mark back is cleared at last, takes several).
const ADVANCE_ROWS: usize = 4_000;

/// Changes to the counts, by tenant and status as stored.
#[derive(Debug, Default)]
pub(super) struct Tally(BTreeMap<(String, String), i64>);

impl Tally {
    pub(super) fn add(&mut self, tenant: &str, status: &str, n: i64) {
        *self.0.entry((tenant.to_owned(), status.to_owned())).or_default() += n;
    }

    /// The statement adding every change (negative ones take away), or none when there is
    /// nothing to change.
    pub(super) fn statement(&self, backend: DbBackend) -> Option<Statement> {
        let changes: Vec<_> = self.0.iter().filter(|(_, n)| **n != 0).collect();
        if changes.is_empty() {
            return None;
        }
        let mut q = SqlBuilder::new(backend);
        q.sql("INSERT INTO delivery_archived_counts (tenant_id, status, n) VALUES ");
        for (i, ((tenant, status), n)) in changes.into_iter().enumerate() {
            let row: [sea_orm::Value; 3] = [tenant.as_str().into(), status.as_str().into(), (*n).into()];
            q.sql(if i == 0 { "(" } else { ", (" }).bind_list(row).sql(")");
        }
        q.sql(" ON CONFLICT (tenant_id, status) DO UPDATE SET n = delivery_archived_counts.n + excluded.n");
        Some(q.build())
    }
}

/// `status IN (...)` over every status, so an index with the status second is read as
/// one range per status (and a range on the column after it still applies).
fn every_status(column: &str) -> String {
    let codes: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.code()).collect();
    in_list(column, &codes)
}

/// Counts by status (`status`, `n`) of one tenant's deliveries, or of every tenant's: the
/// rows after each tenant's mark, read along `(tenant_id, status, id)`, plus the kept
/// counts of the rows up to it, in one statement (one snapshot).
pub(super) fn counts_statement(backend: DbBackend, tenant: Option<&str>) -> Statement {
    /// The rows after the mark of the tenant named next, then `), '')`.
    const AFTER_MARK: &str =
        " AND d.id > COALESCE((SELECT counted_through FROM delivery_count_marks m WHERE m.tenant_id = ";
    let statuses = every_status("d.status");
    let mut q = SqlBuilder::new(backend);
    q.sql("SELECT status, CAST(SUM(n) AS BIGINT) AS n FROM (");
    match tenant {
        Some(tenant) => {
            q.sql("SELECT d.status AS status, COUNT(*) AS n FROM deliveries d WHERE d.tenant_id = ")
                .bind(tenant)
                .sql(&format!(" AND {statuses}{AFTER_MARK}"))
                .bind(tenant)
                .sql("), '') GROUP BY d.status UNION ALL SELECT status, n FROM delivery_archived_counts WHERE tenant_id = ")
                .bind(tenant);
        }
        None => {
            // Tenant by tenant, each along its own index range: a nested loop with the
            // tenants outside (LATERAL on PostgreSQL; SQLite keeps a CROSS JOIN's order).
            let rows = format!("d.tenant_id = t.id AND {statuses}{AFTER_MARK}t.id), '')");
            q.sql(&match backend {
                DbBackend::Postgres => format!(
                    "SELECT c.status, c.n FROM tenants t CROSS JOIN LATERAL (SELECT d.status AS status, \
                     COUNT(*) AS n FROM deliveries d WHERE {rows} GROUP BY d.status) AS c"
                ),
                _ => format!(
                    "SELECT d.status AS status, COUNT(*) AS n FROM tenants t CROSS JOIN deliveries d \
                     WHERE {rows} GROUP BY d.status"
                ),
            })
            .sql(" UNION ALL SELECT status, n FROM delivery_archived_counts");
        }
    }
    q.sql(") AS c GROUP BY status");
    q.build()
}

/// Takes the lock under which marks move and the horizon deletes (PostgreSQL: an advisory
/// lock held to the end of `txn`; SQLite's write transaction already excludes the others).
pub(super) async fn lock(txn: &DatabaseTransaction) -> Result<(), StoreError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('delivery_count_marks'))")
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// The marks of these tenants (a tenant without one has none: nothing is kept for it).
pub(super) async fn marks_of(
    txn: &DatabaseTransaction,
    tenants: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    if tenants.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = SqlBuilder::new(txn.get_database_backend());
    q.sql("SELECT tenant_id, counted_through FROM delivery_count_marks WHERE tenant_id IN (")
        .bind_list(tenants.iter().copied())
        .sql(")");
    let rows = txn.query_all_raw(q.build()).await.map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "tenant_id")?,
                r.try_get::<String>("", "counted_through")?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .map_err(db_err)
}

/// Moves each tenant's mark over the rows after it that are done and cleared, up to its
/// first row that is not (still holding content, or not done), and adds them to the kept
/// counts. `tenants` are the tenants of the rows just cleared, each with how many: a
/// first read takes that many and one more, and reads go on, twice as long each time,
/// while they find only cleared rows (at most [`ADVANCE_ROWS`] per tenant per call).
/// Call under [`lock`], in the transaction that cleared them.
pub(super) async fn advance(txn: &DatabaseTransaction, tenants: &[(&str, usize)]) -> Result<(), StoreError> {
    let backend = txn.get_database_backend();
    let names: Vec<&str> = tenants.iter().map(|(t, _)| *t).collect();
    let marks = marks_of(txn, &names).await?;
    let mut tally = Tally::default();
    let mut moved = Vec::new();
    let columns = format!(
        "id, status, CASE WHEN content_removed_at IS NOT NULL AND {} THEN 1 ELSE 0 END AS cleared",
        DELIVERY_QUEUE.finished_sql()
    );
    for (tenant, just_cleared) in tenants {
        let mut through = marks.get(*tenant).cloned().unwrap_or_default();
        let mut page = just_cleared + 1;
        let mut read = 0;
        loop {
            let stmt = tenant_rows_statement(
                backend,
                &columns,
                tenant,
                &DeliveryStatus::ALL,
                TenantRows::OldestFirst(&through),
                page as u64,
            );
            let rows = txn.query_all_raw(stmt).await.map_err(db_err)?;
            let mut all_cleared = true;
            for row in &rows {
                if row.try_get::<i32>("", "cleared").map_err(db_err)? == 0 {
                    all_cleared = false;
                    break;
                }
                tally.add(tenant, &row.try_get::<String>("", "status").map_err(db_err)?, 1);
                through = row.try_get::<String>("", "id").map_err(db_err)?;
            }
            read += rows.len();
            if !all_cleared || rows.len() < page || read >= ADVANCE_ROWS {
                break;
            }
            page = (page * 2).min(ADVANCE_ROWS - read);
        }
        if marks.get(*tenant).map_or(!through.is_empty(), |m| *m != through) {
            moved.push((*tenant, through));
        }
    }
    if !moved.is_empty() {
        let mut q = SqlBuilder::new(backend);
        q.sql("INSERT INTO delivery_count_marks (tenant_id, counted_through) VALUES ");
        for (i, (tenant, through)) in moved.into_iter().enumerate() {
            q.sql(if i == 0 { "(" } else { ", (" })
                .bind_list([tenant.to_owned(), through])
                .sql(")");
        }
        q.sql(" ON CONFLICT (tenant_id) DO UPDATE SET counted_through = excluded.counted_through");
        txn.execute_raw(q.build()).await.map_err(db_err)?;
    }
    if let Some(stmt) = tally.statement(backend) {
        txn.execute_raw(stmt).await.map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_to_one_tenant_and_status_are_summed_and_a_net_zero_writes_nothing() {
        let mut tally = Tally::default();
        tally.add("t1", "SENT", 2);
        tally.add("t1", "SENT", -2);
        assert!(tally.statement(DbBackend::Sqlite).is_none());
        tally.add("t1", "FAILED", 1);
        tally.add("t2", "SENT", 3);
        tally.add("t1", "FAILED", 1);
        let stmt = tally.statement(DbBackend::Postgres).unwrap();
        assert_eq!(
            stmt.sql,
            "INSERT INTO delivery_archived_counts (tenant_id, status, n) VALUES ($1, $2, $3), ($4, $5, $6) \
             ON CONFLICT (tenant_id, status) DO UPDATE SET n = delivery_archived_counts.n + excluded.n"
        );
        let values = stmt.values.unwrap().0;
        assert_eq!(values[2], sea_orm::Value::BigInt(Some(2)));
        assert_eq!(values[5], sea_orm::Value::BigInt(Some(3)));
    }
}
