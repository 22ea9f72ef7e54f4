//! Keeps this worker's leases alive while it holds deliveries.

use std::sync::Arc;

use crate::{Shared, lock};

/// Renews every third of the lease, while anything is held.
pub(crate) async fn renew_leases(shared: Arc<Shared>) {
    let every = shared.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        if lock(&shared.held).is_empty() {
            continue;
        }
        if let Err(e) = shared
            .queue
            .renew_leases(&shared.config.worker_id, shared.lease_until())
            .await
        {
            tracing::warn!(error = %e, "renewing leases failed");
        }
    }
}
