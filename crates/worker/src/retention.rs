//! Retention in the background: every few minutes the content of deliveries that have
//! been done (`SENT`, `FAILED`) for longer than the retention window is removed, in small
//! batches (one transaction each) with a pause between them, so it never competes with
//! sending; so is what audit entries older than the window hold of a person's data (a
//! test mail's recipient, a server's reply; `AuditEntry::changes_without_content`).
//! Past the history horizon (`MAILGATE_DELIVERY_HISTORY_DAYS`), done deliveries are
//! deleted whole, with their attempts, in batches along the primary key.
//! Several processes may run it at once: a row is cleared (or deleted) once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::StoreError;
use domain::delivery::retention::{HISTORY_BATCH, RETENTION_BATCH};

use crate::Shared;

/// How often the task looks for content to remove.
const EVERY: Duration = Duration::from_secs(60);
/// The pause between two batches of one round.
const BETWEEN_BATCHES: Duration = Duration::from_millis(200);

/// Runs until aborted (with the lease renewal, when the worker stops).
pub(crate) async fn remove_old(shared: Arc<Shared>) {
    let before = |window: std::time::Duration| {
        Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(3650))
    };
    loop {
        if let Some(keep_for) = shared.config.retention {
            let before = before(keep_for);
            in_batches("delivery content", RETENTION_BATCH, || {
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
            in_batches("audit entries' content", RETENTION_BATCH, || {
                let shared = shared.clone();
                async move {
                    shared
                        .tenants
                        .remove_old_audit_content(before, RETENTION_BATCH, Utc::now())
                        .await
                }
            })
            .await;
        }
        if let Some(keep_for) = shared.config.history {
            let before = before(keep_for);
            in_batches("deliveries past the history horizon", HISTORY_BATCH, || {
                let shared = shared.clone();
                async move {
                    let n = shared.queue.remove_old_rows(before, HISTORY_BATCH).await?;
                    shared.metrics.rows_removed(n);
                    Ok(n)
                }
            })
            .await;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Runs `batch` until a batch does less than `full` rows (or fails: it is tried again
/// next round), pausing between batches.
async fn in_batches<F, Fut>(what: &str, full: u64, mut batch: F)
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
                if n < full {
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
