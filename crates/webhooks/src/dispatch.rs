//! The dispatcher: claims due messages under a lease and sends each as a task of its own,
//! at most `per_endpoint` of one endpoint and `max_in_flight` in all at once, so an
//! endpoint that is slow or never answers holds only its own few places (each for at most
//! the attempt's deadline) while every other endpoint's messages go on. A message whose
//! process dies mid-attempt stays `SENDING` until its lease runs out, then is claimed and
//! sent again: at least once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use domain::ids::LeaseOwner;
use domain::ports::WebhookQueue;
use domain::webhook::retry::MessageUpdate;
use domain::webhook::{ClaimedMessage, EndpointId, MessageStatus};
use mailer::guard::Guard;
use mailer::tls::TlsMaterial;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

/// How a dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub owner: LeaseOwner,
    pub max_in_flight: u32,
    pub per_endpoint: u32,
    /// One attempt's deadline: connecting, sending and reading the answer.
    pub attempt_timeout: Duration,
    /// How often the queue is asked for due messages.
    pub poll_interval: Duration,
    /// Delivered and failed messages are removed this long after they were done; `None`:
    /// kept for ever.
    pub retention: Option<Duration>,
}

/// How often old messages are looked for, and how many go per statement.
const RETENTION_EVERY: Duration = Duration::from_secs(600);
const RETENTION_BATCH: u64 = 500;

impl DispatchConfig {
    /// A claimed message's lease: longer than any attempt can take.
    fn lease(&self) -> Duration {
        self.attempt_timeout * 3 + Duration::from_secs(5)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What followed an attempt: the message was delivered, waits for its next try, or failed.
const RESULTS: [&str; 3] = ["delivered", "retrying", "failed"];

/// Webhook attempts made by this process, by what followed them (for `/metrics`).
#[derive(Debug, Clone)]
pub struct DispatchStats {
    attempts: Family<ResultLabel, Counter>,
    duration: Histogram,
}

impl Default for DispatchStats {
    fn default() -> Self {
        let stats = Self {
            attempts: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        };
        for result in RESULTS {
            let _ = stats.attempts.get_or_create(&ResultLabel { result });
        }
        stats
    }
}

impl DispatchStats {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mailgate_webhook_attempts",
            "Webhook attempts made by this process, by what followed (delivered, retrying, failed)",
            self.attempts.clone(),
        );
        registry.register(
            "mailgate_webhook_attempt_duration_seconds",
            "Time of one webhook attempt",
            self.duration.clone(),
        );
    }

    /// Attempts so far that were followed by `result`.
    pub fn count(&self, result: MessageStatus) -> u64 {
        self.attempts
            .get_or_create(&ResultLabel {
                result: result_of(result),
            })
            .get()
    }

    fn attempted(&self, result: MessageStatus, millis: u32) {
        self.attempts
            .get_or_create(&ResultLabel {
                result: result_of(result),
            })
            .inc();
        self.duration.observe(f64::from(millis) / 1000.0);
    }
}

fn result_of(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Delivered => RESULTS[0],
        MessageStatus::Pending | MessageStatus::Sending => RESULTS[1],
        MessageStatus::Failed => RESULTS[2],
    }
}

/// Sends due webhook messages until shut down.
pub struct Dispatcher {
    config: DispatchConfig,
    queue: Arc<dyn WebhookQueue>,
    guard: Guard,
    tls: TlsMaterial,
    stats: Arc<DispatchStats>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Places held per endpoint by this process's attempts in flight.
type Busy = Arc<Mutex<HashMap<EndpointId, u32>>>;

impl Dispatcher {
    pub fn new(
        config: DispatchConfig,
        queue: Arc<dyn WebhookQueue>,
        guard: Guard,
        tls: TlsMaterial,
        stats: Arc<DispatchStats>,
    ) -> Self {
        Self {
            config,
            queue,
            guard,
            tls,
            stats,
        }
    }

    /// Runs until `shutdown` resolves; then waits for the attempts in flight (each ends
    /// within its deadline) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let busy: Busy = Arc::default();
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        let retention = self
            .config
            .retention
            .map(|keep| tokio::spawn(remove_old(self.queue.clone(), keep)));
        loop {
            let in_flight = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
            let free = self.config.max_in_flight.saturating_sub(in_flight);
            let mut claimed_any = false;
            if free > 0 {
                let exclude: Vec<EndpointId> = lock(&busy)
                    .iter()
                    .filter(|(_, n)| **n >= self.config.per_endpoint)
                    .map(|(id, _)| *id)
                    .collect();
                let now = Utc::now();
                let lease_until = now + chrono::Duration::from_std(self.config.lease()).unwrap_or_default();
                match self
                    .queue
                    .claim(
                        &self.config.owner,
                        now,
                        lease_until,
                        free,
                        self.config.per_endpoint,
                        &exclude,
                    )
                    .await
                {
                    Ok(claimed) => {
                        claimed_any = !claimed.is_empty();
                        for message in claimed {
                            *lock(&busy).entry(message.message.endpoint_id).or_default() += 1;
                            tasks.spawn(self.send_one(message, busy.clone()));
                        }
                    }
                    Err(error) => tracing::warn!(%error, "claiming webhook messages failed"),
                }
            }
            // With places free and work found, claim again at once; otherwise wait for
            // an attempt to end, the next poll, or shutdown.
            if claimed_any && tasks.len() < self.config.max_in_flight as usize {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        if let Some(task) = retention {
            task.abort();
        }
        let drain = tokio::time::timeout(self.config.attempt_timeout + Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        });
        if drain.await.is_err() {
            // Left under their leases: sent again by whichever process claims them next.
            tasks.abort_all();
        }
    }

    fn send_one(&self, claimed: ClaimedMessage, busy: Busy) -> impl Future<Output = ()> + Send + 'static {
        let (queue, guard, tls, stats) = (
            self.queue.clone(),
            self.guard.clone(),
            self.tls.clone(),
            self.stats.clone(),
        );
        let (owner, deadline) = (self.config.owner.clone(), self.config.attempt_timeout);
        async move {
            let endpoint = claimed.message.endpoint_id;
            let attempt = crate::send::attempt(&guard, &tls, &claimed, deadline).await;
            let update = MessageUpdate::after(claimed.message.attempts, attempt, rand::random::<f64>());
            stats.attempted(update.status, update.attempt.duration_ms);
            match queue.finish(&owner, claimed.message.id, &update).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(message_id = %claimed.message.id, "webhook message lease lost before its outcome")
                }
                Err(error) => {
                    tracing::warn!(message_id = %claimed.message.id, %error, "recording a webhook attempt failed")
                }
            }
            let mut places = lock(&busy);
            if let Some(n) = places.get_mut(&endpoint) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    places.remove(&endpoint);
                }
            }
        }
    }
}

fn lock(busy: &Busy) -> std::sync::MutexGuard<'_, HashMap<EndpointId, u32>> {
    busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes delivered and failed messages older than `keep`, a batch at a time, every
/// [`RETENTION_EVERY`]; runs until aborted.
async fn remove_old(queue: Arc<dyn WebhookQueue>, keep: Duration) {
    loop {
        let before = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650));
        loop {
            match queue.remove_finished(before, RETENTION_BATCH).await {
                Ok(n) if n == RETENTION_BATCH => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "removing old webhook messages failed; tried again later");
                    break;
                }
            }
        }
        tokio::time::sleep(RETENTION_EVERY).await;
    }
}
