//! Group commit for enqueues: concurrent `enqueue` calls are gathered and stored with one
//! statement (one commit) instead of one each, so the enqueue rate is bounded by batches
//! per second rather than commits per second. Every caller still returns only after its
//! own delivery is committed; nothing waits for a batch to fill (a lone call goes at
//! once, and calls made while a batch is being written form the next one).
//!
//! It wraps only the outbox: the worker's queue and the queries go to the store directly.

use std::sync::Arc;

use domain::StoreError;
use domain::delivery::Delivery;
use domain::ports::{DeliveryOutbox, EnqueueOutcome};
use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply = oneshot::Sender<Result<EnqueueOutcome, StoreError>>;

/// A [`DeliveryOutbox`] whose enqueues are committed in groups.
pub struct GroupCommit {
    inner: Arc<dyn DeliveryOutbox>,
    jobs: mpsc::UnboundedSender<(Delivery, Reply)>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the gathering task on the current Tokio runtime: at most `max_batch`
    /// deliveries per statement and `writers` statements at a time (1 for SQLite, which has
    /// one writer anyway).
    pub fn start(inner: Arc<dyn DeliveryOutbox>, max_batch: usize, writers: usize) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(gather(inner.clone(), rx, max_batch.max(1), writers.max(1)));
        Self { inner, jobs }
    }
}

async fn gather(
    store: Arc<dyn DeliveryOutbox>,
    mut rx: mpsc::UnboundedReceiver<(Delivery, Reply)>,
    max_batch: usize,
    writers: usize,
) {
    let permits = Arc::new(Semaphore::new(writers));
    while let Some(first) = rx.recv().await {
        // Wait for a free writer before gathering, so calls made meanwhile join this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            let (deliveries, replies): (Vec<Delivery>, Vec<Reply>) = batch.into_iter().unzip();
            let results = store.enqueue_many(&deliveries).await;
            drop(permit);
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have gone away; its delivery is stored all the same.
                let _ = reply.send(result);
            }
        });
    }
}

#[async_trait::async_trait]
impl DeliveryOutbox for GroupCommit {
    async fn enqueue(&self, delivery: &Delivery) -> Result<EnqueueOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send((delivery.clone(), tx)).is_err() {
            // The gathering task is gone (its runtime ended): store it directly.
            return self.inner.enqueue(delivery).await;
        }
        rx.await.map_err(|_| {
            StoreError::Database("the enqueue batch ended without an answer; the delivery may be stored".into())
        })?
    }

    async fn enqueue_many(&self, deliveries: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        self.inner.enqueue_many(deliveries).await
    }
}
