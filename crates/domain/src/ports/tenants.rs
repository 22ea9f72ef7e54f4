//! Storage of tenants, their mail settings and the audit trail.

use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, TrailOrder};
use crate::change::ChangeRecord;
use crate::error::{StoreError, WriteError};
use crate::health::{ActivationCode, SettingsFailure, SettingsState};
use crate::plan::{Plan, SenderOverridePermit};
use crate::settings::{MailSettings, StoredMailSettings};
use crate::suspension::Suspension;
pub use crate::tenant::TenantRecord;
use crate::tenant::{Tenant, TenantFilter, TenantId};
use crate::values::EmailAddress;

/// Every write is stored together with its [`ChangeRecord`] (its audit entry, the webhook
/// events it causes, its announcement to other processes) or not at all, and writes
/// nothing else. Dropping what this process keeps of the tenant is the caller's (see
/// [`crate::ports::TenantViews`]).
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn insert_tenant(&self, tenant: &Tenant, change: &ChangeRecord) -> Result<(), StoreError>;

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// Tenants that `filter` lets through, in id (creation) order after `after`, at most
    /// `limit`.
    async fn tenants(
        &self,
        filter: &TenantFilter,
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
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError>;

    /// Sets (or, with `None`, removes) the tenant's contact address, with its change;
    /// `NotFound` if the tenant does not exist.
    async fn set_contact_email(
        &self,
        id: TenantId,
        contact: Option<&EmailAddress>,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError>;

    /// Replaces the tenant's settings if the stored version is `expected_version` (0: none
    /// saved). Needs the plan's permit, and re-checks at write time that the tenant is still
    /// on a plan that allows a custom sender (`PlanChanged` otherwise), so a downgrade
    /// racing a save never stores active settings. The new version is higher than any
    /// before it and starts in `state`; when that is `PENDING_VERIFICATION` the live
    /// version (if any) is kept to carry the mail until the new one is proven, every other
    /// version is removed.
    #[allow(clippy::too_many_arguments, reason = "one write with its audit entry")]
    async fn save_mail_settings(
        &self,
        id: TenantId,
        permit: SenderOverridePermit,
        settings: &MailSettings,
        state: SettingsState,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<StoredMailSettings, WriteError>;

    /// Makes the saved version `version` live (failures and code reset) and removes the
    /// version it replaces, with its change; `VersionConflict` if `version` is no
    /// longer the saved one.
    async fn activate_mail_settings(
        &self,
        id: TenantId,
        version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError>;

    /// Stores the activation code a test mail of version `version` carried (replacing an
    /// earlier one), announced to other processes (the code is checked by whichever
    /// process the admin reaches); `VersionConflict` if that version is gone.
    async fn set_activation_code(&self, id: TenantId, version: i64, code: &ActivationCode) -> Result<(), WriteError>;

    /// A configuration failure of a real delivery through settings `version`: one more in
    /// a row, remembered as the last; the version's next state is what
    /// [`crate::health::state_after_failure`] decides for `suspend_after`. When that
    /// suspends it, `suspension`'s change and notice are written in the same
    /// transaction and the answer is true. A count that changed is announced to other
    /// processes. A version no longer kept changes nothing.
    async fn record_settings_failure(
        &self,
        id: TenantId,
        version: i64,
        failure: &SettingsFailure,
        suspend_after: u32,
        suspension: &Suspension,
    ) -> Result<bool, StoreError>;

    /// A mail went through settings `version`: its failures in a row start again at 0
    /// (announced to other processes when they were not 0).
    async fn record_settings_success(&self, id: TenantId, version: i64) -> Result<(), StoreError>;

    /// Remembers what workers learnt of settings versions' servers (see
    /// [`crate::health::ServerRecord`]), all in one write: for workers that start later,
    /// not announced. A time earlier than the one on record changes nothing.
    async fn record_servers(&self, notes: &[crate::health::ServerNote]) -> Result<(), StoreError>;

    /// How many saved settings versions are in each state (for `/metrics`).
    async fn settings_state_counts(&self) -> Result<Vec<(SettingsState, u64)>, StoreError>;

    /// Removes the tenant's settings if the stored version is `expected_version`.
    async fn clear_mail_settings(
        &self,
        id: TenantId,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError>;

    /// The tenant's audit trail, oldest first, after the entry `after`.
    async fn audit_trail(
        &self,
        id: TenantId,
        after: Option<uuid::Uuid>,
        limit: u64,
        order: TrailOrder,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores a change that goes with no other write (e.g. a test mail, a probe).
    async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError>;

    /// Retention of the audit trail: at most `limit` entries of
    /// [`crate::audit::ACTIONS_WITH_CONTENT`] written before `before` whose content is
    /// still there get [`AuditEntry::changes_without_content`], marked as removed at
    /// `now`. Returns how many were cleared (several processes may run it at once: an
    /// entry is cleared once).
    async fn remove_old_audit_content(
        &self,
        before: DateTime<Utc>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Whether the database answers and takes a write in time (for `/readyz`): a
    /// database that refuses or holds up writes (another process holds SQLite's write
    /// lock) is not ready.
    async fn ping(&self) -> Result<(), StoreError>;
}
