//! Postponing a tenant's mail: the deliveries this worker holds for it go back to the
//! queue on the schedule the domain describes ([`Postponement`]), then the tenant's
//! waiting rows in the database follow them, so nothing of the tenant's is claimed again
//! before its server can take it.

use std::sync::Arc;

use chrono::Utc;
use domain::TenantId;
use domain::delivery::{Delivery, DeliveryUpdate, Postponement};

use crate::Shared;
use crate::recorder::{Outcomes, hand_over};
use crate::standing::BackOff;

/// Gives back `first` and the tenant's backlog on `schedule`, in that order, and moves the
/// tenant's waiting rows after them (in the background); the worker looks for work again
/// when the schedule starts. Where the schedule lets time-critical mail fall back, such
/// mail is held no later than its fallback time ([`DeliveryUpdate::placed`]) and its
/// waiting rows stay where they are ([`Postponement::moves`]).
pub(crate) fn postpone_tenant(
    shared: &Arc<Shared>,
    outcomes: &Outcomes,
    tenant: TenantId,
    first: Vec<Delivery>,
    schedule: Postponement,
) {
    let mut held = first;
    held.extend(shared.lanes.take_backlog(tenant));
    let now = Utc::now();
    let mut n = 0u32;
    for d in &held {
        let (update, placed) = DeliveryUpdate::placed(d, &schedule, n, &shared.config.retry, now);
        if placed {
            n = n.saturating_add(1);
        } else {
            shared.wake_at.at(update.next_attempt_at());
        }
        hand_over(shared, outcomes, d, update);
    }
    shared.metrics.postponed(held.len());
    let rest = schedule.after(n);
    let queue = shared.queue.clone();
    tokio::spawn(async move {
        match queue.postpone_waiting(tenant, &rest, Utc::now()).await {
            Ok(moved) if moved > 0 => tracing::debug!(tenant = %tenant, moved, "waiting mail postponed"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "postponing the tenant's waiting mail failed; its claims postpone it one by one")
            }
        }
    });
    shared.wake_at.at(schedule.from());
}

/// Gives back `held`, claimed while its tenant's server backs off, and moves the tenant's
/// waiting mail behind the back-off ([`BackOff::schedule`]). The probe itself, if it is
/// among them (claimed before its time by another path), goes back to the back-off's end,
/// its place. Where the back-off lets it fall back, time-critical mail is held no later
/// than its fallback time, and claimed then goes through the platform default
/// ([`DeliveryUpdate::placed`]).
pub(crate) fn postpone_backing_off(
    shared: &Arc<Shared>,
    outcomes: &Outcomes,
    tenant: TenantId,
    held: Vec<Delivery>,
    back_off: BackOff,
) {
    let (probe, rest): (Vec<Delivery>, Vec<Delivery>) = held.into_iter().partition(|d| Some(d.id) == back_off.probe);
    for d in &probe {
        let (update, _) =
            DeliveryUpdate::placed(d, &back_off.schedule(PROBE_HOLD), 0, &shared.config.retry, Utc::now());
        shared.wake_at.at(update.next_attempt_at());
        hand_over(shared, outcomes, d, update);
        shared.metrics.postponed(1);
    }
    if !rest.is_empty() {
        postpone_tenant(shared, outcomes, tenant, rest, back_off.schedule(PROBE_HOLD));
    }
}

/// How long a backing-off tenant's mail waits behind its probe (it comes back at once
/// when the probe goes through; a probe's send ends well before this).
pub(crate) const PROBE_HOLD: std::time::Duration = std::time::Duration::from_secs(180);

/// Brings back the tenant's mail held behind a probe that went through.
pub(crate) fn resume_tenant(shared: &Arc<Shared>, tenant: TenantId) {
    resume_tenant_within(shared, tenant, PROBE_HOLD);
}

/// Brings the tenant's waiting mail due within `window` forward to now.
pub(crate) fn resume_tenant_within(shared: &Arc<Shared>, tenant: TenantId, window: std::time::Duration) {
    let now = Utc::now();
    let up_to = now + chrono::Duration::from_std(window).unwrap_or_default() + chrono::Duration::seconds(1);
    let queue = shared.queue.clone();
    let wake = shared.clone();
    tokio::spawn(async move {
        match queue.resume_waiting(tenant, up_to, now).await {
            Ok(moved) => {
                tracing::info!(tenant = %tenant, moved, "the tenant's server takes mail again; its waiting mail goes now");
                wake.wake_at.at(now);
                wake.progress.notify_one();
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "resuming the tenant's waiting mail failed; it goes at its time")
            }
        }
    });
}

/// The longest a tenant's mail waits when the side budget and its line are full (about
/// one probe's deadline, so the line has moved on by then); a line that moves takes it
/// back sooner ([`crate::line_pace`]).
pub(crate) const SIDE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
