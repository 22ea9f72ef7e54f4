//! Which change causes which event, and the body each event is sent with. An event is
//! decided from what the change already records in its transaction — a tenant's audit
//! entry, or a delivery's update — so storage writes it in that same transaction.
//!
//! The body is Standard Webhooks' `{"type", "timestamp", "data"}`. A delivery's `data`
//! names the delivery, its tenant, kind, idempotency key, status and last attempt's codes;
//! never the recipient, the message or the server's reply text (the delivery can be read
//! through the API). A tenant event's `data` is its audit entry: who, and which fields
//! changed (secrets only as changed).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::EventType;
use crate::audit::{AuditAction, AuditEntry};
use crate::delivery::{DeliveryStatus, DeliveryUpdate, NotificationKind};
use crate::ids::DeliveryId;
use crate::settings::FieldChange;
use crate::tenant::TenantId;

/// One event, ready to be stored for every endpoint that wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The `webhook-id`: `msg_` and a time-ordered UUID.
    pub id: String,
    pub kind: EventType,
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    pub body: String,
}

impl WebhookEvent {
    fn new(kind: EventType, tenant_id: TenantId, at: DateTime<Utc>, data: Value) -> Self {
        let body = json!({
            "type": kind.code(),
            "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        Self {
            id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            kind,
            tenant_id,
            at,
            body: body.to_string(),
        }
    }

    /// The event a tenant's change causes, from its audit entry (none for entries that
    /// are not events: a test mail, a probe, a quota change).
    pub fn of_audit(audit: &AuditEntry) -> Option<Self> {
        let kind = match audit.action {
            AuditAction::TenantCreated => EventType::TenantCreated,
            AuditAction::PlanChanged => EventType::TenantPlanChanged,
            AuditAction::MailSettingsSaved => EventType::MailSettingsSaved,
            AuditAction::MailSettingsCleared => EventType::MailSettingsCleared,
            AuditAction::MailSettingsLive => EventType::MailSettingsLive,
            AuditAction::MailSettingsSuspended => EventType::MailSettingsSuspended,
            AuditAction::TestMailSent
            | AuditAction::EnqueueQuotaChanged
            | AuditAction::MailServerProbed
            | AuditAction::TenantContactChanged => {
                return None;
            }
        };
        let mut data = Map::new();
        data.insert("tenantId".into(), audit.tenant_id.to_string().into());
        data.insert(
            "actor".into(),
            json!({"subject": audit.actor_subject, "role": audit.actor_role.code()}),
        );
        let changes: Vec<Value> = audit.changes.iter().map(change_json).collect();
        data.insert("changes".into(), changes.into());
        if kind == EventType::TenantPlanChanged
            && let Some(FieldChange::Value { before, after, .. }) = audit.changes.iter().find(|c| c.field() == "plan")
        {
            data.insert("from".into(), before.clone().into());
            data.insert("to".into(), after.clone().into());
        }
        if let Some(FieldChange::Value { after: Some(v), .. }) = audit.changes.iter().find(|c| c.field() == "version")
            && let Ok(version) = v.parse::<i64>()
        {
            data.insert("version".into(), version.into());
        }
        Some(Self::new(kind, audit.tenant_id, audit.at, Value::Object(data)))
    }

    /// The events a delivery's applied update causes: `delivery.sent`, `delivery.failed`,
    /// `delivery.retrying` (when `first_retry`: no earlier attempt of it was a retry or a
    /// deferral), `delivery.fell_back` (it goes through the platform default from now on).
    pub fn of_delivery(finished: &FinishedDelivery<'_>) -> Vec<Self> {
        let u = finished.update;
        let attempt = u.attempt();
        let mut kinds = Vec::new();
        match u.status() {
            DeliveryStatus::Sent => kinds.push(EventType::DeliverySent),
            DeliveryStatus::Failed => kinds.push(EventType::DeliveryFailed),
            DeliveryStatus::Retrying if finished.first_retry && u.retries_or_defers() => {
                kinds.push(EventType::DeliveryRetrying);
            }
            _ => {}
        }
        if u.via_platform() == Some(true) {
            kinds.push(EventType::DeliveryFellBack);
        }
        if kinds.is_empty() {
            return Vec::new();
        }
        let at = attempt.map_or(u.next_attempt_at(), |a| a.at);
        let mut data = Map::new();
        data.insert("deliveryId".into(), finished.id.to_string().into());
        data.insert("tenantId".into(), finished.tenant_id.to_string().into());
        data.insert("kind".into(), finished.kind.code().into());
        data.insert("idempotencyKey".into(), finished.idempotency_key.into());
        data.insert("status".into(), u.status().code().into());
        if let Some(retries) = u.retries() {
            data.insert("retries".into(), retries.into());
        }
        if u.status() == DeliveryStatus::Retrying {
            data.insert("nextAttemptAt".into(), rfc3339(u.next_attempt_at()).into());
        }
        if let Some(sent) = u.sent_at() {
            data.insert("sentAt".into(), rfc3339(sent).into());
        }
        if let Some(reason) = u.failure_reason() {
            // A code, not the text: a refusal's text quotes the server, which may name the
            // recipient.
            data.insert("failureReason".into(), reason.code().code().into());
        }
        if let Some(a) = attempt {
            data.insert(
                "attempt".into(),
                json!({
                    "at": rfc3339(a.at),
                    "outcome": a.outcome.code(),
                    "stage": a.stage,
                    "smtpCode": a.smtp_code,
                    "enhancedCode": a.enhanced_code,
                    "senderSource": a.sender_source.map(|s| s.code()),
                }),
            );
        }
        let data = Value::Object(data);
        kinds
            .into_iter()
            .map(|kind| Self::new(kind, finished.tenant_id, at, data.clone()))
            .collect()
    }
}

/// A delivery whose update is applied, with what its events name (what the worker holds
/// of the delivery it claimed; see [`crate::finish::Finish::of`]).
#[derive(Debug, Clone, Copy)]
pub struct FinishedDelivery<'a> {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub kind: NotificationKind,
    pub idempotency_key: Option<&'a str>,
    pub update: &'a DeliveryUpdate,
    /// No earlier attempt of this delivery was a retry or a deferral.
    pub first_retry: bool,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn change_json(change: &FieldChange) -> Value {
    match change {
        FieldChange::Value { field, before, after } => json!({"field": field, "before": before, "after": after}),
        FieldChange::Secret { field } => json!({"field": field, "secretChanged": true}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Caller, Role};

    fn body(e: &WebhookEvent) -> Value {
        serde_json::from_str(&e.body).unwrap()
    }

    #[test]
    fn plan_change_names_both_plans() {
        let tenant = TenantId::generate();
        let caller = Caller::new("op".into(), Role::Operator, None).unwrap();
        let audit = AuditEntry::new(
            tenant,
            &caller,
            AuditAction::PlanChanged,
            vec![FieldChange::Value {
                field: "plan".into(),
                before: Some("BIZ".into()),
                after: Some("BASIC".into()),
            }],
            Utc::now(),
        );
        let e = WebhookEvent::of_audit(&audit).unwrap();
        assert_eq!(e.kind, EventType::TenantPlanChanged);
        assert!(e.id.starts_with("msg_"));
        let b = body(&e);
        assert_eq!(b["type"], "tenant.plan_changed");
        assert_eq!(b["data"]["from"], "BIZ");
        assert_eq!(b["data"]["to"], "BASIC");
        assert_eq!(b["data"]["tenantId"], tenant.to_string());
        let probe = AuditEntry::new(tenant, &caller, AuditAction::MailServerProbed, vec![], Utc::now());
        assert!(WebhookEvent::of_audit(&probe).is_none());
    }

    #[test]
    fn every_tenant_change_but_tests_probes_and_quotas_is_an_event() {
        let caller = Caller::new("op".into(), Role::Operator, None).unwrap();
        let kinds: Vec<Option<EventType>> = AuditAction::ALL
            .into_iter()
            .map(|a| WebhookEvent::of_audit(&AuditEntry::new(TenantId::generate(), &caller, a, vec![], Utc::now())))
            .map(|e| e.map(|e| e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(EventType::TenantCreated),
                Some(EventType::TenantPlanChanged),
                Some(EventType::MailSettingsSaved),
                Some(EventType::MailSettingsCleared),
                None,
                Some(EventType::MailSettingsLive),
                Some(EventType::MailSettingsSuspended),
                None,
                None,
                None,
            ]
        );
    }

    #[test]
    fn secrets_appear_only_as_changed() {
        let caller = Caller::new("op".into(), Role::Operator, None).unwrap();
        let audit = AuditEntry::new(
            TenantId::generate(),
            &caller,
            AuditAction::MailSettingsSaved,
            vec![FieldChange::Secret {
                field: "password".into(),
            }],
            Utc::now(),
        );
        let b = body(&WebhookEvent::of_audit(&audit).unwrap());
        assert_eq!(
            b["data"]["changes"][0],
            json!({"field": "password", "secretChanged": true})
        );
    }

    #[test]
    fn retrying_only_on_the_first_retry() {
        let at = Utc::now();
        let update = DeliveryUpdate::crashed(0, at, &crate::delivery::RetryPolicy::default(), at, 0.5);
        let finished = |first_retry| FinishedDelivery {
            id: DeliveryId::generate(),
            tenant_id: TenantId::generate(),
            kind: NotificationKind::Custom,
            idempotency_key: Some("k-1"),
            update: &update,
            first_retry,
        };
        assert!(update.retries_or_defers());
        let events = WebhookEvent::of_delivery(&finished(true));
        assert_eq!(events.len(), 1);
        let b = body(&events[0]);
        assert_eq!(b["type"], "delivery.retrying");
        assert_eq!(b["data"]["idempotencyKey"], "k-1");
        assert!(b["data"]["nextAttemptAt"].is_string());
        assert!(WebhookEvent::of_delivery(&finished(false)).is_empty());
    }
}
