//! The domain's delivery ports on [`SqlStore`], so tenants and their deliveries share one
//! pool: the outbox ([`DeliveryOutbox`]), the worker's queue ([`DeliveryQueue`]) and the
//! tenant-scoped queries ([`DeliveryQueries`]).
//!
//! A delivery is `QUEUED` or `RETRYING` until it is due, then a worker *claims* it: one
//! statement moves it to `SENDING` under that worker's lease and returns it. The worker
//! *finishes* it (attempt row and new state in one transaction, only while it still holds
//! the lease) or gives it back unattempted; what the new state is comes from the domain's
//! [`DeliveryUpdate`], which this module applies without deciding anything. A lease that runs out makes the delivery
//! claimable again, so a crashed worker loses nothing.
//!
//! The claim reads the two partial indexes of the migration (due rows; leased rows), each
//! in order with a limit, so its cost does not grow with the sent and failed rows that
//! fill the table. On PostgreSQL each side locks its rows `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers split the queue without waiting on each other; SQLite has one
//! writer, and the single statement is atomic there.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::delivery::retention;
use domain::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, DeliveryUpdate, FailureCode, FailureReason, NotificationKind,
    Postponement, RenderedMessage,
};
use domain::error::FieldCode;
use domain::mail::Subject;
use domain::ports::{DeliveryOutbox, DeliveryQueries, DeliveryQueue, EnqueueOutcome, StatusCounts};
use domain::values::EmailAddress;
use domain::webhook::EventType;
use domain::webhook::event::{FinishedDelivery, WebhookEvent, may_be_first_retry};
use domain::{
    DeliveryId, IdempotencyKey, LeaseOwner, Locale, MessageId, SenderSource, StoreError, TenantId, TenantScope,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::convert::{corrupt, db_err, delivery_row, retries_column};
use crate::entities::{deliveries, delivery_attempts};
use crate::sql::SqlBuilder;
use crate::store::SqlStore;
use crate::webhook_outbox::Subscriptions;

const INVALID: FieldCode = FieldCode::InvalidFormat;

/// How often an enqueue retries when the delivery it conflicted with is gone by the time
/// it is read (deleted with its tenant in between).
const ENQUEUE_ROUNDS: usize = 3;

#[async_trait::async_trait]
impl DeliveryOutbox for SqlStore {
    async fn enqueue(&self, delivery: &Delivery) -> Result<EnqueueOutcome, StoreError> {
        let db = self.connection();
        let _turn = self.queue_write_turn().await;
        for _ in 0..ENQUEUE_ROUNDS {
            // Autocommit: the row is committed when the statement returns. A concurrent
            // enqueue with the same key waits for this one, then inserts nothing.
            let inserted = deliveries::Entity::insert(delivery_row(delivery, Utc::now()))
                .on_conflict(on_key_conflict())
                .exec_without_returning(db)
                .await
                .map_err(db_err)?;
            if inserted == 1 {
                let mut created = delivery.clone();
                created.attempts.clear();
                return Ok(EnqueueOutcome::Created(created));
            }
            let Some(key) = &delivery.idempotency_key else {
                break;
            };
            let existing = deliveries::Entity::find()
                .filter(deliveries::Column::TenantId.eq(delivery.tenant_id.to_string()))
                .filter(deliveries::Column::IdempotencyKey.eq(key.as_str()))
                .one(db)
                .await
                .map_err(db_err)?;
            if let Some(row) = existing {
                let attempts = self.attempts_of(&[row.id.as_str()]).await?.remove(&row.id);
                return delivery_from_row(&row, attempts.unwrap_or_default()).map(EnqueueOutcome::Existing);
            }
        }
        Err(db_err(DbErr::Custom(
            "enqueue: neither inserted nor found the delivery with this idempotency key".into(),
        )))
    }

    #[tracing::instrument(name = "queue.enqueue", skip_all, fields(deliveries = batch.len()))]
    async fn enqueue_many(&self, batch: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        if batch.len() <= 1 {
            return self.enqueue_each(batch).await;
        }
        // One statement, so one commit for all; a row that conflicts on its idempotency
        // key is skipped by the statement and answered one by one below.
        let now = Utc::now();
        let rows: Vec<deliveries::ActiveModel> = batch.iter().map(|d| delivery_row(d, now)).collect();
        let turn = self.queue_write_turn().await;
        let inserted = deliveries::Entity::insert_many(rows)
            .on_conflict(on_key_conflict())
            .exec_with_returning_keys(self.connection())
            .await;
        drop(turn);
        let inserted: HashSet<String> = match inserted {
            Ok(keys) => keys.into_iter().collect(),
            Err(DbErr::RecordNotInserted) => HashSet::new(),
            Err(error) => {
                // E.g. a tenant deleted in between: each on its own, so it fails alone.
                tracing::debug!(%error, rows = batch.len(), "enqueue batch refused; enqueueing one by one");
                return self.enqueue_each(batch).await;
            }
        };
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            if inserted.contains(&d.id.to_string()) {
                let mut created = d.clone();
                created.attempts.clear();
                out.push(Ok(EnqueueOutcome::Created(created)));
            } else {
                out.push(self.enqueue(d).await);
            }
        }
        out
    }
}

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
        let db = self.connection();
        let stmt = claim_statement(
            db.get_database_backend(),
            owner,
            now,
            lease_until,
            ClaimLimits::new(limit, per_tenant),
            exclude,
        );
        let turn = self.queue_write_turn().await;
        let rows = db.query_all_raw(stmt).await.map_err(db_err)?;
        drop(turn);
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
                    if let Some(id) = id
                        && let Err(error) = self.apply_finishes(owner, &[(id.clone(), &unreadable)]).await
                    {
                        tracing::error!(delivery_id = id, %error, "could not fail an unreadable delivery");
                    }
                }
            }
        }
        claimed.sort_by_key(|d| (d.next_attempt_at, d.id));
        Ok(claimed)
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
        let done = [DeliveryStatus::Sent.code(), DeliveryStatus::Failed.code()];
        // The whole row: the payload's hash is taken from the content about to go.
        let rows = deliveries::Entity::find()
            .filter(deliveries::Column::ContentRemovedAt.is_null())
            .filter(deliveries::Column::UpdatedAt.lt(before))
            .filter(deliveries::Column::Status.is_in(done))
            .order_by_asc(deliveries::Column::UpdatedAt)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        let mut cleared = Vec::with_capacity(rows.len());
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
            // recipient).
            let detail =
                failure_reason(row).and_then(|r| retention::reason_without_reply(&r).detail().map(str::to_owned));
            let changed = deliveries::Entity::update_many()
                .col_expr(deliveries::Column::ToAddress, Expr::value(retention::REMOVED_RECIPIENT))
                .col_expr(deliveries::Column::Subject, Expr::value(retention::REMOVED_SUBJECT))
                .col_expr(deliveries::Column::TextBody, Expr::value(""))
                .col_expr(deliveries::Column::HtmlBody, Expr::value(Option::<String>::None))
                .col_expr(deliveries::Column::FailureDetail, Expr::value(detail))
                .col_expr(deliveries::Column::RecipientHash, Expr::value(hash))
                .col_expr(deliveries::Column::PayloadHash, Expr::value(payload))
                .col_expr(deliveries::Column::ContentRemovedAt, Expr::value(Some(now)))
                .filter(deliveries::Column::Id.eq(id.as_str()))
                .filter(deliveries::Column::ContentRemovedAt.is_null())
                .filter(deliveries::Column::Status.is_in(done))
                .exec(&txn)
                .await
                .map_err(db_err)?;
            if changed.rows_affected == 1 {
                cleared.push(id.as_str());
            }
        }
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

    async fn renew_leases(&self, owner: &LeaseOwner, lease_until: DateTime<Utc>) -> Result<u64, StoreError> {
        let renewed = deliveries::Entity::update_many()
            .col_expr(
                deliveries::Column::LeaseUntilMs,
                Expr::value(lease_until.timestamp_millis()),
            )
            // A literal, so the planner can use the partial index of leased rows.
            .filter(Expr::cust("status = 'SENDING'"))
            .filter(deliveries::Column::LeaseOwner.eq(owner.as_str()))
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(renewed.rows_affected)
    }

    async fn finish_many(
        &self,
        owner: &LeaseOwner,
        updates: &[(DeliveryId, DeliveryUpdate)],
    ) -> Result<Vec<bool>, StoreError> {
        let keyed: Vec<(String, &DeliveryUpdate)> = updates.iter().map(|(id, u)| (id.to_string(), u)).collect();
        self.apply_finishes(owner, &keyed).await
    }
}

#[async_trait::async_trait]
impl DeliveryQueries for SqlStore {
    async fn delivery(&self, scope: TenantScope, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let key = id.to_string();
        let mut query = deliveries::Entity::find_by_id(key.as_str());
        if let Some(tenant) = scope.tenant() {
            query = query.filter(deliveries::Column::TenantId.eq(tenant.to_string()));
        }
        let Some(row) = query.one(self.connection()).await.map_err(db_err)? else {
            return Ok(None);
        };
        let attempts = self.attempts_of(&[key.as_str()]).await?.remove(&key);
        delivery_from_row(&row, attempts.unwrap_or_default()).map(Some)
    }

    async fn deliveries(
        &self,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut query = deliveries::Entity::find().filter(deliveries::Column::TenantId.eq(tenant.to_string()));
        if let Some(status) = status {
            query = query.filter(deliveries::Column::Status.eq(status.code()));
        }
        if let Some(after) = after {
            query = query.filter(deliveries::Column::Id.lt(after.to_string()));
        }
        let page = query
            .order_by_desc(deliveries::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        // The attempts of the whole page in one query, not one per delivery.
        let ids: Vec<&str> = page.iter().map(|row| row.id.as_str()).collect();
        let mut attempts = self.attempts_of(&ids).await?;
        page.iter()
            .map(|row| delivery_from_row(row, attempts.remove(&row.id).unwrap_or_default()))
            .collect()
    }

    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        // The claim's own predicate, so the same partial index answers it.
        let backend = self.connection().get_database_backend();
        let mut q = SqlBuilder::new(backend);
        q.sql(
            "SELECT MIN(next_attempt_at_ms) AS due FROM deliveries \
             WHERE status IN ('QUEUED', 'RETRYING') AND next_attempt_at_ms <= ",
        )
        .bind(now.timestamp_millis());
        let row = self.connection().query_one_raw(q.build()).await.map_err(db_err)?;
        let due: Option<i64> = row.and_then(|r| r.try_get::<Option<i64>>("", "due").ok()).flatten();
        Ok(due.and_then(DateTime::from_timestamp_millis))
    }

    async fn status_counts(&self, scope: TenantScope) -> Result<StatusCounts, StoreError> {
        let mut query = deliveries::Entity::find()
            .select_only()
            .column(deliveries::Column::Status)
            .column_as(Expr::col(deliveries::Column::Id).count(), "n");
        if let Some(tenant) = scope.tenant() {
            query = query.filter(deliveries::Column::TenantId.eq(tenant.to_string()));
        }
        let rows: Vec<(String, i64)> = query
            .group_by(deliveries::Column::Status)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(db_err)?;
        let mut counts: StatusCounts = DeliveryStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for (code, n) in rows {
            match DeliveryStatus::from_code(&code) {
                Some(status) => {
                    if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                        slot.1 = u64::try_from(n).unwrap_or(0);
                    }
                }
                None => tracing::warn!(
                    count = n,
                    "deliveries with an unknown status are left out of the counts"
                ),
            }
        }
        Ok(counts)
    }

    async fn requeue(&self, tenant: TenantId, id: DeliveryId, update: &DeliveryUpdate) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut change = deliveries::Entity::update_many()
            .col_expr(deliveries::Column::Status, Expr::value(update.status().code()))
            .col_expr(
                deliveries::Column::FailureCode,
                Expr::value(update.failure_reason().map(|r| r.code().code())),
            )
            .col_expr(
                deliveries::Column::FailureDetail,
                Expr::value(update.failure_reason().and_then(|r| r.detail()).map(str::to_owned)),
            )
            .col_expr(
                deliveries::Column::NextAttemptAtMs,
                Expr::value(update.next_attempt_at().timestamp_millis()),
            )
            .col_expr(deliveries::Column::SentAt, Expr::value(update.sent_at()))
            .col_expr(deliveries::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(deliveries::Column::LeaseUntilMs, Expr::value(Option::<i64>::None))
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(now));
        if let Some(retries) = update.retries() {
            change = change.col_expr(deliveries::Column::Retries, Expr::value(retries_column(retries)));
        }
        let requeued = change
            .filter(deliveries::Column::Id.eq(id.to_string()))
            .filter(deliveries::Column::TenantId.eq(tenant.to_string()))
            .filter(deliveries::Column::Status.eq(update.expected().code()))
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(requeued.rows_affected == 1)
    }
}

impl SqlStore {
    /// Runs one write of the queue in its turn; how many rows it changed.
    async fn queue_write(&self, stmt: Statement) -> Result<u64, StoreError> {
        let _turn = self.queue_write_turn().await;
        let done = self.connection().execute_raw(stmt).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// Enqueues each delivery on its own statement.
    async fn enqueue_each(&self, batch: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(self.enqueue(d).await);
        }
        out
    }

    /// The attempts of these deliveries, each list oldest first, keyed by delivery id.
    async fn attempts_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Attempt>>, StoreError> {
        let rows = delivery_attempts::Entity::find()
            .filter(delivery_attempts::Column::DeliveryId.is_in(ids.iter().copied()))
            .order_by_asc(delivery_attempts::Column::DeliveryId)
            .order_by_asc(delivery_attempts::Column::Id)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        let mut by_delivery: HashMap<String, Vec<Attempt>> = HashMap::new();
        for row in &rows {
            by_delivery
                .entry(row.delivery_id.clone())
                .or_default()
                .push(attempt_from_row(row)?);
        }
        Ok(by_delivery)
    }

    /// Applies finishing updates to the rows with these ids, each only while it is in the
    /// update's expected status under `owner`'s lease, with their attempts, in one
    /// transaction: one flag per update (false where the row was not in that state).
    #[tracing::instrument(name = "queue.finish", skip_all, fields(updates = updates.len()))]
    async fn apply_finishes(
        &self,
        owner: &LeaseOwner,
        updates: &[(String, &DeliveryUpdate)],
    ) -> Result<Vec<bool>, StoreError> {
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
            let changed: HashMap<String, FinishedRow> = rows
                .iter()
                .filter_map(|row| {
                    let id = row.try_get::<String>("", "id").ok()?;
                    Some((id, FinishedRow::read(row)))
                })
                .collect();
            let retried_before = if events_wanted {
                Self::retried_before(&txn, chunk, &changed).await?
            } else {
                HashSet::new()
            };
            let mut attempts = Vec::new();
            let mut events = Vec::new();
            for (i, (key, update)) in chunk.iter().enumerate() {
                let Some(row) = changed.get(key) else { continue };
                done[first + i] = true;
                if let Some(attempt) = update.attempt() {
                    attempts.push(attempt_row(key, attempt));
                }
                if events_wanted && let Some(finished) = row.finished(key, update, !retried_before.contains(key)) {
                    events.extend(WebhookEvent::of_delivery(&finished));
                }
            }
            if !attempts.is_empty() {
                delivery_attempts::Entity::insert_many(attempts)
                    .exec_without_returning(&txn)
                    .await
                    .map_err(db_err)?;
            }
            subscriptions.append(&txn, &events).await?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(done)
    }
}

/// What a finishing statement returns of a row it changed, for the row's events.
struct FinishedRow {
    tenant_id: Option<String>,
    kind: Option<String>,
    idempotency_key: Option<String>,
}

impl FinishedRow {
    fn read(row: &sea_orm::QueryResult) -> Self {
        Self {
            tenant_id: row.try_get("", "tenant_id").ok(),
            kind: row.try_get("", "kind").ok(),
            idempotency_key: row.try_get::<Option<String>>("", "idempotency_key").ok().flatten(),
        }
    }

    fn finished<'a>(
        &'a self,
        key: &str,
        update: &'a DeliveryUpdate,
        first_retry: bool,
    ) -> Option<FinishedDelivery<'a>> {
        Some(FinishedDelivery {
            id: DeliveryId::from_str(key).ok()?,
            tenant_id: TenantId::from_str(self.tenant_id.as_deref()?).ok()?,
            kind: NotificationKind::from_code(self.kind.as_deref()?)?,
            idempotency_key: self.idempotency_key.as_deref(),
            update,
            first_retry,
        })
    }
}

impl SqlStore {
    /// Which of the chunk's changed deliveries that may now be retried for the first time
    /// already had a retry or a deferral before (read before this finish's attempts go in).
    async fn retried_before(
        txn: &sea_orm::DatabaseTransaction,
        chunk: &[(String, &DeliveryUpdate)],
        changed: &HashMap<String, FinishedRow>,
    ) -> Result<HashSet<String>, StoreError> {
        let ids: Vec<&str> = chunk
            .iter()
            .filter(|(key, u)| changed.contains_key(key) && may_be_first_retry(u))
            .map(|(key, _)| key.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = delivery_attempts::Entity::find()
            .filter(delivery_attempts::Column::DeliveryId.is_in(ids))
            .filter(
                delivery_attempts::Column::Outcome
                    .is_in([AttemptOutcome::Retry.code(), AttemptOutcome::Deferred.code()]),
            )
            .select_only()
            .column(delivery_attempts::Column::DeliveryId)
            .distinct()
            .into_tuple()
            .all(txn)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }
}

/// How much one claim takes: `limit` rows in all, at most `per_tenant` of one tenant,
/// chosen among the earliest `window` candidates of each kind (due; lease expired):
/// `limit + per_tenant`, so the tenants behind one whose rows come first still get the
/// rest of the claim.
#[derive(Debug, Clone, Copy)]
struct ClaimLimits {
    limit: i64,
    per_tenant: i64,
    window: i64,
}

/// Candidates read per claim at most, whatever the limits (the claim's cost stays bounded
/// however many rows are due).
const CLAIM_WINDOW_MAX: i64 = 1024;

impl ClaimLimits {
    fn new(limit: u32, per_tenant: u32) -> Self {
        let (limit, per_tenant) = (i64::from(limit), i64::from(Ord::min(per_tenant, limit)));
        // Candidates enough to fill the claim from one more tenant beyond the limit's
        // worth, when the earliest are one tenant's; a wider window costs every claim.
        let window = if per_tenant >= limit {
            limit
        } else {
            Ord::min(limit + per_tenant, Ord::max(CLAIM_WINDOW_MAX, limit))
        };
        Self {
            limit,
            per_tenant,
            window,
        }
    }
}

/// The claim: due rows and rows whose lease ran out, each read from its partial index in
/// order (the status predicates are the indexes' own literals) up to the window; of those,
/// at most `per_tenant` per tenant, the earliest `limit` moved to `SENDING` under
/// `owner`'s lease and returned, in one statement.
fn claim_statement(
    backend: DbBackend,
    owner: &LeaseOwner,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limits: ClaimLimits,
    exclude: &[TenantId],
) -> Statement {
    let now_ms = now.timestamp_millis();
    // Row locks taken here last until the statement commits; SKIP LOCKED lets another
    // claimer pass over them instead of waiting.
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let excluded = |q: &mut SqlBuilder| {
        if let Some((first, rest)) = exclude.split_first() {
            q.sql(" AND tenant_id NOT IN (").bind(first.to_string());
            for tenant in rest {
                q.sql(", ").bind(tenant.to_string());
            }
            q.sql(")");
        }
    };
    let mut q = SqlBuilder::new(backend);
    q.sql(
        "WITH due AS MATERIALIZED (SELECT id, tenant_id, next_attempt_at_ms AS due_ms FROM deliveries \
         WHERE status IN ('QUEUED', 'RETRYING') AND next_attempt_at_ms <= ",
    )
    .bind(now_ms);
    excluded(&mut q);
    q.sql(" ORDER BY next_attempt_at_ms LIMIT ")
        .bind(limits.window)
        .sql(lock);
    q.sql(
        "), expired AS MATERIALIZED (SELECT id, tenant_id, lease_until_ms AS due_ms FROM deliveries \
         WHERE status = 'SENDING' AND lease_until_ms < ",
    )
    .bind(now_ms);
    excluded(&mut q);
    q.sql(" ORDER BY lease_until_ms LIMIT ").bind(limits.window).sql(lock);
    q.sql(
        "), ranked AS MATERIALIZED (SELECT id, due_ms, ROW_NUMBER() OVER (PARTITION BY tenant_id \
         ORDER BY due_ms, id) AS nth FROM (SELECT id, tenant_id, due_ms FROM due UNION ALL \
         SELECT id, tenant_id, due_ms FROM expired) AS candidates), \
         picked AS MATERIALIZED (SELECT id FROM ranked WHERE nth <= ",
    )
    .bind(limits.per_tenant)
    .sql(" ORDER BY due_ms, id LIMIT ")
    .bind(limits.limit);
    q.sql(") UPDATE deliveries SET status = 'SENDING', lease_owner = ")
        .bind(owner.as_str())
        .sql(", lease_until_ms = ")
        .bind(lease_until.timestamp_millis())
        .sql(", claims = claims + 1, updated_at = ")
        .bind(now)
        .sql(" WHERE id IN (SELECT id FROM picked) RETURNING *");
    q.build()
}

/// The tenant's waiting deliveries due before the schedule's start, numbered oldest first
/// and moved to their place on it (see [`Postponement::at`]), in one statement through the
/// tenant's index.
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
    .sql(" AND status IN ('QUEUED', 'RETRYING') AND NOT via_platform AND next_attempt_at_ms < ")
    .bind(from_ms)
    .sql(") UPDATE deliveries SET next_attempt_at_ms = ")
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
    .sql(" FROM waiting WHERE deliveries.id = waiting.id AND deliveries.status IN ('QUEUED', 'RETRYING')");
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
        .sql(" AND status IN ('QUEUED', 'RETRYING') AND next_attempt_at_ms > ")
        .bind(now.timestamp_millis())
        .sql(" AND next_attempt_at_ms <= ")
        .bind(up_to.timestamp_millis());
    q.build()
}

/// A second delivery with a tenant's idempotency key inserts nothing (the key's unique
/// index is partial: only rows with a key).
fn on_key_conflict() -> OnConflict {
    OnConflict::columns([deliveries::Column::TenantId, deliveries::Column::IdempotencyKey])
        .target_and_where(Expr::col(deliveries::Column::IdempotencyKey).is_not_null())
        .do_nothing()
        .to_owned()
}

/// Rows per finishing statement (10 values each, well under every backend's limit).
const FINISH_CHUNK: usize = 256;

/// The updates of `chunk`, in one `UPDATE … FROM (VALUES …)`: each row only while it has
/// the update's expected status under `owner`'s lease, which every finish clears; a
/// retry count the update leaves open keeps the stored one. Returns the ids it changed.
fn finish_statement(
    backend: DbBackend,
    owner: &LeaseOwner,
    now: DateTime<Utc>,
    chunk: &[(String, &DeliveryUpdate)],
) -> Statement {
    let mut q = SqlBuilder::new(backend);
    q.sql("WITH v (vid, expected, status, retries, next_ms, sent_at, code, detail, via) AS (VALUES ");
    for (n, (key, u)) in chunk.iter().enumerate() {
        q.sql(if n == 0 { "(" } else { ", (" })
            .bind(key.as_str())
            .sql(", ")
            .bind(u.expected().code())
            .sql(", ")
            .bind(u.status().code())
            .sql(", ")
            .bind(u.retries().map(retries_column))
            .sql(", ")
            .bind(u.next_attempt_at().timestamp_millis())
            .sql(", ")
            .bind(u.sent_at())
            .sql(", ")
            .bind(u.failure_reason().map(|r| r.code().code()))
            .sql(", ")
            .bind(u.failure_reason().and_then(|r| r.detail()).map(str::to_owned))
            .sql(", ")
            .bind(u.via_platform())
            .sql(")");
    }
    q.sql(
        ") UPDATE deliveries SET status = v.status, retries = COALESCE(v.retries, deliveries.retries), \
         next_attempt_at_ms = v.next_ms, sent_at = v.sent_at, failure_code = v.code, failure_detail = v.detail, \
         via_platform = COALESCE(v.via, deliveries.via_platform), lease_owner = NULL, lease_until_ms = NULL, claims = 0, updated_at = ",
    )
    .bind(now)
    .sql(" FROM v WHERE deliveries.id = v.vid AND deliveries.status = v.expected AND deliveries.lease_owner = ")
    .bind(owner.as_str())
    .sql(" RETURNING deliveries.id, deliveries.tenant_id, deliveries.kind, deliveries.idempotency_key");
    q.build()
}

/// The failure reason of a row, if its code reads back.
fn failure_reason(row: &deliveries::Model) -> Option<FailureReason> {
    let code = FailureCode::from_code(row.failure_code.as_deref()?)?;
    Some(FailureReason::from_parts(code, row.failure_detail.as_deref()))
}

/// A delivery read back, every value parsed again; a refused value is reported as
/// corrupt, naming the delivery and the field, never the value.
pub(crate) fn delivery_from_row(row: &deliveries::Model, attempts: Vec<Attempt>) -> Result<Delivery, StoreError> {
    let id = DeliveryId::from_str(&row.id).map_err(|e| corrupt("a deliveries row", "id", e))?;
    let subject = format!("delivery {id}");
    let field = |name: &str, code: FieldCode| corrupt(&subject, name, code);
    Ok(Delivery {
        id,
        tenant_id: TenantId::from_str(&row.tenant_id).map_err(|e| field("tenantId", e.into()))?,
        kind: NotificationKind::from_code(&row.kind).ok_or_else(|| field("kind", INVALID))?,
        to: EmailAddress::parse(&row.to_address).map_err(|e| field("to", e.into()))?,
        locale: Locale::from_code(&row.locale).ok_or_else(|| field("locale", INVALID))?,
        message: RenderedMessage {
            subject: Subject::parse(&row.subject).map_err(|e| field("subject", e.into()))?,
            text: row.text_body.clone(),
            html: row.html_body.clone(),
        },
        message_id: MessageId::parse(&row.message_id).map_err(|e| field("messageId", e.into()))?,
        idempotency_key: row
            .idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|e| field("idempotencyKey", e.into()))?,
        status: DeliveryStatus::from_code(&row.status).ok_or_else(|| field("status", INVALID))?,
        retries: u32::try_from(row.retries).map_err(|_| field("retries", INVALID))?,
        next_attempt_at: DateTime::from_timestamp_millis(row.next_attempt_at_ms)
            .ok_or_else(|| field("nextAttemptAt", INVALID))?,
        created_at: row.created_at,
        sent_at: row.sent_at,
        failure_reason: match row.failure_code.as_deref() {
            None => None,
            Some(code) => Some(FailureReason::from_parts(
                FailureCode::from_code(code).ok_or_else(|| field("failureCode", INVALID))?,
                row.failure_detail.as_deref(),
            )),
        },
        claims: u32::try_from(row.claims).unwrap_or(0),
        via_platform: row.via_platform,
        content_removed_at: row.content_removed_at,
        recipient_hash: row.recipient_hash.clone(),
        payload_hash: row.payload_hash.clone(),
        // A malformed value only loses the link to the trace.
        trace_parent: row.trace_parent.as_deref().and_then(domain::TraceParent::parse),
        attempts,
    })
}

/// The row an attempt is stored as, with a fresh time-ordered id.
fn attempt_row(delivery_id: &str, attempt: &Attempt) -> delivery_attempts::ActiveModel {
    delivery_attempts::ActiveModel {
        id: Set(uuid::Uuid::now_v7().hyphenated().to_string()),
        delivery_id: Set(delivery_id.to_owned()),
        at: Set(attempt.at),
        outcome: Set(attempt.outcome.code().to_owned()),
        stage: Set(attempt.stage.clone()),
        smtp_code: Set(attempt.smtp_code.map(i32::from)),
        enhanced_code: Set(attempt.enhanced_code.clone()),
        server_message: Set(attempt.server_message.clone()),
        sender_address: Set(attempt.sender_address.clone()),
        sender_source: Set(attempt.sender_source.map(|s| s.code().to_owned())),
    }
}

fn attempt_from_row(row: &delivery_attempts::Model) -> Result<Attempt, StoreError> {
    let subject = format!("attempt {} of delivery {}", row.id, row.delivery_id);
    let field = |name: &str| corrupt(&subject, name, INVALID);
    Ok(Attempt {
        at: row.at,
        outcome: AttemptOutcome::from_code(&row.outcome).ok_or_else(|| field("outcome"))?,
        stage: row.stage.clone(),
        smtp_code: row
            .smtp_code
            .map(|code| u16::try_from(code).map_err(|_| field("smtpCode")))
            .transpose()?,
        enhanced_code: row.enhanced_code.clone(),
        server_message: row.server_message.clone(),
        sender_address: row.sender_address.clone(),
        sender_source: row
            .sender_source
            .as_deref()
            .map(|code| SenderSource::from_code(code).ok_or_else(|| field("senderSource")))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests;
