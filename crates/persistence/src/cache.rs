//! [`CachedStore`]: a read-through cache of tenants (with their settings) in front of any
//! [`TenantStore`]. Sending mail looks a tenant up for every message; the cache keeps
//! those lookups off the database. Writes pass through untouched: entries are dropped
//! only by [`CachedStore::invalidate`], which the process's one owner of what it keeps
//! of tenants (a [`domain::ports::TenantViews`]) calls after a change made here or
//! announced by another process; a time-to-live bounds how long a missed announcement
//! can leave a stale entry.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// A [`TenantStore`] that caches found tenants and passes everything else through.
pub struct CachedStore<S> {
    inner: S,
    tenants: Entries,
    /// Counts invalidations. A lookup that raced with one does not keep what it read,
    /// which may predate the write.
    invalidations: AtomicU64,
}

impl<S> fmt::Debug for CachedStore<S> {
    // Not the entries: they hold tenants' settings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("entries", &self.tenants.len())
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
            tenants: Entries::new(max_capacity, time_to_live),
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
        self.tenants.remove(id);
    }

    /// Drops every entry (e.g. after missing change notifications).
    pub fn invalidate_all(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.tenants.clear();
    }
}

/// The cached tenants: a bounded map with a time-to-live, split in shards so that
/// lookups of different tenants seldom meet on one lock. A lookup is a read lock, a
/// hash and a clone of the record (sending looks a tenant up for every message, and
/// `tenant.effectiveSender` for every request: a general-purpose cache's bookkeeping
/// per read was most of what the lookup cost). Once a shard is full, a new entry takes
/// the place of an expired one among the first few or, failing that, of the first: an
/// insert looks at a handful of entries, never at the whole shard, and the bound holds.
struct Entries {
    shards: Box<[RwLock<Shard>]>,
    /// Picks a tenant's shard; keyed per process, like the maps' own hashers.
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    time_to_live: Duration,
}

type Shard = HashMap<TenantId, Entry>;

struct Entry {
    record: TenantRecord,
    expires: Instant,
}

impl Entries {
    /// Shards at most (fewer for a small capacity, so each holds a few entries at least).
    const SHARDS: usize = 16;

    fn new(max_capacity: u64, time_to_live: Duration) -> Self {
        let capacity = usize::try_from(max_capacity).unwrap_or(usize::MAX);
        let shards = capacity.div_ceil(64).clamp(1, Self::SHARDS);
        Self {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            // Rounded down: the shards together never hold more than the capacity.
            per_shard: capacity / shards,
            time_to_live,
        }
    }

    fn shard(&self, id: TenantId) -> &RwLock<Shard> {
        let at = self.hasher.hash_one(id) as usize % self.shards.len();
        &self.shards[at]
    }

    /// A shard to read (a panic elsewhere leaves the map whole: nothing is half-written).
    fn read(shard: &RwLock<Shard>) -> std::sync::RwLockReadGuard<'_, Shard> {
        shard.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(shard: &RwLock<Shard>) -> std::sync::RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tenant's record, unless absent or expired.
    fn get(&self, id: TenantId) -> Option<TenantRecord> {
        Self::read(self.shard(id))
            .get(&id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.record.clone())
    }

    fn insert(&self, id: TenantId, record: TenantRecord) {
        if self.per_shard == 0 {
            return;
        }
        let now = Instant::now();
        let mut shard = Self::write(self.shard(id));
        if shard.len() >= self.per_shard && !shard.contains_key(&id) {
            // An expired entry if the first few hold one, else the first: the map's
            // order follows its per-process random hash, so which one is not chosen
            // by whoever picks tenant ids.
            let victim = shard
                .iter()
                .take(8)
                .find(|(_, e)| e.expires <= now)
                .or_else(|| shard.iter().next())
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(
            id,
            Entry {
                record,
                expires: now + self.time_to_live,
            },
        );
    }

    fn remove(&self, id: TenantId) {
        Self::write(self.shard(id)).remove(&id);
    }

    fn clear(&self) {
        for shard in &self.shards {
            Self::write(shard).clear();
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).len()).sum()
    }
}

#[async_trait::async_trait]
impl<S: TenantStore> TenantStore for CachedStore<S> {
    async fn insert_tenant(&self, tenant: &Tenant, change: &ChangeRecord) -> Result<(), StoreError> {
        self.inner.insert_tenant(tenant, change).await
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        if let Some(record) = self.tenants.get(id) {
            return Ok(Some(record));
        }
        let seen = self.invalidations.load(Ordering::SeqCst);
        let found = self.inner.tenant(id).await?;
        if let Some(record) = &found {
            self.tenants.insert(id, record.clone());
            // An invalidation between the read and the insert may be for a write this
            // read missed; drop the entry rather than serve it until it expires.
            if self.invalidations.load(Ordering::SeqCst) != seen {
                self.tenants.remove(id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::tenant::TenantName;

    fn record(id: TenantId) -> TenantRecord {
        let now = Utc::now();
        TenantRecord::new(
            Tenant {
                id,
                name: TenantName::parse("Example Shop").unwrap(),
                plan: Plan::Share,
                contact_email: None,
                created_at: now,
                updated_at: now,
            },
            None,
        )
    }

    #[test]
    fn never_holds_more_than_its_capacity_and_keeps_what_it_was_given_last() {
        for capacity in [1_u64, 5, 100, 1_000] {
            let entries = Entries::new(capacity, Duration::from_secs(60));
            let ids: Vec<TenantId> = (0..capacity * 3).map(|_| TenantId::generate()).collect();
            for id in &ids {
                entries.insert(*id, record(*id));
                assert!(
                    entries.len() as u64 <= capacity,
                    "capacity {capacity}: {}",
                    entries.len()
                );
                // Just given: found.
                assert_eq!(entries.get(*id).map(|r| r.tenant.id), Some(*id));
            }
            assert!(
                entries.len() as u64 >= capacity / 2,
                "capacity {capacity}: {}",
                entries.len()
            );
        }
    }

    #[test]
    fn an_entry_lives_its_time_to_live_and_goes_when_removed_or_cleared() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let expired = Entries::new(10, Duration::ZERO);
        expired.insert(a, record(a));
        assert!(expired.get(a).is_none(), "expired at once");

        let entries = Entries::new(10, Duration::from_secs(60));
        entries.insert(a, record(a));
        entries.insert(b, record(b));
        entries.remove(a);
        assert!(entries.get(a).is_none());
        assert!(entries.get(b).is_some());
        entries.clear();
        assert!(entries.get(b).is_none());
        assert_eq!(entries.len(), 0);

        // A full shard gives an expired entry's place first.
        let one = Entries::new(1, Duration::ZERO);
        one.insert(a, record(a));
        one.insert(b, record(b));
        assert_eq!(one.len(), 1);
        let none = Entries::new(0, Duration::from_secs(60));
        none.insert(a, record(a));
        assert!(none.get(a).is_none(), "no capacity: nothing kept");
    }
}
