//! The durable delivery queue, split by who calls it: the outbox that enqueues (the API),
//! the queue that claims and finishes (the worker), and the tenant-scoped queries (the
//! API's reads and the retry of a failed delivery).

use chrono::{DateTime, Utc};

use crate::access::TenantScope;
use crate::delivery::{Delivery, DeliveryStatus, DeliveryUpdate, Postponement};
use crate::error::StoreError;
use crate::finish::Finish;
use crate::ids::{DeliveryId, LeaseOwner};
use crate::tenant::TenantId;

/// The result of an enqueue: a new delivery, or the one already stored under the same
/// tenant and idempotency key.
#[derive(Debug, Clone)]
pub enum EnqueueOutcome {
    Created(Delivery),
    Existing(Delivery),
}

/// Counts of deliveries by status.
pub type StatusCounts = Vec<(DeliveryStatus, u64)>;

/// Where new deliveries go in.
#[async_trait::async_trait]
pub trait DeliveryOutbox: Send + Sync + 'static {
    /// Stores a new delivery (committed before this returns), or returns the existing one
    /// with the same tenant and idempotency key.
    async fn enqueue(&self, delivery: &Delivery) -> Result<EnqueueOutcome, StoreError>;

    /// [`DeliveryOutbox::enqueue`] for several deliveries at once (a store may commit them
    /// together); one result per delivery, in order, each committed before this returns.
    async fn enqueue_many(&self, deliveries: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            out.push(self.enqueue(d).await);
        }
        out
    }
}

/// What a worker needs: claim due deliveries under a lease, keep the lease, and apply the
/// updates the domain decided.
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Claims up to `limit` due deliveries for `owner` until `lease_until`, at most
    /// `per_tenant` of any one tenant (so one tenant's queue cannot fill a claim while
    /// others wait): `QUEUED` or `RETRYING` ones whose time has come, and `SENDING` ones
    /// whose lease expired, earliest first. The per-tenant limit is applied among a bounded
    /// window of the earliest candidates (so a claim's cost does not grow with the queue);
    /// a tenant with more than that due first is left to the caller to `exclude` once it
    /// holds enough. Skips the tenants in `exclude`. Each returned
    /// delivery is `SENDING`; attempts not loaded. No row lock is held after this returns.
    async fn claim_fairly(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<Delivery>, StoreError>;

    /// [`DeliveryQueue::claim_fairly`] without a per-tenant limit.
    async fn claim(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.claim_fairly(owner, now, lease_until, limit, limit, exclude).await
    }

    /// How many [`DeliveryQueue::finish_many`] calls are worth running at once: one where
    /// the store's writes take turns anyway (SQLite), more where they run side by side
    /// (PostgreSQL). The worker's recorder keeps that many writes under way.
    fn finishes_at_once(&self) -> usize {
        1
    }

    /// Whether each claim takes the store's one write turn, which the recorder's writes
    /// then wait behind (SQLite): a lone busy tenant is better served by fewer, larger
    /// claims. False where claims and writes of other rows run side by side (PostgreSQL).
    fn claims_take_the_write_turn(&self) -> bool {
        false
    }

    /// Moves the tenant's deliveries that wait (`QUEUED` or `RETRYING`) and would be due
    /// before `schedule.from()` onto the schedule, oldest first (see
    /// [`Postponement`]); deliveries that are sending, mail `via_platform` (which does
    /// not wait for the tenant's server) and kinds the schedule does not move
    /// ([`Postponement::moves`]) are left alone. How many moved.
    async fn postpone_waiting(
        &self,
        tenant: TenantId,
        schedule: &Postponement,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Brings the tenant's waiting deliveries due after `now` and no later than `up_to`
    /// forward to `now` (its server took mail again after a backoff: what was held back
    /// behind the probe goes now). How many moved.
    async fn resume_waiting(
        &self,
        tenant: TenantId,
        up_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Removes the content of up to `limit` deliveries that are `SENT` or `FAILED` and
    /// were last changed before `before` (see [`crate::delivery::retention`]): recipient,
    /// subject, bodies and reply texts; the recipient's hash, status, times and codes
    /// stay. How many were cleared.
    async fn remove_old_content(
        &self,
        _before: DateTime<Utc>,
        _limit: u64,
        _now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Deletes up to `limit` deliveries that are `SENT` or `FAILED`, were handed in and last
    /// changed before `before`, with their attempts (the history horizon,
    /// `MAILGATE_DELIVERY_HISTORY_DAYS`). How many were deleted.
    async fn remove_old_rows(&self, _before: DateTime<Utc>, _limit: u64) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Extends the leases `owner` holds.
    async fn renew_leases(&self, owner: &LeaseOwner, lease_until: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Applies each finish's update (and records its attempt) where the delivery is
    /// still in the update's expected status under `owner`'s lease, clearing the lease,
    /// and stores the messages of its events for the endpoints that want them, in one
    /// transaction: one flag per finish, in order (false where `owner` no longer holds
    /// the lease; its events are not stored). All or nothing.
    async fn finish_many(&self, owner: &LeaseOwner, finishes: &[Finish]) -> Result<Vec<bool>, StoreError>;

    /// [`DeliveryQueue::finish_many`] of one.
    async fn finish(&self, owner: &LeaseOwner, finish: &Finish) -> Result<bool, StoreError> {
        let done = self.finish_many(owner, std::slice::from_ref(finish)).await?;
        Ok(done.first().copied().unwrap_or(false))
    }
}

/// Reads and changes of deliveries on behalf of a caller: every call names the tenant (or
/// a scope that only an operator or a service is handed), so isolation is in the
/// signature rather than in a filter applied after loading.
#[async_trait::async_trait]
pub trait DeliveryQueries: Send + Sync + 'static {
    /// One delivery with its attempts, if it exists within `scope`.
    async fn delivery(&self, scope: TenantScope, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// A tenant's deliveries, newest first, optionally of one status, before the id `after`.
    async fn deliveries(
        &self,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Deliveries by status within `scope`.
    async fn status_counts(&self, scope: TenantScope) -> Result<StatusCounts, StoreError>;

    /// When the longest-waiting delivery that is due at `now` (`QUEUED` or `RETRYING`)
    /// came due, over every tenant (for `/metrics`: how far behind the queue is).
    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Applies a requeue update (see [`DeliveryUpdate::requeued`]) to the tenant's
    /// delivery if it is still in the update's expected status and still holds its
    /// content (retention may have removed it since it was read: a row without content
    /// never changes status again); false otherwise.
    async fn requeue(&self, tenant: TenantId, id: DeliveryId, update: &DeliveryUpdate) -> Result<bool, StoreError>;
}
