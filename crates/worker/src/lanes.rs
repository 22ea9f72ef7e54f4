//! Per-tenant lanes. A lane is one of a tenant's slots: it sends a delivery, then the
//! tenant's next claimed one waiting here, without going back to the claim loop (so a
//! connection never idles while the loop waits on the database). How many lanes a tenant
//! may have, and from which budget, is its standing ([`crate::standing`]): a proven tenant
//! up to its cap from the main budget (`max_in_flight`), an unproven or paced one a single
//! lane, unproven ones from the side budget (`max_probing`), and those proven only on
//! record from a budget of the same size of their own. Claimed deliveries beyond a
//! tenant's lanes wait in its backlog here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use domain::TenantId;
use domain::delivery::{Delivery, DeliveryUpdate};
use domain::finish::{ClaimedDelivery, Finish};

use crate::line_pace::LinePace;
use crate::recorder::Outcomes;
use crate::standing::{Accepted, BackOff, Budget, Route, Standings, Unreachable};
use crate::{Shared, lock};

/// Tenants that may wait in the line of the side and on-record budgets, per lane of the
/// side budget. A claim runs ahead of those lanes (after a start, thousands of new tenants
/// come in a few claims, while a first send takes a connection and a greeting): those
/// beyond the line come back as it moves ([`crate::line_pace`]). Four per lane keeps the
/// lanes fed between two claims, and bounds what such tenants hold here when black holes
/// keep those lanes busy: the line's tenants times what one claim takes of a tenant
/// (`per_claim`), at most.
pub(crate) const SIDE_LINE_PER_LANE: usize = 4;

/// How far into the line a tenant proven on record may join, per lane of the side budget:
/// after a restart every tenant is one, and most are healthy, so they get four times the
/// room of unknown ones before coming back later. One that stopped answering meanwhile
/// holds its place until its first failure, then goes aside like any unknown server.
pub(crate) const RECORD_LINE_PER_LANE: usize = 16;

/// The lanes in use, the claimed deliveries waiting for one, and the tenants' standing.
#[derive(Debug)]
pub(crate) struct Lanes {
    per_tenant: usize,
    /// Rows a claim gives a tenant at most: the worker's batch size, or more for a lone
    /// busy tenant ([`crate::claim_size::ClaimSize`]).
    per_claim: AtomicUsize,
    max_in_flight: usize,
    max_probing: usize,
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    in_flight: HashMap<TenantId, usize>,
    backlog: HashMap<TenantId, VecDeque<Delivery>>,
    /// Lanes running from the main, the side and the on-record budget.
    main: usize,
    side: usize,
    on_record: usize,
    /// Tenants of the side budget waiting for a lane, first come first served.
    side_line: VecDeque<TenantId>,
    /// How fast that line moves.
    pace: LinePace,
    standings: Standings,
}

/// Deliveries held that take no room from other tenants: those of tenants off to the side
/// (one lane each, their own budget), and those waiting behind their own tenant's busy
/// lanes (a few per tenant at most, see [`Lanes::saturated`]). A stuck tenant's
/// deliveries are in one of the two, so they never fill the room that claims for others
/// need.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Holdings {
    pub(crate) aside: usize,
    pub(crate) behind_own_lanes: usize,
    /// Every delivery in a lane or waiting for one (the rest of what the worker holds is
    /// settling: sent and waiting to be recorded, or on its way back to the queue).
    pub(crate) in_lanes_or_waiting: usize,
}

/// What to do with a freshly claimed delivery.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Start a lane for it from this budget.
    Start(Delivery, Budget),
    /// It waits in its tenant's backlog.
    Waiting,
    /// Its tenant's server is backing off: give it back behind the probe (or, when it is
    /// the probe, for the back-off's end; see [`crate::postpone::postpone_backing_off`]).
    BackingOff(Delivery, BackOff),
    /// The side budget and its line are full: give it (and the rest of its tenant's
    /// waiting mail) back until the line has room for it ([`Lanes::line_wait`]).
    OffToTheSide(Delivery),
}

impl LaneState {
    fn held(&self, tenant: &TenantId) -> usize {
        self.in_flight.get(tenant).copied().unwrap_or(0) + self.backlog.get(tenant).map_or(0, VecDeque::len)
    }

    fn running(&self, budget: Budget) -> usize {
        match budget {
            Budget::Main => self.main,
            Budget::Side => self.side,
            Budget::OnRecord => self.on_record,
        }
    }

    /// Lanes running from the side and on-record budgets (the ones the line waits for).
    fn aside_running(&self) -> usize {
        self.side + self.on_record
    }

    fn take_slot(&mut self, tenant: TenantId, budget: Budget) {
        *self.in_flight.entry(tenant).or_insert(0) += 1;
        if budget != Budget::Main {
            let idle = self.aside_running() == 0;
            self.pace.started(Utc::now(), idle);
        }
        match budget {
            Budget::Main => self.main += 1,
            Budget::Side => self.side += 1,
            Budget::OnRecord => self.on_record += 1,
        }
    }
}

impl Lanes {
    pub(crate) fn new(per_tenant: usize, batch: usize, max_in_flight: usize, max_probing: usize) -> Self {
        Self {
            per_tenant,
            per_claim: AtomicUsize::new(batch.max(1)),
            max_in_flight,
            max_probing,
            state: Mutex::new(LaneState::default()),
        }
    }

    fn cap(&self, budget: Budget) -> usize {
        match budget {
            Budget::Main => self.max_in_flight,
            Budget::Side | Budget::OnRecord => self.max_probing,
        }
    }

    /// What the tenants hold apart from the shared room (see [`Holdings`]).
    pub(crate) fn holdings(&self) -> Holdings {
        let state = lock(&self.state);
        let tenants: HashSet<&TenantId> = state.in_flight.keys().chain(state.backlog.keys()).collect();
        let mut holdings = Holdings::default();
        for t in tenants {
            let (allowed, budget) = state.standings.lanes_allowed(*t, self.per_tenant);
            let lanes = state.in_flight.get(t).copied().unwrap_or(0);
            let waiting = state.backlog.get(t).map_or(0, VecDeque::len);
            holdings.in_lanes_or_waiting += lanes + waiting;
            if budget != Budget::Main {
                holdings.aside += lanes + waiting;
            } else if lanes >= allowed {
                holdings.behind_own_lanes += waiting;
            }
        }
        holdings
    }

    /// Tenants not worth claiming for: they hold what their lanes can use (what one
    /// claim may give a tenant waiting beside their lanes, so the lanes never run dry
    /// while the next claim is on its way; with a single lane, one waiting). A tenant
    /// still waiting for its first lane (in the side budget's line) counts too: it holds
    /// what a claim gave it until a lane is free, not its whole queue.
    pub(crate) fn saturated(&self) -> HashSet<TenantId> {
        let state = lock(&self.state);
        let tenants: HashSet<&TenantId> = state.in_flight.keys().chain(state.backlog.keys()).collect();
        tenants
            .into_iter()
            .filter(|t| state.held(t) >= self.enough(&state, **t))
            .copied()
            .collect()
    }

    /// The claim loop's limit of rows per tenant for its next claims
    /// ([`crate::claim_size::ClaimSize`]).
    pub(crate) fn set_per_claim(&self, rows: usize) {
        self.per_claim.store(rows.max(1), Ordering::Relaxed);
    }

    /// What a tenant holds when it holds enough (see [`Lanes::saturated`]).
    fn enough(&self, state: &LaneState, tenant: TenantId) -> usize {
        let (allowed, _) = state.standings.lanes_allowed(tenant, self.per_tenant);
        if allowed == 1 {
            2
        } else {
            allowed + self.per_claim.load(Ordering::Relaxed)
        }
    }

    /// Where a freshly claimed delivery goes (see [`Admission`]). Tenants of the side
    /// budget wait for a lane in a line of [`SIDE_LINE_PER_LANE`] tenants per side lane;
    /// beyond that they come back as the line moves ([`crate::line_pace`]).
    pub(crate) fn admit(&self, d: Delivery, now: DateTime<Utc>) -> Admission {
        let mut state = lock(&self.state);
        let tenant = d.tenant_id;
        // Mail for the platform default in the tenant's place does not wait for its server.
        if !d.via_platform
            && let Some(back_off) = state.standings.backing_off(tenant, now)
        {
            return Admission::BackingOff(d, back_off);
        }
        let (allowed, budget) = state.standings.lanes_allowed(tenant, self.per_tenant);
        let lanes = state.in_flight.get(&tenant).copied().unwrap_or(0);
        if lanes < allowed && state.running(budget) < self.cap(budget) {
            state.take_slot(tenant, budget);
            return Admission::Start(d, budget);
        }
        if budget != Budget::Main && lanes == 0 && !state.side_line.contains(&tenant) {
            // An unproven tenant with no lane free for it joins the line, if there is room.
            let per_lane = if budget == Budget::OnRecord {
                RECORD_LINE_PER_LANE
            } else {
                SIDE_LINE_PER_LANE
            };
            if state.side_line.len() >= self.max_probing.saturating_mul(per_lane) {
                return Admission::OffToTheSide(d);
            }
            state.side_line.push_back(tenant);
        }
        state.backlog.entry(tenant).or_default().push_back(d);
        Admission::Waiting
    }

    /// How long a tenant sent back from the full line waits (see [`LinePace::wait`]);
    /// asked once per tenant sent back, which takes its turn among them.
    pub(crate) fn line_wait(&self, now: DateTime<Utc>) -> std::time::Duration {
        let mut state = lock(&self.state);
        let running = state.aside_running();
        state.pace.wait(now, running)
    }

    /// Waiting deliveries that may start a lane now (each with its slot taken): the side
    /// budget's in the order their tenants came, the main budget's by tenant.
    pub(crate) fn ready(&self) -> Vec<(Delivery, Budget)> {
        let mut state = lock(&self.state);
        let mut ready = Vec::new();
        // The line in order: a tenant whose budget has room starts; one whose budget is
        // full keeps its place; one that no longer belongs (proven meanwhile, or already
        // sending) leaves it.
        let line = std::mem::take(&mut state.side_line);
        for tenant in line {
            let (allowed, budget) = state.standings.lanes_allowed(tenant, self.per_tenant);
            if budget == Budget::Main || state.in_flight.get(&tenant).copied().unwrap_or(0) >= allowed {
                continue;
            }
            if state.running(budget) >= self.cap(budget) {
                state.side_line.push_back(tenant);
                continue;
            }
            if let Some(d) = state.backlog.get_mut(&tenant).and_then(VecDeque::pop_front) {
                state.take_slot(tenant, budget);
                ready.push((d, budget));
            }
        }
        let tenants: Vec<TenantId> = state.backlog.keys().copied().collect();
        for tenant in tenants {
            let (allowed, budget) = state.standings.lanes_allowed(tenant, self.per_tenant);
            while state.in_flight.get(&tenant).copied().unwrap_or(0) < allowed
                && state.running(budget) < self.cap(budget)
            {
                let Some(d) = state.backlog.get_mut(&tenant).and_then(VecDeque::pop_front) else {
                    break;
                };
                state.take_slot(tenant, budget);
                ready.push((d, budget));
            }
        }
        state.backlog.retain(|_, q| !q.is_empty());
        state.in_flight.retain(|_, n| *n > 0);
        ready
    }

    /// Tenants among `tenants` this worker knows nothing of yet.
    pub(crate) fn unknown(&self, tenants: impl IntoIterator<Item = TenantId>) -> Vec<TenantId> {
        let state = lock(&self.state);
        let mut unknown: Vec<TenantId> = tenants.into_iter().filter(|t| !state.standings.knows(*t)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        unknown
    }

    /// The tenant's next waiting delivery, for a lane of its (from `budget`) that just
    /// finished a send; none when the tenant's standing no longer gives it this lane (the
    /// lane ends and the delivery starts a lane of the right kind). With it, whether the
    /// tenant just stopped holding enough: the claim loop should hear of it now, so the
    /// next claim for it is on its way before its lanes run dry.
    pub(crate) fn next_for(&self, tenant: TenantId, budget: Budget) -> Next {
        let mut state = lock(&self.state);
        let (allowed, now_budget) = state.standings.lanes_allowed(tenant, self.per_tenant);
        if now_budget != budget || state.in_flight.get(&tenant).copied().unwrap_or(0) > allowed {
            return Next {
                delivery: None,
                wants_claim: false,
            };
        }
        let enough = self.enough(&state, tenant);
        let was_enough = state.held(&tenant) >= enough;
        let delivery = state.backlog.get_mut(&tenant).and_then(VecDeque::pop_front);
        if state.backlog.get(&tenant).is_some_and(VecDeque::is_empty) {
            state.backlog.remove(&tenant);
        }
        Next {
            wants_claim: was_enough && state.held(&tenant) < enough,
            delivery,
        }
    }

    /// A lane of the tenant (from `budget`) ended.
    pub(crate) fn release_slot(&self, tenant: TenantId, budget: Budget) {
        let mut state = lock(&self.state);
        if let Some(n) = state.in_flight.get_mut(&tenant) {
            *n = n.saturating_sub(1);
        }
        if budget != Budget::Main {
            state.pace.ended(Utc::now());
        }
        match budget {
            Budget::Main => state.main = state.main.saturating_sub(1),
            Budget::Side => state.side = state.side.saturating_sub(1),
            Budget::OnRecord => state.on_record = state.on_record.saturating_sub(1),
        }
    }

    /// What of the tenant's waits here for its server (to be postponed with it); mail
    /// for the platform default in its place stays.
    pub(crate) fn take_backlog(&self, tenant: TenantId) -> Vec<Delivery> {
        let mut state = lock(&self.state);
        let Some(waiting) = state.backlog.remove(&tenant) else {
            return Vec::new();
        };
        // Mail for the platform default in the tenant's place does not wait for its
        // server: it stays for the tenant's lane.
        let (stay, taken): (Vec<Delivery>, Vec<Delivery>) = waiting.into_iter().partition(|d| d.via_platform);
        if !stay.is_empty() {
            state.backlog.insert(tenant, VecDeque::from(stay));
        }
        taken
    }

    /// Every waiting delivery (shutdown: they are given back).
    pub(crate) fn drain_waiting(&self) -> Vec<Delivery> {
        let mut state = lock(&self.state);
        state.side_line.clear();
        state.backlog.drain().flat_map(|(_, q)| q).collect()
    }

    /// See [`Standings::observe`].
    pub(crate) fn observe(&self, tenant: TenantId, route: Route, paced: bool, on_record: bool) {
        lock(&self.state).standings.observe(tenant, route, paced, on_record);
    }

    /// See [`Standings::release`].
    pub(crate) fn release(&self, tenant: TenantId) {
        lock(&self.state).standings.release(tenant);
    }

    /// See [`Standings::accepted`].
    pub(crate) fn accepted(&self, tenant: TenantId) -> Accepted {
        lock(&self.state).standings.accepted(tenant)
    }

    /// See [`Standings::unreachable`].
    pub(crate) fn unreachable(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        probe: Option<domain::DeliveryId>,
        falls_back: bool,
        backoff: impl Fn(u32) -> std::time::Duration,
    ) -> Unreachable {
        lock(&self.state)
            .standings
            .unreachable(tenant, now, retry_at, probe, falls_back, backoff)
    }

    /// See [`Standings::backing_off`].
    pub(crate) fn backing_off(&self, tenant: TenantId, now: DateTime<Utc>) -> Option<BackOff> {
        lock(&self.state).standings.backing_off(tenant, now)
    }
}

/// What [`Lanes::next_for`] hands a lane.
pub(crate) struct Next {
    pub delivery: Option<Delivery>,
    /// The tenant fell below what it should hold: time for a claim.
    pub wants_claim: bool,
}

/// Frees the tenant's slot when a lane ends (or is aborted).
struct Slot {
    shared: Arc<Shared>,
    tenant: TenantId,
    budget: Budget,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.lanes.release_slot(self.tenant, self.budget);
        self.shared.progress.notify_one();
    }
}

/// One of a tenant's lanes: sends `first`, then whatever of the tenant's claimed
/// deliveries waits here while its standing keeps this lane. Returns how many deliveries
/// it attempted.
pub(crate) async fn lane(shared: Arc<Shared>, outcomes: Outcomes, first: Delivery, budget: Budget) -> u64 {
    let tenant = first.tenant_id;
    let _slot = Slot {
        shared: shared.clone(),
        tenant,
        budget,
    };
    let mut next = Some(first);
    let mut attempted = 0;
    while let Some(d) = next {
        // Each send runs as a task of its own, so a panic while sending one delivery is
        // caught here: the delivery is retried later and the lane goes on.
        let (id, retries, created_at) = (d.id, d.retries, d.created_at);
        let claimed = ClaimedDelivery::of(&d);
        let send = AbortOnDrop(tokio::spawn(crate::send::process(shared.clone(), outcomes.clone(), d)));
        match send.join().await {
            Err(e) if e.is_panic() => {
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
                if outcomes.send(Finish::of_claimed(&claimed, update)).is_err() {
                    shared.let_go(id);
                }
                attempted += 1;
            }
            Err(_) => {}
            Ok(tried) => attempted += u64::from(tried),
        }
        let Next { delivery, wants_claim } = shared.lanes.next_for(tenant, budget);
        if wants_claim {
            shared.progress.notify_one();
        }
        next = delivery;
    }
    attempted
}

/// A send task that is aborted with its lane (on shutdown, a lane aborted after the grace
/// period must not leave its send running on its own).
struct AbortOnDrop(tokio::task::JoinHandle<bool>);

impl AbortOnDrop {
    async fn join(mut self) -> Result<bool, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
