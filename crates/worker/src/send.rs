//! One delivery: load its tenant, wait for nothing (a tenant whose server is backing off,
//! or whose pacing turn has not come, has its mail postponed to then instead), send it
//! through the mailer's single entry point, ask the domain what follows, and hand that to
//! the recorder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::delivery::{Delivery, DeliveryUpdate, Postponement, is_server_wide};
use domain::health::{ServerLearnt, SettingsFailure};
use domain::mail::{OutgoingMail, is_configuration_failure, suspends_at_once};
use domain::sender::{SenderReason, SenderRoute, SenderSource};
use domain::suspension::suspension;
use tracing::Instrument as _;

use crate::Shared;
use crate::metrics::Fallback;
use crate::postpone::{PROBE_HOLD, postpone_backing_off, postpone_tenant, resume_tenant, resume_tenant_within};
use crate::recorder::{Outcomes, hand_over};
use crate::standing::Route;

/// A paced send whose turn is at most this far away waits for it on its connection;
/// further away, it is scheduled for the turn instead.
pub(crate) const PACE_SLACK: Duration = Duration::from_millis(250);

/// Sends one delivery and hands its outcome to the recorder. True when it was attempted
/// (false: given back or postponed unattempted).
pub(crate) async fn process(shared: Arc<Shared>, outcomes: Outcomes, d: Delivery) -> bool {
    let (shared, outcomes) = (&shared, &outcomes);
    let tenant = d.tenant_id;
    if DeliveryUpdate::is_abandoned(&d) {
        tracing::error!(delivery = %d.id, tenant = %tenant, claims = d.claims, "every recent try of this delivery ended with its process before an outcome; failing it");
        let update = DeliveryUpdate::abandoned(&d, Utc::now());
        if let Some(attempt) = update.attempt() {
            shared.metrics.attempted(attempt, Duration::ZERO);
        }
        hand_over(shared, outcomes, &d, update);
        return true;
    }
    // Mail that goes through the platform default whatever the tenant's route does not
    // wait for the tenant's server (its backoff, its pacing).
    if !d.via_platform
        && let Some(back_off) = shared.lanes.backing_off(tenant, Utc::now())
    {
        postpone_backing_off(shared, outcomes, tenant, vec![d], back_off);
        return false;
    }
    let started = Instant::now();
    let record = match shared.tenants.tenant(tenant).await {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(error = %e, delivery = %d.id, "loading the tenant failed; giving the delivery back");
            hand_over(shared, outcomes, &d, DeliveryUpdate::released(d.retries, Utc::now()));
            return false;
        }
    };
    let Some(record) = record else {
        let update = DeliveryUpdate::tenant_missing(&d, Utc::now());
        if let Some(attempt) = update.attempt() {
            shared.metrics.attempted(attempt, started.elapsed());
        }
        hand_over(shared, outcomes, &d, update);
        return true;
    };
    let route = Route::of(&record);
    if let SenderRoute::Unreadable { .. } = record.route() {
        let at = Utc::now();
        let update = DeliveryUpdate::settings_unreadable(&d, &shared.config.retry, at, at);
        shared.metrics.settings_unreadable();
        let until = probe_after_back_off(shared, outcomes, &d, update, at, at, false);
        tracing::warn!(tenant = %tenant, delivery = %d.id, until = %until, "the tenant's saved settings cannot be read; its mail waits until they are saved again or cleared");
        return true;
    }
    let pacing = if d.via_platform {
        None
    } else {
        shared.mailer.pacing(&record).await
    };
    shared
        .lanes
        .observe(tenant, route, pacing.is_some(), crate::standing::on_record(&record));
    if let Some(p) = pacing
        && p.next_turn_in > PACE_SLACK
    {
        let turn = Utc::now() + chrono::Duration::from_std(p.next_turn_in).unwrap_or(chrono::Duration::hours(1));
        tracing::debug!(delivery = %d.id, tenant = %tenant, wait_ms = p.next_turn_in.as_millis() as u64, "scheduled for the tenant's next turn");
        postpone_tenant(
            shared,
            outcomes,
            tenant,
            vec![d],
            Postponement::until_turn(turn, p.interval),
        );
        return false;
    }
    let mail = OutgoingMail {
        to: d.to.clone(),
        subject: d.message.subject.clone(),
        text: d.message.text.clone(),
        html: d.message.html.clone(),
        message_id: Some(d.message_id.as_str().to_owned()),
        via_platform: d.via_platform,
    };
    // One span per attempt (exported when traces are on): which delivery of which tenant,
    // the route, and how far it got. Never the recipient or the message.
    let span = tracing::info_span!(
        "delivery.attempt",
        tenant.id = %tenant,
        delivery.id = %d.id,
        mailgate.route = match route {
            Route::Own(_) if !d.via_platform => "custom",
            _ => "platform_default",
        },
        mailgate.outcome = tracing::field::Empty,
        mailgate.stage = tracing::field::Empty,
        smtp.code = tracing::field::Empty,
    );
    if let (Some(link), Some(parent)) = (&shared.trace_link, &d.trace_parent) {
        link(&span, parent.as_str());
    }
    let result = shared.mailer.send(&record, &mail).instrument(span.clone()).await;
    let at = Utc::now();
    let update = match &result {
        Ok(receipt) => DeliveryUpdate::sent(receipt, d.retries, at),
        Err(failure) => DeliveryUpdate::after_failure(&d, failure, &shared.config.retry, at, rand::random::<f64>()),
    };
    if let Some(attempt) = update.attempt() {
        shared.metrics.attempted(attempt, started.elapsed());
        span.record("mailgate.outcome", attempt.outcome.code());
        if let Some(stage) = &attempt.stage {
            span.record("mailgate.stage", stage.as_str());
        }
        if let Some(code) = attempt.smtp_code {
            span.record("smtp.code", code);
        }
    }
    drop(span);
    if update.via_platform() == Some(true) {
        tracing::info!(delivery = %d.id, tenant = %tenant, at = %update.next_attempt_at(), "the tenant's server has not taken this time-critical mail in time; it goes through the platform default");
    }
    tracing::debug!(delivery = %d.id, tenant = %tenant, message_id = %d.message_id, status = update.status().code(), "delivery attempted");
    let retry_at = update.next_attempt_at();
    // The tenant's own server was used (not the relay in its place).
    let own = match route {
        Route::Own(version) if !d.via_platform => Some(version),
        _ => None,
    };
    match &result {
        Ok(receipt) => {
            hand_over(shared, outcomes, &d, update);
            if receipt.sender.source == SenderSource::PlatformDefault {
                count_fallback(shared, &record, &d);
            }
            if let Some(version) = own {
                settings_worked(shared, &record, version).await;
            }
            // Mail the platform default sent in the tenant's place says nothing of the
            // tenant's own server: its standing stays as it was.
            if !d.via_platform {
                let accepted = shared.lanes.accepted(tenant);
                if accepted.recovered {
                    resume_tenant(shared, tenant);
                }
                if let Some(version) = accepted.remember {
                    remember_server(shared, tenant, version, ServerLearnt::Reached, at);
                }
            }
        }
        Err(failure) => match own {
            Some(version) if is_configuration_failure(failure) && shared.config.suspend_after_failures > 0 => {
                if settings_failed(shared, &record, version, failure, at).await {
                    // Due now, like the rest of the tenant's waiting mail, whichever of
                    // the two writes lands first.
                    hand_over(shared, outcomes, &d, update.due_by(at));
                    // Its mail goes through the platform default now: nothing to wait for
                    // (its server proved nothing).
                    shared.lanes.release(tenant);
                    resume_tenant_within(shared, tenant, shared.config.retry.max_delay);
                } else {
                    // One probe at a time until then: never many AUTH tries at once.
                    let until = probe_after_back_off(shared, outcomes, &d, update, at, retry_at, false);
                    tracing::info!(tenant = %tenant, stage = failure.stage.code(), until = %until, "the tenant's server refused its settings; its waiting mail waits behind one try");
                }
            }
            // The platform relay is the operator's: its trouble is everyone's, not the tenant's.
            Some(_) if is_server_wide(failure) => {
                let until = probe_after_back_off(shared, outcomes, &d, update, at, retry_at, true);
                tracing::info!(tenant = %tenant, stage = failure.stage.code(), until = %until, "the tenant's server cannot take mail now; its waiting mail is postponed");
            }
            _ => hand_over(shared, outcomes, &d, update),
        },
    }
    true
}

/// `d` failed on its tenant's server at `at` in a way every mail there would meet (its
/// update due again at `retry_at`): the server backs off ([`back_off`]) and `d`, if it
/// still waits for that server, is handed to the recorder due when the back-off ends, to
/// probe it then (time-critical mail no later than its fallback time where `falls_back`:
/// the server failed for a temporary reason, see [`Postponement::backing_off`]). The move
/// of the tenant's other waiting mail (the first beside it, the rest behind) never moves
/// it, whichever of the two writes reaches the database first. (Mail for the platform
/// default in the tenant's place that met unreadable settings waits for the back-off too,
/// but probes nothing.) Returns when the back-off ends.
fn probe_after_back_off(
    shared: &Arc<Shared>,
    outcomes: &Outcomes,
    d: &Delivery,
    update: DeliveryUpdate,
    at: chrono::DateTime<Utc>,
    retry_at: chrono::DateTime<Utc>,
    falls_back: bool,
) -> chrono::DateTime<Utc> {
    let probe = (!d.via_platform && update.waits_for_own_server()).then_some(d.id);
    let until = back_off(shared, outcomes, d.tenant_id, at, retry_at, probe, falls_back);
    let fallback = falls_back.then(|| shared.config.retry.fallback_time(d)).flatten();
    let update = update.waiting_at_least_until(until, fallback);
    if update.next_attempt_at() < until {
        shared.wake_at.at(update.next_attempt_at());
    }
    hand_over(shared, outcomes, d, update);
    until
}

/// Notes what this worker learnt of the tenant's server, for workers that start later
/// (written in the background with what else is noted meanwhile: the send does not wait
/// for it, and a failed write only means a later worker learns it again).
fn remember_server(
    shared: &Arc<Shared>,
    tenant: domain::TenantId,
    version: i64,
    learnt: ServerLearnt,
    at: chrono::DateTime<Utc>,
) {
    shared.server_notes.note(domain::health::ServerNote {
        tenant,
        version,
        learnt,
        at,
    });
}

/// Counts a delivery the platform default sent in its tenant's place.
fn count_fallback(shared: &Arc<Shared>, record: &domain::TenantRecord, d: &Delivery) {
    if d.via_platform && d.kind.is_time_critical() {
        shared.metrics.fell_back(Fallback::TimeCritical);
    } else if let SenderRoute::PlatformDefault {
        reason: SenderReason::Suspended,
        ..
    } = record.route()
    {
        shared.metrics.fell_back(Fallback::Suspended);
    }
}

/// A mail went through settings `version`: failures in a row, if any, start again.
async fn settings_worked(shared: &Arc<Shared>, record: &domain::TenantRecord, version: i64) {
    let failing = record
        .settings_of_version(version)
        .is_some_and(|s| s.health.consecutive_failures > 0);
    if !failing {
        return;
    }
    match shared.tenants.record_settings_success(record.tenant.id, version).await {
        Ok(()) => shared.views.changed(record.tenant.id).await,
        Err(e) => {
            tracing::warn!(tenant = %record.tenant.id, error = %e, "resetting the settings' failure count failed")
        }
    }
}

/// A configuration failure through settings `version`: counted, and the version
/// suspended when the count reaches the limit (with its audit entry and the notice to the
/// tenant). True when this failure suspended it.
async fn settings_failed(
    shared: &Arc<Shared>,
    record: &domain::TenantRecord,
    version: i64,
    failure: &domain::mail::SendFailure,
    at: chrono::DateTime<Utc>,
) -> bool {
    let tenant = record.tenant.id;
    let Some(stored) = record.settings_of_version(version) else {
        return false;
    };
    let remembered = SettingsFailure::of(failure, Some(&stored.settings), at);
    let writes = suspension(&record.tenant, &stored.settings, version, &remembered, at);
    match shared
        .tenants
        .record_settings_failure(
            tenant,
            version,
            &remembered,
            // A sign-in that is gone does not come back by itself: suspended at once.
            if suspends_at_once(failure) {
                1
            } else {
                shared.config.suspend_after_failures
            },
            &writes,
        )
        .await
    {
        Ok(true) => {
            shared.metrics.settings_suspended();
            shared.views.changed(tenant).await;
            tracing::warn!(tenant = %tenant, version, stage = failure.stage.code(), code = ?failure.smtp_code, "the tenant's mail server kept refusing its settings; they are suspended and its mail goes through the platform default");
            true
        }
        Ok(false) => {
            // The count changed: the next failure or success reads it anew.
            shared.views.changed(tenant).await;
            false
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "recording the settings failure failed");
            false
        }
    }
}

/// The tenant's server (or its settings) cannot take mail at `at`: it backs off until
/// the later of `retry_at` and its own doubling backoff, and its waiting mail is
/// postponed behind one probe at that time (`probe`: the failed delivery is that probe,
/// handed to the recorder due then; `falls_back`: see [`Postponement::backing_off`]).
/// Returns that time.
fn back_off(
    shared: &Arc<Shared>,
    outcomes: &Outcomes,
    tenant: domain::TenantId,
    at: chrono::DateTime<Utc>,
    retry_at: chrono::DateTime<Utc>,
    probe: Option<domain::DeliveryId>,
    falls_back: bool,
) -> chrono::DateTime<Utc> {
    let policy = shared.config.retry;
    let jitter = rand::random::<f64>();
    let unreachable = shared
        .lanes
        .unreachable(tenant, at, retry_at, probe, falls_back, |n| policy.backoff(n, jitter));
    if let Some(version) = unreachable.remember {
        remember_server(shared, tenant, version, ServerLearnt::Unreachable, at);
    }
    let until = unreachable.until;
    // The first of the tenant's waiting mail moved is due then too, beside the probe: it
    // stands in should the probe not go (it left for the platform default, expired, or its
    // write was lost). Behind one lane they go one after the other.
    postpone_tenant(
        shared,
        outcomes,
        tenant,
        Vec::new(),
        Postponement::backing_off(until, PROBE_HOLD, falls_back),
    );
    until
}
