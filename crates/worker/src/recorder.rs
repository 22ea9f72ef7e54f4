//! Writes outcomes as they come, all that are waiting in one transaction, so the
//! database sees one commit per batch rather than per mail; on PostgreSQL the next batch
//! is written while the last one commits. A delivery stays held (its
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

/// How long the recorder waits for more outcomes to record together when only one is
/// waiting.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// The outcomes to write together, `first` and those after it: every one already waiting
/// (those that came while the last write ran), up to [`RECORD_BATCH`], at once; only an
/// outcome that came alone waits up to [`RECORD_LINGER`] for others. A recorder that
/// lingered after every write held each batch's sends that much longer, and those sends
/// hold claim room (`claim_loop`): with one busy tenant the lingering was a third of the
/// recorder's time and the worker's lanes went idle for it.
pub(crate) async fn gather<T>(rx: &mut mpsc::UnboundedReceiver<T>, first: T) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < RECORD_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    if batch.len() == 1 {
        let linger = tokio::time::Instant::now() + RECORD_LINGER;
        while batch.len() < RECORD_BATCH {
            match tokio::time::timeout_at(linger, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
    }
    batch
}

/// Records until every sender of `rx` is gone and what they sent is written, with as
/// many writes under way at once as the queue says are worth it
/// ([`domain::ports::DeliveryQueue::finishes_at_once`]): each write starts when a writer
/// is free, with everything that came meanwhile.
pub(crate) async fn record_outcomes(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Finish>) {
    let at_once = shared.queue.finishes_at_once().max(1);
    let mut writes = tokio::task::JoinSet::new();
    while let Some(first) = rx.recv().await {
        while writes.len() >= at_once {
            if let Some(Err(e)) = writes.join_next().await {
                tracing::error!(error = %e, "a write of outcomes ended abnormally; their leases will expire and they are tried again");
            }
        }
        // Outcomes that came together share the transaction: the mails are sent already,
        // and one commit instead of several is what lets the database keep up (the
        // leases are held meanwhile).
        let updates = gather(&mut rx, first).await;
        writes.spawn(write(shared.clone(), updates));
    }
    while writes.join_next().await.is_some() {}
}

/// Writes one batch of outcomes; each delivery is let go once its outcome is written (or
/// its write failed: its lease then runs out and it is tried again).
async fn write(shared: Arc<Shared>, updates: Vec<Finish>) {
    // Should this write end abnormally (a panic), its deliveries are let go all the same:
    // their leases are no longer renewed and run out, and they are tried again.
    let _let_go = LetGo {
        shared: &shared,
        ids: updates.iter().map(Finish::id).collect(),
    };
    let owner = &shared.config.worker_id;
    let results = match shared.queue.finish_many(owner, &updates).await {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) => {
            // One at a time, so a row the database refuses fails alone.
            tracing::warn!(error = %e, rows = updates.len(), "recording a batch of outcomes failed; recording one by one");
            let mut each = Vec::with_capacity(updates.len());
            for finish in &updates {
                each.push(shared.queue.finish(owner, finish).await);
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

/// Lets go of its deliveries when dropped (letting go twice does nothing).
struct LetGo<'a> {
    shared: &'a Shared,
    ids: Vec<domain::DeliveryId>,
}

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            self.shared.let_go(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outcomes already waiting (they came while the last write ran) are written at once:
    /// the clock, paused, does not move.
    #[tokio::test(start_paused = true)]
    async fn outcomes_already_waiting_go_without_lingering() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 1..=9 {
            tx.send(n).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let t0 = tokio::time::Instant::now();
        assert_eq!(gather(&mut rx, first).await, (1..=9).collect::<Vec<_>>());
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    /// An outcome that came alone waits the linger for company, and takes what came.
    #[tokio::test(start_paused = true)]
    async fn an_outcome_alone_waits_a_little_for_others() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(1).unwrap();
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            later.send(2).unwrap();
        });
        let first = rx.recv().await.unwrap();
        let t0 = tokio::time::Instant::now();
        assert_eq!(gather(&mut rx, first).await, vec![1, 2]);
        assert_eq!(t0.elapsed(), RECORD_LINGER);
    }

    /// No more than a batch goes in one write; the rest waits for the next.
    #[tokio::test(start_paused = true)]
    async fn a_write_takes_a_batch_at_most() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 0..RECORD_BATCH + 10 {
            tx.send(n).unwrap();
        }
        let first = rx.recv().await.unwrap();
        assert_eq!(gather(&mut rx, first).await.len(), RECORD_BATCH);
        let first = rx.recv().await.unwrap();
        assert_eq!(gather(&mut rx, first).await.len(), 10);
    }
}
