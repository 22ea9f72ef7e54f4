//! [`LocalViews`]: the one owner of what this process keeps of tenants — the cached
//! tenant records, the quota overrides, the pooled connections to their servers. The
//! services and the worker tell it after each change they stored; the change listener
//! tells it of every change another process announced (on PostgreSQL; SQLite has one
//! process). Nothing else drops those caches.

use std::sync::Arc;

use domain::TenantId;
use domain::ports::{TenantStore, TenantViews};
use domain::sender::SenderRoute;
use persistence::{CachedStore, QuotaGate, SqlStore};

/// Drops what this process keeps of a tenant that changed.
pub struct LocalViews {
    tenants: Arc<CachedStore<SqlStore>>,
    quota: Arc<QuotaGate>,
    mailer: Arc<mailer::Mailer>,
}

impl std::fmt::Debug for LocalViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalViews").finish_non_exhaustive()
    }
}

impl LocalViews {
    pub fn new(tenants: Arc<CachedStore<SqlStore>>, quota: Arc<QuotaGate>, mailer: Arc<mailer::Mailer>) -> Self {
        Self { tenants, quota, mailer }
    }
}

#[async_trait::async_trait]
impl TenantViews for LocalViews {
    async fn changed(&self, tenant: TenantId) {
        self.tenants.invalidate(tenant).await;
        self.quota.forget_override(tenant).await;
        // Keep the connections of the settings the tenant's mail goes through now (the
        // sends in flight use them; a change announced back to this process must not
        // cut them); drop every other. Unreadable: drop them all. Read from the store
        // itself: a read through the cache racing this one could bring back the old row.
        let keep = match self.tenants.inner().tenant(tenant).await {
            Ok(Some(record)) => match record.route() {
                SenderRoute::Custom { version, .. } => Some(version),
                SenderRoute::PlatformDefault { .. } | SenderRoute::Unreadable { .. } => None,
            },
            Ok(None) | Err(_) => None,
        };
        self.mailer.forget_all_but(tenant, keep).await;
    }

    async fn record_changed(&self, tenant: TenantId) {
        self.tenants.invalidate(tenant).await;
    }

    async fn all_changed(&self) {
        self.tenants.invalidate_all();
        self.quota.forget_all_overrides();
    }
}
