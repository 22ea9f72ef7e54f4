//! Retention in the background: every few minutes the content of deliveries that have
//! been done (`SENT`, `FAILED`) for longer than the retention window is removed, in small
//! batches (one transaction each) with a pause between them, so it never competes with
//! sending; so is what audit entries older than the window hold of a person's data (a
//! test mail's recipient, a server's reply; `AuditEntry::changes_without_content`).
//! Several processes may run it at once: a row is cleared once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::StoreError;
use domain::delivery::retention::RETENTION_BATCH;

use crate::Shared;

/// How often the task looks for content to remove.
const EVERY: Duration = Duration::from_secs(60);
/// The pause between two batches of one round.
const BETWEEN_BATCHES: Duration = Duration::from_millis(200);

/// Runs until aborted (with the lease renewal, when the worker stops).
pub(crate) async fn remove_old_content(shared: Arc<Shared>, keep_for: Duration) {
    loop {
        let before = Utc::now() - chrono::Duration::from_std(keep_for).unwrap_or(chrono::Duration::days(3650));
        in_batches("delivery content", || {
            let shared = shared.clone();
            async move {
                let n = shared
                    .queue
                    .remove_old_content(before, RETENTION_BATCH, Utc::now())
                    .await?;
                shared.metrics.content_removed(n);
                Ok(n)
            }
        })
        .await;
        in_batches("audit entries' content", || {
            let shared = shared.clone();
            async move {
                shared
                    .tenants
                    .remove_old_audit_content(before, RETENTION_BATCH, Utc::now())
                    .await
            }
        })
        .await;
        tokio::time::sleep(EVERY).await;
    }
}

/// Runs `batch` until a batch clears fewer than [`RETENTION_BATCH`] rows (or fails: it is
/// tried again next round), pausing between batches.
async fn in_batches<F, Fut>(what: &str, mut batch: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    loop {
        match batch().await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(removed = n, "removed old {what}");
                }
                if n < RETENTION_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "removing old {what} failed; tried again later");
                break;
            }
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}
