//! The delivery worker. It claims due deliveries in batches with a lease (no row lock
//! held across network I/O), sends each through the mailer's single entry point (so the
//! sender is decided at send time), records the attempt, and schedules retries. Each
//! tenant has a cap on deliveries in flight, so a slow or silent server delays only its
//! own tenant. On shutdown it stops claiming, lets what it holds finish within a grace
//! period, and gives back what did not.

pub mod metrics;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use domain::TenantId;
use domain::delivery::{Attempt, AttemptOutcome, Delivery, DeliveryStatus, FailureDecision, RetryPolicy};
use domain::mail::{FailureKind, OutgoingMail, SendFailure, SendStage};
use domain::ports::{DeliveryStore, DeliveryUpdate, MailTransport, TenantStore};
use domain::sender::SenderSource;

pub use metrics::Metrics;

/// How the worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker's leases (unique per process).
    pub worker_id: String,
    pub batch_size: u32,
    /// Deliveries in flight in this worker at most.
    pub max_in_flight: usize,
    /// Deliveries in flight per tenant at most.
    pub per_tenant_in_flight: usize,
    /// How long a claim is held without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often to look for due deliveries when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long deliveries in flight may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    pub retry: RetryPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            batch_size: 32,
            max_in_flight: 64,
            per_tenant_in_flight: 4,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(25),
            retry: RetryPolicy::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub finished: u64,
    pub released: u64,
}

/// The worker's shared state.
struct Shared {
    config: WorkerConfig,
    deliveries: Arc<dyn DeliveryStore>,
    tenants: Arc<dyn TenantStore>,
    mailer: Arc<dyn MailTransport>,
    metrics: Arc<Metrics>,
    /// Deliveries claimed and not yet finished (to give back on shutdown).
    held: Mutex<HashSet<uuid::Uuid>>,
    /// In flight per tenant.
    in_flight: Mutex<HashMap<TenantId, usize>>,
    /// Claimed beyond a tenant's cap, waiting for its turn.
    backlog: Mutex<HashMap<TenantId, VecDeque<Delivery>>>,
}

/// The delivery worker.
pub struct Worker {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn source_code(s: SenderSource) -> &'static str {
    match s {
        SenderSource::Custom => "custom",
        SenderSource::PlatformDefault => "platform_default",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A short reason for a permanent failure (no secrets: server replies are redacted).
fn failure_reason(f: &SendFailure) -> String {
    let mut parts = vec![f.stage.code().to_owned()];
    if let Some(code) = f.smtp_code {
        parts.push(code.to_string());
    }
    match &f.server_message {
        Some(m) => parts.push(m.clone()),
        None => parts.push(format!("{:?}", f.kind)),
    }
    parts.join(" ")
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        deliveries: Arc<dyn DeliveryStore>,
        tenants: Arc<dyn TenantStore>,
        mailer: Arc<dyn MailTransport>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared {
            config,
            deliveries,
            tenants,
            mailer,
            metrics,
            held: Mutex::new(HashSet::new()),
            in_flight: Mutex::new(HashMap::new()),
            backlog: Mutex::new(HashMap::new()),
        });
        Self {
            shared,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Uses `wake` (e.g. shared with the enqueue path) to look for work at once.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Notify this to make the worker look for work at once (e.g. after an enqueue).
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` completes, then drains (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let shared = self.shared.clone();
        let cfg = shared.config.clone();
        tracing::info!(worker = %cfg.worker_id, "delivery worker started");
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut report = WorkerReport::default();
        let renew = tokio::spawn(renew_leases(shared.clone()));
        tokio::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {
                report.finished += 1;
            }
            self.start_backlog(&mut tasks);
            let capacity = cfg.max_in_flight.saturating_sub(tasks.len());
            if capacity == 0 {
                tokio::select! {
                    () = &mut shutdown => break,
                    Some(_) = tasks.join_next() => { report.finished += 1; continue; }
                }
            }
            let exclude: Vec<TenantId> = {
                let in_flight = lock(&shared.in_flight);
                let backlog = lock(&shared.backlog);
                in_flight
                    .iter()
                    .filter(|(t, n)| **n >= cfg.per_tenant_in_flight || backlog.get(*t).is_some_and(|q| !q.is_empty()))
                    .map(|(t, _)| *t)
                    .collect()
            };
            let now = Utc::now();
            let lease_until =
                now + chrono::Duration::from_std(cfg.lease).unwrap_or_else(|_| chrono::Duration::minutes(5));
            let limit = u32::try_from(capacity).unwrap_or(u32::MAX).min(cfg.batch_size);
            let batch = match shared
                .deliveries
                .claim(&cfg.worker_id, now, lease_until, limit, &exclude)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying shortly");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(cfg.poll_interval) => continue,
                    }
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(cfg.poll_interval) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => { report.finished += 1; }
                }
                continue;
            }
            for d in batch {
                lock(&shared.held).insert(d.id);
                self.start_or_queue(&mut tasks, d);
            }
        }
        tracing::info!(worker = %cfg.worker_id, in_flight = tasks.len(), "delivery worker draining");
        // Claimed but not started: give back at once.
        let waiting: Vec<Delivery> = lock(&shared.backlog).drain().flat_map(|(_, q)| q).collect();
        for d in waiting {
            if shared.deliveries.release(d.id, &cfg.worker_id).await.unwrap_or(false) {
                report.released += 1;
            }
            lock(&shared.held).remove(&d.id);
        }
        let grace = tokio::time::sleep(cfg.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(_) => report.finished += 1,
                    None => break,
                },
                () = &mut grace => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        let left: Vec<uuid::Uuid> = lock(&shared.held).drain().collect();
        for id in left {
            if shared.deliveries.release(id, &cfg.worker_id).await.unwrap_or(false) {
                report.released += 1;
            }
        }
        renew.abort();
        tracing::info!(worker = %cfg.worker_id, finished = report.finished, released = report.released, "delivery worker stopped");
        report
    }

    fn start_or_queue(&self, tasks: &mut JoinSet<()>, d: Delivery) {
        let cap = self.shared.config.per_tenant_in_flight;
        let mut in_flight = lock(&self.shared.in_flight);
        let n = in_flight.entry(d.tenant_id).or_insert(0);
        if *n >= cap {
            lock(&self.shared.backlog).entry(d.tenant_id).or_default().push_back(d);
            return;
        }
        *n += 1;
        drop(in_flight);
        tasks.spawn(process(self.shared.clone(), self.wake.clone(), d));
    }

    fn start_backlog(&self, tasks: &mut JoinSet<()>) {
        let cap = self.shared.config.per_tenant_in_flight;
        let ready: Vec<Delivery> = {
            let mut in_flight = lock(&self.shared.in_flight);
            let mut backlog = lock(&self.shared.backlog);
            let mut ready = Vec::new();
            for (tenant, queue) in backlog.iter_mut() {
                let n = in_flight.entry(*tenant).or_insert(0);
                while *n < cap {
                    let Some(d) = queue.pop_front() else { break };
                    *n += 1;
                    ready.push(d);
                }
            }
            backlog.retain(|_, q| !q.is_empty());
            in_flight.retain(|_, n| *n > 0);
            ready
        };
        for d in ready {
            tasks.spawn(process(self.shared.clone(), self.wake.clone(), d));
        }
    }
}

/// Keeps this worker's leases alive while it holds deliveries.
async fn renew_leases(shared: Arc<Shared>) {
    let every = shared.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        if lock(&shared.held).is_empty() {
            continue;
        }
        let until = Utc::now()
            + chrono::Duration::from_std(shared.config.lease).unwrap_or_else(|_| chrono::Duration::minutes(5));
        if let Err(e) = shared.deliveries.renew_leases(&shared.config.worker_id, until).await {
            tracing::warn!(error = %e, "renewing leases failed");
        }
    }
}

/// Decrements the tenant's in-flight count when a send ends (or is aborted).
struct InFlight {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    tenant: TenantId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.shared.in_flight).get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
        self.wake.notify_one();
    }
}

/// Sends one delivery and records what happened.
async fn process(shared: Arc<Shared>, wake: Arc<Notify>, d: Delivery) {
    let _guard = InFlight {
        shared: shared.clone(),
        wake,
        tenant: d.tenant_id,
    };
    let started = Instant::now();
    let cfg = &shared.config;
    let now = Utc::now;
    let result = match shared.tenants.tenant(d.tenant_id).await {
        Ok(Some(record)) => {
            let mail = OutgoingMail {
                to: d.to.clone(),
                subject: d.message.subject.clone(),
                text: d.message.text.clone(),
                html: d.message.html.clone(),
                message_id: Some(d.message_id.clone()),
            };
            shared.mailer.send(&record, &mail).await
        }
        Ok(None) => Err(SendFailure::new(SendStage::Resolve, FailureKind::InvalidMessage)),
        Err(e) => {
            tracing::warn!(error = %e, delivery = %d.id, "loading the tenant failed; giving the delivery back");
            let _ = shared.deliveries.release(d.id, &cfg.worker_id).await;
            lock(&shared.held).remove(&d.id);
            return;
        }
    };
    let at = now();
    let update = match &result {
        Ok(receipt) => DeliveryUpdate {
            status: DeliveryStatus::Sent,
            retries: d.retries,
            next_attempt_at: at,
            sent_at: Some(at),
            failure_reason: None,
            attempt: Attempt {
                at,
                outcome: AttemptOutcome::Sent,
                stage: None,
                smtp_code: receipt.smtp_code,
                enhanced_code: None,
                server_message: receipt.server_message.clone(),
                sender_address: Some(receipt.sender.address.to_string()),
                sender_source: Some(receipt.sender.source),
            },
        },
        Err(f) => {
            let decision = cfg.retry.decide(f, d.retries, d.created_at, at, rand::random::<f64>());
            let (status, retries, next, outcome, reason) = match decision {
                FailureDecision::Retry(delay) => (
                    DeliveryStatus::Retrying,
                    d.retries + 1,
                    at + chrono::Duration::from_std(delay).unwrap_or_default(),
                    AttemptOutcome::Retry,
                    None,
                ),
                FailureDecision::Defer(delay) => (
                    DeliveryStatus::Retrying,
                    d.retries,
                    at + chrono::Duration::from_std(delay).unwrap_or_default(),
                    AttemptOutcome::Deferred,
                    None,
                ),
                FailureDecision::Fail => (
                    DeliveryStatus::Failed,
                    d.retries,
                    at,
                    AttemptOutcome::Failed,
                    Some(failure_reason(f)),
                ),
                FailureDecision::Expire => (
                    DeliveryStatus::Failed,
                    d.retries,
                    at,
                    AttemptOutcome::Failed,
                    Some("expired".to_owned()),
                ),
            };
            DeliveryUpdate {
                status,
                retries,
                next_attempt_at: next,
                sent_at: None,
                failure_reason: reason,
                attempt: Attempt {
                    at,
                    outcome,
                    stage: Some(f.stage.code().to_owned()),
                    smtp_code: f.smtp_code,
                    enhanced_code: f.enhanced_code.clone(),
                    server_message: f.server_message.clone(),
                    sender_address: f.sender.as_ref().map(|s| s.address.to_string()),
                    sender_source: f.sender.as_ref().map(|s| s.source),
                },
            }
        }
    };
    let source = update.attempt.sender_source.map_or("platform_default", source_code);
    shared.metrics.record(
        match update.attempt.outcome {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Deferred => "deferred",
            AttemptOutcome::Failed => "failed",
        },
        source,
        started.elapsed(),
    );
    match shared.deliveries.finish(d.id, &cfg.worker_id, &update).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery = %d.id, "lease lost before the outcome was recorded"),
        Err(e) => {
            tracing::error!(delivery = %d.id, error = %e, "recording the outcome failed; the lease will expire and it is tried again")
        }
    }
    tracing::debug!(delivery = %d.id, tenant = %d.tenant_id, message_id = %d.message_id, status = update.status.code(), "delivery attempt recorded");
    lock(&shared.held).remove(&d.id);
}
