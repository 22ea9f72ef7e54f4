//! The delivery worker. It claims due deliveries in batches with a lease (no row lock
//! held across network I/O), sends each through the mailer's single entry point (so the
//! sender is decided at send time), and records the outcome that the domain decides
//! ([`domain::delivery::DeliveryUpdate`]). Each tenant has a cap on deliveries in flight,
//! so a slow or silent server delays only its own tenant. On shutdown it stops claiming,
//! lets what it holds finish within a grace period, and gives back what did not.
//!
//! One module per job:
//! - [`signal`]: the wake signal from enqueues, and when a claim would find nothing;
//! - `claim_loop`: the loop that claims and the drain on shutdown;
//! - `lanes`: per-tenant slots and the backlog of claimed deliveries waiting for one;
//! - `send`: one delivery — load the tenant, send, ask the domain for the update;
//! - `recorder`: outcomes written in batches;
//! - `lease`: lease renewal while deliveries are held;
//! - [`metrics`]: counters for `/metrics`.

mod claim_loop;
mod lanes;
mod lease;
pub mod metrics;
mod recorder;
mod send;
pub mod signal;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::delivery::RetryPolicy;
use domain::ports::{DeliveryQueue, MailTransport, TenantStore};
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
            worker_id: LeaseOwner::unique("worker"),
            batch_size: 32,
            max_in_flight: 64,
            per_tenant_in_flight: 4,
            lease: Duration::from_secs(10),
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

/// What the worker's parts share.
struct Shared {
    config: WorkerConfig,
    queue: Arc<dyn DeliveryQueue>,
    tenants: Arc<dyn TenantStore>,
    mailer: Arc<dyn MailTransport>,
    metrics: Arc<Metrics>,
    /// Deliveries claimed and not yet recorded, with the retries each had when claimed
    /// (what giving it back needs).
    held: Mutex<HashMap<DeliveryId, u32>>,
    lanes: lanes::Lanes,
    /// Notified when a send ends or outcomes are recorded (room for more work).
    progress: Notify,
}

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
        metrics: Arc<Metrics>,
    ) -> Self {
        let lanes = lanes::Lanes::new(config.per_tenant_in_flight, config.max_in_flight);
        let shared = Arc::new(Shared {
            config,
            queue,
            tenants,
            mailer,
            metrics,
            held: Mutex::new(HashMap::new()),
            lanes,
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
        claim_loop::run(self.shared, self.wake, shutdown).await
    }
}
