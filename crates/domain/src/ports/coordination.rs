//! What several processes coordinate through the database.

use crate::error::StoreError;
use crate::tenant::TenantId;

/// Send turns (a tenant's interval across processes) and the test-mail limit.
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

    /// How long until the tenant's next send turn, without taking it: zero when it is
    /// free now; at least `interval` while another send holds it.
    async fn send_turn_in(
        &self,
        tenant: TenantId,
        interval: std::time::Duration,
    ) -> Result<std::time::Duration, StoreError>;

    /// Gives the turn back right after the send started (its MAIL FROM was answered):
    /// the next send may start `interval` from now, by the database's clock.
    async fn finish_send_turn(
        &self,
        tenant: TenantId,
        holder: &str,
        interval: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// Records a test mail if the tenant had fewer than `limit.per_tenant` and the caller
    /// (`sub`) fewer than `limit.per_caller` in the last `limit.window` (across all
    /// processes); false, and nothing recorded, otherwise.
    async fn try_record_test_mail(
        &self,
        tenant: TenantId,
        caller: &str,
        limit: TestMailLimit,
    ) -> Result<bool, StoreError>;
}

/// How many test mails may be sent in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestMailLimit {
    pub per_tenant: u32,
    /// By one caller (token `sub`) across all tenants.
    pub per_caller: u32,
    pub window: std::time::Duration,
}

/// Enqueue quotas kept in the database (see [`crate::quota`]).
#[async_trait::async_trait]
pub trait EnqueueQuota: Send + Sync + 'static {
    /// Takes one enqueue from the tenant's minute and day windows at `now` under
    /// `limits`: `Ok(None)` when it may go, `Ok(Some(seconds))` when a window is used up
    /// (try again after that many seconds); nothing is taken then.
    async fn try_take(
        &self,
        tenant: TenantId,
        limits: crate::quota::EnqueueLimits,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<u64>, StoreError>;

    /// The operator's override for the tenant (the platform default where `None`).
    async fn quota_override(&self, tenant: TenantId) -> Result<crate::quota::QuotaOverride, StoreError>;

    /// Sets (or, with both `None`, removes) the tenant's override.
    async fn set_quota_override(
        &self,
        tenant: TenantId,
        value: crate::quota::QuotaOverride,
        change: &crate::change::ChangeRecord,
    ) -> Result<(), StoreError>;
}
