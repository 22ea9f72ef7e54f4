//! Finishing claimed deliveries on the queue's fake: an update applies only under the
//! lease, and carries the events the domain built from the delivery the worker holds.

use chrono::{Duration, Utc};
use domain::delivery::{AttemptOutcome, Delivery, DeliveryUpdate, NotificationKind, RenderedMessage, RetryPolicy};
use domain::fakes::MemoryDeliveries;
use domain::finish::Finish;
use domain::mail::Subject;
use domain::ports::DeliveryQueue;
use domain::values::EmailAddress;
use domain::webhook::EventType;
use domain::{LeaseOwner, Locale, MessageId, TenantId};

fn delivery(tenant: TenantId) -> Delivery {
    Delivery::queued(
        tenant,
        NotificationKind::Custom,
        EmailAddress::parse("member@example.net").unwrap(),
        Locale::En,
        RenderedMessage {
            subject: Subject::parse("Hello").unwrap(),
            text: "Hello\r\n".into(),
            html: None,
        },
        MessageId::generate("platform.example"),
        Utc::now() - Duration::seconds(1),
    )
}

async fn claim_one(queue: &MemoryDeliveries, owner: &LeaseOwner, at: chrono::DateTime<Utc>) -> Delivery {
    let mut claimed = queue
        .claim(owner, at, at + Duration::minutes(1), 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one delivery due at {at}");
    claimed.remove(0)
}

#[tokio::test]
async fn a_delivery_deferred_then_retried_is_retrying_once() {
    let queue = MemoryDeliveries::default();
    let owner = LeaseOwner::unique("test");
    let policy = RetryPolicy::default();
    queue.add(delivery(TenantId::generate()));

    let now = Utc::now();
    let d = claim_one(&queue, &owner, now).await;
    assert!(!d.retried_before);
    let deferred = DeliveryUpdate::settings_unreadable(&d, &policy, now, now + Duration::minutes(1));
    assert_eq!(deferred.attempt().unwrap().outcome, AttemptOutcome::Deferred);
    assert!(queue.finish(&owner, &Finish::of(&d, deferred)).await.unwrap());

    let later = now + Duration::minutes(2);
    let d = claim_one(&queue, &owner, later).await;
    assert!(d.retried_before, "the deferral is remembered");
    assert_eq!(d.retries, 0, "a deferral uses no retry");
    let retried = DeliveryUpdate::crashed(d.retries, d.created_at, &policy, later, 0.5);
    assert_eq!(retried.attempt().unwrap().outcome, AttemptOutcome::Retry);
    assert!(queue.finish(&owner, &Finish::of(&d, retried)).await.unwrap());

    let kinds: Vec<EventType> = queue.events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::DeliveryRetrying], "the first retry only");
    let body: serde_json::Value = serde_json::from_str(&queue.events()[0].body).unwrap();
    assert_eq!(body["data"]["attempt"]["outcome"], "DEFERRED");
}

#[tokio::test]
async fn a_finish_whose_lease_is_lost_stores_no_event() {
    let queue = MemoryDeliveries::default();
    let (owner, other) = (LeaseOwner::unique("test"), LeaseOwner::unique("other"));
    queue.add(delivery(TenantId::generate()));
    let now = Utc::now();
    let d = claim_one(&queue, &owner, now).await;
    let failed = DeliveryUpdate::abandoned(&d, now);
    let finish = Finish::of(&d, failed);
    assert_eq!(finish.events().len(), 1, "delivery.failed");
    assert!(!queue.finish(&other, &finish).await.unwrap());
    assert!(queue.events().is_empty());
    assert!(queue.finish(&owner, &finish).await.unwrap());
    assert_eq!(queue.events().len(), 1);
}
