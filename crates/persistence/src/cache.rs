//! [`CachedStore`]: a read-through cache of tenants (with their settings) in front of any
//! [`TenantStore`]. Sending mail looks a tenant up for every message; the cache keeps
//! those lookups off the database. Writes pass through untouched: entries are dropped
//! only by [`CachedStore::invalidate`], which the process's one owner of what it keeps
//! of tenants (a [`domain::ports::TenantViews`]) calls after a change made here or
//! announced by another process; a time-to-live bounds how long a missed announcement
//! can leave a stale entry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::audit::{AuditEntry, TrailOrder};
use domain::change::ChangeRecord;
use domain::health::{ActivationCode, SettingsFailure, SettingsState};
use domain::ports::{TenantRecord, TenantStore};
use domain::settings::{MailSettings, StoredMailSettings};
use domain::suspension::Suspension;
use domain::tenant::TenantFilter;
use domain::values::EmailAddress;
use domain::{Plan, SenderOverridePermit, Tenant, TenantId};
use domain::{StoreError, WriteError};
use moka::future::Cache;

/// A [`TenantStore`] that caches found tenants and passes everything else through.
pub struct CachedStore<S> {
    inner: S,
    tenants: Cache<TenantId, TenantRecord>,
    /// Counts invalidations. A lookup that raced with one does not keep what it read,
    /// which may predate the write.
    invalidations: AtomicU64,
}

impl<S> fmt::Debug for CachedStore<S> {
    // Not the entries: they hold tenants' settings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("entries", &self.tenants.entry_count())
            .finish_non_exhaustive()
    }
}

impl<S: TenantStore> CachedStore<S> {
    /// Default number of tenants kept.
    pub const DEFAULT_MAX_CAPACITY: u64 = 10_000;
    /// Default lifetime of an entry: a safety net for invalidations that never arrive.
    pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(60);

    /// A cache with the default capacity and time-to-live.
    pub fn new(inner: S) -> Self {
        Self::with_limits(inner, Self::DEFAULT_MAX_CAPACITY, Self::DEFAULT_TIME_TO_LIVE)
    }

    /// A cache of at most `max_capacity` tenants, each kept at most `time_to_live`.
    pub fn with_limits(inner: S, max_capacity: u64, time_to_live: Duration) -> Self {
        Self {
            inner,
            tenants: Cache::builder()
                .max_capacity(max_capacity)
                .time_to_live(time_to_live)
                .build(),
            invalidations: AtomicU64::new(0),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Drops the tenant's entry (it changed, here or in another process). The next lookup
    /// reads the store.
    pub async fn invalidate(&self, id: TenantId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.tenants.invalidate(&id).await;
    }

    /// Drops every entry (e.g. after missing change notifications).
    pub fn invalidate_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.tenants.invalidate_all();
    }
}

#[async_trait::async_trait]
impl<S: TenantStore> TenantStore for CachedStore<S> {
    async fn insert_tenant(&self, tenant: &Tenant, change: &ChangeRecord) -> Result<(), StoreError> {
        self.inner.insert_tenant(tenant, change).await
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        if let Some(record) = self.tenants.get(&id).await {
            return Ok(Some(record));
        }
        let seen = self.invalidations.load(Ordering::SeqCst);
        let found = self.inner.tenant(id).await?;
        if let Some(record) = &found {
            self.tenants.insert(id, record.clone()).await;
            // An invalidation between the read and the insert may be for a write this
            // read missed; drop the entry rather than serve it until it expires.
            if self.invalidations.load(Ordering::SeqCst) != seen {
                self.tenants.invalidate(&id).await;
            }
        }
        Ok(found)
    }

    async fn tenants(
        &self,
        filter: &TenantFilter,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        self.inner.tenants(filter, after, limit).await
    }

    async fn change_plan(
        &self,
        id: TenantId,
        from: Plan,
        to: Plan,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        self.inner.change_plan(id, from, to, at, change).await
    }

    async fn set_contact_email(
        &self,
        id: TenantId,
        contact: Option<&EmailAddress>,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        self.inner.set_contact_email(id, contact, at, change).await
    }

    async fn save_mail_settings(
        &self,
        id: TenantId,
        permit: SenderOverridePermit,
        settings: &MailSettings,
        state: SettingsState,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<StoredMailSettings, WriteError> {
        self.inner
            .save_mail_settings(id, permit, settings, state, expected_version, at, change)
            .await
    }

    async fn activate_mail_settings(
        &self,
        id: TenantId,
        version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        self.inner.activate_mail_settings(id, version, at, change).await
    }

    async fn set_activation_code(&self, id: TenantId, version: i64, code: &ActivationCode) -> Result<(), WriteError> {
        self.inner.set_activation_code(id, version, code).await
    }

    async fn record_settings_failure(
        &self,
        id: TenantId,
        version: i64,
        failure: &SettingsFailure,
        suspend_after: u32,
        suspension: &Suspension,
    ) -> Result<bool, StoreError> {
        self.inner
            .record_settings_failure(id, version, failure, suspend_after, suspension)
            .await
    }

    async fn record_settings_success(&self, id: TenantId, version: i64) -> Result<(), StoreError> {
        self.inner.record_settings_success(id, version).await
    }

    async fn record_servers(&self, notes: &[domain::health::ServerNote]) -> Result<(), StoreError> {
        self.inner.record_servers(notes).await
    }

    async fn settings_state_counts(&self) -> Result<Vec<(SettingsState, u64)>, StoreError> {
        self.inner.settings_state_counts().await
    }

    async fn clear_mail_settings(
        &self,
        id: TenantId,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        self.inner.clear_mail_settings(id, expected_version, at, change).await
    }

    async fn audit_trail(
        &self,
        id: TenantId,
        after: Option<uuid::Uuid>,
        limit: u64,
        order: TrailOrder,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_trail(id, after, limit, order).await
    }

    async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        self.inner.record_change(change).await
    }

    async fn remove_old_audit_content(
        &self,
        before: DateTime<Utc>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.remove_old_audit_content(before, limit, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
