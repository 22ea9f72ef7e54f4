//! Per-tenant lanes: each tenant may have at most `per_tenant` deliveries in flight (its
//! slots), and the worker at most `max_in_flight`. Claimed deliveries beyond a tenant's
//! slots wait in its backlog here; a slot that finishes a send takes the tenant's next
//! waiting delivery at once, without going back to the claim loop (so a connection never
//! idles while the loop waits on the database).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use domain::TenantId;
use domain::delivery::{Delivery, DeliveryUpdate};

use crate::recorder::Outcomes;
use crate::{Shared, lock};

/// The slots in use and the claimed deliveries waiting for one, by tenant.
#[derive(Debug)]
pub(crate) struct Lanes {
    per_tenant: usize,
    max_in_flight: usize,
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    in_flight: HashMap<TenantId, usize>,
    backlog: HashMap<TenantId, VecDeque<Delivery>>,
}

impl Lanes {
    pub(crate) fn new(per_tenant: usize, max_in_flight: usize) -> Self {
        Self {
            per_tenant,
            max_in_flight,
            state: Mutex::new(LaneState::default()),
        }
    }

    /// Tenants not worth claiming for: all their slots busy and a batch already waiting
    /// here (a batch, so their slots do not run dry while the next claim is on its way).
    pub(crate) fn saturated(&self, batch_size: usize) -> HashSet<TenantId> {
        let state = lock(&self.state);
        state
            .in_flight
            .iter()
            .filter(|(t, n)| **n >= self.per_tenant && state.backlog.get(*t).map_or(0, VecDeque::len) >= batch_size)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Takes a slot for a freshly claimed delivery (`running` lanes in the worker now):
    /// the delivery back if it may start a lane, `None` if it waits in the backlog.
    pub(crate) fn start_or_wait(&self, d: Delivery, running: usize) -> Option<Delivery> {
        let mut state = lock(&self.state);
        let n = state.in_flight.entry(d.tenant_id).or_insert(0);
        if *n >= self.per_tenant || running >= self.max_in_flight {
            state.backlog.entry(d.tenant_id).or_default().push_back(d);
            return None;
        }
        *n += 1;
        Some(d)
    }

    /// Waiting deliveries that may start a lane now (each with its slot taken), with
    /// `running` lanes in the worker.
    pub(crate) fn ready(&self, running: usize) -> Vec<Delivery> {
        let free = self.max_in_flight.saturating_sub(running);
        let mut state = lock(&self.state);
        let LaneState { in_flight, backlog } = &mut *state;
        let mut ready = Vec::new();
        for (tenant, queue) in backlog.iter_mut() {
            let n = in_flight.entry(*tenant).or_insert(0);
            while *n < self.per_tenant && ready.len() < free {
                let Some(d) = queue.pop_front() else { break };
                *n += 1;
                ready.push(d);
            }
        }
        backlog.retain(|_, q| !q.is_empty());
        in_flight.retain(|_, n| *n > 0);
        ready
    }

    /// The tenant's next waiting delivery, for a slot of its that just finished a send.
    pub(crate) fn next_for(&self, tenant: TenantId) -> Option<Delivery> {
        let mut state = lock(&self.state);
        let d = state.backlog.get_mut(&tenant).and_then(VecDeque::pop_front);
        if state.backlog.get(&tenant).is_some_and(VecDeque::is_empty) {
            state.backlog.remove(&tenant);
        }
        d
    }

    /// A slot of the tenant is free again.
    pub(crate) fn release_slot(&self, tenant: TenantId) {
        if let Some(n) = lock(&self.state).in_flight.get_mut(&tenant) {
            *n = n.saturating_sub(1);
        }
    }

    /// Every waiting delivery (shutdown: they are given back).
    pub(crate) fn drain_waiting(&self) -> Vec<Delivery> {
        lock(&self.state).backlog.drain().flat_map(|(_, q)| q).collect()
    }
}

/// Frees the tenant's slot when a lane ends (or is aborted).
struct Slot {
    shared: Arc<Shared>,
    tenant: TenantId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.lanes.release_slot(self.tenant);
        self.shared.progress.notify_one();
    }
}

/// One of a tenant's slots: sends `first`, then whatever of the tenant's claimed
/// deliveries waits here. Returns how many deliveries it attempted.
pub(crate) async fn lane(shared: Arc<Shared>, outcomes: Outcomes, first: Delivery) -> u64 {
    let tenant = first.tenant_id;
    let _slot = Slot {
        shared: shared.clone(),
        tenant,
    };
    let mut next = Some(first);
    let mut attempted = 0;
    while let Some(d) = next {
        // Each send runs as a task of its own, so a panic while sending one delivery is
        // caught here: the delivery is retried later and the lane goes on.
        let (id, retries, created_at) = (d.id, d.retries, d.created_at);
        let send = AbortOnDrop(tokio::spawn(crate::send::process(shared.clone(), outcomes.clone(), d)));
        if let Err(e) = send.join().await
            && e.is_panic()
        {
            tracing::error!(delivery = %id, tenant = %tenant, "sending this delivery panicked; it is tried again later");
            let update = DeliveryUpdate::crashed(
                retries,
                created_at,
                &shared.config.retry,
                chrono::Utc::now(),
                rand::random::<f64>(),
            );
            if let Some(attempt) = update.attempt() {
                shared.metrics.attempted(attempt, std::time::Duration::ZERO);
            }
            if outcomes.send((id, update)).is_err() {
                shared.let_go(id);
            }
        }
        attempted += 1;
        next = shared.lanes.next_for(tenant);
    }
    attempted
}

/// A send task that is aborted with its lane (on shutdown, a lane aborted after the grace
/// period must not leave its send running on its own).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
