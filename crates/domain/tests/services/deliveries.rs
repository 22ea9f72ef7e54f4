//! Notifications: who may enqueue, idempotency keys, quotas, retry.

use std::collections::BTreeMap;

use domain::Plan;
use domain::audit::AuditAction;
use domain::delivery::{DeliveryStatus, NotificationKind, NotificationRequest};
use domain::error::{Error, FieldCode};
use domain::fakes::{Fakes, admin, operator, service};
use domain::quota::{EnqueueLimits, QuotaOverride};
use domain::{Locale, TenantId};

use crate::field_codes;

fn request(tenant: TenantId, to: &str, key: Option<&str>) -> NotificationRequest {
    NotificationRequest {
        tenant_id: tenant,
        kind: NotificationKind::Custom,
        to: to.into(),
        locale: Locale::En,
        variables: BTreeMap::new(),
        subject: Some("Your order".into()),
        text: Some("Thank you.".into()),
        html: None,
        idempotency_key: key.map(str::to_owned),
    }
}

#[tokio::test]
async fn services_and_operators_enqueue_and_tenant_admins_do_not() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let d = deliveries
        .enqueue(&service(), &request(id, "member@example.net", None))
        .await
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Queued);
    assert!(
        d.message_id.as_str().ends_with("@platform.example>"),
        "the Message-ID is in the platform's domain: {}",
        d.message_id
    );
    deliveries
        .enqueue(&operator(), &request(id, "member@example.net", None))
        .await
        .unwrap();
    assert!(matches!(
        deliveries
            .enqueue(&admin(id), &request(id, "member@example.net", None))
            .await,
        Err(Error::Forbidden)
    ));
    assert!(matches!(
        deliveries
            .enqueue(&service(), &request(TenantId::generate(), "member@example.net", None))
            .await,
        Err(Error::NotFound)
    ));
    assert_eq!(fakes.deliveries.rows().len(), 2);
}

#[tokio::test]
async fn the_same_key_and_payload_is_one_delivery_and_another_payload_is_refused() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let first = deliveries
        .enqueue(&service(), &request(id, "member@example.net", Some("order-1")))
        .await
        .unwrap();
    let again = deliveries
        .enqueue(&service(), &request(id, "member@example.net", Some("order-1")))
        .await
        .unwrap();
    assert_eq!(first.id, again.id, "a retried request is the same delivery");
    let reused = deliveries
        .enqueue(&service(), &request(id, "other@example.net", Some("order-1")))
        .await;
    assert!(
        matches!(reused, Err(Error::IdempotencyKeyReused { existing }) if existing == first.id),
        "{reused:?}"
    );
    // Keys are the tenant's own: another tenant may use the same one.
    let other = fakes.tenants.add("Other", Plan::Basic);
    deliveries
        .enqueue(&service(), &request(other, "member@example.net", Some("order-1")))
        .await
        .unwrap();
    assert_eq!(fakes.deliveries.rows().len(), 2);
}

#[tokio::test]
async fn after_retention_the_key_still_tells_another_payload_apart() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let first = deliveries
        .enqueue(&service(), &request(id, "member@example.net", Some("order-2")))
        .await
        .unwrap();
    let hash = domain::delivery::retention::payload_hash(first.kind, &first.to, first.locale, &first.message);
    fakes.deliveries.change(first.id, |d| {
        d.content_removed_at = Some(chrono::Utc::now());
        d.payload_hash = Some(hash.clone());
        d.to = domain::values::EmailAddress::parse("removed@invalid.example").unwrap();
    });
    let same = deliveries
        .enqueue(&service(), &request(id, "member@example.net", Some("order-2")))
        .await
        .unwrap();
    assert_eq!(same.id, first.id);
    let other = deliveries
        .enqueue(&service(), &request(id, "someone@example.net", Some("order-2")))
        .await;
    assert!(matches!(other, Err(Error::IdempotencyKeyReused { .. })), "{other:?}");
}

#[tokio::test]
async fn bad_fields_are_all_reported_and_nothing_is_queued() {
    let fakes = Fakes::new();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let mut bad = request(id, "no-at-sign", Some(""));
    bad.subject = None;
    let error = fakes.delivery_service().enqueue(&service(), &bad).await.unwrap_err();
    let fields: Vec<&str> = field_codes(error).into_iter().map(|(f, _)| f).collect();
    assert!(
        fields.contains(&"to") && fields.contains(&"idempotencyKey"),
        "{fields:?}"
    );
    assert!(fakes.deliveries.rows().is_empty());
}

#[tokio::test]
async fn a_tenants_quota_refuses_with_when_to_try_again_and_an_override_lifts_it() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service().with_quota(
        fakes.quota.clone(),
        EnqueueLimits {
            per_minute: 2,
            per_day: 0,
        },
    );
    let id = fakes.tenants.add("Site", Plan::Basic);
    for _ in 0..2 {
        deliveries
            .enqueue(&service(), &request(id, "member@example.net", None))
            .await
            .unwrap();
    }
    let refused = deliveries
        .enqueue(&service(), &request(id, "member@example.net", None))
        .await;
    assert!(
        matches!(refused, Err(Error::QuotaExceeded { retry_after_secs }) if (1..=60).contains(&retry_after_secs)),
        "{refused:?}"
    );
    assert_eq!(fakes.deliveries.rows().len(), 2, "the refused one is not queued");

    // Only operators set overrides; out-of-range values are refused.
    assert!(matches!(
        deliveries.set_quota(&admin(id), id, QuotaOverride::default()).await,
        Err(Error::Forbidden)
    ));
    let too_big = deliveries
        .set_quota(
            &operator(),
            id,
            QuotaOverride {
                per_minute: Some(domain::quota::MAX_LIMIT + 1),
                per_day: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(field_codes(too_big), vec![("perMinute", FieldCode::OutOfRange)]);
    let (limits, _) = deliveries
        .set_quota(
            &operator(),
            id,
            QuotaOverride {
                per_minute: Some(5),
                per_day: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(limits.per_minute, 5);
    let trail: Vec<AuditAction> = fakes.tenants.audit().iter().map(|a| a.action).collect();
    assert_eq!(trail, vec![AuditAction::EnqueueQuotaChanged], "in the tenant's trail");
    assert_eq!(fakes.tenants.announced(), vec![id], "other processes drop their copy");
    assert_eq!(fakes.views.changed(), vec![id], "and so does this one");
    assert!(fakes.tenants.events().is_empty(), "no webhook event is about quotas");
    deliveries
        .enqueue(&service(), &request(id, "member@example.net", None))
        .await
        .unwrap();
}

#[tokio::test]
async fn only_failed_deliveries_are_retried_by_their_tenants_admins_or_operators() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service();
    let id = fakes.tenants.add("Site", Plan::Basic);
    let d = deliveries
        .enqueue(&service(), &request(id, "member@example.net", None))
        .await
        .unwrap();
    let queued = deliveries.retry(&admin(id), d.id).await.unwrap_err();
    assert_eq!(field_codes(queued), vec![("id", FieldCode::NotFailed)]);

    fakes.deliveries.change(d.id, |d| d.status = DeliveryStatus::Failed);
    let other = TenantId::generate();
    assert!(matches!(
        deliveries.retry(&admin(other), d.id).await,
        Err(Error::NotFound)
    ));
    let retried = deliveries.retry(&admin(id), d.id).await.unwrap();
    assert_eq!(retried.status, DeliveryStatus::Queued);
    assert_eq!(fakes.deliveries.count(id, DeliveryStatus::Queued), 1);

    fakes.deliveries.change(d.id, |d| {
        d.status = DeliveryStatus::Failed;
        d.content_removed_at = Some(chrono::Utc::now());
    });
    let removed = deliveries.retry(&operator(), d.id).await.unwrap_err();
    assert_eq!(field_codes(removed), vec![("id", FieldCode::ContentRemoved)]);
}

#[tokio::test]
async fn a_tenant_admin_reads_only_its_own_deliveries() {
    let fakes = Fakes::new();
    let deliveries = fakes.delivery_service();
    let mine = fakes.tenants.add("Mine", Plan::Basic);
    let theirs = fakes.tenants.add("Theirs", Plan::Basic);
    let d = deliveries
        .enqueue(&service(), &request(theirs, "member@example.net", None))
        .await
        .unwrap();
    assert!(deliveries.delivery(&admin(mine), d.id).await.unwrap().is_none());
    assert!(deliveries.delivery(&admin(theirs), d.id).await.unwrap().is_some());
    assert!(matches!(
        deliveries.counts(&admin(mine), theirs).await,
        Err(Error::NotFound)
    ));
    let counts = deliveries.counts(&admin(theirs), theirs).await.unwrap();
    assert_eq!(
        counts.iter().find(|(s, _)| *s == DeliveryStatus::Queued),
        Some(&(DeliveryStatus::Queued, 1))
    );
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1, "{counts:?}");
}
