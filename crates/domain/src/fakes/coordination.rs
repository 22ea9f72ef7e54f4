//! Send turns, the test-mail limit and enqueue quotas in memory, by the ports' rules and
//! the system clock (one process: its clock decides, as on SQLite).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::lock;
use crate::error::StoreError;
use crate::ports::{Coordination, EnqueueQuota, TestMailLimit};
use crate::quota::{EnqueueLimits, QuotaOverride, Window, grant};
use crate::tenant::TenantId;

#[derive(Debug, Default)]
struct Turns {
    /// When each tenant's next send may start, and who holds its turn now.
    next: HashMap<TenantId, Instant>,
    held: HashMap<TenantId, String>,
    /// Test mails recorded: when, for which tenant, by whom.
    test_mails: Vec<(Instant, TenantId, String)>,
}

/// The `Coordination` port in memory.
#[derive(Debug, Default)]
pub struct MemoryCoordination {
    turns: Mutex<Turns>,
}

impl MemoryCoordination {
    /// Test mails recorded for the tenant (within any window).
    pub fn test_mails(&self, tenant: TenantId) -> usize {
        lock(&self.turns)
            .test_mails
            .iter()
            .filter(|(_, t, _)| *t == tenant)
            .count()
    }
}

#[async_trait::async_trait]
impl Coordination for MemoryCoordination {
    async fn try_take_send_turn(&self, tenant: TenantId, holder: &str) -> Result<Option<Duration>, StoreError> {
        let mut turns = lock(&self.turns);
        let now = Instant::now();
        let wait = turns
            .next
            .get(&tenant)
            .map_or(Duration::ZERO, |next| next.saturating_duration_since(now));
        if turns.held.contains_key(&tenant) {
            return Ok(Some(wait.max(Duration::from_millis(1))));
        }
        if !wait.is_zero() {
            return Ok(Some(wait));
        }
        turns.held.insert(tenant, holder.to_owned());
        Ok(None)
    }

    async fn send_turn_in(&self, tenant: TenantId, interval: Duration) -> Result<Duration, StoreError> {
        let turns = lock(&self.turns);
        let wait = turns
            .next
            .get(&tenant)
            .map_or(Duration::ZERO, |next| next.saturating_duration_since(Instant::now()));
        Ok(if turns.held.contains_key(&tenant) {
            wait.max(interval)
        } else {
            wait
        })
    }

    async fn finish_send_turn(&self, tenant: TenantId, holder: &str, interval: Duration) -> Result<(), StoreError> {
        let mut turns = lock(&self.turns);
        if turns.held.get(&tenant).map(String::as_str) == Some(holder) {
            turns.held.remove(&tenant);
            turns.next.insert(tenant, Instant::now() + interval);
        }
        Ok(())
    }

    async fn try_record_test_mail(
        &self,
        tenant: TenantId,
        caller: &str,
        limit: TestMailLimit,
    ) -> Result<bool, StoreError> {
        let mut turns = lock(&self.turns);
        let now = Instant::now();
        let recent = |(at, _, _): &&(Instant, TenantId, String)| now.duration_since(*at) < limit.window;
        let by_tenant = turns
            .test_mails
            .iter()
            .filter(recent)
            .filter(|(_, t, _)| *t == tenant)
            .count();
        let by_caller = turns
            .test_mails
            .iter()
            .filter(recent)
            .filter(|(_, _, c)| c == caller)
            .count();
        if by_tenant >= limit.per_tenant as usize || by_caller >= limit.per_caller as usize {
            return Ok(false);
        }
        turns.test_mails.push((now, tenant, caller.to_owned()));
        Ok(true)
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Enqueues taken per tenant and window start.
    used: HashMap<(TenantId, &'static str, i64), i64>,
    overrides: HashMap<TenantId, QuotaOverride>,
}

/// The `EnqueueQuota` port in memory: fixed UTC windows, nothing taken when a window is
/// used up; an override's audit entry goes to the tenant's trail (as the store writes
/// it), when the quota is given the tenants.
#[derive(Debug, Default)]
pub struct MemoryQuota {
    counts: Mutex<Counts>,
    tenants: Option<std::sync::Arc<super::MemoryTenants>>,
}

impl MemoryQuota {
    /// Quotas whose override changes are written to these tenants' audit trail.
    pub fn auditing_to(tenants: std::sync::Arc<super::MemoryTenants>) -> Self {
        Self {
            counts: Mutex::default(),
            tenants: Some(tenants),
        }
    }
}

#[async_trait::async_trait]
impl EnqueueQuota for MemoryQuota {
    async fn try_take(
        &self,
        tenant: TenantId,
        limits: EnqueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let mut counts = lock(&self.counts);
        for window in Window::ALL {
            let used = counts
                .used
                .get(&(tenant, window.code(), window.start_ms(now)))
                .copied()
                .unwrap_or(0);
            if grant(window.limit(limits), used, 1) == 0 {
                return Ok(Some(window.retry_after_secs(now)));
            }
        }
        for window in Window::ALL {
            *counts
                .used
                .entry((tenant, window.code(), window.start_ms(now)))
                .or_insert(0) += 1;
        }
        Ok(None)
    }

    async fn quota_override(&self, tenant: TenantId) -> Result<QuotaOverride, StoreError> {
        Ok(lock(&self.counts).overrides.get(&tenant).copied().unwrap_or_default())
    }

    async fn set_quota_override(
        &self,
        tenant: TenantId,
        value: QuotaOverride,
        change: &crate::change::ChangeRecord,
    ) -> Result<(), StoreError> {
        {
            let mut counts = lock(&self.counts);
            if value == QuotaOverride::default() {
                counts.overrides.remove(&tenant);
            } else {
                counts.overrides.insert(tenant, value);
            }
        }
        if let Some(tenants) = &self.tenants {
            crate::ports::TenantStore::record_change(tenants.as_ref(), change).await?;
        }
        Ok(())
    }
}
