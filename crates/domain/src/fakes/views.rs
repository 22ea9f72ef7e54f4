//! [`RecordingViews`]: the owner of what a process keeps of tenants, in memory — it keeps
//! nothing and writes down which tenants it was told changed.

use std::sync::Mutex;

use super::lock;
use crate::ports::TenantViews;
use crate::tenant::TenantId;

/// Records every [`TenantViews::changed`], [`TenantViews::record_changed`] and
/// [`TenantViews::all_changed`].
#[derive(Debug, Default)]
pub struct RecordingViews {
    seen: Mutex<(Vec<TenantId>, u32, Vec<TenantId>)>,
}

impl RecordingViews {
    /// The tenants it was told changed, in order.
    pub fn changed(&self) -> Vec<TenantId> {
        lock(&self.seen).0.clone()
    }

    /// The tenants whose server's record it was told changed, in order.
    pub fn record_changed(&self) -> Vec<TenantId> {
        lock(&self.seen).2.clone()
    }

    /// How often it was told that anything may have changed.
    pub fn all_changed(&self) -> u32 {
        lock(&self.seen).1
    }
}

#[async_trait::async_trait]
impl TenantViews for RecordingViews {
    async fn changed(&self, tenant: TenantId) {
        lock(&self.seen).0.push(tenant);
    }

    async fn record_changed(&self, tenant: TenantId) {
        lock(&self.seen).2.push(tenant);
    }

    async fn all_changed(&self) {
        lock(&self.seen).1 += 1;
    }
}
