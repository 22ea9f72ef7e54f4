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
use tokio::sync::{Notify, mpsc};
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

/// Tells this process's worker that tenants have new due work (an enqueue, a retry by
/// an operator). The worker uses it to skip claims that could not find anything: after a
/// claim came back short, only new work of a tenant it left out then, or time passing
/// (retries falling due, leases of other processes running out), can change that.
#[derive(Debug, Default)]
pub struct WorkSignal {
    notify: Notify,
    tenants: Mutex<WorkHint>,
}

#[derive(Debug, Default)]
struct WorkHint {
    tenants: HashSet<TenantId>,
    /// Too many tenants to keep: treat it as "anything may have work".
    overflow: bool,
}

/// Tenants remembered between two looks of the worker at most.
const WORK_HINT_TENANTS: usize = 4096;

impl WorkSignal {
    /// `tenant` has new work.
    pub fn tenant_has_work(&self, tenant: TenantId) {
        {
            let mut hint = lock(&self.tenants);
            if hint.tenants.len() < WORK_HINT_TENANTS {
                hint.tenants.insert(tenant);
            } else {
                hint.overflow = true;
            }
        }
        self.notify.notify_one();
    }

    fn take(&self) -> WorkHint {
        std::mem::take(&mut *lock(&self.tenants))
    }
}

/// What the last claims showed: no due deliveries outside `tenants` as of `since`.
struct Exhausted {
    tenants: HashSet<TenantId>,
    since: Instant,
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
    /// Notified when a send ends or outcomes are recorded (room for more work).
    progress: Notify,
}

/// The delivery worker.
pub struct Worker {
    shared: Arc<Shared>,
    wake: Arc<WorkSignal>,
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
            progress: Notify::new(),
        });
        Self {
            shared,
            wake: Arc::new(WorkSignal::default()),
        }
    }

    /// Uses `wake` (e.g. shared with the enqueue path) to look for work at once.
    pub fn with_wake(mut self, wake: Arc<WorkSignal>) -> Self {
        self.wake = wake;
        self
    }

    /// Signal this to make the worker look for work at once (e.g. after an enqueue).
    pub fn wake_handle(&self) -> Arc<WorkSignal> {
        self.wake.clone()
    }

    /// Runs until `shutdown` completes, then drains (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let shared = self.shared.clone();
        let cfg = shared.config.clone();
        tracing::info!(worker = %cfg.worker_id, "delivery worker started");
        let mut tasks: JoinSet<u64> = JoinSet::new();
        let mut report = WorkerReport::default();
        let renew = tokio::spawn(renew_leases(shared.clone()));
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_outcomes(shared.clone(), outcomes_rx));
        let batch_size = usize::try_from(cfg.batch_size.max(1)).unwrap_or(usize::MAX);
        let mut exhausted: Option<Exhausted> = None;
        tokio::pin!(shutdown);
        loop {
            while let Some(done) = tasks.try_join_next() {
                report.finished += done.unwrap_or(0);
            }
            self.start_backlog(&mut tasks, &outcomes);
            // Held: claimed and not yet recorded (waiting, sending, or being recorded). One
            // batch beyond the in-flight cap may wait here, so connections do not idle
            // while the next claim runs; claims of a few rows are not worth a statement.
            let held = lock(&shared.held).len();
            let room = (cfg.max_in_flight + batch_size).saturating_sub(held);
            // A tenant with all its slots busy and a batch waiting here is not claimed for
            // (a batch, so its slots do not run dry while the next claim is on its way).
            let exclude: HashSet<TenantId> = {
                let in_flight = lock(&shared.in_flight);
                let backlog = lock(&shared.backlog);
                in_flight
                    .iter()
                    .filter(|(t, n)| {
                        **n >= cfg.per_tenant_in_flight && backlog.get(*t).map_or(0, VecDeque::len) >= batch_size
                    })
                    .map(|(t, _)| *t)
                    .collect()
            };
            // Skip a claim that cannot find anything (see [`WorkSignal`]).
            let hint = self.wake.take();
            if hint.overflow {
                exhausted = None;
            } else if let Some(known) = &mut exhausted {
                known.tenants.extend(hint.tenants);
            }
            if exhausted
                .as_ref()
                .is_some_and(|k| k.since.elapsed() >= cfg.poll_interval)
            {
                exhausted = None;
            }
            let pointless = exhausted.as_ref().is_some_and(|k| k.tenants.is_subset(&exclude));
            if (room < batch_size.div_ceil(2) && held > 0) || pointless {
                let look_again = exhausted.as_ref().map_or(cfg.poll_interval, |k| {
                    cfg.poll_interval.saturating_sub(k.since.elapsed())
                });
                tokio::select! {
                    () = &mut shutdown => break,
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => { report.finished += done.unwrap_or(0); }
                    () = shared.progress.notified() => {}
                    () = self.wake.notify.notified() => {}
                    () = tokio::time::sleep(look_again) => exhausted = None,
                }
                continue;
            }
            let exclude_list: Vec<TenantId> = exclude.iter().copied().collect();
            let claimed_at = Instant::now();
            let now = Utc::now();
            let lease_until =
                now + chrono::Duration::from_std(cfg.lease).unwrap_or_else(|_| chrono::Duration::minutes(5));
            let limit = u32::try_from(room.min(batch_size)).unwrap_or(u32::MAX);
            let batch = match shared
                .deliveries
                .claim(&cfg.worker_id, now, lease_until, limit, &exclude_list)
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
            if batch.len() < room.min(batch_size) {
                // Nothing else is due outside the tenants left out (until new work or time).
                exhausted = Some(match exhausted.take() {
                    Some(k) => Exhausted {
                        tenants: k.tenants.intersection(&exclude).copied().collect(),
                        since: k.since,
                    },
                    None => Exhausted {
                        tenants: exclude,
                        since: claimed_at,
                    },
                });
            }
            if batch.is_empty() {
                continue;
            }
            {
                let mut held = lock(&shared.held);
                held.extend(batch.iter().map(|d| d.id));
            }
            for d in batch {
                self.start_or_queue(&mut tasks, &outcomes, d);
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
                    Some(done) => report.finished += done.unwrap_or(0),
                    None => break,
                },
                () = &mut grace => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // Every sender is gone now, so the recorder ends once it has written what it has.
        drop(outcomes);
        if tokio::time::timeout(cfg.shutdown_grace, recorder).await.is_err() {
            tracing::error!(worker = %cfg.worker_id, "recording the last outcomes did not finish; their leases will expire and they are tried again");
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

    fn start_or_queue(&self, tasks: &mut JoinSet<u64>, outcomes: &Outcomes, d: Delivery) {
        let cfg = &self.shared.config;
        let mut in_flight = lock(&self.shared.in_flight);
        let n = in_flight.entry(d.tenant_id).or_insert(0);
        if *n >= cfg.per_tenant_in_flight || tasks.len() >= cfg.max_in_flight {
            lock(&self.shared.backlog).entry(d.tenant_id).or_default().push_back(d);
            return;
        }
        *n += 1;
        drop(in_flight);
        tasks.spawn(lane(self.shared.clone(), outcomes.clone(), d));
    }

    fn start_backlog(&self, tasks: &mut JoinSet<u64>, outcomes: &Outcomes) {
        let cfg = &self.shared.config;
        let free = cfg.max_in_flight.saturating_sub(tasks.len());
        let ready: Vec<Delivery> = {
            let mut in_flight = lock(&self.shared.in_flight);
            let mut backlog = lock(&self.shared.backlog);
            let mut ready = Vec::new();
            for (tenant, queue) in backlog.iter_mut() {
                let n = in_flight.entry(*tenant).or_insert(0);
                while *n < cfg.per_tenant_in_flight && ready.len() < free {
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
            tasks.spawn(lane(self.shared.clone(), outcomes.clone(), d));
        }
    }
}

/// Attempts' outcomes on their way to the database.
type Outcomes = mpsc::UnboundedSender<(uuid::Uuid, DeliveryUpdate)>;

/// Outcomes recorded by one statement at most.
const RECORD_BATCH: usize = 256;

/// How long the recorder waits for more outcomes to record together.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// Writes outcomes as they come, all that are waiting in one transaction, so the
/// database sees one commit per batch rather than per mail. A delivery stays held (its
/// lease renewed) until its outcome is written; if writing fails, the lease runs out and
/// the delivery is tried again with the same Message-ID.
async fn record_outcomes(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<(uuid::Uuid, DeliveryUpdate)>) {
    let worker = shared.config.worker_id.clone();
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
        let results = match shared.deliveries.finish_many(&worker, &updates).await {
            Ok(done) => done.into_iter().map(Ok).collect(),
            Err(e) => {
                // One at a time, so a row the database refuses fails alone.
                tracing::warn!(error = %e, rows = updates.len(), "recording a batch of outcomes failed; recording one by one");
                let mut each = Vec::with_capacity(updates.len());
                for (id, update) in &updates {
                    each.push(shared.deliveries.finish(*id, &worker, update).await);
                }
                each
            }
        };
        for ((id, update), result) in updates.iter().zip(results) {
            match result {
                Ok(true) => shared.metrics.recorded(update.status),
                Ok(false) => tracing::warn!(delivery = %id, "lease lost before the outcome was recorded"),
                Err(e) => {
                    tracing::error!(delivery = %id, error = %e, "recording the outcome failed; the lease will expire and it is tried again")
                }
            }
            tracing::debug!(delivery = %id, status = update.status.code(), "delivery attempt recorded");
            lock(&shared.held).remove(id);
        }
        shared.progress.notify_one();
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
    tenant: TenantId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.shared.in_flight).get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
        }
        self.shared.progress.notify_one();
    }
}

/// One of a tenant's in-flight slots: sends `first`, then whatever of the tenant's
/// claimed deliveries waits here, without going back to the claiming loop in between (so
/// a connection never idles while the loop waits on the database). Returns how many
/// deliveries it attempted.
async fn lane(shared: Arc<Shared>, outcomes: Outcomes, first: Delivery) -> u64 {
    let tenant = first.tenant_id;
    let _guard = InFlight {
        shared: shared.clone(),
        tenant,
    };
    let mut next = Some(first);
    let mut attempted = 0;
    while let Some(d) = next {
        process(&shared, &outcomes, d).await;
        attempted += 1;
        next = {
            let mut backlog = lock(&shared.backlog);
            let d = backlog.get_mut(&tenant).and_then(VecDeque::pop_front);
            if backlog.get(&tenant).is_some_and(VecDeque::is_empty) {
                backlog.remove(&tenant);
            }
            d
        };
    }
    attempted
}

/// Sends one delivery and hands its outcome to the recorder.
async fn process(shared: &Arc<Shared>, outcomes: &Outcomes, d: Delivery) {
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
    tracing::debug!(delivery = %d.id, tenant = %d.tenant_id, message_id = %d.message_id, status = update.status.code(), "delivery attempted");
    if outcomes.send((d.id, update)).is_err() {
        // Only when the worker is gone; the lease runs out and it is tried again.
        tracing::error!(delivery = %d.id, "the outcome could not be handed to the recorder");
        lock(&shared.held).remove(&d.id);
    }
}
