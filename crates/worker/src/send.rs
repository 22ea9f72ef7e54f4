//! One delivery: load its tenant, send it through the mailer's single entry point, ask
//! the domain what follows, and hand that to the recorder.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use domain::delivery::{Delivery, DeliveryUpdate};
use domain::mail::OutgoingMail;

use crate::Shared;
use crate::recorder::Outcomes;

/// Sends one delivery and hands its outcome to the recorder.
pub(crate) async fn process(shared: Arc<Shared>, outcomes: Outcomes, d: Delivery) {
    let (shared, outcomes) = (&shared, &outcomes);
    let started = Instant::now();
    let record = match shared.tenants.tenant(d.tenant_id).await {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(error = %e, delivery = %d.id, "loading the tenant failed; giving the delivery back");
            hand_over(shared, outcomes, &d, DeliveryUpdate::released(d.retries, Utc::now()));
            return;
        }
    };
    let result = match &record {
        Some(record) => {
            let mail = OutgoingMail {
                to: d.to.clone(),
                subject: d.message.subject.clone(),
                text: d.message.text.clone(),
                html: d.message.html.clone(),
                message_id: Some(d.message_id.as_str().to_owned()),
            };
            Some(shared.mailer.send(record, &mail).await)
        }
        None => None,
    };
    let at = Utc::now();
    let update = match &result {
        Some(Ok(receipt)) => DeliveryUpdate::sent(receipt, d.retries, at),
        Some(Err(failure)) => {
            DeliveryUpdate::after_failure(&d, failure, &shared.config.retry, at, rand::random::<f64>())
        }
        None => DeliveryUpdate::tenant_missing(&d, at),
    };
    if let Some(attempt) = update.attempt() {
        shared.metrics.attempted(attempt, started.elapsed());
    }
    tracing::debug!(delivery = %d.id, tenant = %d.tenant_id, message_id = %d.message_id, status = update.status().code(), "delivery attempted");
    hand_over(shared, outcomes, &d, update);
}

/// Hands an update to the recorder.
fn hand_over(shared: &Arc<Shared>, outcomes: &Outcomes, d: &Delivery, update: DeliveryUpdate) {
    if outcomes.send((d.id, update)).is_err() {
        // Only when the worker is gone; the lease runs out and it is tried again.
        tracing::error!(delivery = %d.id, "the outcome could not be handed to the recorder");
        shared.let_go(d.id);
    }
}
