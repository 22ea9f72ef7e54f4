//! The delivery queue against real databases with the real migrations: every flow runs
//! on a temporary SQLite file and on PostgreSQL in a fresh schema that is dropped
//! afterwards (`sqlite::name`, `postgres::name`).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use domain::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, DeliveryUpdate, FailureReason, NotificationKind,
    RenderedMessage, RetryPolicy,
};
use domain::finish::Finish;
use domain::mail::{FailureKind, SendFailure, SendReceipt, SendStage, SenderUsed, Subject};
use domain::ports::{DeliveryOutbox, DeliveryQueries, DeliveryQueue, EnqueueOutcome};
use domain::values::EmailAddress;
use domain::{
    DeliveryId, IdempotencyKey, LeaseOwner, Locale, MessageId, Plan, SenderSource, StoreError, TenantId, TenantScope,
};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement, TransactionTrait,
};
use testkit::db::Backend;

use super::{ClaimLimits, TenantRows, claim_statement, delivery_row, old_content, tenant_rows_statement};
use crate::SqlStore;
use crate::entities::{deliveries, delivery_attempts};
use crate::tests::{keys, migrated, new_tenant};

const LEASE: i64 = 30;

/// The finish of `update` with no events (the events a finish carries are the domain's
/// business; here only the state changes matter).
fn finish(id: DeliveryId, update: &DeliveryUpdate) -> Finish {
    Finish::with_events(id, update.clone(), Vec::new())
}

// Every flow below, as `sqlite::name` and `postgres::name`.
testkit::each_backend!(|backend, flow| {
    on_store(backend, flow).await;
};
    outcomes_recorded_together,
    enqueues_stored_together,
    group_commit_answers_each_caller,
    enqueue_is_idempotent,
    concurrent_enqueues_create_one,
    claims_due_deliveries_and_expired_leases,
    transitions,
    listing_and_counts,
    a_tenants_pages_interleave_every_status,
    the_deliveries_indexes_are_the_ones_its_writes_need,
    concurrent_claimers_split_the_queue,
    an_invalid_row_fails_alone,
    a_claim_serves_tenants_fairly,
    postponing_moves_a_tenants_waiting_mail_in_order,
    finished_rows_past_the_horizon_are_deleted_with_their_attempts,
    counts_keep_what_retention_cleared_and_lose_what_the_horizon_deleted,
    a_mark_waits_behind_a_row_still_held_and_catches_up,
);

/// Runs `flow` on a store over a fresh, migrated database of `backend`.
async fn on_store<F, Fut>(backend: Backend, flow: F)
where
    F: FnOnce(Arc<SqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = migrated(backend).await;
    flow(Arc::new(SqlStore::new(db.conn(), keys()))).await;
}

async fn on_sqlite<F, Fut>(flow: F)
where
    F: FnOnce(Arc<SqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    on_store(Backend::Sqlite, flow).await;
}

async fn on_postgres<F, Fut>(flow: F)
where
    F: FnOnce(Arc<SqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    on_store(Backend::Postgres, flow).await;
}

async fn tenant(store: &SqlStore) -> TenantId {
    new_tenant(store, Plan::Share).await.id
}

fn notification(tenant: TenantId, due: DateTime<Utc>, key: Option<&str>) -> Delivery {
    Delivery {
        created_at: Utc::now(),
        ..Delivery::queued(
            tenant,
            NotificationKind::PasswordReset,
            EmailAddress::parse("hanako@例え.jp").unwrap(),
            Locale::Ja,
            RenderedMessage {
                subject: Subject::parse("【さくら】パスワード再設定のご案内").unwrap(),
                text: "花子 様\r\n\r\nこちらのリンクから…\r\n".into(),
                html: Some("<p>花子 様</p>".into()),
            },
            MessageId::generate("mailgate.example"),
            due,
        )
        .with_key(key.map(|k| IdempotencyKey::parse(k).unwrap()))
    }
}

async fn enqueue(store: &SqlStore, tenant: TenantId, due: DateTime<Utc>) -> DeliveryId {
    match store.enqueue(&notification(tenant, due, None)).await.unwrap() {
        EnqueueOutcome::Created(d) => d.id,
        EnqueueOutcome::Existing(_) => panic!("a delivery without a key is always new"),
    }
}

/// One tenant's long queue cannot fill a claim: each tenant gets at most `per_tenant` of
/// it, the earliest of each, and the rest of the claim goes to the tenants behind it
/// (within the claim's window of candidates: its limit plus the per-tenant limit).
async fn a_claim_serves_tenants_fairly(store: Arc<SqlStore>) {
    let (big, small) = (tenant(&store).await, tenant(&store).await);
    let now = Utc::now();
    let mut rows: Vec<Delivery> = (0..10)
        .map(|i| notification(big, now - Duration::seconds(100 - i), None))
        .collect();
    let small_rows: Vec<Delivery> = (0..3)
        .map(|i| notification(small, now - Duration::seconds(10 - i), None))
        .collect();
    rows.extend(small_rows.iter().cloned());
    insert_many(&store, rows.clone()).await;

    let lease = now + Duration::seconds(LEASE);
    let claimed = store.claim_fairly(&w("w1"), now, lease, 10, 4, &[]).await.unwrap();
    let of = |t: TenantId| {
        claimed
            .iter()
            .filter(|d| d.tenant_id == t)
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(big),
        rows[..4].iter().map(|d| d.id).collect::<Vec<_>>(),
        "the big tenant's earliest four"
    );
    assert_eq!(
        of(small),
        small_rows.iter().map(|d| d.id).collect::<Vec<_>>(),
        "all of the small tenant's"
    );
    // Without the limit, the big tenant's earliest ten would have filled that claim; they
    // are still there for the next one.
    let rest = store.claim(&w("w2"), now, lease, 10, &[]).await.unwrap();
    assert_eq!(ids(&rest), rows[4..10].iter().map(|d| d.id).collect::<Vec<_>>());
}

/// A tenant's waiting deliveries move onto a schedule in their order; sending ones, later
/// ones and other tenants' stay where they are.
async fn postponing_moves_a_tenants_waiting_mail_in_order(store: Arc<SqlStore>) {
    use domain::delivery::Postponement;
    let (paced, other) = (tenant(&store).await, tenant(&store).await);
    let now = Utc::now();
    let waiting: Vec<Delivery> = (0..5)
        .map(|i| notification(paced, now - Duration::seconds(50 - i), None))
        .collect();
    let far = notification(paced, now + Duration::hours(5), None);
    let others = custom(notification(other, now - Duration::seconds(60), None));
    let mut rows = waiting.clone();
    rows.extend([far.clone(), others.clone()]);
    insert_many(&store, rows).await;
    // One of the waiting ones is being sent: it is not the queue's to move.
    let sending = store
        .claim_fairly(&w("w1"), now, now + Duration::days(1), 1, 1, &[other])
        .await
        .unwrap();
    assert_eq!(ids(&sending), vec![waiting[0].id]);

    let turn = now + Duration::minutes(10);
    let schedule = Postponement::until_turn(turn, std::time::Duration::from_secs(60)).after(1);
    let moved = store.postpone_waiting(paced, &schedule, now).await.unwrap();
    assert_eq!(moved, 4);
    for (n, d) in waiting[1..].iter().enumerate() {
        let at = row(&store, d.id).await.next_attempt_at_ms;
        assert_eq!(
            at,
            (turn + Duration::minutes(1 + n as i64)).timestamp_millis(),
            "place {n}"
        );
        assert_eq!(row(&store, d.id).await.status, "QUEUED");
    }
    assert_eq!(row(&store, waiting[0].id).await.status, "SENDING");
    assert_eq!(
        row(&store, far.id).await.next_attempt_at_ms,
        far.next_attempt_at.timestamp_millis()
    );
    assert_eq!(
        row(&store, others.id).await.next_attempt_at_ms,
        others.next_attempt_at.timestamp_millis()
    );
    // Nothing of the tenant's is due until its turn.
    assert!(store.claim(&w("w2"), now, now, 10, &[other]).await.unwrap().is_empty());
    let at_turn = turn + Duration::minutes(1);
    assert_eq!(
        ids(&store.claim(&w("w2"), at_turn, at_turn, 10, &[other]).await.unwrap()),
        vec![waiting[1].id]
    );

    // A server backing off: one comes back to probe it, the rest a hold later, and all of
    // them at once when the probe goes through. Time-critical mail stays where it is (held
    // one by one when claimed, never past its fallback time).
    let more = custom(notification(other, now - Duration::seconds(30), None));
    let urgent = notification(other, now - Duration::seconds(40), None);
    let welcome = Delivery {
        kind: NotificationKind::RegistrationCompleted,
        ..notification(other, now - Duration::seconds(20), None)
    };
    insert_many(&store, vec![more.clone(), urgent.clone(), welcome.clone()]).await;
    let until = now + Duration::hours(1);
    let hold = std::time::Duration::from_secs(600);
    let schedule = Postponement::backing_off(until, hold, true);
    assert_eq!(store.postpone_waiting(other, &schedule, now).await.unwrap(), 2);
    for d in [&urgent, &welcome] {
        assert_eq!(
            row(&store, d.id).await.next_attempt_at_ms,
            d.next_attempt_at.timestamp_millis(),
            "time-critical mail is not moved behind the server"
        );
    }
    assert_eq!(
        row(&store, others.id).await.next_attempt_at_ms,
        until.timestamp_millis(),
        "the probe"
    );
    let held_back = (until + Duration::minutes(10)).timestamp_millis();
    assert_eq!(row(&store, more.id).await.next_attempt_at_ms, held_back);
    let probed = until + Duration::seconds(1);
    let resumed = store
        .resume_waiting(other, probed + Duration::minutes(10), probed)
        .await
        .unwrap();
    assert_eq!(resumed, 1);
    assert_eq!(row(&store, more.id).await.next_attempt_at_ms, probed.timestamp_millis());
    assert_eq!(
        row(&store, far.id).await.next_attempt_at_ms,
        far.next_attempt_at.timestamp_millis(),
        "another tenant's stays"
    );
    // A pacing turn is the tenant's own choice: time-critical mail takes its turn too.
    let turn = now + Duration::minutes(1);
    let paced = Postponement::until_turn(turn, std::time::Duration::from_secs(5));
    assert_eq!(store.postpone_waiting(other, &paced, now).await.unwrap(), 2);
    assert_eq!(row(&store, urgent.id).await.next_attempt_at_ms, turn.timestamp_millis());
    assert_eq!(
        row(&store, welcome.id).await.next_attempt_at_ms,
        (turn + Duration::seconds(5)).timestamp_millis()
    );
}

/// `d` as mail of the platform's own kind (`CUSTOM`, not time-critical).
fn custom(d: Delivery) -> Delivery {
    Delivery {
        kind: NotificationKind::Custom,
        ..d
    }
}

/// The history horizon deletes what was handed in and done before it, with its attempts,
/// a batch at a time in id order; unfinished rows, rows done since, and rows handed in
/// since stay, and so does another tenant's newer mail.
async fn finished_rows_past_the_horizon_are_deleted_with_their_attempts(store: Arc<SqlStore>) {
    let (a, b) = (tenant(&store).await, tenant(&store).await);
    let now = Utc::now();
    let horizon = now - Duration::days(365);
    let made = |t: TenantId, age: Duration, status: DeliveryStatus| handed_in(t, now - age, status);
    let old_sent = made(a, Duration::days(400), DeliveryStatus::Sent);
    let old_failed = made(b, Duration::days(399), DeliveryStatus::Failed);
    let old_queued = made(a, Duration::days(398), DeliveryStatus::Queued);
    let old_but_done_lately = made(a, Duration::days(397), DeliveryStatus::Sent);
    let new_sent = made(b, Duration::days(1), DeliveryStatus::Sent);
    let rows = vec![
        old_sent.clone(),
        old_failed.clone(),
        old_queued.clone(),
        old_but_done_lately.clone(),
        new_sent.clone(),
    ];
    insert_many(&store, rows.clone()).await;
    let attempt = Attempt {
        at: now,
        outcome: AttemptOutcome::Sent,
        stage: None,
        smtp_code: Some(250),
        enhanced_code: None,
        server_message: Some("ok".into()),
        sender_address: None,
        sender_source: None,
    };
    for d in &rows {
        delivery_attempts::Entity::insert(sea_orm::IntoActiveModel::into_active_model(super::rows::attempt_row(
            &d.id.to_string(),
            &attempt,
        )))
        .exec_without_returning(store.connection())
        .await
        .unwrap();
        let changed = if d.id == old_but_done_lately.id {
            now - Duration::days(2)
        } else {
            d.created_at
        };
        set_row(&store, d.id, d.status, changed).await;
    }

    assert_eq!(store.remove_old_rows(horizon, 1).await.unwrap(), 1, "a batch of one");
    assert!(
        deliveries::Entity::find_by_id(old_sent.id.to_string())
            .one(store.connection())
            .await
            .unwrap()
            .is_none(),
        "the oldest goes first"
    );
    assert_eq!(store.remove_old_rows(horizon, 10).await.unwrap(), 1, "then the rest");
    assert_eq!(store.remove_old_rows(horizon, 10).await.unwrap(), 0, "nothing more");
    let left: HashSet<String> = deliveries::Entity::find()
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let expected: HashSet<String> = [&old_queued, &old_but_done_lately, &new_sent]
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(left, expected);
    let attempts_left: HashSet<String> = delivery_attempts::Entity::find()
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.delivery_id)
        .collect();
    assert_eq!(attempts_left, expected, "their attempts went with them");
    let counts = store.status_counts(all()).await.unwrap();
    let sent = counts.iter().find(|(s, _)| *s == DeliveryStatus::Sent).map(|(_, n)| *n);
    assert_eq!(sent, Some(2));

    // Read as past the horizon, then replayed before the delete: waiting again, or done
    // again since. Neither is deleted.
    let replayed = made(a, Duration::days(500), DeliveryStatus::Failed);
    let done_again = made(a, Duration::days(501), DeliveryStatus::Failed);
    insert_many(&store, vec![replayed.clone(), done_again.clone()]).await;
    for d in [&replayed, &done_again] {
        set_row(&store, d.id, DeliveryStatus::Failed, d.created_at).await;
    }
    let read = super::queue::DELIVERY_QUEUE
        .old_finished(&store, horizon, 10)
        .await
        .unwrap();
    assert_eq!(
        read,
        vec![done_again.id.to_string(), replayed.id.to_string()],
        "oldest first"
    );
    for (d, status) in [(&replayed, DeliveryStatus::Queued), (&done_again, DeliveryStatus::Sent)] {
        set_row(&store, d.id, status, now).await;
    }
    let backend = store.connection().get_database_backend();
    let deleted = store
        .connection()
        .query_all_raw(super::queue::DELIVERY_QUEUE.delete_finished(backend, &read, horizon, &["id"]))
        .await
        .unwrap();
    assert!(deleted.is_empty(), "replayed rows stay");
    assert_eq!(store.remove_old_rows(horizon, 10).await.unwrap(), 0);
}

/// A delivery handed in at `at` (its id a UUIDv7 of that time), now in `status`.
fn handed_in(tenant: TenantId, at: DateTime<Utc>, status: DeliveryStatus) -> Delivery {
    let ms = u64::try_from(at.timestamp_millis()).unwrap();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap() * 1_000_000,
    );
    let mut d = notification(tenant, at, None);
    d.id = uuid::Uuid::new_v7(ts).hyphenated().to_string().parse().unwrap();
    d.created_at = at;
    d.status = status;
    d
}

/// Counts stay exact while rows move out of the partial index (retention clears them) and
/// out of the table (the horizon deletes them, with or without content): a tenant's
/// counts, every tenant's, and a retry of a cleared row that is refused.
async fn counts_keep_what_retention_cleared_and_lose_what_the_horizon_deleted(store: Arc<SqlStore>) {
    use DeliveryStatus::{Failed, Queued, Sent};
    let (a, b) = (tenant(&store).await, tenant(&store).await);
    let now = Utc::now();
    let ago = |days: i64| now - Duration::days(days);
    let rows = vec![
        handed_in(a, ago(450), Sent),
        handed_in(a, ago(400), Sent),
        handed_in(a, ago(400), Failed),
        handed_in(a, ago(100), Sent),
        handed_in(a, ago(1), Queued),
        handed_in(a, ago(1), Sent),
        handed_in(b, ago(400), Sent),
        handed_in(b, ago(2), Failed),
    ];
    insert_many(&store, rows.clone()).await;
    for d in &rows {
        set_row(&store, d.id, d.status, d.created_at).await;
    }
    let count = |scope: TenantScope| {
        let store = store.clone();
        async move {
            let counts = store.status_counts(scope).await.unwrap();
            [Queued, Sent, Failed].map(|s| counts.iter().find(|(c, _)| *c == s).unwrap().1)
        }
    };
    assert_eq!(count(TenantScope::One(a)).await, [1, 4, 1]);
    assert_eq!(count(TenantScope::One(b)).await, [0, 1, 1]);

    // The horizon before retention ran: a row with its content leaves the counts.
    assert_eq!(store.remove_old_rows(ago(420), 10).await.unwrap(), 1);
    assert_eq!(count(TenantScope::One(a)).await, [1, 3, 1]);

    // Retention clears a's three old finished rows and b's old one: nothing changes.
    assert_eq!(store.remove_old_content(ago(30), 100, now).await.unwrap(), 4);
    assert_eq!(count(TenantScope::One(a)).await, [1, 3, 1]);
    assert_eq!(count(TenantScope::One(b)).await, [0, 1, 1]);
    assert_eq!(count(all()).await, [1, 4, 2]);
    // Kept apart now: a's three cleared rows before its queued one, b's one.
    assert_eq!(
        kept(&store).await,
        vec![
            (a, rows[3].id, "FAILED".to_owned(), 1),
            (a, rows[3].id, "SENT".to_owned(), 2),
            (b, rows[6].id, "SENT".to_owned(), 1),
        ]
        .into_iter()
        .collect()
    );
    // A cleared failure cannot be put back in the queue, even by a caller that read it
    // before its content went.
    let cleared_failure = &rows[2];
    let requeue = DeliveryUpdate::requeued(cleared_failure, now).unwrap();
    assert!(!store.requeue(a, cleared_failure.id, &requeue).await.unwrap());
    assert_eq!(count(TenantScope::One(a)).await, [1, 3, 1]);

    // The horizon deletes cleared rows: the kept counts lose them, in the same step.
    assert_eq!(store.remove_old_rows(ago(365), 10).await.unwrap(), 3);
    assert_eq!(count(TenantScope::One(a)).await, [1, 2, 0]);
    assert_eq!(count(TenantScope::One(b)).await, [0, 0, 1]);
    assert_eq!(count(all()).await, [1, 2, 1]);
    assert_eq!(count(TenantScope::One(TenantId::generate())).await, [0, 0, 0]);
}

/// A tenant's mark stops at its first row that still holds content (an old queued one),
/// the horizon takes from the kept counts only what is at or before the mark, and once
/// the row that held the mark back is cleared, the mark catches up over the long stretch
/// of cleared rows behind it in one retention batch.
async fn a_mark_waits_behind_a_row_still_held_and_catches_up(store: Arc<SqlStore>) {
    use DeliveryStatus::{Queued, Sent};
    let c = tenant(&store).await;
    let now = Utc::now();
    let ago = |days: i64| now - Duration::days(days);
    let first = handed_in(c, ago(250), Sent);
    let blocker = handed_in(c, ago(200), Queued);
    let behind: Vec<Delivery> = (0..30).map(|i| handed_in(c, ago(199 - i), Sent)).collect();
    let fresh = handed_in(c, ago(1), Sent);
    let mut rows = vec![first.clone(), blocker.clone()];
    rows.extend(behind.iter().cloned());
    rows.push(fresh.clone());
    insert_many(&store, rows.clone()).await;
    for d in &rows {
        set_row(&store, d.id, d.status, d.created_at).await;
    }
    let count = || {
        let store = store.clone();
        async move {
            let counts = store.status_counts(TenantScope::One(c)).await.unwrap();
            [Queued, Sent].map(|s| counts.iter().find(|(x, _)| *x == s).unwrap().1)
        }
    };
    assert_eq!(store.remove_old_content(ago(30), 100, now).await.unwrap(), 31);
    assert_eq!(count().await, [1, 32]);
    assert_eq!(
        kept(&store).await,
        [(c, first.id, "SENT".to_owned(), 1)].into_iter().collect(),
        "the mark stops at the queued row"
    );

    // The horizon deletes the first row (at the mark) and the fourteen behind the queued
    // one handed in before it (after the mark): only the first leaves the kept counts.
    assert_eq!(store.remove_old_rows(ago(185), 100).await.unwrap(), 15);
    assert_eq!(count().await, [1, 17]);
    assert_eq!(
        kept(&store).await,
        [(c, first.id, "SENT".to_owned(), 0)].into_iter().collect()
    );

    // The queued row is done at last and cleared: the mark moves over it and the sixteen
    // cleared rows behind it (reads of 2, 4, 8, then 16 rows), up to the fresh row.
    set_row(&store, blocker.id, Sent, ago(40)).await;
    assert_eq!(store.remove_old_content(ago(30), 100, now).await.unwrap(), 1);
    assert_eq!(count().await, [0, 18]);
    assert_eq!(
        kept(&store).await,
        [(c, behind[29].id, "SENT".to_owned(), 17)].into_iter().collect()
    );
}

/// Every tenant's mark with each kept count: (tenant, mark, status, count).
async fn kept(store: &SqlStore) -> HashSet<(TenantId, DeliveryId, String, i64)> {
    store
        .connection()
        .query_all_raw(Statement::from_string(
            store.connection().get_database_backend(),
            "SELECT m.tenant_id, m.counted_through, c.status, c.n FROM delivery_count_marks m \
             JOIN delivery_archived_counts c ON c.tenant_id = m.tenant_id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "tenant_id").unwrap().parse().unwrap(),
                r.try_get::<String>("", "counted_through").unwrap().parse().unwrap(),
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

/// Sets a stored delivery's status and last change, behind the store's back.
async fn set_row(store: &SqlStore, id: DeliveryId, status: DeliveryStatus, updated_at: DateTime<Utc>) {
    deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(updated_at),
        )
        .col_expr(
            deliveries::Column::Status,
            sea_orm::sea_query::Expr::value(status.code()),
        )
        .filter(deliveries::Column::Id.eq(id.to_string()))
        .exec(store.connection())
        .await
        .unwrap();
}

/// Stores many deliveries at once (bypassing `enqueue`, which stores one at a time).
async fn insert_many(store: &SqlStore, rows: Vec<Delivery>) {
    let now = Utc::now();
    for chunk in rows.chunks(500) {
        deliveries::Entity::insert_many(chunk.iter().map(|d| delivery_row(d, now)))
            .exec_without_returning(store.connection())
            .await
            .unwrap();
    }
}

async fn row(store: &SqlStore, id: DeliveryId) -> deliveries::Model {
    deliveries::Entity::find_by_id(id.to_string())
        .one(store.connection())
        .await
        .unwrap()
        .unwrap()
}

/// The name a test worker holds leases under.
fn w(name: &str) -> LeaseOwner {
    LeaseOwner::parse(name).unwrap()
}

/// Every tenant (an operator's view).
fn all() -> TenantScope {
    domain::Caller::new("operator".into(), domain::Role::Operator, None)
        .unwrap()
        .scope()
}

/// The server took it, through the platform default.
fn sent(at: DateTime<Utc>) -> DeliveryUpdate {
    let receipt = SendReceipt {
        message_id: "<x@mailgate.example>".into(),
        sender: SenderUsed {
            address: EmailAddress::parse("noreply@platform.example").unwrap(),
            name: None,
            source: SenderSource::PlatformDefault,
        },
        smtp_code: Some(250),
        server_message: Some("2.0.0 queued".into()),
        elapsed: std::time::Duration::ZERO,
    };
    DeliveryUpdate::sent(&receipt, 0, at)
}

/// A `451 4.3.0 try again later` at DATA.
fn try_later() -> SendFailure {
    SendFailure {
        smtp_code: Some(451),
        enhanced_code: Some("4.3.0".into()),
        server_message: Some("try again later".into()),
        ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
    }
}

/// A `550 5.1.1 no such user` at DATA: failed for good.
fn no_such_user() -> SendFailure {
    SendFailure {
        smtp_code: Some(550),
        enhanced_code: Some("5.1.1".into()),
        server_message: Some("no such user".into()),
        ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
    }
}

/// A temporary failure of `d` at `at`, retried at `next` (the policy's first backoff is
/// chosen to land there; a jitter of 0.5 is no jitter).
fn retry(d: &Delivery, at: DateTime<Utc>, next: DateTime<Utc>) -> DeliveryUpdate {
    let delay = (next - at).to_std().unwrap() / 2u32.pow(d.retries);
    let policy = RetryPolicy {
        base: delay,
        max_delay: delay * 1024,
        ..RetryPolicy::default()
    };
    let update = DeliveryUpdate::after_failure(d, &try_later(), &policy, at, 0.5);
    assert_eq!(update.next_attempt_at(), next);
    update
}

/// A permanent failure of `d` at `at`.
fn failed(d: &Delivery, at: DateTime<Utc>) -> DeliveryUpdate {
    DeliveryUpdate::after_failure(d, &no_such_user(), &RetryPolicy::default(), at, 0.5)
}

fn ids(claimed: &[Delivery]) -> Vec<DeliveryId> {
    claimed.iter().map(|d| d.id).collect()
}

// ---------------------------------------------------------------------------------------
// Flows
// ---------------------------------------------------------------------------------------

/// New deliveries are stored as given; a second enqueue under the same tenant and key
/// returns the first one; the same key of another tenant is unrelated.
async fn enqueue_is_idempotent(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let now = Utc::now();

    let first = notification(a, now, Some("signup-42"));
    let created = match store.enqueue(&first).await.unwrap() {
        EnqueueOutcome::Created(d) => d,
        other => panic!("expected Created, got {other:?}"),
    };
    assert_eq!(created.id, first.id);

    let read = store.delivery(all(), first.id).await.unwrap().unwrap();
    assert_eq!(
        (read.id, read.tenant_id, read.kind),
        (first.id, a, NotificationKind::PasswordReset)
    );
    assert_eq!(read.to.as_str(), "hanako@例え.jp");
    assert_eq!(read.locale, Locale::Ja);
    assert_eq!(read.message, first.message);
    assert_eq!(read.message_id, first.message_id);
    assert_eq!(
        read.idempotency_key.as_ref().map(IdempotencyKey::as_str),
        Some("signup-42")
    );
    assert_eq!((read.status, read.retries), (DeliveryStatus::Queued, 0));
    assert_eq!(read.next_attempt_at.timestamp_millis(), now.timestamp_millis());
    assert_eq!(read.created_at.timestamp_micros(), first.created_at.timestamp_micros());
    assert!(read.sent_at.is_none() && read.failure_reason.is_none() && read.attempts.is_empty());

    let mut again = notification(a, now, Some("signup-42"));
    again.message.text = "a different body".into();
    match store.enqueue(&again).await.unwrap() {
        EnqueueOutcome::Existing(d) => {
            assert_eq!(d.id, first.id);
            assert_eq!(d.message.text, first.message.text);
        }
        other => panic!("expected Existing, got {other:?}"),
    }
    assert!(store.delivery(all(), again.id).await.unwrap().is_none());

    // Another tenant's key, and deliveries without a key, never collide.
    assert!(matches!(
        store.enqueue(&notification(b, now, Some("signup-42"))).await.unwrap(),
        EnqueueOutcome::Created(_)
    ));
    enqueue(&store, a, now).await;
    enqueue(&store, a, now).await;
    let counts = store.status_counts(TenantScope::One(a)).await.unwrap();
    assert!(counts.contains(&(DeliveryStatus::Queued, 3)), "{counts:?}");

    // An unknown tenant: SQLite's foreign key refuses it; PostgreSQL has no such key
    // (migration 000004; the service checks the tenant before enqueueing).
    let stray = store.enqueue(&notification(TenantId::generate(), now, None)).await;
    match store.connection().get_database_backend() {
        DbBackend::Sqlite => assert!(matches!(stray, Err(StoreError::Database(_))), "{stray:?}"),
        _ => assert!(matches!(stray, Ok(EnqueueOutcome::Created(_))), "{stray:?}"),
    }
    assert!(store.delivery(all(), DeliveryId::generate()).await.unwrap().is_none());
}

/// Eight enqueues with one key at once: one is created, seven get it back.
async fn concurrent_enqueues_create_one(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(&notification(a, now, Some("reset-7"))).await })
        })
        .collect();
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for caller in callers {
        match caller.await.unwrap().unwrap() {
            EnqueueOutcome::Created(d) => created.push(d.id),
            EnqueueOutcome::Existing(d) => existing.push(d.id),
        }
    }
    assert_eq!(created.len(), 1, "created {created:?}");
    assert_eq!(existing.len(), 7);
    assert!(existing.iter().all(|id| *id == created[0]));
    let stored = deliveries::Entity::find()
        .filter(deliveries::Column::TenantId.eq(a.to_string()))
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

/// Only due deliveries are claimed, excluded tenants are skipped, and a lease that ran
/// out is taken over by another worker, after which the first worker's finish fails.
async fn claims_due_deliveries_and_expired_leases(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let now = Utc::now();
    let lease = now + Duration::seconds(LEASE);
    let due_a = enqueue(&store, a, now - Duration::seconds(1)).await;
    let later_a = enqueue(&store, a, now + Duration::seconds(60)).await;
    let due_b = enqueue(&store, b, now - Duration::seconds(2)).await;

    let claimed = store.claim(&w("w1"), now, lease, 10, &[b]).await.unwrap();
    assert_eq!(ids(&claimed), vec![due_a]);
    assert_eq!(claimed[0].status, DeliveryStatus::Sending);
    assert_eq!(
        claimed[0].message.subject.as_str(),
        "【さくら】パスワード再設定のご案内"
    );
    let stored = row(&store, due_a).await;
    assert_eq!(stored.lease_owner.as_deref(), Some("w1"));
    assert_eq!(stored.lease_until_ms, Some(lease.timestamp_millis()));
    assert_eq!((claimed[0].claims, stored.claims), (1, 1), "its first claim");

    // Leased ones are not claimed again while the lease holds.
    assert!(store.claim(&w("w2"), now, lease, 10, &[b]).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.claim(&w("w1"), now, lease, 10, &[]).await.unwrap()),
        vec![due_b]
    );
    assert_eq!(store.renew_leases(&w("w1"), lease).await.unwrap(), 2);
    assert_eq!(store.renew_leases(&w("nobody"), lease).await.unwrap(), 0);

    // After the lease: both expired ones and the one now due, earliest first, to w2.
    let after = now + Duration::seconds(61);
    let mut taken = ids(&store
        .claim(&w("w2"), after, after + Duration::seconds(LEASE), 2, &[])
        .await
        .unwrap());
    taken.extend(ids(&store
        .claim(&w("w2"), after, after + Duration::seconds(LEASE), 2, &[])
        .await
        .unwrap()));
    taken.sort();
    // A claim taken over after its lease ran out counts again; a first claim is 1.
    for (id, claims) in [(due_a, 2), (due_b, 2), (later_a, 1)] {
        assert_eq!(row(&store, id).await.claims, claims, "claims of {id}");
    }
    let mut expected = vec![due_a, due_b, later_a];
    expected.sort();
    assert_eq!(taken, expected);

    let sent = sent(now);
    assert!(
        !store.finish(&w("w1"), &finish(due_a, &sent)).await.unwrap(),
        "w1 lost its lease"
    );
    let give_back = DeliveryUpdate::released(0, now);
    assert!(!store.finish(&w("w1"), &finish(due_a, &give_back)).await.unwrap());
    assert_eq!(store.renew_leases(&w("w1"), lease).await.unwrap(), 0);
    assert!(store.delivery(all(), due_a).await.unwrap().unwrap().attempts.is_empty());
    assert!(store.finish(&w("w2"), &finish(due_a, &sent)).await.unwrap());
    let done = store.delivery(all(), due_a).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Sent);
    assert_eq!(done.claims, 0, "an outcome ends the run of claims");
    assert_eq!(done.attempts.len(), 1);
    // The two w2 still holds, once its lease has run out too.
    let day_later = after + Duration::days(1);
    assert_eq!(
        store
            .claim(&w("w1"), day_later, day_later, 10, &[])
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.claim(&w("w1"), now, lease, 0, &[]).await.unwrap().len(), 0);
}

/// Finish, release and requeue move a delivery through its states, and every attempt is
/// kept, oldest first.
async fn transitions(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let lease = now + Duration::seconds(LEASE);
    let id = enqueue(&store, a, now).await;

    // Released unattempted: QUEUED again, due at once, lease gone.
    assert_eq!(ids(&store.claim(&w("w1"), now, lease, 1, &[]).await.unwrap()), vec![id]);
    let give_back = DeliveryUpdate::released(0, Utc::now());
    assert!(!store.finish(&w("w2"), &finish(id, &give_back)).await.unwrap());
    assert!(store.finish(&w("w1"), &finish(id, &give_back)).await.unwrap());
    let released = row(&store, id).await;
    assert_eq!(released.status, "QUEUED");
    assert_eq!((released.lease_owner, released.lease_until_ms), (None, None));
    assert!(released.next_attempt_at_ms <= Utc::now().timestamp_millis());

    // A transient failure: RETRYING, due later.
    let claimed = store.claim(&w("w1"), Utc::now(), lease, 1, &[]).await.unwrap();
    assert_eq!(ids(&claimed), vec![id]);
    let retry_at = now + Duration::seconds(30);
    let retry = retry(&claimed[0], now, retry_at);
    assert!(store.finish(&w("w1"), &finish(id, &retry)).await.unwrap());
    assert!(
        !store.finish(&w("w1"), &finish(id, &retry)).await.unwrap(),
        "no longer SENDING"
    );
    let retrying = store.delivery(all(), id).await.unwrap().unwrap();
    assert_eq!((retrying.status, retrying.retries), (DeliveryStatus::Retrying, 1));
    assert!(retrying.retried_before, "a retry is remembered for the next one");
    assert_eq!(retrying.next_attempt_at.timestamp_millis(), retry_at.timestamp_millis());
    let read_back: Vec<Attempt> = retrying.attempts.into_iter().map(micros).collect();
    assert_eq!(read_back, vec![micros(retry.attempt().unwrap().clone())]);
    let stored = row(&store, id).await;
    assert_eq!((stored.lease_owner, stored.lease_until_ms), (None, None));
    assert!(store.claim(&w("w1"), now, lease, 1, &[]).await.unwrap().is_empty());

    // Released after a retry: RETRYING, not QUEUED.
    let later = retry_at + Duration::seconds(1);
    let claimed = store
        .claim(&w("w1"), later, later + Duration::seconds(LEASE), 1, &[])
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![id]);
    assert!(claimed[0].retried_before, "the claim carries it");
    let give_back = DeliveryUpdate::released(claimed[0].retries, later);
    assert!(store.finish(&w("w1"), &finish(id, &give_back)).await.unwrap());
    assert_eq!(row(&store, id).await.status, "RETRYING");

    // A permanent failure, then requeued by an operator.
    let claimed = store
        .claim(&w("w1"), later, later + Duration::seconds(LEASE), 1, &[])
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![id]);
    let fail = failed(&claimed[0], later);
    assert!(store.finish(&w("w1"), &finish(id, &fail)).await.unwrap());
    let failed = store.delivery(all(), id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.retries), (DeliveryStatus::Failed, 1));
    assert_eq!(
        failed.failure_reason,
        Some(FailureReason::Refused("DATA 550 no such user".into()))
    );
    let requeue_at = later + Duration::seconds(5);
    let requeue = DeliveryUpdate::requeued(&failed, requeue_at).unwrap();
    let other = tenant(&store).await;
    assert!(
        !store.requeue(other, id, &requeue).await.unwrap(),
        "another tenant's delivery"
    );
    assert!(store.requeue(a, id, &requeue).await.unwrap());
    assert!(!store.requeue(a, id, &requeue).await.unwrap(), "only FAILED ones");
    let requeued = store.delivery(all(), id).await.unwrap().unwrap();
    assert_eq!((requeued.status, requeued.retries), (DeliveryStatus::Queued, 0));
    assert_eq!(requeued.failure_reason, None);
    assert_eq!(
        requeued.next_attempt_at.timestamp_millis(),
        requeue_at.timestamp_millis()
    );
    assert!(!store.requeue(a, DeliveryId::generate(), &requeue).await.unwrap());

    // Sent at last.
    assert_eq!(
        ids(&store
            .claim(&w("w3"), requeue_at, requeue_at + Duration::seconds(LEASE), 1, &[])
            .await
            .unwrap()),
        vec![id]
    );
    let sent = sent(requeue_at);
    assert!(store.finish(&w("w3"), &finish(id, &sent)).await.unwrap());
    let done = store.delivery(all(), id).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Sent);
    assert_eq!(
        done.sent_at.map(|t| t.timestamp_micros()),
        sent.sent_at().map(|t| t.timestamp_micros())
    );
    let outcomes: Vec<AttemptOutcome> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::Retry, AttemptOutcome::Failed, AttemptOutcome::Sent]
    );
    assert!(!store.requeue(a, id, &requeue).await.unwrap());
}

/// Outcomes of several deliveries recorded in one call: each row gets its own state and
/// attempt; a row this worker no longer holds is reported false and left untouched.
/// (Six updates and five attempts: the statements' rows are padded to eight with
/// NULLs, which change and store nothing.)
async fn outcomes_recorded_together(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let lease = now + Duration::seconds(LEASE);
    for _ in 0..6 {
        enqueue(&store, a, now).await;
    }
    let held = store.claim(&w("w1"), now, lease, 6, &[]).await.unwrap();
    let claimed = ids(&held);
    assert_eq!(claimed.len(), 6);
    // The fourth was given back: it is no longer this worker's.
    let give_back = DeliveryUpdate::released(0, now);
    assert!(store.finish(&w("w1"), &finish(claimed[3], &give_back)).await.unwrap());
    let later = now + Duration::seconds(60);
    let updates = vec![
        (claimed[0], sent(now)),
        (claimed[1], retry(&held[1], now, later)),
        (claimed[2], failed(&held[2], now)),
        (claimed[3], sent(now)),
        (claimed[4], sent(now)),
        (claimed[5], sent(now)),
    ];
    let finishes: Vec<Finish> = updates.iter().map(|(id, u)| finish(*id, u)).collect();
    assert!(store.finish_many(&w("w1"), &[]).await.unwrap().is_empty());
    assert!(
        store
            .finish_many(&w("w2"), &finishes)
            .await
            .unwrap()
            .iter()
            .all(|done| !done),
        "another worker's outcomes change nothing"
    );
    assert_eq!(
        store.finish_many(&w("w1"), &finishes).await.unwrap(),
        vec![true, true, true, false, true, true]
    );
    for (id, u) in &updates {
        let d = store.delivery(all(), *id).await.unwrap().unwrap();
        let stored = row(&store, *id).await;
        if *id == claimed[3] {
            assert_eq!(d.status, DeliveryStatus::Queued);
            assert!(d.attempts.is_empty());
            continue;
        }
        assert_eq!((d.status, Some(d.retries)), (u.status(), u.retries()), "{id}");
        assert_eq!(
            d.next_attempt_at.timestamp_millis(),
            u.next_attempt_at().timestamp_millis()
        );
        assert_eq!(d.failure_reason.as_ref(), u.failure_reason());
        assert_eq!(
            d.sent_at.map(|t| t.timestamp_micros()),
            u.sent_at().map(|t| t.timestamp_micros())
        );
        let read_back: Vec<Attempt> = d.attempts.into_iter().map(micros).collect();
        assert_eq!(read_back, vec![micros(u.attempt().unwrap().clone())]);
        assert_eq!((stored.lease_owner, stored.lease_until_ms), (None, None));
    }
    assert_eq!(
        store.finish_many(&w("w1"), &finishes).await.unwrap(),
        vec![false; 6],
        "recorded once only"
    );
    let attempts = delivery_attempts::Entity::find()
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(attempts, 5);
}

/// Several deliveries stored together: new ones created, a key seen before (in the table
/// or earlier in the same batch) answered with the stored delivery, and a row the
/// database refuses failing alone.
async fn enqueues_stored_together(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let earlier = notification(a, now, Some("k0"));
    let EnqueueOutcome::Created(earlier) = store.enqueue(&earlier).await.unwrap() else {
        panic!("new key");
    };
    let batch = vec![
        notification(a, now, Some("k1")),
        notification(a, now, None),
        notification(a, now, Some("k0")),
        notification(a, now, Some("k2")),
        notification(a, now, Some("k2")),
    ];
    let results = store.enqueue_many(&batch).await;
    let outcome = |i: usize| match &results[i] {
        Ok(EnqueueOutcome::Created(d)) => ("created", d.id),
        Ok(EnqueueOutcome::Existing(d)) => ("existing", d.id),
        Err(e) => panic!("{i}: {e}"),
    };
    assert_eq!(outcome(0), ("created", batch[0].id));
    assert_eq!(outcome(1), ("created", batch[1].id));
    assert_eq!(outcome(2), ("existing", earlier.id));
    assert_eq!(outcome(3), ("created", batch[3].id));
    assert_eq!(outcome(4), ("existing", batch[3].id));
    let stored = deliveries::Entity::find()
        .filter(deliveries::Column::TenantId.eq(a.to_string()))
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(stored, 4);

    // A row the database refuses fails alone: on SQLite an unknown tenant (its foreign
    // key), on PostgreSQL a NUL character (which its text type cannot hold).
    let mut refused = notification(a, now, None);
    let sqlite = store.connection().get_database_backend() == DbBackend::Sqlite;
    if sqlite {
        refused.tenant_id = TenantId::generate();
    } else {
        refused.message.text = "a\0b".into();
    }
    let mixed = vec![notification(a, now, None), refused, notification(a, now, Some("k3"))];
    let results = store.enqueue_many(&mixed).await;
    assert!(matches!(&results[0], Ok(EnqueueOutcome::Created(d)) if d.id == mixed[0].id));
    assert!(matches!(&results[1], Err(StoreError::Database(_))), "{:?}", results[1]);
    assert!(matches!(&results[2], Ok(EnqueueOutcome::Created(d)) if d.id == mixed[2].id));
    let stored = deliveries::Entity::find().count(store.connection()).await.unwrap();
    assert_eq!(stored, 6);
}

/// Through [`crate::GroupCommit`]: 64 concurrent enqueues, eight sharing one key, each
/// answered with its own delivery (one created for the key, the others given it), all
/// stored once.
async fn group_commit_answers_each_caller(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let group = Arc::new(crate::GroupCommit::start(store.clone(), 16, 2));
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let group = group.clone();
            let d = notification(a, now, (i % 8 == 0).then_some("shared"));
            tokio::spawn(async move { (d.id, group.enqueue(&d).await.unwrap()) })
        })
        .collect();
    let (mut created, mut existing) = (Vec::new(), Vec::new());
    for caller in callers {
        match caller.await.unwrap() {
            (id, EnqueueOutcome::Created(d)) => {
                assert_eq!(d.id, id);
                created.push(id);
            }
            (_, EnqueueOutcome::Existing(d)) => existing.push(d.id),
        }
    }
    assert_eq!((created.len(), existing.len()), (57, 7));
    let shared = existing[0];
    assert!(created.contains(&shared));
    assert!(existing.iter().all(|id| *id == shared));
    let stored: Vec<String> = deliveries::Entity::find()
        .select_only()
        .column(deliveries::Column::Id)
        .into_tuple()
        .all(store.connection())
        .await
        .unwrap();
    let stored: HashSet<DeliveryId> = stored.iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(stored, created.into_iter().collect::<HashSet<_>>());
}

/// PostgreSQL keeps microseconds: compare attempts at that precision.
fn micros(mut attempt: Attempt) -> Attempt {
    attempt.at = DateTime::from_timestamp_micros(attempt.at.timestamp_micros()).unwrap();
    attempt
}

/// A tenant's rows of every status, in pages: each page the next ones in id order
/// whatever their statuses (the list reads one index range per status and merges them),
/// none of another tenant's; and by one status.
async fn a_tenants_pages_interleave_every_status(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let b = tenant(&store).await;
    let start = Utc::now() - Duration::hours(1);
    let statuses = DeliveryStatus::ALL;
    let mut rows = Vec::new();
    for i in 0..41 {
        let at = start + Duration::milliseconds(10 * i);
        // Runs of one status and single ones, so a page ends inside a run and between two.
        let status = statuses[usize::try_from((i / 3 + i * i) % 5).unwrap()];
        let owner = if i % 4 == 3 { b } else { a };
        rows.push(handed_in(owner, at, status));
    }
    insert_many(&store, rows.clone()).await;
    let newest_first = |status: Option<DeliveryStatus>| -> Vec<DeliveryId> {
        rows.iter()
            .rev()
            .filter(|d| d.tenant_id == a && status.is_none_or(|s| d.status == s))
            .map(|d| d.id)
            .collect()
    };
    assert!(statuses.iter().all(|s| !newest_first(Some(*s)).is_empty()));
    for status in [None, Some(DeliveryStatus::Sent)] {
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = store.deliveries(a, status, after, 4).await.unwrap();
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            listed.extend(page.iter().map(|d| (d.id, d.status)));
        }
        let expected: Vec<(DeliveryId, DeliveryStatus)> = rows
            .iter()
            .rev()
            .filter(|d| newest_first(status).contains(&d.id))
            .map(|d| (d.id, d.status))
            .collect();
        assert_eq!(listed, expected, "status {status:?}");
    }
}

/// What each index of `deliveries` (and `delivery_attempts`) is there for, and that the
/// reads which lost an index of their own read the ones left: a tenant's list of every
/// status reads `(tenant_id, status, id)`, retention the partial index of done rows that
/// still hold content (also in the plan PostgreSQL keeps for any parameters).
async fn the_deliveries_indexes_are_the_ones_its_writes_need(store: Arc<SqlStore>) {
    let db = store.connection();
    let backend = db.get_database_backend();
    let names = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            let mut names: Vec<String> = db
                .query_all_raw(Statement::from_string(backend, sql))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap())
                .collect();
            names.sort();
            names
        }
    };
    let (deliveries, attempts) = match backend {
        DbBackend::Sqlite => (
            names(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' \
                 AND name NOT LIKE 'sqlite_autoindex%'",
            )
            .await,
            names(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'delivery_attempts' \
                 AND name NOT LIKE 'sqlite_autoindex%'",
            )
            .await,
        ),
        _ => (
            names(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'deliveries' AND indexname <> 'deliveries_pkey'",
            )
            .await,
            names(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'delivery_attempts'",
            )
            .await,
        ),
    };
    assert_eq!(
        deliveries,
        [
            "idx_deliveries_due",
            "idx_deliveries_finished_with_content",
            "idx_deliveries_leased",
            "idx_deliveries_tenant_status_id",
            "uq_deliveries_tenant_given_idempotency_key",
        ]
    );
    match backend {
        DbBackend::Sqlite => assert_eq!(attempts, ["idx_delivery_attempts_delivery_id_id"]),
        _ => {
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            assert!(
                attempts[0].contains("delivery_attempts_pkey") && attempts[0].contains("(delivery_id, id)"),
                "{attempts:?}"
            );
        }
    }

    // One busy tenant among many small ones, as on a platform (PostgreSQL plans a read
    // for any tenant by the number of tenants).
    let a = tenant(&store).await;
    insert_many(&store, sent_and_queued(a)).await;
    let mut small = Vec::new();
    for _ in 0..200 {
        let t = tenant(&store).await;
        let at = Utc::now() - Duration::days(1);
        small.extend((0..20).map(|i| handed_in(t, at + Duration::milliseconds(i), DeliveryStatus::Sent)));
    }
    insert_many(&store, small).await;
    if backend == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE deliveries").await.unwrap();
    }
    let now = Utc::now();
    let list = tenant_rows_statement(
        backend,
        "*",
        &a.to_string(),
        &DeliveryStatus::ALL,
        TenantRows::NewestFirst(None),
        20,
    );
    let retention = sea_orm::QueryTrait::build(&old_content(now - Duration::days(30), 100), backend);
    for (what, stmt, index) in [
        ("a tenant's list", list, "idx_deliveries_tenant_status_id"),
        ("retention's read", retention, "idx_deliveries_finished_with_content"),
    ] {
        let plans = match backend {
            DbBackend::Sqlite => vec![explain_sqlite(&store, stmt).await],
            _ => vec![
                explain_claim(&store, stmt.clone()).await,
                explain_generic(&store, stmt).await,
            ],
        };
        for plan in plans {
            eprintln!("{backend:?}, {what}:\n{plan}");
            assert!(plan.contains(index), "{what}: {plan}");
            assert!(
                !plan.contains("SCAN deliveries") && !plan.contains("Seq Scan"),
                "{what}: {plan}"
            );
        }
    }
}

/// SQLite's `EXPLAIN QUERY PLAN` of a statement, one line per step.
async fn explain_sqlite(store: &SqlStore, stmt: Statement) -> String {
    store
        .connection()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "detail").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tenant's deliveries newest first in pages, filtered by status, with attempts; and
/// counts with every status present.
async fn listing_and_counts(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let other = tenant(&store).await;
    let now = Utc::now();
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(enqueue(&store, a, now).await);
    }
    enqueue(&store, other, now).await;
    // The oldest two are claimed; the oldest of them fails.
    let claimed = store
        .claim(&w("w1"), now, now + Duration::seconds(LEASE), 2, &[other])
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed).into_iter().collect::<HashSet<_>>(),
        made[..2].iter().copied().collect()
    );
    let oldest = claimed.iter().find(|d| d.id == made[0]).unwrap();
    let fail = failed(oldest, now);
    assert!(store.finish(&w("w1"), &finish(made[0], &fail)).await.unwrap());

    let newest_first: Vec<DeliveryId> = made.iter().rev().copied().collect();
    let page1 = store.deliveries(a, None, None, 2).await.unwrap();
    assert_eq!(ids(&page1), newest_first[..2]);
    let page2 = store.deliveries(a, None, Some(page1[1].id), 2).await.unwrap();
    assert_eq!(ids(&page2), newest_first[2..4]);
    let page3 = store.deliveries(a, None, Some(page2[1].id), 2).await.unwrap();
    assert_eq!(ids(&page3), newest_first[4..]);
    assert_eq!(page3[0].attempts.len(), 1, "attempts come with the page");
    assert!(
        store
            .deliveries(a, None, Some(page3[0].id), 2)
            .await
            .unwrap()
            .is_empty()
    );

    let failed = store
        .deliveries(a, Some(DeliveryStatus::Failed), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&failed), vec![made[0]]);
    let queued = store
        .deliveries(a, Some(DeliveryStatus::Queued), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&queued), newest_first[..3]);

    let counts = store.status_counts(TenantScope::One(a)).await.unwrap();
    assert_eq!(
        counts,
        vec![
            (DeliveryStatus::Queued, 3),
            (DeliveryStatus::Sending, 1),
            (DeliveryStatus::Sent, 0),
            (DeliveryStatus::Retrying, 0),
            (DeliveryStatus::Failed, 1),
        ]
    );
    let empty = store
        .status_counts(TenantScope::One(TenantId::generate()))
        .await
        .unwrap();
    assert_eq!(empty.len(), 5);
    assert!(empty.iter().all(|(_, n)| *n == 0));
    let all = store.status_counts(all()).await.unwrap();
    let queued_everywhere = all.iter().find(|(s, _)| *s == DeliveryStatus::Queued).unwrap().1;
    assert!(queued_everywhere >= 4, "{all:?}");
}

/// Two workers claiming in a loop over 500 deliveries: no delivery twice, none left out.
async fn concurrent_claimers_split_the_queue(store: Arc<SqlStore>) {
    let tenants = [tenant(&store).await, tenant(&store).await, tenant(&store).await];
    let now = Utc::now();
    let rows: Vec<Delivery> = (0..500)
        .map(|i| notification(tenants[i % 3], now - Duration::milliseconds(i as i64), None))
        .collect();
    let all: HashSet<DeliveryId> = rows.iter().map(|d| d.id).collect();
    insert_many(&store, rows).await;

    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store
                        .claim(&w(worker), now, now + Duration::seconds(LEASE), 7, &[])
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    assert!(batch.iter().all(|d| d.status == DeliveryStatus::Sending));
                    got.extend(ids(&batch));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let got = worker.await.unwrap();
        per_worker.push(got.len());
        for id in got {
            assert!(seen.insert(id), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, all);
    eprintln!("concurrent claimers took {per_worker:?} of 500");
    let leased = deliveries::Entity::find()
        .filter(deliveries::Column::Status.eq("SENDING"))
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(leased, 500);
}

/// A claimed row the domain refuses is failed on its own; the rest of the batch is
/// returned.
async fn an_invalid_row_fails_alone(store: Arc<SqlStore>) {
    let a = tenant(&store).await;
    let now = Utc::now();
    let good = enqueue(&store, a, now - Duration::seconds(3)).await;
    let bad = enqueue(&store, a, now - Duration::seconds(2)).await;
    let also_good = enqueue(&store, a, now - Duration::seconds(1)).await;
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            to_address: Set("not an address\r\nBcc: x@evil.example".into()),
            ..Default::default()
        })
        .filter(deliveries::Column::Id.eq(bad.to_string()))
        .exec(store.connection())
        .await
        .unwrap();
    match store.delivery(all(), bad).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("field to"), "{message}");
            assert!(!message.contains("evil"), "{message}");
        }
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }

    let claimed = store
        .claim(&w("w1"), now, now + Duration::seconds(LEASE), 10, &[])
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![good, also_good]);
    assert_failed_as_invalid(&store, bad).await;
    // It stays out of the queue, even after the lease would have run out.
    let later = now + Duration::days(1);
    let reclaimed = store.claim(&w("w2"), later, later, 10, &[]).await.unwrap();
    assert_eq!(ids(&reclaimed), vec![good, also_good]);
}

async fn assert_failed_as_invalid(store: &SqlStore, id: DeliveryId) {
    // Only these columns: the rest of the row may not even decode.
    let stored: (String, Option<String>, Option<String>, Option<i64>) = deliveries::Entity::find_by_id(id.to_string())
        .select_only()
        .column(deliveries::Column::Status)
        .column(deliveries::Column::FailureCode)
        .column(deliveries::Column::LeaseOwner)
        .column(deliveries::Column::LeaseUntilMs)
        .into_tuple()
        .one(store.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        ("FAILED".into(), Some("INVALID_STORED_DATA".into()), None, None)
    );
    let attempts = delivery_attempts::Entity::find()
        .filter(delivery_attempts::Column::DeliveryId.eq(id.to_string()))
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "FAILED");
}

/// Claims everything due in batches and reports the rate.
async fn drain(store: &SqlStore, label: &str, expected: usize) {
    let now = Utc::now();
    let started = Instant::now();
    let mut claimed = 0;
    loop {
        let batch = store
            .claim(&w("rate"), now, now + Duration::seconds(LEASE), 50, &[])
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        claimed += batch.len();
    }
    let elapsed = started.elapsed();
    assert_eq!(claimed, expected);
    eprintln!(
        "{label}: claimed {claimed} in batches of 50 in {elapsed:?}: {:.0} rows/s",
        claimed as f64 / elapsed.as_secs_f64()
    );
}

/// 20,000 sent deliveries and 1,000 queued ones.
fn sent_and_queued(tenant: TenantId) -> Vec<Delivery> {
    let now = Utc::now();
    let mut rows = Vec::with_capacity(21_000);
    for i in 0..21_000_i64 {
        let mut d = notification(tenant, now - Duration::days(1) + Duration::milliseconds(i), None);
        if i < 20_000 {
            d.status = DeliveryStatus::Sent;
            d.sent_at = Some(now);
        }
        rows.push(d);
    }
    rows
}

// ---------------------------------------------------------------------------------------
// SQLite only
// ---------------------------------------------------------------------------------------

/// SQLite lets a column hold any type: a row whose timestamp is not one fails alone too.
#[tokio::test]
async fn sqlite_an_unreadable_row_fails_alone() {
    on_sqlite(|store| async move {
        let a = tenant(&store).await;
        let now = Utc::now();
        let bad = enqueue(&store, a, now - Duration::seconds(2)).await;
        let good = enqueue(&store, a, now - Duration::seconds(1)).await;
        store
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE deliveries SET created_at = 'not a time' WHERE id = ?",
                [bad.to_string().into()],
            ))
            .await
            .unwrap();
        let claimed = store
            .claim(&w("w1"), now, now + Duration::seconds(LEASE), 10, &[])
            .await
            .unwrap();
        assert_eq!(ids(&claimed), vec![good]);
        assert_failed_as_invalid(&store, bad).await;
    })
    .await;
}

#[tokio::test]
async fn sqlite_claim_uses_the_partial_indexes() {
    on_sqlite(|store| async move {
        let a = tenant(&store).await;
        let schema: Vec<String> = store
            .connection()
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE name IN ('idx_deliveries_due', 'idx_deliveries_leased') \
                 ORDER BY name",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        assert!(
            schema[0].contains("WHERE") && schema[0].contains("'QUEUED'"),
            "{schema:?}"
        );
        assert!(
            schema[1].contains("WHERE") && schema[1].contains("'SENDING'"),
            "{schema:?}"
        );

        let now = Utc::now();
        let stmt = claim_statement(DbBackend::Sqlite, &w("w"), now, now, ClaimLimits::new(50, 8), &[a]);
        let plan = explain_sqlite(&store, stmt).await;
        eprintln!("SQLite claim plan:\n{plan}");
        assert!(plan.contains("idx_deliveries_due"), "{plan}");
        assert!(plan.contains("idx_deliveries_leased"), "{plan}");

        insert_many(&store, sent_and_queued(a)).await;
        drain(&store, "SQLite, 20,000 SENT + 1,000 QUEUED", 1000).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only
// ---------------------------------------------------------------------------------------

/// The schema's PostgreSQL parts, the claim's plan with the table mostly sent, and the
/// claim rate, both over sent rows stored as such and over the dead index entries that
/// 20,000 rows moving from QUEUED to SENT leave behind before vacuum runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_claim_plan_and_rate() {
    on_postgres(|store| async move {
        let db = store.connection();
        let options = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT array_to_string(reloptions, ',') FROM pg_class \
                 WHERE oid = 'deliveries'::regclass",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<String>(0)
            .unwrap();
        assert!(options.contains("fillfactor=80"), "{options}");
        assert!(options.contains("autovacuum_vacuum_scale_factor=0.02"), "{options}");

        let a = tenant(&store).await;
        let b = tenant(&store).await;
        insert_many(&store, sent_and_queued(a)).await;
        db.execute_unprepared("ANALYZE deliveries").await.unwrap();
        let now = Utc::now();
        let plan = explain_claim(
            &store,
            claim_statement(DbBackend::Postgres, &w("w"), now, now, ClaimLimits::new(50, 8), &[b]),
        )
        .await;
        eprintln!("PostgreSQL claim plan (20,000 SENT, 1,000 QUEUED):\n{plan}");
        assert!(plan.contains("idx_deliveries_due"), "{plan}");
        assert!(plan.contains("idx_deliveries_leased"), "{plan}");
        assert!(!plan.contains("Seq Scan on deliveries"), "{plan}");
        // sqlx prepares statements; after a few runs PostgreSQL may plan them once for
        // any parameters. The literal predicates keep the partial indexes usable then.
        let generic = explain_generic(
            &store,
            claim_statement(DbBackend::Postgres, &w("w"), now, now, ClaimLimits::new(50, 8), &[b]),
        )
        .await;
        eprintln!("PostgreSQL generic plan of the claim:\n{generic}");
        assert!(generic.contains("idx_deliveries_due"), "{generic}");
        assert!(generic.contains("idx_deliveries_leased"), "{generic}");
        drain(&store, "PostgreSQL, 20,000 SENT + 1,000 QUEUED", 1000).await;

        // Churned: 20,000 rows at the head of the due index go QUEUED -> SENT with no
        // vacuum in between, then 1,000 more are due after them.
        let c = tenant(&store).await;
        let churned: Vec<Delivery> = sent_and_queued(c)
            .into_iter()
            .map(|mut d| {
                d.status = DeliveryStatus::Queued;
                d.sent_at = None;
                d
            })
            .collect();
        let head: Vec<String> = churned[..20_000].iter().map(|d| d.id.to_string()).collect();
        insert_many(&store, churned).await;
        db.execute_unprepared("ANALYZE deliveries").await.unwrap();
        for chunk in head.chunks(5000) {
            deliveries::Entity::update_many()
                .set(deliveries::ActiveModel {
                    status: Set("SENT".into()),
                    ..Default::default()
                })
                .filter(deliveries::Column::Id.is_in(chunk.iter().map(String::as_str)))
                .exec(db)
                .await
                .unwrap();
        }
        let plan = explain_claim(
            &store,
            claim_statement(DbBackend::Postgres, &w("w"), now, now, ClaimLimits::new(50, 8), &[]),
        )
        .await;
        eprintln!("PostgreSQL claim plan, first claim over 20,000 dead index entries:\n{plan}");
        drain(
            &store,
            "PostgreSQL, 20,000 just-SENT (dead index entries) + 1,000 QUEUED",
            1000,
        )
        .await;
        let sending = deliveries::Entity::find()
            .filter(deliveries::Column::TenantId.eq(c.to_string()))
            .filter(deliveries::Column::Status.eq("SENDING"))
            .order_by_asc(deliveries::Column::Id)
            .count(db)
            .await
            .unwrap();
        assert_eq!(sending, 1000);
    })
    .await;
}

/// A burst of due rows into a table that has no statistics yet (a new installation, or a
/// database just restored or upgraded: PostgreSQL 15 carries no statistics over, and
/// autovacuum analyzes a table at most once a minute): planned by the defaults, a claim
/// collects every due row and sorts them for the first few; planned as the store plans a
/// claim ([`crate::leased_queue::ordered_reads`]), it reads the due index in order up to
/// its window. The claim then takes the earliest rows.
#[tokio::test]
async fn postgres_a_burst_into_a_table_without_statistics_is_claimed_in_index_order() {
    on_postgres(|store| async move {
        let db = store.connection();
        // Nothing analyzes the table during the test.
        db.execute_unprepared("ALTER TABLE deliveries SET (autovacuum_enabled = false)")
            .await
            .unwrap();
        let a = tenant(&store).await;
        let now = Utc::now();
        let burst: Vec<Delivery> = (0..10_000)
            .map(|i| notification(a, now - Duration::seconds(60) + Duration::milliseconds(i), None))
            .collect();
        let earliest: Vec<DeliveryId> = burst[..32].iter().map(|d| d.id).collect();
        insert_many(&store, burst).await;

        let stmt = || claim_statement(DbBackend::Postgres, &w("w"), now, now, ClaimLimits::new(32, 32), &[]);
        let plan = |ordered: bool| {
            let stmt = stmt();
            let db = store.connection();
            async move {
                let txn = db.begin().await.unwrap();
                if ordered {
                    crate::leased_queue::ordered_reads(&txn).await.unwrap();
                }
                let plan = txn
                    .query_all_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        format!("EXPLAIN {}", stmt.sql),
                        stmt.values.map(|v| v.0).unwrap_or_default(),
                    ))
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get_by_index::<String>(0).unwrap())
                    .collect::<Vec<_>>()
                    .join("\n");
                txn.rollback().await.unwrap();
                plan
            }
        };
        let by_statistics = plan(false).await;
        eprintln!("by the default estimates:\n{by_statistics}");
        assert!(
            by_statistics.contains("Bitmap Heap Scan on deliveries deliveries_1")
                || by_statistics.contains("Seq Scan on deliveries deliveries_1"),
            "the case no longer shows what it is for: {by_statistics}"
        );
        let ordered = plan(true).await;
        eprintln!("ordered:\n{ordered}");
        assert!(
            ordered.contains("Index Scan using idx_deliveries_due on deliveries deliveries_1"),
            "{ordered}"
        );
        assert!(
            !ordered.contains("Bitmap") && !ordered.contains("Seq Scan"),
            "{ordered}"
        );

        let claimed = store
            .claim_fairly(&w("w"), now, now + Duration::seconds(LEASE), 32, 32, &[])
            .await
            .unwrap();
        assert_eq!(ids(&claimed), earliest);
    })
    .await;
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of a claim, run in a transaction that is rolled back.
async fn explain_claim(store: &SqlStore, stmt: Statement) -> String {
    let txn = store.connection().begin().await.unwrap();
    let plan = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    txn.rollback().await.unwrap();
    plan
}

/// The plan PostgreSQL uses for a prepared statement whatever its parameters.
async fn explain_generic(store: &SqlStore, stmt: Statement) -> String {
    let literal = |value: &sea_orm::Value| match value {
        sea_orm::Value::BigInt(Some(n)) => n.to_string(),
        sea_orm::Value::BigUnsigned(Some(n)) => n.to_string(),
        sea_orm::Value::String(Some(s)) => format!("'{}'", s.replace('\'', "''")),
        sea_orm::Value::ChronoDateTimeUtc(Some(t)) => format!("'{}'", t.to_rfc3339()),
        other => panic!("no literal for {other:?}"),
    };
    let args: Vec<String> = stmt.values.iter().flat_map(|v| v.0.iter()).map(literal).collect();
    let txn = store.connection().begin().await.unwrap();
    txn.execute_unprepared(&format!("PREPARE claim_generic AS {}", stmt.sql))
        .await
        .unwrap();
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let plan = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("EXPLAIN (COSTS OFF) EXECUTE claim_generic({})", args.join(", ")),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    txn.execute_unprepared("DEALLOCATE claim_generic").await.unwrap();
    txn.rollback().await.unwrap();
    plan
}
