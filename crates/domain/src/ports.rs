//! Ports: what the domain needs from storage. `persistence` implements them.

use chrono::{DateTime, Utc};

use crate::audit::AuditEntry;
use crate::plan::{Plan, SenderOverridePermit};
use crate::settings::{MailSettings, StoredMailSettings};
use crate::tenant::{Tenant, TenantId};

/// A storage failure. Its text is for logs only; clients get `INTERNAL` and an id.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("a stored secret could not be decrypted: {0}")]
    Crypto(String),
}

/// A tenant with its saved settings, if any.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub settings: Option<StoredMailSettings>,
}

/// Why a conditional write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("tenant not found")]
    NotFound,
    /// Someone else saved or cleared first; `current` is the version now stored (0: none).
    #[error("version conflict (current {current})")]
    VersionConflict { current: i64 },
    /// The plan was changed by someone else first.
    #[error("plan changed concurrently")]
    PlanChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Storage of tenants, their mail settings and the audit trail. Every write and its
/// audit entry are stored together or not at all.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn insert_tenant(&self, tenant: &Tenant, audit: &AuditEntry) -> Result<(), StoreError>;

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// Tenants in id (creation) order after `after`, at most `limit`.
    async fn tenants(
        &self,
        plan: Option<Plan>,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError>;

    /// Moves a tenant from plan `from` to `to`; `PlanChanged` if it is no longer on `from`.
    async fn change_plan(
        &self,
        id: TenantId,
        from: Plan,
        to: Plan,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Tenant, WriteError>;

    /// Replaces the tenant's settings if the stored version is `expected_version` (0: none
    /// saved). Needs the plan's permit, and re-checks at write time that the tenant is still
    /// on a plan that allows a custom sender (`PlanChanged` otherwise), so a downgrade
    /// racing a save never stores active settings. The new version is higher than any
    /// before it.
    async fn save_mail_settings(
        &self,
        id: TenantId,
        permit: SenderOverridePermit,
        settings: &MailSettings,
        expected_version: i64,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<StoredMailSettings, WriteError>;

    /// Removes the tenant's settings if the stored version is `expected_version`.
    async fn clear_mail_settings(
        &self,
        id: TenantId,
        expected_version: i64,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(), WriteError>;

    /// The tenant's audit trail, oldest first, after the entry `after`.
    async fn audit_trail(
        &self,
        id: TenantId,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Appends an audit entry that goes with no other write (e.g. a test mail).
    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Sending mail. `mailer` implements it; the rest of the system has this one entry point.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync + 'static {
    /// Sends through the tenant's own server when its plan permits and settings are saved,
    /// and through the platform default otherwise. Paced by the tenant's send interval.
    async fn send(
        &self,
        tenant: &TenantRecord,
        mail: &crate::mail::OutgoingMail,
    ) -> Result<crate::mail::SendReceipt, crate::mail::SendFailure>;

    /// A test mail through `settings` (possibly an unsaved draft): a fresh connection,
    /// not paced, finished or abandoned within `deadline`.
    async fn send_test(
        &self,
        permit: SenderOverridePermit,
        tenant: TenantId,
        settings: &MailSettings,
        mail: &crate::mail::OutgoingMail,
        deadline: std::time::Duration,
    ) -> Result<crate::mail::SendReceipt, crate::mail::SendFailure>;

    /// Drops what is cached for the tenant (connections of old settings), so the next
    /// mail uses what is saved now.
    async fn forget(&self, tenant: TenantId);
}

/// The result of an enqueue: a new delivery, or the one already stored under the same
/// tenant and idempotency key.
#[derive(Debug, Clone)]
pub enum EnqueueOutcome {
    Created(crate::delivery::Delivery),
    Existing(crate::delivery::Delivery),
}

/// What a finished attempt changes.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub status: crate::delivery::DeliveryStatus,
    pub retries: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub attempt: crate::delivery::Attempt,
}

/// Counts of a tenant's (or all) deliveries by status.
pub type StatusCounts = Vec<(crate::delivery::DeliveryStatus, u64)>;

/// The durable delivery queue (the outbox).
#[async_trait::async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Stores a new delivery (committed before this returns), or returns the existing one
    /// with the same tenant and idempotency key.
    async fn enqueue(&self, delivery: &crate::delivery::Delivery) -> Result<EnqueueOutcome, StoreError>;

    /// [`DeliveryStore::enqueue`] for several deliveries at once (a store may commit them
    /// together); one result per delivery, in order, each committed before this returns.
    async fn enqueue_many(&self, deliveries: &[crate::delivery::Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        let mut out = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            out.push(self.enqueue(d).await);
        }
        out
    }

    /// Claims up to `limit` due deliveries for `worker` until `lease_until`: `QUEUED` or
    /// `RETRYING` ones whose time has come, and `SENDING` ones whose lease expired. Skips
    /// the tenants in `exclude`. Each returned delivery is `SENDING`; attempts not loaded.
    /// No row lock is held after this returns.
    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<crate::delivery::Delivery>, StoreError>;

    /// Extends the leases `worker` holds.
    async fn renew_leases(&self, worker: &str, lease_until: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Records an attempt and the new state, if `worker` still holds the lease (false otherwise).
    async fn finish(&self, id: uuid::Uuid, worker: &str, update: &DeliveryUpdate) -> Result<bool, StoreError> {
        let done = self.finish_many(worker, &[(id, update.clone())]).await?;
        Ok(done.first().copied().unwrap_or(false))
    }

    /// [`DeliveryStore::finish`] for several deliveries in one transaction: one flag per
    /// delivery, in order (false where `worker` no longer holds the lease). All or nothing.
    async fn finish_many(
        &self,
        worker: &str,
        updates: &[(uuid::Uuid, DeliveryUpdate)],
    ) -> Result<Vec<bool>, StoreError>;

    /// Gives a claimed delivery back unattempted (shutdown): due again at once.
    async fn release(&self, id: uuid::Uuid, worker: &str) -> Result<bool, StoreError>;

    /// One delivery with its attempts.
    async fn delivery(&self, id: uuid::Uuid) -> Result<Option<crate::delivery::Delivery>, StoreError>;

    /// A tenant's deliveries, newest first, optionally of one status, before the id `after`.
    async fn deliveries(
        &self,
        tenant: TenantId,
        status: Option<crate::delivery::DeliveryStatus>,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<crate::delivery::Delivery>, StoreError>;

    /// Deliveries by status, of one tenant or of all.
    async fn status_counts(&self, tenant: Option<TenantId>) -> Result<StatusCounts, StoreError>;

    /// Puts a `FAILED` delivery back in the queue (retries reset, due now). False if it
    /// is not `FAILED`.
    async fn requeue_failed(&self, id: uuid::Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// What several processes coordinate through the database.
#[async_trait::async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Takes the tenant's send turn for `holder` if the previous send started at least
    /// the interval ago and nobody holds the turn: `None` when taken, otherwise how long
    /// to wait before asking again.
    async fn try_take_send_turn(
        &self,
        tenant: TenantId,
        holder: &str,
    ) -> Result<Option<std::time::Duration>, StoreError>;

    /// Gives the turn back right after the send started (its MAIL FROM was answered):
    /// the next send may start `interval` from now, by the database's clock.
    async fn finish_send_turn(
        &self,
        tenant: TenantId,
        holder: &str,
        interval: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Records a test mail if the tenant had fewer than `limit` in the last `window`
    /// (across all processes); false, and nothing recorded, otherwise.
    async fn try_record_test_mail(
        &self,
        tenant: TenantId,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<bool, StoreError>;
}
