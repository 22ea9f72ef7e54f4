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

/// The background tasks the configuration asks for: content retention (deliveries and
/// audit entries), and the history horizon on a task of its own (a first deletion of a
/// year's backlog takes hours and must not hold up the clearing of content). Aborted when
/// the worker stops.
pub(crate) fn spawn(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(keep_for) = shared.config.retention {
        tasks.push(tokio::spawn(remove_old_content(shared.clone(), keep_for)));
    }
    if let Some(keep_for) = shared.config.history {
        tasks.push(tokio::spawn(remove_old_rows(shared.clone(), keep_for)));
    }
    tasks
}

/// The time `window` ago.
fn ago(window: Duration) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(3650))
}

/// Clears what deliveries and audit entries done before the window hold of a person.
async fn remove_old_content(shared: Arc<Shared>, keep_for: Duration) {
    loop {
        let before = ago(keep_for);
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
        tokio::time::sleep(EVERY).await;
    }
}

/// Deletes deliveries done before the history horizon.
async fn remove_old_rows(shared: Arc<Shared>, keep_for: Duration) {
    loop {
        let before = ago(keep_for);
        in_batches("deliveries past the history horizon", HISTORY_BATCH, || {
            let shared = shared.clone();
            async move {
                let n = shared.queue.remove_old_rows(before, HISTORY_BATCH).await?;
                shared.metrics.rows_removed(n);
                Ok(n)
            }
        })
        .await;
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
