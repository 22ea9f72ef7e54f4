//! The delivery queue in memory: one store behind the three delivery ports. Enqueues
//! keep a tenant's idempotency keys; claims take due rows in order, a few per tenant,
//! under a lease; an update applies only where the row is in the update's expected
//! state (and, for a worker, under its lease) — what the SQL store promises; the events
//! of a finish that applied are kept (see [`MemoryDeliveries::events`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::access::TenantScope;
use crate::delivery::{Delivery, DeliveryStatus, DeliveryUpdate, Postponement};
use crate::error::StoreError;
use crate::finish::Finish;
use crate::ids::{DeliveryId, LeaseOwner};
use crate::ports::{DeliveryOutbox, DeliveryQueries, DeliveryQueue, EnqueueOutcome, StatusCounts};
use crate::tenant::TenantId;
use crate::webhook::event::WebhookEvent;

/// A stored delivery and who holds its lease.
#[derive(Debug, Clone)]
pub struct Row {
    pub delivery: Delivery,
    pub lease: Option<LeaseOwner>,
    pub lease_until: Option<DateTime<Utc>>,
}

/// The three delivery ports in memory.
#[derive(Debug)]
pub struct MemoryDeliveries {
    rows: Mutex<Vec<Row>>,
    /// How many updates each `finish_many` carried (one entry per transaction).
    writes: Mutex<Vec<usize>>,
    /// The events of the finishes that applied, in order (what the store would write to
    /// the webhook outbox for every endpoint that wants them).
    events: Mutex<Vec<WebhookEvent>>,
    /// While false, every `finish_many` waits (a database that takes no writes).
    writes_open: tokio::sync::watch::Sender<bool>,
    /// While false, every `postpone_waiting` waits; how many have moved rows since.
    moves_open: tokio::sync::watch::Sender<bool>,
    moves: Mutex<usize>,
    /// What `finishes_at_once` says (1 unless set), and the `finish_many` calls under way
    /// now and at most so far.
    finishes_at_once: usize,
    finishing: Mutex<(usize, usize)>,
    /// What `claims_take_the_write_turn` says (false unless set).
    claims_take_the_write_turn: bool,
    /// Each claim's rows, in order.
    claimed: Mutex<Vec<usize>>,
}

impl Default for MemoryDeliveries {
    fn default() -> Self {
        Self {
            rows: Mutex::default(),
            writes: Mutex::default(),
            events: Mutex::default(),
            writes_open: tokio::sync::watch::Sender::new(true),
            moves_open: tokio::sync::watch::Sender::new(true),
            moves: Mutex::default(),
            finishes_at_once: 1,
            finishing: Mutex::default(),
            claims_take_the_write_turn: false,
            claimed: Mutex::default(),
        }
    }
}

fn waiting(status: DeliveryStatus) -> bool {
    matches!(status, DeliveryStatus::Queued | DeliveryStatus::Retrying)
}

impl MemoryDeliveries {
    /// Stores `delivery` as it is (a fixture, not an enqueue).
    pub fn add(&self, delivery: Delivery) {
        lock(&self.rows).push(Row {
            delivery,
            lease: None,
            lease_until: None,
        });
    }

    /// Every row, in the order stored.
    pub fn rows(&self) -> Vec<Row> {
        lock(&self.rows).clone()
    }

    /// Holds every `finish_many` from now until [`MemoryDeliveries::open_writes`].
    pub fn hold_writes(&self) {
        self.writes_open.send_replace(false);
    }

    /// Lets the held `finish_many` calls (and the later ones) through.
    pub fn open_writes(&self) {
        self.writes_open.send_replace(true);
    }

    /// Holds every `postpone_waiting` from now until [`MemoryDeliveries::open_moves`] (a
    /// move of a tenant's waiting mail that reaches the database late).
    pub fn hold_moves(&self) {
        self.moves_open.send_replace(false);
    }

    /// Lets the held `postpone_waiting` calls (and the later ones) through.
    pub fn open_moves(&self) {
        self.moves_open.send_replace(true);
    }

    /// How many rows each claim that found some got, in order.
    pub fn claim_sizes(&self) -> Vec<usize> {
        lock(&self.claimed).clone()
    }

    /// A queue whose claims take the one write turn (like SQLite's), with nothing stored
    /// yet.
    pub fn claiming_in_the_write_turn() -> Self {
        Self {
            claims_take_the_write_turn: true,
            ..Self::default()
        }
    }

    /// A queue that says `n` finishing writes are worth running at once (like
    /// PostgreSQL's), with nothing stored yet.
    pub fn finishing_at_once(n: usize) -> Self {
        Self {
            finishes_at_once: n,
            ..Self::default()
        }
    }

    /// The most `finish_many` calls that were under way at once (waiting at the held
    /// writes included).
    pub fn most_finishing_at_once(&self) -> usize {
        lock(&self.finishing).1
    }

    /// How many `finish_many` calls are under way now.
    pub fn finishing_now(&self) -> usize {
        lock(&self.finishing).0
    }

    /// How many `postpone_waiting` calls have been carried out.
    pub fn moves_done(&self) -> usize {
        *lock(&self.moves)
    }

    /// Deliveries in `status`, of every tenant.
    pub fn count_all(&self, status: DeliveryStatus) -> usize {
        lock(&self.rows).iter().filter(|r| r.delivery.status == status).count()
    }

    /// The tenant's deliveries in `status`.
    pub fn count(&self, tenant: TenantId, status: DeliveryStatus) -> usize {
        lock(&self.rows)
            .iter()
            .filter(|r| r.delivery.tenant_id == tenant && r.delivery.status == status)
            .count()
    }

    /// How many updates each worker write carried, in order.
    pub fn writes(&self) -> Vec<usize> {
        lock(&self.writes).clone()
    }

    /// The events stored with the finishes that applied, in order.
    pub fn events(&self) -> Vec<WebhookEvent> {
        lock(&self.events).clone()
    }

    /// Changes a stored delivery in place (a fixture: what time or retention did).
    pub fn change(&self, id: DeliveryId, change: impl FnOnce(&mut Delivery)) {
        if let Some(row) = lock(&self.rows).iter_mut().find(|r| r.delivery.id == id) {
            change(&mut row.delivery);
        }
    }
}

#[async_trait::async_trait]
impl DeliveryOutbox for MemoryDeliveries {
    async fn enqueue(&self, delivery: &Delivery) -> Result<EnqueueOutcome, StoreError> {
        let mut rows = lock(&self.rows);
        if let Some(key) = &delivery.idempotency_key
            && let Some(existing) = rows.iter().find(|r| {
                r.delivery.tenant_id == delivery.tenant_id && r.delivery.idempotency_key.as_ref() == Some(key)
            })
        {
            return Ok(EnqueueOutcome::Existing(existing.delivery.clone()));
        }
        rows.push(Row {
            delivery: delivery.clone(),
            lease: None,
            lease_until: None,
        });
        Ok(EnqueueOutcome::Created(delivery.clone()))
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for MemoryDeliveries {
    async fn claim_fairly(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut rows = lock(&self.rows);
        let mut due: Vec<&mut Row> = rows
            .iter_mut()
            .filter(|r| {
                let due = waiting(r.delivery.status) && r.delivery.next_attempt_at <= now;
                let lease_ran_out =
                    r.delivery.status == DeliveryStatus::Sending && r.lease_until.is_some_and(|until| until < now);
                (due || lease_ran_out) && !exclude.contains(&r.delivery.tenant_id)
            })
            .collect();
        due.sort_by_key(|r| (r.delivery.next_attempt_at, r.delivery.id));
        let mut per: HashMap<TenantId, u32> = HashMap::new();
        let claimed: Vec<Delivery> = due
            .into_iter()
            .filter(|r| {
                let n = per.entry(r.delivery.tenant_id).or_insert(0);
                *n += 1;
                *n <= per_tenant
            })
            .take(limit as usize)
            .map(|r| {
                r.delivery.status = DeliveryStatus::Sending;
                r.delivery.claims += 1;
                r.lease = Some(owner.clone());
                r.lease_until = Some(lease_until);
                r.delivery.clone()
            })
            .collect();
        if !claimed.is_empty() {
            lock(&self.claimed).push(claimed.len());
        }
        Ok(claimed)
    }

    async fn postpone_waiting(
        &self,
        tenant: TenantId,
        schedule: &Postponement,
        _now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _ = self.moves_open.subscribe().wait_for(|open| *open).await;
        *lock(&self.moves) += 1;
        let mut rows = lock(&self.rows);
        let mut moving: Vec<&mut Row> = rows
            .iter_mut()
            .filter(|r| {
                r.delivery.tenant_id == tenant
                    && waiting(r.delivery.status)
                    && !r.delivery.via_platform
                    && schedule.moves(r.delivery.kind)
                    && r.delivery.next_attempt_at < schedule.from()
            })
            .collect();
        moving.sort_by_key(|r| (r.delivery.next_attempt_at, r.delivery.id));
        let moved = moving.len() as u64;
        for (n, r) in moving.into_iter().enumerate() {
            r.delivery.next_attempt_at = schedule.at(u32::try_from(n).unwrap_or(u32::MAX));
        }
        Ok(moved)
    }

    async fn resume_waiting(
        &self,
        tenant: TenantId,
        up_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut moved = 0;
        for r in lock(&self.rows).iter_mut() {
            if r.delivery.tenant_id == tenant
                && waiting(r.delivery.status)
                && r.delivery.next_attempt_at > now
                && r.delivery.next_attempt_at <= up_to
            {
                r.delivery.next_attempt_at = now;
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn renew_leases(&self, owner: &LeaseOwner, until: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut renewed = 0;
        for r in lock(&self.rows).iter_mut().filter(|r| r.lease.as_ref() == Some(owner)) {
            r.lease_until = Some(until);
            renewed += 1;
        }
        Ok(renewed)
    }

    fn claims_take_the_write_turn(&self) -> bool {
        self.claims_take_the_write_turn
    }

    fn finishes_at_once(&self) -> usize {
        self.finishes_at_once
    }

    async fn finish_many(&self, owner: &LeaseOwner, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        {
            let mut f = lock(&self.finishing);
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let _ = self.writes_open.subscribe().wait_for(|open| *open).await;
        lock(&self.finishing).0 -= 1;
        lock(&self.writes).push(finishes.len());
        let mut rows = lock(&self.rows);
        let mut events = lock(&self.events);
        Ok(finishes
            .iter()
            .map(|finish| {
                let update = finish.update();
                let Some(row) = rows.iter_mut().find(|r| r.delivery.id == finish.id()) else {
                    return false;
                };
                if row.delivery.status != update.expected() || row.lease.as_ref() != Some(owner) {
                    return false;
                }
                row.delivery = update.applied_to(row.delivery.clone());
                // Every finish ends the run of claims without an outcome.
                row.delivery.claims = 0;
                row.lease = None;
                row.lease_until = None;
                events.extend_from_slice(finish.events());
                true
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl DeliveryQueries for MemoryDeliveries {
    async fn delivery(&self, scope: TenantScope, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Ok(lock(&self.rows)
            .iter()
            .find(|r| r.delivery.id == id && in_scope(scope, r.delivery.tenant_id))
            .map(|r| r.delivery.clone()))
    }

    async fn deliveries(
        &self,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut found: Vec<Delivery> = lock(&self.rows)
            .iter()
            .map(|r| &r.delivery)
            .filter(|d| d.tenant_id == tenant && status.is_none_or(|s| d.status == s))
            .filter(|d| after.is_none_or(|a| d.id < a))
            .cloned()
            .collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.id));
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn status_counts(&self, scope: TenantScope) -> Result<StatusCounts, StoreError> {
        // Every status, in the order of its declaration, zeros included (as the store).
        let rows = lock(&self.rows);
        Ok(DeliveryStatus::ALL
            .into_iter()
            .map(|status| {
                let n = rows
                    .iter()
                    .filter(|r| in_scope(scope, r.delivery.tenant_id) && r.delivery.status == status)
                    .count();
                (status, n as u64)
            })
            .collect())
    }

    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(lock(&self.rows)
            .iter()
            .filter(|r| waiting(r.delivery.status) && r.delivery.next_attempt_at <= now)
            .map(|r| r.delivery.next_attempt_at)
            .min())
    }

    async fn requeue(&self, tenant: TenantId, id: DeliveryId, update: &DeliveryUpdate) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = rows
            .iter_mut()
            .find(|r| r.delivery.id == id && r.delivery.tenant_id == tenant)
        else {
            return Ok(false);
        };
        if row.delivery.status != update.expected() || row.delivery.content_removed_at.is_some() {
            return Ok(false);
        }
        row.delivery = update.applied_to(row.delivery.clone());
        Ok(true)
    }
}

fn in_scope(scope: TenantScope, tenant: TenantId) -> bool {
    match scope {
        TenantScope::One(one) => one == tenant,
        TenantScope::All(_) => true,
    }
}
