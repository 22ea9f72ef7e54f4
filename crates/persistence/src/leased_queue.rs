//! One leased queue over a table, described once ([`LeasedQueue`]) and used by the
//! delivery queue and the webhook dispatcher's queue: rows wait in a *waiting* status
//! until their due time; a claim moves the earliest due rows (and rows whose lease ran
//! out) to the *in-flight* status under a worker's lease, at most a few of one group (a
//! tenant, an endpoint) and a limit in all, in one statement; the holder renews its
//! leases, and finishes a row only while it is still in flight under its lease;
//! finished rows are removed (or cleared) after retention, in bounded batches.
//!
//! What is a queue's own — a delivery's columns, postponement, the claim count, a webhook
//! message's fields — stays in its module; a third queue is a description and its rows.
//!
//! The status values are written into the SQL as literals, not bound: each claim reads
//! the partial indexes on unfinished states, and a planner (SQLite's always, PostgreSQL's
//! for a generic plan) can only use such an index when the query repeats its predicate
//! word for word.

use chrono::{DateTime, Utc};
use domain::{LeaseOwner, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, TransactionTrait};

use crate::convert::db_err;
use crate::sql::SqlBuilder;
use crate::store::SqlStore;

/// A queue table: its name, columns and status codes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeasedQueue {
    pub table: &'static str,
    /// The column a claim is fair across: at most `per_group` rows of one value per claim.
    pub group: &'static str,
    /// The statuses of rows that wait for their due time (in the partial index's order).
    pub waiting: &'static [&'static str],
    /// The status of a claimed row, held under a lease.
    pub in_flight: &'static str,
    /// The statuses of rows that are done with, which retention may remove or clear.
    pub finished: &'static [&'static str],
    /// A further condition a claimable row meets (SQL on the table's columns), if any.
    pub claimable: Option<&'static str>,
    /// More assignments of a claim (`, column = …`), if any.
    pub on_claim: &'static str,
}

/// The columns every leased queue has, by these names: the id, the status, the due time
/// and the lease's owner and end (epoch milliseconds), and when the row last changed.
const ID: &str = "id";
const STATUS: &str = "status";
const DUE_MS: &str = "next_attempt_at_ms";
const LEASE_OWNER: &str = "lease_owner";
const LEASE_UNTIL_MS: &str = "lease_until_ms";
const UPDATED_AT: &str = "updated_at";

/// How much one claim takes: `limit` rows in all, at most `per_group` of one group,
/// chosen among the earliest `window` candidates of each kind (due; lease ran out).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimLimits {
    limit: i64,
    per_group: i64,
    window: i64,
}

/// Candidates read per claim at most, whatever the limits (the claim's cost stays bounded
/// however many rows are due).
const CLAIM_WINDOW_MAX: i64 = 1024;

impl ClaimLimits {
    /// A window of `limit + per_group` candidates: enough to fill the claim from one more
    /// group beyond the limit's worth when the earliest are one group's (a wider window
    /// costs every claim); a group with more than that due first is left to the caller to
    /// exclude once it holds enough.
    pub(crate) fn new(limit: u32, per_group: u32) -> Self {
        let (limit, per_group) = (i64::from(limit), i64::from(Ord::min(per_group, limit)));
        let window = if per_group >= limit {
            limit
        } else {
            Ord::min(limit + per_group, Ord::max(CLAIM_WINDOW_MAX, limit))
        };
        Self {
            limit,
            per_group,
            window,
        }
    }

    /// A window of `window_per_row` candidates per row of the claim, at most
    /// [`CLAIM_WINDOW_MAX`].
    pub(crate) fn with_window(limit: u32, per_group: u32, window_per_row: u32) -> Self {
        Self {
            limit: i64::from(limit),
            per_group: i64::from(per_group),
            window: Ord::min(i64::from(limit) * i64::from(window_per_row), CLAIM_WINDOW_MAX),
        }
    }
}

impl LeasedQueue {
    /// `status IN ('A', 'B')`, the literal predicate of the waiting rows' partial index
    /// (unqualified, as the index declares it).
    pub(crate) fn waiting_sql(&self) -> String {
        in_list(STATUS, self.waiting)
    }

    /// The status predicate of rows that are done with.
    pub(crate) fn finished_sql(&self) -> String {
        in_list(STATUS, self.finished)
    }

    /// The claim, in one statement: due rows and rows whose lease ran out, each read in
    /// order from its partial index (the status predicates are the indexes' own literals)
    /// up to the window, skipping the groups in `exclude`; of those, at most `per_group`
    /// of a group, the earliest `limit` moved to the in-flight status under `owner`'s
    /// lease and returned whole (`RETURNING *`). On PostgreSQL each side locks its rows
    /// `FOR UPDATE SKIP LOCKED`, so concurrent claimers split the queue without waiting
    /// on each other; SQLite has one writer, and the statement is atomic there.
    pub(crate) fn claim_statement(
        &self,
        backend: DbBackend,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limits: ClaimLimits,
        exclude: &[String],
    ) -> Statement {
        let now_ms = now.timestamp_millis();
        // Row locks taken here last until the statement commits; SKIP LOCKED lets another
        // claimer pass over them instead of waiting.
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let (table, group) = (self.table, self.group);
        let also = |q: &mut SqlBuilder| {
            if let Some(claimable) = self.claimable {
                q.sql(" AND ").sql(claimable);
            }
            if let Some((first, rest)) = exclude.split_first() {
                q.sql(" AND ").sql(group).sql(" NOT IN (").bind(first.as_str());
                for value in rest {
                    q.sql(", ").bind(value.as_str());
                }
                q.sql(")");
            }
        };
        let mut q = SqlBuilder::new(backend);
        q.sql(&format!(
            "WITH due AS MATERIALIZED (SELECT {ID}, {group} AS grp, {DUE_MS} AS due_ms FROM {table} WHERE {} AND {DUE_MS} <= ",
            self.waiting_sql()
        ))
        .bind(now_ms);
        also(&mut q);
        q.sql(&format!(" ORDER BY {DUE_MS}")).limit(limits.window).sql(lock);
        q.sql(&format!(
            "), expired AS MATERIALIZED (SELECT {ID}, {group} AS grp, {LEASE_UNTIL_MS} AS due_ms FROM {table} \
             WHERE {STATUS} = '{}' AND {LEASE_UNTIL_MS} < ",
            self.in_flight
        ))
        .bind(now_ms);
        also(&mut q);
        q.sql(&format!(" ORDER BY {LEASE_UNTIL_MS}"))
            .limit(limits.window)
            .sql(lock);
        q.sql(&format!(
            "), ranked AS MATERIALIZED (SELECT {ID}, due_ms, ROW_NUMBER() OVER (PARTITION BY grp \
             ORDER BY due_ms, {ID}) AS nth FROM (SELECT {ID}, grp, due_ms FROM due UNION ALL \
             SELECT {ID}, grp, due_ms FROM expired) AS candidates), \
             picked AS MATERIALIZED (SELECT {ID} FROM ranked WHERE nth <= "
        ))
        .bind(limits.per_group)
        .sql(&format!(" ORDER BY due_ms, {ID}"))
        .limit(limits.limit);
        q.sql(&format!(
            ") UPDATE {table} SET {STATUS} = '{}', {LEASE_OWNER} = ",
            self.in_flight
        ))
        .bind(owner.as_str())
        .sql(&format!(", {LEASE_UNTIL_MS} = "))
        .bind(lease_until.timestamp_millis())
        .sql(self.on_claim)
        .sql(&format!(", {UPDATED_AT} = "))
        .bind(now)
        .sql(&format!(" WHERE {ID} IN (SELECT {ID} FROM picked) RETURNING *"));
        q.build()
    }

    /// Runs a claim in the store's write turn (SQLite's one writer); the rows it took. On
    /// PostgreSQL in a transaction that plans it with [`ordered_reads`].
    pub(crate) async fn claim(&self, store: &SqlStore, stmt: Statement) -> Result<Vec<QueryResult>, StoreError> {
        let turn = store.queue_write_turn().await;
        let rows = if stmt.db_backend == DbBackend::Postgres {
            let txn = store.connection().begin().await.map_err(db_err)?;
            ordered_reads(&txn).await?;
            let rows = txn.query_all_raw(stmt).await.map_err(db_err)?;
            txn.commit().await.map_err(db_err)?;
            rows
        } else {
            store.connection().query_all_raw(stmt).await.map_err(db_err)?
        };
        drop(turn);
        Ok(rows)
    }

    /// Extends the leases `owner` holds; how many.
    pub(crate) async fn renew(
        &self,
        store: &SqlStore,
        owner: &LeaseOwner,
        lease_until: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let db = store.connection();
        let mut q = SqlBuilder::new(db.get_database_backend());
        q.sql(&format!("UPDATE {} SET {LEASE_UNTIL_MS} = ", self.table))
            .bind(lease_until.timestamp_millis())
            .sql(" WHERE ");
        self.held_by(&mut q, owner);
        let done = db.execute_raw(q.build()).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// The finish guard: `{table}.status = '<in flight>' AND {table}.lease_owner = owner`
    /// (the status a literal, for the partial index of leased rows).
    pub(crate) fn held_by(&self, q: &mut SqlBuilder, owner: &LeaseOwner) {
        q.sql(&format!("{}.{STATUS} = '{}' AND ", self.table, self.in_flight));
        self.leased_to(q, owner);
    }

    /// `{table}.lease_owner = owner`: the half of the guard a finish that expects another
    /// status than the in-flight one (its update's) adds to its own.
    pub(crate) fn leased_to(&self, q: &mut SqlBuilder, owner: &LeaseOwner) {
        q.sql(&format!("{}.{LEASE_OWNER} = ", self.table)).bind(owner.as_str());
    }

    /// The assignments that end a lease (every finish makes them).
    pub(crate) fn lease_ended(&self) -> String {
        format!("{LEASE_OWNER} = NULL, {LEASE_UNTIL_MS} = NULL")
    }

    /// The finish of one row: `set` (assignments, each with its values) and the end of the
    /// lease, only while the row is in flight under `owner`'s lease. Changes one row or none.
    pub(crate) fn finish_statement(
        &self,
        backend: DbBackend,
        owner: &LeaseOwner,
        id: &str,
        now: DateTime<Utc>,
        set: impl FnOnce(&mut SqlBuilder),
    ) -> Statement {
        let mut q = SqlBuilder::new(backend);
        q.sql(&format!("UPDATE {} SET ", self.table));
        set(&mut q);
        q.sql(&format!(", {}, {UPDATED_AT} = ", self.lease_ended()))
            .bind(now)
            .sql(&format!(" WHERE {ID} = "))
            .bind(id)
            .sql(" AND ");
        self.held_by(&mut q, owner);
        q.build()
    }

    /// Removes up to `limit` finished rows last changed before `before` (see
    /// [`LeasedQueue::old_finished`]), in the store's write turn; a row that is no longer
    /// finished by then (a replay in between) stays. How many were removed.
    pub(crate) async fn remove_finished(
        &self,
        store: &SqlStore,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let old = self.old_finished(store, before, limit).await?;
        if old.is_empty() {
            return Ok(0);
        }
        let db = store.connection();
        let _turn = store.queue_write_turn().await;
        let removed = db
            .execute_raw(self.delete_finished(db.get_database_backend(), &old, before, &[]))
            .await
            .map_err(db_err)?;
        Ok(removed.rows_affected())
    }

    /// The ids of up to `limit` finished rows last changed before `before`, oldest first.
    /// They are read along the primary key: ids are UUIDv7 text, so every row handed in
    /// before `before` sorts below [`uuid_v7_floor`] of it, and the read starts at the
    /// oldest row however many newer ones the table holds (no index of its own, and no
    /// scan of the table). A row with an id of another kind is left alone.
    pub(crate) async fn old_finished(
        &self,
        store: &SqlStore,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        let db = store.connection();
        let mut q = SqlBuilder::new(db.get_database_backend());
        q.sql(&format!("SELECT {ID} FROM {} WHERE {ID} < ", self.table))
            .bind(uuid_v7_floor(before))
            .sql(&format!(" AND {} AND {UPDATED_AT} < ", self.finished_sql()))
            .bind(before)
            .sql(&format!(" ORDER BY {ID}"))
            .limit(i64::try_from(limit).unwrap_or(i64::MAX));
        Ok(db
            .query_all_raw(q.build())
            .await
            .map_err(db_err)?
            .iter()
            .filter_map(|row| row.try_get::<String>("", ID).ok())
            .collect())
    }

    /// Deletes the rows with these ids that are still finished and last changed before
    /// `before` (a row replayed and done again since it was read stays), `RETURNING` these
    /// columns of them (none: no `RETURNING`). `ids` is not empty.
    pub(crate) fn delete_finished(
        &self,
        backend: DbBackend,
        ids: &[String],
        before: DateTime<Utc>,
        returning: &[&str],
    ) -> Statement {
        let mut q = SqlBuilder::new(backend);
        q.sql(&format!("DELETE FROM {} WHERE {ID} IN (", self.table))
            .bind_list(ids.iter().map(String::as_str));
        q.sql(&format!(") AND {} AND {UPDATED_AT} < ", self.finished_sql()))
            .bind(before);
        if !returning.is_empty() {
            q.sql(" RETURNING ").sql(&returning.join(", "));
        }
        q.build()
    }
}

/// The smallest hyphenated UUIDv7 of `at`'s millisecond: every UUIDv7 made before `at`
/// sorts below it as text (the first 48 bits are the time in epoch milliseconds).
pub(crate) fn uuid_v7_floor(at: DateTime<Utc>) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    format!("{:08x}-{:04x}-7000-8000-000000000000", ms >> 16, ms & 0xFFFF)
}

/// `column IN ('a', 'b')` with the codes as literals (codes are upper-case words: no quote
/// to escape).
pub(crate) fn in_list(column: &str, codes: &[&str]) -> String {
    debug_assert!(codes.iter().all(|c| !c.contains('\'')), "{codes:?}");
    let literals: Vec<String> = codes.iter().map(|c| format!("'{c}'")).collect();
    format!("{column} IN ({})", literals.join(", "))
}

/// For the rest of a PostgreSQL transaction: no plan reads a table whole or through a
/// bitmap, so a claim reads its partial index in order and stops at its window.
///
/// Otherwise the plan follows the statistics, and a table may have none: a new
/// installation's, or one just restored or upgraded (PostgreSQL 15 carries none over),
/// until autovacuum analyzes it (it looks at most once a minute). By the default
/// estimates a burst of due rows is a hundred, and the planner prefers to collect every
/// due row through a bitmap and sort them for the first few — measured in the `delivery`
/// benchmark on PostgreSQL, 10,000 rows just enqueued into a new table: each claim
/// 10–15 ms instead of about 1 ms, one after another, for the first 1,800 rows.
pub(crate) async fn ordered_reads(txn: &sea_orm::DatabaseTransaction) -> Result<(), StoreError> {
    txn.execute_unprepared("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off")
        .await
        .map_err(db_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_of_a_time_sorts_between_the_ids_made_before_and_after_it() {
        use chrono::TimeZone as _;
        let at = Utc.timestamp_millis_opt(1_790_000_000_123).unwrap();
        let floor = super::uuid_v7_floor(at);
        let id_at = |ms: u64| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                u32::try_from(ms % 1000).unwrap() * 1_000_000,
            );
            uuid::Uuid::new_v7(ts).hyphenated().to_string()
        };
        assert_eq!(floor.len(), 36);
        assert!(uuid::Uuid::parse_str(&floor).is_ok(), "{floor}");
        for _ in 0..100 {
            assert!(id_at(1_790_000_000_122) < floor);
            assert!(id_at(1_790_000_000_123) >= floor);
            assert!(id_at(1_790_000_000_124) > floor);
            assert!(id_at(1_000_000_000_000) < floor);
        }
    }

    #[test]
    fn status_literals_are_the_partial_indexes_words() {
        assert_eq!(
            in_list("status", &["QUEUED", "RETRYING"]),
            "status IN ('QUEUED', 'RETRYING')"
        );
    }
}
