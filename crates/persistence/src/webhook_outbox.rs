//! The webhook outbox: the messages of an event, one per endpoint that wants it, written
//! in the transaction of the change that caused the event (a tenant's audit entry, a
//! delivery's finish), so an event is stored exactly when its change is.

use std::str::FromStr;

use chrono::Utc;
use domain::StoreError;
use domain::tenant::TenantId;
use domain::webhook::event::WebhookEvent;
use domain::webhook::{EventType, MessageId, MessageStatus};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect};

use crate::convert::db_err;
use crate::entities::{webhook_endpoints, webhook_messages};

/// Who wants which events: the enabled endpoints, read in the writing transaction (so an
/// endpoint registered before the change commits gets its event).
pub(crate) struct Subscriptions(Vec<(String, Option<TenantId>, Vec<EventType>)>);

impl Subscriptions {
    pub(crate) async fn read(txn: &DatabaseTransaction) -> Result<Self, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .select_only()
            .column(webhook_endpoints::Column::Id)
            .column(webhook_endpoints::Column::TenantId)
            .column(webhook_endpoints::Column::EventTypes)
            .into_tuple()
            .all(txn)
            .await
            .map_err(db_err)?;
        Ok(Self(
            rows.into_iter()
                .map(|(id, tenant, kinds)| {
                    let tenant = tenant.as_deref().and_then(|t| TenantId::from_str(t).ok());
                    (id, tenant, event_types(&kinds))
                })
                .collect(),
        ))
    }

    /// Whether any endpoint wants an event of a kind `which` picks.
    pub(crate) fn wants_any(&self, which: impl Fn(EventType) -> bool) -> bool {
        self.0.iter().any(|(_, _, wanted)| wanted.iter().any(|k| which(*k)))
    }

    /// Stores a message of each event for every endpoint that wants it.
    pub(crate) async fn append(&self, txn: &DatabaseTransaction, events: &[WebhookEvent]) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut rows = Vec::new();
        for event in events {
            for (endpoint, tenant, wanted) in &self.0 {
                if wanted.contains(&event.kind) && tenant.is_none_or(|t| t == event.tenant_id) {
                    rows.push(webhook_messages::ActiveModel {
                        id: Set(MessageId::generate().to_string()),
                        event_id: Set(event.id.clone()),
                        endpoint_id: Set(endpoint.clone()),
                        event_type: Set(event.kind.code().to_owned()),
                        tenant_id: Set(event.tenant_id.to_string()),
                        body: Set(event.body.clone()),
                        status: Set(MessageStatus::Pending.code().to_owned()),
                        attempts: Set(0),
                        next_attempt_at_ms: Set(now.timestamp_millis()),
                        lease_owner: Set(None),
                        lease_until_ms: Set(None),
                        created_at: Set(now),
                        updated_at: Set(now),
                        delivered_at: Set(None),
                    });
                }
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        webhook_messages::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// Stores the messages of `events` for the endpoints that want them, in `txn`.
pub(crate) async fn append(txn: &DatabaseTransaction, events: &[WebhookEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    Subscriptions::read(txn).await?.append(txn, events).await
}

pub(crate) fn event_types(text: &str) -> Vec<EventType> {
    text.split(',').filter_map(EventType::from_code).collect()
}

pub(crate) fn event_types_text(kinds: &[EventType]) -> String {
    kinds.iter().map(|k| k.code()).collect::<Vec<_>>().join(",")
}
