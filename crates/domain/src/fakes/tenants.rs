//! Tenants, their settings versions and the audit trail in memory, with the SQL store's
//! rules: a settings write bumps a counter that only grows and happens only at the
//! expected version (`VersionConflict` with the current one otherwise); a save re-checks
//! the plan at write time (`PlanChanged`); a pending save keeps the live version and
//! removes every other; activation keeps only the version it makes live; a suspension
//! writes its change and notice with it. Every change record is kept, so a test sees
//! the audit entries, webhook events and announcements a change wrote.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::audit::{ACTIONS_WITH_CONTENT, AuditEntry, TrailOrder};
use crate::change::ChangeRecord;
use crate::delivery::Delivery;
use crate::error::{StoreError, WriteError};
use crate::health::{ActivationCode, SettingsFailure, SettingsHealth, SettingsState, state_after_failure};
use crate::plan::{Plan, SenderOverridePermit};
use crate::ports::TenantStore;
use crate::settings::{MailSettings, StoredMailSettings};
use crate::suspension::Suspension;
use crate::tenant::{Tenant, TenantFilter, TenantId, TenantName, TenantRecord};
use crate::values::EmailAddress;

#[derive(Debug, Clone)]
struct Entry {
    tenant: Tenant,
    /// Grows with every settings write (the SQL store's `settings_version`).
    counter: i64,
    versions: BTreeMap<i64, StoredMailSettings>,
}

impl Entry {
    fn record(&self) -> TenantRecord {
        let mut newest_first = self.versions.values().rev();
        let settings = newest_first.next().cloned();
        let live_settings = newest_first.next().cloned();
        TenantRecord {
            live_settings,
            ..TenantRecord::new(self.tenant.clone(), settings)
        }
    }

    fn stored_version(&self) -> i64 {
        self.versions.keys().next_back().copied().unwrap_or(0)
    }

    /// The SQL store's `begin_settings_write`: bump, then compare.
    fn begin_write(&mut self, expected: i64) -> Result<i64, WriteError> {
        self.counter += 1;
        let current = self.stored_version();
        if current != expected {
            return Err(WriteError::VersionConflict { current });
        }
        Ok(self.counter)
    }
}

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, Entry>,
    audit: Vec<AuditEntry>,
    events: Vec<crate::webhook::event::WebhookEvent>,
    /// The tenants whose changes were announced to other processes, in order.
    announced: Vec<TenantId>,
    notices: Vec<Delivery>,
    /// Set by a test: the next write fails as a database that went away would.
    fail_writes: bool,
}

/// The tenant store in memory.
#[derive(Debug, Default)]
pub struct MemoryTenants {
    state: Mutex<State>,
}

impl MemoryTenants {
    /// Adds a tenant on `plan` named `name`, with no audit entry (a fixture, not an
    /// operation); its id.
    pub fn add(&self, name: &str, plan: Plan) -> TenantId {
        let now = Utc::now();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: TenantName::parse(name).unwrap_or_else(|e| panic!("a fixture's name: {e:?}")),
            plan,
            contact_email: None,
            created_at: now,
            updated_at: now,
        };
        let id = tenant.id;
        self.put(tenant, None);
        id
    }

    /// Stores `tenant` with `settings` (version 1 when given) as they are.
    pub fn put(&self, tenant: Tenant, settings: Option<StoredMailSettings>) {
        let versions: BTreeMap<i64, StoredMailSettings> = settings.into_iter().map(|s| (s.version, s)).collect();
        let counter = versions.keys().next_back().copied().unwrap_or(0);
        lock(&self.state).tenants.insert(
            tenant.id,
            Entry {
                tenant,
                counter,
                versions,
            },
        );
    }

    /// The tenant as a read would see it now.
    pub fn record(&self, id: TenantId) -> Option<TenantRecord> {
        lock(&self.state).tenants.get(&id).map(Entry::record)
    }

    /// Every settings version kept for the tenant, oldest first.
    pub fn versions(&self, id: TenantId) -> Vec<StoredMailSettings> {
        lock(&self.state)
            .tenants
            .get(&id)
            .map(|e| e.versions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every audit entry written, in order.
    pub fn audit(&self) -> Vec<AuditEntry> {
        lock(&self.state).audit.clone()
    }

    /// Every webhook event the changes caused, in order.
    pub fn events(&self) -> Vec<crate::webhook::event::WebhookEvent> {
        lock(&self.state).events.clone()
    }

    /// The tenants whose changes were announced to other processes, in order.
    pub fn announced(&self) -> Vec<TenantId> {
        lock(&self.state).announced.clone()
    }

    /// The notices suspensions wrote (the SQL store puts them in the delivery queue).
    pub fn notices(&self) -> Vec<Delivery> {
        lock(&self.state).notices.clone()
    }

    /// From now on every write fails with a database error, and nothing changes.
    pub fn fail_writes(&self) {
        lock(&self.state).fail_writes = true;
    }

    fn write<T>(
        &self,
        id: TenantId,
        change: impl FnOnce(&mut Entry) -> Result<T, WriteError>,
    ) -> Result<(T, AuditSlot<'_>), WriteError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(WriteError::Store(gone()));
        }
        let entry = state.tenants.get_mut(&id).ok_or(WriteError::NotFound)?;
        // A failed write leaves the entry as it was (a rolled-back transaction).
        let mut draft = entry.clone();
        let value = change(&mut draft)?;
        *entry = draft;
        Ok((value, AuditSlot { state }))
    }
}

/// The rest of a write's transaction: its change record.
struct AuditSlot<'a> {
    state: std::sync::MutexGuard<'a, State>,
}

impl AuditSlot<'_> {
    fn record(mut self, change: &ChangeRecord) {
        self.state.apply(change);
    }
}

impl State {
    /// What the SQL store writes of a change record in the change's transaction.
    fn apply(&mut self, change: &ChangeRecord) {
        self.audit.push(change.audit.clone());
        self.events.extend(change.events.iter().cloned());
        if change.announce {
            self.announced.push(change.tenant());
        }
    }
}

fn gone() -> StoreError {
    StoreError::Database("the fake database is gone".into())
}

#[async_trait::async_trait]
impl TenantStore for MemoryTenants {
    async fn insert_tenant(&self, tenant: &Tenant, change: &ChangeRecord) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(gone());
        }
        if state.tenants.contains_key(&tenant.id) {
            return Err(StoreError::Database("duplicate tenant id".into()));
        }
        state.tenants.insert(
            tenant.id,
            Entry {
                tenant: tenant.clone(),
                counter: 0,
                versions: BTreeMap::new(),
            },
        );
        state.apply(change);
        Ok(())
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self.record(id))
    }

    async fn tenants(
        &self,
        filter: &TenantFilter,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(lock(&self.state)
            .tenants
            .values()
            .filter(|e| filter.plan.is_none_or(|p| e.tenant.plan == p))
            .filter(|e| filter.name.as_ref().is_none_or(|n| n.matches(&e.tenant.name)))
            .filter(|e| after.is_none_or(|a| e.tenant.id > a))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(Entry::record)
            .collect())
    }

    async fn change_plan(
        &self,
        id: TenantId,
        from: Plan,
        to: Plan,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        let (tenant, slot) = self.write(id, |e| {
            if e.tenant.plan != from {
                return Err(WriteError::PlanChanged);
            }
            e.tenant.plan = to;
            e.tenant.updated_at = at;
            Ok(e.tenant.clone())
        })?;
        slot.record(change);
        Ok(tenant)
    }

    async fn set_contact_email(
        &self,
        id: TenantId,
        contact: Option<&EmailAddress>,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        let (tenant, slot) = self.write(id, |e| {
            e.tenant.contact_email = contact.cloned();
            e.tenant.updated_at = at;
            Ok(e.tenant.clone())
        })?;
        slot.record(change);
        Ok(tenant)
    }

    async fn save_mail_settings(
        &self,
        id: TenantId,
        _permit: SenderOverridePermit,
        settings: &MailSettings,
        state: SettingsState,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<StoredMailSettings, WriteError> {
        let (stored, slot) = self.write(id, |e| {
            // The permit was granted for the plan the caller read: checked again now.
            if !e.tenant.plan.can_override_sender() {
                return Err(WriteError::PlanChanged);
            }
            let version = e.begin_write(expected_version)?;
            e.versions.retain(|_, kept| {
                state == SettingsState::PendingVerification && kept.health.state == SettingsState::Live
            });
            let stored = StoredMailSettings {
                settings: settings.clone(),
                version,
                updated_at: at,
                health: SettingsHealth::new(state, at),
            };
            e.versions.insert(version, stored.clone());
            Ok(stored)
        })?;
        slot.record(change);
        Ok(stored)
    }

    async fn activate_mail_settings(
        &self,
        id: TenantId,
        version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        let ((), slot) = self.write(id, |e| {
            e.begin_write(version)?;
            e.versions.retain(|v, _| *v == version);
            if let Some(s) = e.versions.get_mut(&version) {
                s.health = SettingsHealth::live(at);
            }
            Ok(())
        })?;
        slot.record(change);
        Ok(())
    }

    async fn set_activation_code(&self, id: TenantId, version: i64, code: &ActivationCode) -> Result<(), WriteError> {
        self.write(id, |e| {
            e.counter += 1;
            let current = e.stored_version();
            let Some(s) = e.versions.get_mut(&version) else {
                return Err(WriteError::VersionConflict { current });
            };
            s.health.activation_code = Some(code.clone());
            Ok(())
        })
        .map(|((), mut slot)| slot.state.announced.push(id))
    }

    async fn record_settings_failure(
        &self,
        id: TenantId,
        version: i64,
        failure: &SettingsFailure,
        suspend_after: u32,
        suspension: &Suspension,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(gone());
        }
        let Some(kept) = state.tenants.get_mut(&id).and_then(|e| e.versions.get_mut(&version)) else {
            return Ok(false);
        };
        let before = kept.health.clone();
        let next = state_after_failure(&before, suspend_after);
        let suspended = next == SettingsState::Suspended && before.state != SettingsState::Suspended;
        kept.health = SettingsHealth {
            state: next,
            since: if next == before.state { before.since } else { failure.at },
            consecutive_failures: before.consecutive_failures.saturating_add(1),
            last_failure: Some(failure.clone()),
            activation_code: before.activation_code,
            server: before.server,
        };
        if suspended {
            state.notices.extend(suspension.notice.clone());
            state.apply(&suspension.change);
        } else {
            state.announced.push(id);
        }
        Ok(suspended)
    }

    async fn record_settings_success(&self, id: TenantId, version: i64) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(gone());
        }
        if let Some(kept) = state.tenants.get_mut(&id).and_then(|e| e.versions.get_mut(&version))
            && kept.health.consecutive_failures > 0
        {
            kept.health.consecutive_failures = 0;
            state.announced.push(id);
        }
        Ok(())
    }

    async fn record_servers(&self, notes: &[crate::health::ServerNote]) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(gone());
        }
        for note in notes {
            let Some(kept) = state
                .tenants
                .get_mut(&note.tenant)
                .and_then(|e| e.versions.get_mut(&note.version))
            else {
                continue;
            };
            let slot = match note.learnt {
                crate::health::ServerLearnt::Reached => &mut kept.health.server.reached_at,
                crate::health::ServerLearnt::Unreachable => &mut kept.health.server.unreachable_at,
            };
            if slot.is_none_or(|t| t < note.at) {
                *slot = Some(note.at);
            }
        }
        Ok(())
    }

    async fn settings_state_counts(&self) -> Result<Vec<(SettingsState, u64)>, StoreError> {
        let mut counts: Vec<(SettingsState, u64)> = Vec::new();
        for kept in lock(&self.state).tenants.values().flat_map(|e| e.versions.values()) {
            match counts.iter_mut().find(|(s, _)| *s == kept.health.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((kept.health.state, 1)),
            }
        }
        Ok(counts)
    }

    async fn clear_mail_settings(
        &self,
        id: TenantId,
        expected_version: i64,
        _at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        let ((), slot) = self.write(id, |e| {
            e.begin_write(expected_version)?;
            e.versions.clear();
            Ok(())
        })?;
        slot.record(change);
        Ok(())
    }

    async fn audit_trail(
        &self,
        id: TenantId,
        after: Option<uuid::Uuid>,
        limit: u64,
        order: TrailOrder,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let newest_first = order == TrailOrder::NewestFirst;
        let mut trail: Vec<AuditEntry> = lock(&self.state)
            .audit
            .iter()
            .filter(|a| {
                a.tenant_id == id && after.is_none_or(|after| if newest_first { a.id < after } else { a.id > after })
            })
            .cloned()
            .collect();
        trail.sort_by_key(|a| a.id);
        if newest_first {
            trail.reverse();
        }
        trail.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(trail)
    }

    async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        if state.fail_writes {
            return Err(gone());
        }
        state.apply(change);
        Ok(())
    }

    async fn remove_old_audit_content(
        &self,
        before: DateTime<Utc>,
        limit: u64,
        _now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut cleared = 0;
        for entry in lock(&self.state).audit.iter_mut() {
            if cleared >= limit {
                break;
            }
            let stripped = entry.changes_without_content();
            if ACTIONS_WITH_CONTENT.contains(&entry.action) && entry.at < before && entry.changes != stripped {
                entry.changes = stripped;
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if lock(&self.state).fail_writes {
            return Err(gone());
        }
        Ok(())
    }
}
