//! Retention in the background: every few minutes the content of deliveries that have
//! been done (`SENT`, `FAILED`) for longer than the retention window is removed, in small
//! batches (one transaction each) with a pause between them, so it never competes with
//! sending. Several processes may run it at once: a row is cleared once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
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
        loop {
            match shared
                .queue
                .remove_old_content(before, RETENTION_BATCH, Utc::now())
                .await
            {
                Ok(n) => {
                    shared.metrics.content_removed(n);
                    if n > 0 {
                        tracing::debug!(removed = n, "removed the content of old deliveries");
                    }
                    if n < RETENTION_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "removing old delivery content failed; tried again later");
                    break;
                }
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
        tokio::time::sleep(EVERY).await;
    }
}
