//! The loop that claims due deliveries and starts lanes for them, and the drain on
//! shutdown: stop claiming, give back what waits, let what is sending finish within the
//! grace period, record the last outcomes, give back whatever is still held, and write
//! what was last learnt of tenants' servers.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use std::collections::HashMap;

use chrono::Utc;
use domain::delivery::{Delivery, Postponement};
use domain::finish::Finish;
use domain::{DeliveryId, TenantId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::claim_size::ClaimSize;
use crate::lanes::{Admission, lane};
use crate::postpone::{postpone_backing_off, postpone_tenant};
use crate::recorder::{Outcomes, record_outcomes};
use crate::signal::ClaimSkipper;
use crate::standing::{BackOff, Route};
use crate::{Shared, WorkSignal, WorkerReport, lock};

/// Runs until `shutdown` completes, then drains.
pub(crate) async fn run(
    shared: Arc<Shared>,
    wake: Arc<WorkSignal>,
    shutdown: impl Future<Output = ()>,
) -> WorkerReport {
    let cfg = shared.config.clone();
    tracing::info!(worker = %cfg.worker_id, "delivery worker started");
    let mut tasks: JoinSet<u64> = JoinSet::new();
    let mut report = WorkerReport::default();
    let renew = tokio::spawn(crate::lease::renew_leases(shared.clone()));
    let retention = crate::retention::spawn(&shared);
    let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_outcomes(shared.clone(), outcomes_rx));
    let (stop_notes, notes_stop) = tokio::sync::oneshot::channel();
    let notes = tokio::spawn(crate::server_notes::write_notes(shared.clone(), notes_stop));
    let batch_size = cfg.per_claim();
    let mut claim_size = ClaimSize::new(batch_size, shared.queue.claims_take_the_write_turn());
    let mut skipper = ClaimSkipper::default();
    tokio::pin!(shutdown);
    loop {
        // The signal is looked at before anything new starts, not only while idle: a
        // claim or a lane that just proved its tenant must not start more sends after it.
        if has_fired(shutdown.as_mut()) {
            break;
        }
        while let Some(done) = tasks.try_join_next() {
            report.finished += done.unwrap_or(0);
        }
        for (d, budget) in shared.lanes.ready() {
            tasks.spawn(lane(shared.clone(), outcomes.clone(), d, budget));
        }
        // Held: claimed and not yet recorded (waiting, sending, or being recorded). One
        // batch beyond the in-flight cap may wait here, so connections do not idle
        // while the next claim runs; claims of a few rows are not worth a statement.
        // What unproven tenants hold off to the side, and what waits behind its own
        // tenant's busy lanes, takes no room from the others. Nor does what is settling
        // (sent and waiting for the recorder's next write), up to the in-flight cap's
        // worth: a lane that finished a send is free for the next one, and counting its
        // row until the write is done left lanes idle for the length of every write. A
        // recorder that far behind stops the claims until it catches up.
        let held = lock(&shared.held).len();
        let apart = shared.lanes.holdings();
        let settling = held.saturating_sub(apart.in_lanes_or_waiting);
        let recorder_behind = settling >= cfg.max_in_flight;
        let held_here = apart
            .in_lanes_or_waiting
            .saturating_sub(apart.aside + apart.behind_own_lanes);
        let room = (cfg.max_in_flight + batch_size).saturating_sub(held_here);
        let exclude = shared.lanes.saturated();
        skipper.observe(wake.take(), cfg.poll_interval);
        if shared.wake_at.take_if_due() {
            skipper.forget();
        }
        if (room < batch_size.div_ceil(2) && held_here > 0) || recorder_behind || skipper.pointless(&exclude) {
            let mut look_again = skipper.look_again_in(cfg.poll_interval);
            if let Some(due) = shared.wake_at.next_in() {
                look_again = look_again.min(due);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => { report.finished += done.unwrap_or(0); }
                () = shared.progress.notified() => {}
                () = wake.notify.notified() => {}
                () = tokio::time::sleep(look_again) => skipper.forget(),
            }
            continue;
        }
        let exclude_list: Vec<_> = exclude.iter().copied().collect();
        let claimed_at = Instant::now();
        let limits = claim_size.limits(room);
        let (limit, per_tenant) = (limits.rows, limits.per_tenant);
        let batch = match shared
            .queue
            .claim_fairly(
                &cfg.worker_id,
                Utc::now(),
                shared.lease_until(),
                u32::try_from(limit).unwrap_or(u32::MAX),
                u32::try_from(per_tenant).unwrap_or(u32::MAX),
                &exclude_list,
            )
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
        // A full claim needs no count per tenant (its limits go back to a batch).
        let mut most = 0;
        if batch.len() < limit {
            // Short, but a tenant that got its per-claim limit may have more due: nothing
            // else is due outside the excluded tenants and those.
            let mut of_tenant: HashMap<TenantId, usize> = HashMap::new();
            for d in &batch {
                *of_tenant.entry(d.tenant_id).or_default() += 1;
            }
            most = of_tenant.values().copied().max().unwrap_or(0);
            let mut known = exclude;
            known.extend(of_tenant.into_iter().filter(|(_, n)| *n >= per_tenant).map(|(t, _)| t));
            skipper.came_back_short(known, claimed_at);
        }
        claim_size.claimed(limits, batch.len(), most);
        shared.lanes.set_per_claim(claim_size.per_tenant());
        lock(&shared.held).extend(batch.iter().map(|d| (d.id, d.retries)));
        // A tenant seen for the first time: its route says whether it must earn its lanes
        // (its own server) or has them (the platform relay). One read of the (cached)
        // tenant, once per tenant.
        // Read at once, not one after another: a batch of new tenants (after a start,
        // thousands with a few mails each) does not hold the loop for a read each.
        let mut reads = JoinSet::new();
        for tenant in shared.lanes.unknown(batch.iter().map(|d| d.tenant_id)) {
            let tenants = shared.tenants.clone();
            reads.spawn(async move { (tenant, tenants.tenant(tenant).await) });
        }
        while let Some(read) = reads.join_next().await {
            if let Ok((tenant, Ok(Some(record)))) = read {
                shared
                    .lanes
                    .observe(tenant, Route::of(&record), false, crate::standing::on_record(&record));
            }
        }
        let now = Utc::now();
        let mut postponed: HashMap<TenantId, (Vec<Delivery>, Postponement)> = HashMap::new();
        let mut backing_off: HashMap<TenantId, (Vec<Delivery>, BackOff)> = HashMap::new();
        for d in batch {
            match shared.lanes.admit(d, now) {
                Admission::Start(d, budget) => {
                    tasks.spawn(lane(shared.clone(), outcomes.clone(), d, budget));
                }
                Admission::Waiting => {}
                Admission::BackingOff(d, back_off) => {
                    backing_off
                        .entry(d.tenant_id)
                        .or_insert((Vec::new(), back_off))
                        .0
                        .push(d);
                }
                Admission::OffToTheSide(d) => {
                    // One turn per tenant sent back, whatever it had in this claim.
                    let held = postponed.entry(d.tenant_id).or_insert_with(|| {
                        let wait = shared.lanes.line_wait(now);
                        let later = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        (Vec::new(), Postponement::until_a_lane(later))
                    });
                    held.0.push(d);
                }
            }
        }
        for (tenant, (held, back_off)) in backing_off {
            postpone_backing_off(&shared, &outcomes, tenant, held, back_off);
        }
        for (tenant, (held, schedule)) in postponed {
            postpone_tenant(&shared, &outcomes, tenant, held, schedule);
        }
    }
    drain(&shared, tasks, outcomes, recorder, &mut report).await;
    // What the last sends learnt is written before the worker stops (within the grace
    // period: a later worker learns the rest again).
    let _ = stop_notes.send(());
    if tokio::time::timeout(shared.config.shutdown_grace, notes).await.is_err() {
        tracing::warn!(
            "writing what was learnt of tenants' servers did not finish; a worker starting later learns it again"
        );
    }
    renew.abort();
    for task in retention {
        task.abort();
    }
    tracing::info!(worker = %cfg.worker_id, finished = report.finished, released = report.released, "delivery worker stopped");
    report
}

/// Whether `shutdown` has completed, without waiting for it (polled once; it is not
/// polled again once it has).
fn has_fired(shutdown: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    shutdown.poll(&mut cx).is_ready()
}

/// Shutdown: claimed but not started is given back at once; sends in flight may finish
/// within the grace period; their outcomes are recorded while the mailer ends its pooled
/// sessions with QUIT (within what is left of the grace period); what is still held
/// after that is given back.
async fn drain(
    shared: &Arc<Shared>,
    mut tasks: JoinSet<u64>,
    outcomes: Outcomes,
    recorder: tokio::task::JoinHandle<()>,
    report: &mut WorkerReport,
) {
    let cfg = &shared.config;
    tracing::info!(worker = %cfg.worker_id, in_flight = tasks.len(), "delivery worker draining");
    let waiting: Vec<Delivery> = shared.lanes.drain_waiting();
    let waiting: Vec<(DeliveryId, u32)> = waiting.iter().map(|d| (d.id, d.retries)).collect();
    report.released += give_back(shared, &waiting).await;
    let grace_ends = tokio::time::Instant::now() + cfg.shutdown_grace;
    let grace = tokio::time::sleep_until(grace_ends);
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
    // Every sender is gone now, so the recorder ends once it has written what it has;
    // meanwhile the sessions the lanes left idle say QUIT.
    drop(outcomes);
    let left_of_grace = grace_ends.saturating_duration_since(tokio::time::Instant::now());
    let mut recorder = recorder;
    let (recorded, ()) = tokio::join!(
        tokio::time::timeout(cfg.shutdown_grace, &mut recorder),
        shared.mailer.close_sessions(left_of_grace),
    );
    if recorded.is_err() {
        // Stopped, with its writes under way (their transactions roll back), before what
        // is still held is given back below: no write lands after that.
        recorder.abort();
        let _ = recorder.await;
        tracing::error!(worker = %cfg.worker_id, "recording the last outcomes did not finish; they are given back and tried again");
    }
    let left: Vec<(DeliveryId, u32)> = lock(&shared.held).drain().collect();
    report.released += give_back(shared, &left).await;
}

/// Gives deliveries back unattempted, all in one write; how many were given back.
async fn give_back(shared: &Shared, held: &[(DeliveryId, u32)]) -> u64 {
    if held.is_empty() {
        return 0;
    }
    let now = Utc::now();
    let updates: Vec<Finish> = held
        .iter()
        .map(|&(id, retries)| Finish::released(id, retries, now))
        .collect();
    for (id, _) in held {
        shared.let_go(*id);
    }
    match shared.queue.finish_many(&shared.config.worker_id, &updates).await {
        Ok(done) => done.into_iter().filter(|d| *d).count() as u64,
        Err(e) => {
            tracing::warn!(error = %e, deliveries = held.len(), "giving deliveries back failed; their leases will run out");
            0
        }
    }
}
