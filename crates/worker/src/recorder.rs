//! Writes outcomes as they come, all that are waiting in one transaction, so the
//! database sees one commit per batch rather than per mail. A delivery stays held (its
//! lease renewed) until its outcome is written; if writing fails, the lease runs out and
//! the delivery is tried again with the same Message-ID.

use std::sync::Arc;
use std::time::Duration;

use domain::delivery::{Delivery, DeliveryUpdate};
use domain::finish::Finish;
use tokio::sync::mpsc;

use crate::Shared;

/// Attempts' outcomes on their way to the database, each with the events it causes.
pub(crate) type Outcomes = mpsc::UnboundedSender<Finish>;

/// Hands an update of the claimed delivery `d` to the recorder, with the events the
/// domain builds from `d` (built here, in the delivery's own task, not in the recorder's
/// one line).
pub(crate) fn hand_over(shared: &Arc<Shared>, outcomes: &Outcomes, d: &Delivery, update: DeliveryUpdate) {
    if outcomes.send(Finish::of(d, update)).is_err() {
        // Only when the worker is gone; the lease runs out and it is tried again.
        tracing::error!(delivery = %d.id, "the outcome could not be handed to the recorder");
        shared.let_go(d.id);
    }
}

/// Outcomes recorded by one statement at most.
pub(crate) const RECORD_BATCH: usize = 256;

/// How long the recorder waits for more outcomes to record together.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// Records until every sender of `rx` is gone and what they sent is written.
pub(crate) async fn record_outcomes(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Finish>) {
    let owner = shared.config.worker_id.clone();
    while let Some(first) = rx.recv().await {
        // Outcomes arriving within a few milliseconds share the transaction: the mails
        // are sent already, and one commit instead of several is what lets the database
        // keep up (the leases are held meanwhile).
        let mut updates = vec![first];
        let linger = tokio::time::Instant::now() + RECORD_LINGER;
        while updates.len() < RECORD_BATCH {
            match tokio::time::timeout_at(linger, rx.recv()).await {
                Ok(Some(o)) => updates.push(o),
                Ok(None) | Err(_) => break,
            }
        }
        let results = match shared.queue.finish_many(&owner, &updates).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) => {
                // One at a time, so a row the database refuses fails alone.
                tracing::warn!(error = %e, rows = updates.len(), "recording a batch of outcomes failed; recording one by one");
                let mut each = Vec::with_capacity(updates.len());
                for finish in &updates {
                    each.push(shared.queue.finish(&owner, finish).await);
                }
                each
            }
        };
        for (finish, result) in updates.iter().zip(results) {
            let (id, update) = (finish.id(), finish.update());
            match result {
                Ok(true) if update.attempt().is_some() => shared.metrics.recorded(update.status()),
                Ok(true) => {}
                Ok(false) => tracing::warn!(delivery = %id, "lease lost before the outcome was recorded"),
                Err(e) => {
                    tracing::error!(delivery = %id, error = %e, "recording the outcome failed; the lease will expire and it is tried again")
                }
            }
            tracing::debug!(delivery = %id, status = update.status().code(), "delivery attempt recorded");
            shared.let_go(id);
        }
        shared.progress.notify_one();
    }
}
