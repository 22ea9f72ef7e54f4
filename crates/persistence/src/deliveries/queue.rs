//! [`DeliveryQueue`]: the worker's side — claim due rows fairly under a lease, move a
//! tenant's waiting rows to its turn or back, renew leases, apply finishes with their
//! attempts and webhook events, remove old content.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::delivery::retention;
use domain::delivery::{Delivery, DeliveryUpdate, NotificationKind, Postponement};
use domain::finish::{ClaimedDelivery, Finish};
use domain::ports::DeliveryQueue;
use domain::values::EmailAddress;
use domain::webhook::EventType;
use domain::webhook::event::WebhookEvent;
use domain::{DeliveryId, IdempotencyKey, LeaseOwner, StoreError, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::convert::{db_err, retries_column};
use crate::entities::{deliveries, delivery_attempts};
pub(super) use crate::leased_queue::ClaimLimits;
use crate::leased_queue::LeasedQueue;
use crate::sql::SqlBuilder;
use crate::store::SqlStore;
use crate::webhook_outbox::Subscriptions;

use super::archived::{self, Tally};
use super::rows::{attempt_row, delivery_from_row, failure_reason};

/// Finishing writes a worker keeps under way at once on PostgreSQL (each updates only the
/// rows it finishes, leased to this worker, and inserts new ones).
const FINISHES_AT_ONCE_PG: usize = 2;

#[async_trait::async_trait]
impl DeliveryQueue for SqlStore {
    #[tracing::instrument(name = "queue.claim", skip_all, fields(limit, per_tenant))]
    async fn claim_fairly(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 || per_tenant == 0 {
            return Ok(Vec::new());
        }
        let stmt = claim_statement(
            self.connection().get_database_backend(),
            owner,
            now,
            lease_until,
            ClaimLimits::new(limit, per_tenant),
            exclude,
        );
        let rows = DELIVERY_QUEUE.claim(self, stmt).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            // Row by row, so one unreadable row fails alone instead of the batch.
            let parsed = deliveries::Model::from_query_result(&row, "")
                .map_err(|e| StoreError::Corrupt(format!("a claimed deliveries row: {e}")))
                .and_then(|model| delivery_from_row(&model, Vec::new()));
            match parsed {
                Ok(delivery) => claimed.push(delivery),
                Err(error) => {
                    let id = row.try_get::<String>("", "id").ok();
                    tracing::error!(delivery_id = id.as_deref(), %error, "claimed delivery cannot be read; failing it");
                    // If this fails too, the lease runs out and the row is tried again.
                    let unreadable = DeliveryUpdate::unreadable(Utc::now());
                    let events = id
                        .as_deref()
                        .map(|id| events_of_unreadable(id, &row, &unreadable))
                        .unwrap_or_default();
                    if let Some(id) = id
                        && let Err(error) = self
                            .apply_finishes(
                                owner,
                                &[FinishRow {
                                    id: id.clone(),
                                    update: &unreadable,
                                    events: &events,
                                }],
                            )
                            .await
                    {
                        tracing::error!(delivery_id = id, %error, "could not fail an unreadable delivery");
                    }
                }
            }
        }
        claimed.sort_by_key(|d| (d.next_attempt_at, d.id));
        Ok(claimed)
    }

    /// On SQLite: a claim is a write, and its writes take turns.
    fn claims_take_the_write_turn(&self) -> bool {
        self.queue_writes_take_turns()
    }

    /// One on SQLite (its writes take turns); two on PostgreSQL, whose writes of different
    /// rows run side by side: the recorder's next batch is written while the last one
    /// commits, instead of one writer bounding the worker's rate.
    fn finishes_at_once(&self) -> usize {
        if self.queue_writes_take_turns() {
            1
        } else {
            FINISHES_AT_ONCE_PG
        }
    }

    async fn postpone_waiting(
        &self,
        tenant: TenantId,
        schedule: &Postponement,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.connection().get_database_backend();
        self.queue_write(postpone_statement(backend, tenant, schedule, now))
            .await
    }

    async fn resume_waiting(
        &self,
        tenant: TenantId,
        up_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.connection().get_database_backend();
        self.queue_write(resume_statement(backend, tenant, up_to, now)).await
    }

    async fn remove_old_content(
        &self,
        before: DateTime<Utc>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = DELIVERY_QUEUE.finished;
        let rows = old_content(before, limit)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        archived::lock(&txn).await?;
        let mut cleared = Vec::with_capacity(rows.len());
        let mut tenants: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for row in &rows {
            let id = &row.id;
            // A value that no longer parses is removed all the same; its hash then stays unset.
            let hash = EmailAddress::parse(&row.to_address)
                .ok()
                .map(|a| retention::recipient_hash(&a));
            // Only what an idempotency key can come back for needs the payload's hash.
            let payload = match &row.idempotency_key {
                Some(_) => delivery_from_row(row, Vec::new())
                    .ok()
                    .map(|d| retention::payload_hash(d.kind, &d.to, d.locale, &d.message)),
                None => None,
            };
            // A refusal keeps its stage and code, not the reply (which may quote the
            // recipient); a reason still stored as text becomes its code.
            let reason = failure_reason(row)
                .ok()
                .flatten()
                .map(|r| retention::reason_without_reply(&r));
            let code = reason.as_ref().map(|r| r.code().code());
            let detail = reason.as_ref().and_then(|r| r.detail()).map(str::to_owned);
            let changed = deliveries::Entity::update_many()
                .col_expr(deliveries::Column::ToAddress, Expr::value(retention::REMOVED_RECIPIENT))
                .col_expr(deliveries::Column::Subject, Expr::value(retention::REMOVED_SUBJECT))
                .col_expr(deliveries::Column::TextBody, Expr::value(""))
                .col_expr(deliveries::Column::HtmlBody, Expr::value(Option::<String>::None))
                .col_expr(deliveries::Column::FailureCode, Expr::value(code))
                .col_expr(deliveries::Column::FailureDetail, Expr::value(detail))
                .col_expr(deliveries::Column::FailureReason, Expr::value(Option::<String>::None))
                .col_expr(deliveries::Column::RecipientHash, Expr::value(hash))
                .col_expr(deliveries::Column::PayloadHash, Expr::value(payload))
                .col_expr(deliveries::Column::ContentRemovedAt, Expr::value(Some(now)))
                .filter(deliveries::Column::Id.eq(id.as_str()))
                .filter(deliveries::Column::ContentRemovedAt.is_null())
                .filter(deliveries::Column::Status.is_in(done.iter().copied()))
                .exec(&txn)
                .await
                .map_err(db_err)?;
            if changed.rows_affected == 1 {
                cleared.push(id.as_str());
                *tenants.entry(row.tenant_id.as_str()).or_default() += 1;
            }
        }
        // Their tenants' marks move over what is now cleared, in this transaction.
        archived::advance(&txn, &tenants.into_iter().collect::<Vec<_>>()).await?;
        delivery_attempts::Entity::update_many()
            .col_expr(
                delivery_attempts::Column::ServerMessage,
                Expr::value(Option::<String>::None),
            )
            .filter(delivery_attempts::Column::DeliveryId.is_in(cleared.iter().copied()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(cleared.len() as u64)
    }

    async fn remove_old_rows(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let old = DELIVERY_QUEUE.old_finished(self, before, limit).await?;
        if old.is_empty() {
            return Ok(0);
        }
        let backend = self.connection().get_database_backend();
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        // Only what is still done, and done before the horizon, goes (a replay in between
        // keeps its row and attempts).
        archived::lock(&txn).await?;
        let deleted = txn
            .query_all_raw(DELIVERY_QUEUE.delete_finished(backend, &old, before, &["id", "tenant_id", "status"]))
            .await
            .map_err(db_err)?;
        let deleted: Vec<(String, String, String)> = deleted
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("", "id")?,
                    r.try_get("", "tenant_id")?,
                    r.try_get("", "status")?,
                ))
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(db_err)?;
        // What was counted up to its tenant's mark leaves the kept counts with it.
        let tenants: std::collections::BTreeSet<&str> = deleted.iter().map(|(_, t, _)| t.as_str()).collect();
        let marks = archived::marks_of(&txn, &tenants.into_iter().collect::<Vec<_>>()).await?;
        let mut counted = Tally::default();
        for (id, tenant, status) in &deleted {
            if marks.get(tenant).is_some_and(|through| id <= through) {
                counted.add(tenant, status, -1);
            }
        }
        if let Some(stmt) = counted.statement(backend) {
            txn.execute_raw(stmt).await.map_err(db_err)?;
        }
        let gone: Vec<&str> = deleted.iter().map(|(id, _, _)| id.as_str()).collect();
        // Their attempts: on PostgreSQL `delivery_attempts.delivery_id` is no foreign key
        // (migration 4), so nothing cascades there.
        if !gone.is_empty() {
            delivery_attempts::Entity::delete_many()
                .filter(delivery_attempts::Column::DeliveryId.is_in(gone.iter().copied()))
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(gone.len() as u64)
    }

    async fn renew_leases(&self, owner: &LeaseOwner, lease_until: DateTime<Utc>) -> Result<u64, StoreError> {
        DELIVERY_QUEUE.renew(self, owner, lease_until).await
    }

    async fn finish_many(&self, owner: &LeaseOwner, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        let rows: Vec<FinishRow<'_>> = finishes
            .iter()
            .map(|f| FinishRow {
                id: f.id().to_string(),
                update: f.update(),
                events: f.events(),
            })
            .collect();
        self.apply_finishes(owner, &rows).await
    }
}

impl SqlStore {
    /// Runs one write of the queue in its turn; how many rows it changed.
    async fn queue_write(&self, stmt: Statement) -> Result<u64, StoreError> {
        let _turn = self.queue_write_turn().await;
        let done = self.connection().execute_raw(stmt).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// Applies finishing updates to the rows with these ids, each only while it is in the
    /// update's expected status under `owner`'s lease, with their attempts and the
    /// messages of their events (for the endpoints that want them), in one transaction:
    /// one flag per update (false where the row was not in that state; its attempt and
    /// events are not stored).
    #[tracing::instrument(name = "queue.finish", skip_all, fields(updates = updates.len()))]
    async fn apply_finishes(&self, owner: &LeaseOwner, updates: &[FinishRow<'_>]) -> Result<Vec<bool>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut done = vec![false; updates.len()];
        let now = Utc::now();
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        // The webhook endpoints are read once: with none wanting a delivery event (the
        // usual case), finishing costs this one small query more.
        let subscriptions = Subscriptions::read(&txn).await?;
        let events_wanted = subscriptions.wants_any(EventType::of_delivery);
        // Every row in one statement; the lease check is per row, so a row whose lease
        // this worker lost is left alone (and reported false) without failing the others.
        for (first, chunk) in (0..updates.len())
            .step_by(FINISH_CHUNK)
            .map(|i| (i, &updates[i..(i + FINISH_CHUNK).min(updates.len())]))
        {
            let stmt = finish_statement(txn.get_database_backend(), owner, now, chunk);
            let rows = txn.query_all_raw(stmt).await.map_err(db_err)?;
            let changed: HashSet<String> = rows
                .iter()
                .filter_map(|row| row.try_get::<String>("", "id").ok())
                .collect();
            let mut attempts = Vec::new();
            let mut events = Vec::new();
            for (i, finish) in chunk.iter().enumerate() {
                if !changed.contains(&finish.id) {
                    continue;
                }
                done[first + i] = true;
                if let Some(attempt) = finish.update.attempt() {
                    attempts.push(attempt_row(&finish.id, attempt));
                }
                if events_wanted {
                    events.extend_from_slice(finish.events);
                }
            }
            if let Some(insert) = SqlBuilder::insert_padded(txn.get_database_backend(), &attempts, "") {
                txn.execute_raw(insert).await.map_err(db_err)?;
            }
            subscriptions.append(&txn, &events).await?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(done)
    }
}

/// One update to apply, by the row's id as stored, with the events to store if it applies.
struct FinishRow<'a> {
    id: String,
    update: &'a DeliveryUpdate,
    events: &'a [WebhookEvent],
}

/// The events of failing a claimed row that cannot be read whole, built by the domain
/// from what the claim returned of it (its id, tenant, kind, key, and whether it was
/// retried before); none where those do not parse.
fn events_of_unreadable(id: &str, row: &sea_orm::QueryResult, update: &DeliveryUpdate) -> Vec<WebhookEvent> {
    let text = |column: &str| row.try_get::<Option<String>>("", column).ok().flatten();
    let (Ok(id), Some(Ok(tenant_id)), Some(Some(kind))) = (
        DeliveryId::from_str(id),
        text("tenant_id").map(|t| TenantId::from_str(&t)),
        text("kind").map(|k| NotificationKind::from_code(&k)),
    ) else {
        return Vec::new();
    };
    let claimed = ClaimedDelivery {
        id,
        tenant_id,
        kind,
        idempotency_key: text("idempotency_key").and_then(|k| IdempotencyKey::parse(&k).ok()),
        retried_before: row.try_get::<bool>("", "retried_before").unwrap_or(false),
    };
    Finish::of_claimed(&claimed, update.clone()).events().to_vec()
}

/// The deliveries as a leased queue: waiting `QUEUED` or `RETRYING` (the due index's
/// predicate), `SENDING` under a lease, done `SENT` or `FAILED`; fair across tenants; a
/// claim counts itself in `claims` (see [`domain::delivery::Delivery::claims`]).
pub(super) const DELIVERY_QUEUE: LeasedQueue = LeasedQueue {
    table: "deliveries",
    group: "tenant_id",
    waiting: &["QUEUED", "RETRYING"],
    in_flight: "SENDING",
    finished: &["SENT", "FAILED"],
    claimable: None,
    on_claim: ", claims = claims + 1",
};

/// Up to `limit` done rows that still hold content and were last changed before
/// `before`, oldest first: whole, since the payload's hash is taken from the content about
/// to go. The statuses are the literals of the partial index this reads (migration 24), so
/// the planner can use it whatever the parameters.
pub(super) fn old_content(before: DateTime<Utc>, limit: u64) -> sea_orm::Select<deliveries::Entity> {
    deliveries::Entity::find()
        .filter(deliveries::Column::ContentRemovedAt.is_null())
        .filter(deliveries::Column::UpdatedAt.lt(before))
        .filter(Expr::cust(DELIVERY_QUEUE.finished_sql()))
        .order_by_asc(deliveries::Column::UpdatedAt)
        .limit(limit)
}

/// The claim (see [`LeasedQueue::claim_statement`]): at most `per_tenant` of a tenant
/// (`limits`), none of the tenants in `exclude`.
pub(super) fn claim_statement(
    backend: DbBackend,
    owner: &LeaseOwner,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limits: ClaimLimits,
    exclude: &[TenantId],
) -> Statement {
    let exclude: Vec<String> = exclude.iter().map(ToString::to_string).collect();
    DELIVERY_QUEUE.claim_statement(backend, owner, now, lease_until, limits, &exclude)
}

/// The tenant's waiting deliveries due before the schedule's start, numbered oldest first
/// and moved to their place on it (see [`Postponement::at`]), in one statement through the
/// tenant's index; kinds the schedule does not move ([`Postponement::moves`]) stay.
fn postpone_statement(backend: DbBackend, tenant: TenantId, schedule: &Postponement, now: DateTime<Utc>) -> Statement {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    let from_ms = schedule.from().timestamp_millis();
    let skip = i64::from(schedule.skip());
    let mut q = SqlBuilder::new(backend);
    q.sql(
        "WITH waiting AS (SELECT id, ROW_NUMBER() OVER (ORDER BY next_attempt_at_ms, id) - 1 AS nth \
         FROM deliveries WHERE tenant_id = ",
    )
    .bind(tenant.to_string())
    .sql(" AND ")
    .sql(&DELIVERY_QUEUE.waiting_sql())
    .sql(" AND NOT via_platform AND next_attempt_at_ms < ")
    .bind(from_ms);
    for kind in schedule.kinds_left_alone() {
        q.sql(" AND kind <> ").bind(kind.code());
    }
    q.sql(") UPDATE deliveries SET next_attempt_at_ms = ")
        .bind(from_ms)
        .sql(" + CASE WHEN waiting.nth + ")
        .bind(skip)
        .sql(" = 0 THEN 0 ELSE ")
        .bind(ms(schedule.rest_after()))
        .sql(" END + (waiting.nth + ")
        .bind(skip)
        .sql(") * ")
        .bind(ms(schedule.spacing()))
        .sql(", updated_at = ")
        .bind(now)
        .sql(" FROM waiting WHERE deliveries.id = waiting.id AND deliveries.")
        .sql(&DELIVERY_QUEUE.waiting_sql());
    q.build()
}

/// The tenant's waiting deliveries due after now and no later than `up_to`, due now.
fn resume_statement(backend: DbBackend, tenant: TenantId, up_to: DateTime<Utc>, now: DateTime<Utc>) -> Statement {
    let mut q = SqlBuilder::new(backend);
    q.sql("UPDATE deliveries SET next_attempt_at_ms = ")
        .bind(now.timestamp_millis())
        .sql(", updated_at = ")
        .bind(now)
        .sql(" WHERE tenant_id = ")
        .bind(tenant.to_string())
        .sql(" AND ")
        .sql(&DELIVERY_QUEUE.waiting_sql())
        .sql(" AND next_attempt_at_ms > ")
        .bind(now.timestamp_millis())
        .sql(" AND next_attempt_at_ms <= ")
        .bind(up_to.timestamp_millis());
    q.build()
}

/// Rows per finishing statement (11 values each, well under every backend's limit).
const FINISH_CHUNK: usize = 256;

/// The updates of `chunk`, in one `UPDATE … FROM (VALUES …)`: each row only while it has
/// the update's expected status under `owner`'s lease, which every finish clears; a
/// retry count the update leaves open keeps the stored one; an attempt that retries or
/// defers marks the row retried before. Returns the ids it changed.
fn finish_statement(backend: DbBackend, owner: &LeaseOwner, now: DateTime<Utc>, chunk: &[FinishRow<'_>]) -> Statement {
    let rows: Vec<Vec<sea_orm::Value>> = chunk
        .iter()
        .map(|FinishRow { id, update: u, .. }| {
            vec![
                id.as_str().into(),
                u.expected().code().into(),
                u.status().code().into(),
                u.retries().map(retries_column).into(),
                u.next_attempt_at().timestamp_millis().into(),
                u.sent_at().into(),
                u.failure_reason().map(|r| r.code().code()).into(),
                u.failure_reason().and_then(|r| r.detail()).map(str::to_owned).into(),
                u.via_platform().into(),
                u.retries_or_defers().into(),
            ]
        })
        .collect();
    let mut q = SqlBuilder::new(backend);
    // Padded: the rows of NULLs join no row (`deliveries.id = v.vid`).
    q.sql("WITH v (vid, expected, status, retries, next_ms, sent_at, code, detail, via, retried) AS (VALUES ")
        .padded_rows(&rows);
    q.sql(
        ") UPDATE deliveries SET status = v.status, retries = COALESCE(v.retries, deliveries.retries), \
         retried_before = (deliveries.retried_before OR v.retried), \
         next_attempt_at_ms = v.next_ms, sent_at = v.sent_at, failure_code = v.code, failure_detail = v.detail, failure_reason = NULL, \
         via_platform = COALESCE(v.via, deliveries.via_platform), claims = 0, ",
    )
    .sql(&DELIVERY_QUEUE.lease_ended())
    .sql(", updated_at = ")
    .bind(now)
    .sql(" FROM v WHERE deliveries.id = v.vid AND deliveries.status = v.expected AND ");
    DELIVERY_QUEUE.leased_to(&mut q, owner);
    q.sql(" RETURNING deliveries.id");
    q.build()
}

#[cfg(test)]
mod tests {
    use domain::delivery::DeliveryStatus;

    use super::DELIVERY_QUEUE;

    #[test]
    fn the_queue_speaks_the_domains_status_codes() {
        let codes = |s: &[DeliveryStatus]| s.iter().map(|s| s.code()).collect::<Vec<_>>();
        assert_eq!(
            DELIVERY_QUEUE.waiting,
            codes(&[DeliveryStatus::Queued, DeliveryStatus::Retrying])
        );
        assert_eq!(DELIVERY_QUEUE.in_flight, DeliveryStatus::Sending.code());
        assert_eq!(
            DELIVERY_QUEUE.finished,
            codes(&[DeliveryStatus::Sent, DeliveryStatus::Failed])
        );
    }
}
