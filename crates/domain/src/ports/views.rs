//! What a process keeps of tenants between calls (their records, quota overrides,
//! connections to their servers), and the one way to drop it.

use crate::tenant::TenantId;

/// The owner of everything this process keeps of tenants. A change committed here is
/// followed by [`TenantViews::changed`] from the code that made it (what a worker put on
/// record of a server, by [`TenantViews::record_changed`]); a change another
/// process announces (see [`crate::change::ChangeRecord::announce`]) arrives the same way.
#[async_trait::async_trait]
pub trait TenantViews: Send + Sync + 'static {
    /// The tenant changed: what is kept of it is dropped — its record, its quota
    /// override, and connections to any server other than the one its mail goes through
    /// now.
    async fn changed(&self, tenant: TenantId);

    /// What the tenant's server did was put on record: only its kept record is stale
    /// (its settings, quota and connections are as they were). By default, as a change.
    async fn record_changed(&self, tenant: TenantId) {
        self.changed(tenant).await;
    }

    /// Anything may have changed (announcements were missed): everything kept is dropped.
    async fn all_changed(&self);
}
