//! What finishing a claimed delivery writes, stated in one value ([`Finish`]): the update
//! the domain decided and the webhook events that update causes. The events are built
//! from the delivery the worker holds (its tenant, kind, idempotency key, and whether it
//! was retried before), so storage applies the update and stores the events' messages in
//! one transaction without reading anything back to decide them.

use chrono::{DateTime, Utc};

use crate::delivery::{Delivery, DeliveryUpdate, NotificationKind};
use crate::ids::{DeliveryId, IdempotencyKey};
use crate::tenant::TenantId;
use crate::webhook::event::{FinishedDelivery, WebhookEvent};

/// One claimed delivery's update and the events it causes, for
/// [`crate::ports::DeliveryQueue::finish_many`]: the events are stored (for the endpoints
/// that want them) only where the update applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    id: DeliveryId,
    update: DeliveryUpdate,
    events: Vec<WebhookEvent>,
}

impl Finish {
    /// Finishing the claimed `delivery` with `update`: its events are
    /// [`WebhookEvent::of_delivery`]'s (a `delivery.retrying` only when the delivery was
    /// neither retried nor deferred before).
    pub fn of(delivery: &Delivery, update: DeliveryUpdate) -> Self {
        Self::of_parts(
            FinishedParts {
                id: delivery.id,
                tenant_id: delivery.tenant_id,
                kind: delivery.kind,
                idempotency_key: delivery.idempotency_key.as_ref(),
                retried_before: delivery.retried_before,
            },
            update,
        )
    }

    /// [`Finish::of`] from what was kept of the claimed delivery.
    pub fn of_claimed(claimed: &ClaimedDelivery, update: DeliveryUpdate) -> Self {
        Self::of_parts(
            FinishedParts {
                id: claimed.id,
                tenant_id: claimed.tenant_id,
                kind: claimed.kind,
                idempotency_key: claimed.idempotency_key.as_ref(),
                retried_before: claimed.retried_before,
            },
            update,
        )
    }

    fn of_parts(parts: FinishedParts<'_>, update: DeliveryUpdate) -> Self {
        let events = WebhookEvent::of_delivery(&FinishedDelivery {
            id: parts.id,
            tenant_id: parts.tenant_id,
            kind: parts.kind,
            idempotency_key: parts.idempotency_key.map(IdempotencyKey::as_str),
            update: &update,
            first_retry: !parts.retried_before,
        });
        Self::with_events(parts.id, update, events)
    }

    /// A claimed delivery given back unattempted ([`DeliveryUpdate::released`]), which
    /// causes no event.
    pub fn released(id: DeliveryId, retries: u32, at: DateTime<Utc>) -> Self {
        Self::with_events(id, DeliveryUpdate::released(retries, at), Vec::new())
    }

    /// An update with the events its caller built from what it holds (storage failing a
    /// row it could not read whole, a test).
    pub fn with_events(id: DeliveryId, update: DeliveryUpdate, events: Vec<WebhookEvent>) -> Self {
        Self { id, update, events }
    }

    pub fn id(&self) -> DeliveryId {
        self.id
    }

    pub fn update(&self) -> &DeliveryUpdate {
        &self.update
    }

    /// The events to store where the update applies.
    pub fn events(&self) -> &[WebhookEvent] {
        &self.events
    }
}

/// What the events of a finish need of its delivery (held whole or as a `ClaimedDelivery`).
struct FinishedParts<'a> {
    id: DeliveryId,
    tenant_id: TenantId,
    kind: NotificationKind,
    idempotency_key: Option<&'a IdempotencyKey>,
    retried_before: bool,
}

/// What the events of a finish name of a claimed delivery, kept where the delivery itself
/// has moved on (into the task that sends it, which may panic), or read from a row that
/// cannot be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub kind: NotificationKind,
    pub idempotency_key: Option<IdempotencyKey>,
    /// See [`Delivery::retried_before`].
    pub retried_before: bool,
}

impl ClaimedDelivery {
    pub fn of(delivery: &Delivery) -> Self {
        Self {
            id: delivery.id,
            tenant_id: delivery.tenant_id,
            kind: delivery.kind,
            idempotency_key: delivery.idempotency_key.clone(),
            retried_before: delivery.retried_before,
        }
    }
}
