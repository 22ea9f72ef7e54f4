//! The delivery worker. It claims due deliveries in batches with a lease (no row lock
//! held across network I/O), sends each through the mailer's single entry point (so the
//! sender is decided at send time), and records the outcome that the domain decides
//! ([`domain::delivery::DeliveryUpdate`]). What one tenant can hold is capped: rows per
//! claim, rows held, lanes (by its standing: a server that has not taken mail yet, or
//! stopped taking it, gets one lane from a side budget that proven tenants never share),
//! so a slow, silent or paced server delays only its own tenant; a tenant that cannot
//! send now (backing off, or waiting for its pacing turn) has its mail postponed in the
//! queue instead of holding anything. On shutdown it stops claiming, lets what it holds
//! finish within a grace period, and gives back what did not.
//!
//! One module per job:
//! - [`signal`]: the wake signal from enqueues, and when a claim would find nothing;
//! - `claim_loop`: the loop that claims and the drain on shutdown;
//! - `standing`: what the worker knows of each tenant's server (proven, backing off, paced);
//! - `lanes`: per-tenant slots from the main or side budget, and the backlog of claimed
//!   deliveries waiting for one;
//! - `send`: one delivery — load the tenant, send, ask the domain for the update;
//! - `server_notes`: what was learnt of tenants' servers, put on record in batches;
//! - `postpone`: a tenant's mail moved to its turn or the end of its backoff;
//! - `recorder`: outcomes written in batches;
//! - `lease`: lease renewal while deliveries are held;
//! - `retention`: the content of old deliveries removed in the background;
//! - [`metrics`]: counters for `/metrics`.

mod claim_loop;
mod claim_size;
mod lanes;
mod lease;
mod line_pace;
pub mod metrics;
mod postpone;
mod recorder;
mod retention;
mod send;
mod server_notes;
pub mod signal;
mod standing;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::delivery::RetryPolicy;
use domain::ports::{DeliveryQueue, MailTransport, TenantStore, TenantViews};
use domain::{DeliveryId, LeaseOwner};
use tokio::sync::Notify;

pub use metrics::Metrics;
pub use signal::WorkSignal;

/// How the worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker's leases (unique per process).
    pub worker_id: LeaseOwner,
    pub batch_size: u32,
    /// Deliveries in flight in this worker at most.
    pub max_in_flight: usize,
    /// Deliveries in flight per proven tenant at most.
    pub per_tenant_in_flight: usize,
    /// Lanes of unproven tenants (one each) at most, apart from `max_in_flight`.
    pub max_probing: usize,
    /// How long a claim is held without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often to look for due deliveries when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long deliveries in flight may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    pub retry: RetryPolicy,
    /// Configuration failures in a row after which a live settings version is suspended
    /// (0: never).
    pub suspend_after_failures: u32,
    /// How long a done delivery keeps its content (`None`: for ever).
    pub retention: Option<Duration>,
    /// How long a done delivery is kept at all (`None`: for ever).
    pub history: Option<Duration>,
}

impl WorkerConfig {
    /// Rows one claim hands a single tenant at most: a batch (what keeps one tenant's
    /// lanes busy while the next claim is on its way). A claim asks for up to two
    /// batches, so it always serves at least two tenants when two have mail due.
    fn per_claim(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(usize::MAX).max(1)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: LeaseOwner::unique("worker"),
            batch_size: 32,
            max_in_flight: 64,
            per_tenant_in_flight: 4,
            max_probing: 64,
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            suspend_after_failures: 3,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            history: None,
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

/// What the worker's parts share.
struct Shared {
    config: WorkerConfig,
    queue: Arc<dyn DeliveryQueue>,
    tenants: Arc<dyn TenantStore>,
    mailer: Arc<dyn MailTransport>,
    /// Told whenever this worker changed a tenant (a failure count, a suspension), and
    /// after what it learnt of a tenant's server is written (`record_changed`).
    views: Arc<dyn TenantViews>,
    metrics: Arc<Metrics>,
    /// Deliveries claimed and not yet recorded, with the retries each had when claimed
    /// (what giving it back needs).
    held: Mutex<HashMap<DeliveryId, u32>>,
    lanes: lanes::Lanes,
    /// Notified when a send ends or outcomes are recorded (room for more work).
    progress: Notify,
    /// When postponed work comes due.
    wake_at: signal::WakeAt,
    /// Makes an attempt's span continue the trace its delivery was handed in with.
    trace_link: Option<TraceLink>,
    /// What was learnt of tenants' servers, waiting to be put on record.
    server_notes: server_notes::ServerNotes,
}

/// Makes `span` a child of the W3C `traceparent` given (the binary's tracing decides how).
pub type TraceLink = Arc<dyn Fn(&tracing::Span, &str) + Send + Sync>;

impl Shared {
    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.config.lease).unwrap_or_else(|_| chrono::Duration::minutes(5))
    }

    /// Forgets a delivery this worker no longer holds.
    fn let_go(&self, id: DeliveryId) {
        lock(&self.held).remove(&id);
    }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        queue: Arc<dyn DeliveryQueue>,
        tenants: Arc<dyn TenantStore>,
        mailer: Arc<dyn MailTransport>,
        views: Arc<dyn TenantViews>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lanes = lanes::Lanes::new(
            config.per_tenant_in_flight,
            config.per_claim(),
            config.max_in_flight,
            config.max_probing,
        );
        let shared = Arc::new(Shared {
            config,
            queue,
            tenants,
            mailer,
            views,
            metrics,
            held: Mutex::new(HashMap::new()),
            lanes,
            progress: Notify::new(),
            wake_at: signal::WakeAt::default(),
            trace_link: None,
            server_notes: server_notes::ServerNotes::default(),
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

    /// Links each attempt's span to the trace its delivery was handed in with.
    pub fn with_trace_link(mut self, link: TraceLink) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.trace_link = Some(link);
        }
        self
    }

    /// Signal this to make the worker look for work at once (e.g. after an enqueue).
    pub fn wake_handle(&self) -> Arc<WorkSignal> {
        self.wake.clone()
    }

    /// Runs until `shutdown` completes, then drains (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        claim_loop::run(self.shared, self.wake, shutdown).await
    }
}
