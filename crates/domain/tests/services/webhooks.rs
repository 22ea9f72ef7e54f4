//! The operators' webhook endpoints: who may, what is checked, rotation, replay.

use std::time::Duration;

use domain::Plan;
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, admin, operator};
use domain::ports::HostCheck;
use domain::webhook::{EndpointDraft, EventType, MessageId, MessageStatus, WebhookMessage};

use crate::field_codes;

fn endpoint(url: &str) -> EndpointDraft {
    EndpointDraft {
        url: Some(url.into()),
        description: Some("CRM".into()),
        event_types: Some(vec![EventType::ALL[0]]),
        ..EndpointDraft::default()
    }
}

#[tokio::test]
async fn only_operators_manage_endpoints_and_internal_addresses_are_refused() {
    let fakes = Fakes::new();
    let webhooks = fakes.webhook_service();
    let id = fakes.tenants.add("Site", Plan::Share);
    assert!(matches!(
        webhooks
            .create(&admin(id), &endpoint("https://hooks.example.com/in"))
            .await,
        Err(Error::Forbidden)
    ));
    fakes.endpoint_check.answer("inside.example.com", HostCheck::Forbidden);
    let inside = webhooks
        .create(&operator(), &endpoint("https://inside.example.com/in"))
        .await
        .unwrap_err();
    assert_eq!(field_codes(inside), vec![("url", FieldCode::ForbiddenAddress)]);

    let created = webhooks
        .create(&operator(), &endpoint("https://hooks.example.com/in"))
        .await
        .unwrap();
    assert!(created.secret.expose().starts_with("whsec_"));
    let page = webhooks.endpoints(&operator(), None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1, "the refused endpoint was not stored");
}

#[tokio::test]
async fn an_endpoint_for_one_tenant_needs_a_tenant_that_exists() {
    let fakes = Fakes::new();
    let webhooks = fakes.webhook_service();
    let unknown = webhooks
        .create(
            &operator(),
            &EndpointDraft {
                tenant_id: Some(domain::TenantId::generate().to_string()),
                ..endpoint("https://hooks.example.com/in")
            },
        )
        .await
        .unwrap_err();
    assert_eq!(field_codes(unknown), vec![("tenantId", FieldCode::UnknownTenant)]);
    let id = fakes.tenants.add("Site", Plan::Share);
    let scoped = webhooks
        .create(
            &operator(),
            &EndpointDraft {
                tenant_id: Some(id.to_string()),
                ..endpoint("https://hooks.example.com/in")
            },
        )
        .await
        .unwrap();
    assert_eq!(scoped.endpoint.tenant_id, Some(id));
}

#[tokio::test]
async fn an_update_checks_a_changed_url_again_and_keeps_the_secret() {
    let fakes = Fakes::new();
    let webhooks = fakes.webhook_service();
    let created = webhooks
        .create(&operator(), &endpoint("https://hooks.example.com/in"))
        .await
        .unwrap();
    let id = created.endpoint.id;
    webhooks
        .update(
            &operator(),
            id,
            &EndpointDraft {
                description: Some("Renamed".into()),
                ..EndpointDraft::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fakes.endpoint_check.asked().len(),
        1,
        "the URL did not change: not checked again"
    );
    fakes.endpoint_check.answer("inside.example.com", HostCheck::Forbidden);
    let moved = webhooks
        .update(&operator(), id, &endpoint("https://inside.example.com/in"))
        .await
        .unwrap_err();
    assert_eq!(field_codes(moved), vec![("url", FieldCode::ForbiddenAddress)]);
    let stored = webhooks.endpoint(&operator(), id).await.unwrap().unwrap();
    assert_eq!(stored.description, "Renamed");
    assert_eq!(stored.url.as_str(), "https://hooks.example.com/in");
    assert_eq!(
        fakes.webhooks.secrets(id).unwrap().current.expose(),
        created.secret.expose()
    );
}

#[tokio::test]
async fn a_rotation_keeps_the_old_secret_signing_for_the_overlap_and_no_longer_than_a_week() {
    let fakes = Fakes::new();
    let webhooks = fakes.webhook_service();
    let created = webhooks
        .create(&operator(), &endpoint("https://hooks.example.com/in"))
        .await
        .unwrap();
    let id = created.endpoint.id;
    let too_long = webhooks
        .rotate_secret(&operator(), id, None, Some(Duration::from_secs(8 * 86_400)))
        .await
        .unwrap_err();
    assert_eq!(field_codes(too_long), vec![("overlapMinutes", FieldCode::OutOfRange)]);

    let rotated = webhooks.rotate_secret(&operator(), id, None, None).await.unwrap();
    assert_ne!(rotated.secret.expose(), created.secret.expose());
    let secrets = fakes.webhooks.secrets(id).unwrap();
    let (previous, until) = secrets.previous.expect("the old secret keeps signing a while");
    assert_eq!(previous.expose(), created.secret.expose());
    assert!(until > chrono::Utc::now() + chrono::Duration::hours(23));

    webhooks
        .rotate_secret(&operator(), id, None, Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(
        fakes.webhooks.secrets(id).unwrap().previous.is_none(),
        "zero overlap: at once"
    );
    assert!(matches!(
        webhooks
            .rotate_secret(&operator(), domain::webhook::EndpointId::generate(), None, None)
            .await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn a_replay_starts_a_failed_messages_schedule_over() {
    let fakes = Fakes::new();
    let webhooks = fakes.webhook_service();
    let created = webhooks
        .create(&operator(), &endpoint("https://hooks.example.com/in"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let message = WebhookMessage {
        id: MessageId::generate(),
        event_id: "evt_1".into(),
        endpoint_id: created.endpoint.id,
        event_type: EventType::ALL[0],
        tenant_id: domain::TenantId::generate(),
        status: MessageStatus::Failed,
        attempts: 8,
        next_attempt_at: now,
        created_at: now,
        delivered_at: None,
        body: "{}".into(),
        recent_attempts: Vec::new(),
    };
    fakes.webhooks.add_message(message.clone());
    let replayed = webhooks.replay(&operator(), message.id).await.unwrap();
    assert_eq!(replayed.status, MessageStatus::Pending);
    assert_eq!(replayed.attempts, 0);
    assert!(matches!(
        webhooks.replay(&operator(), MessageId::generate()).await,
        Err(Error::NotFound)
    ));
    let failed = webhooks
        .messages(&operator(), created.endpoint.id, Some(MessageStatus::Failed), None, 10)
        .await
        .unwrap();
    assert!(failed.items.is_empty());
}
