//! OpenTelemetry traces from the real binary to a real OTLP/HTTP receiver on loopback
//! (decoded by the `opentelemetry-proto` package): a span per GraphQL operation that
//! continues the caller's W3C `traceparent`, a span per delivery attempt with its tenant,
//! delivery, route, stage and SMTP code in the trace of the request that enqueued it,
//! spans of the queue's transactions; no recipient,
//! no secret, no variables in any span.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::client::setup_tenant;
use testkit::process::start_with;
use testkit::servers::*;

use crate::support::process::token;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

async fn traced(url: &str, token: &str, query: &str, variables: Value) -> Value {
    let body: Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({ "query": query, "variables": variables, "operationName": "Hand" }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_delivery_attempts_are_traced_without_personal_data() {
    let receiver = OtlpReceiver::start();
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let dir = std::env::temp_dir().join(format!("mailgate-traces-{}", uuid::Uuid::new_v4().simple()));
    let mut cmd = crate::support::process::mailgate(&dir);
    cmd.env("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", "true")
        .env("MAILGATE_SETTINGS_ACTIVATION", "save")
        .env("MAILGATE_SMTP_ALLOWED_PORTS", smtp.port.to_string())
        .env("MAILGATE_WORKER_POLL_MS", "50")
        .env("MAILGATE_OTLP_ENDPOINT", receiver.endpoint());
    let (child, url, operator) = start_with(cmd);
    let tenant = setup_tenant(&url, &operator, smtp.port).await;
    let service = token(&dir, "service");
    let enqueued = traced(
        &url,
        &service,
        "mutation Hand($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
        json!({ "i": { "tenantId": tenant, "kind": "CUSTOM", "to": "secret-recipient@example.net",
                       "subject": "private subject", "text": "body" } }),
    )
    .await;
    let delivery = enqueued["data"]["enqueueNotification"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    smtp.wait_for(1, Duration::from_secs(20));

    let spans = receiver.wait_for(Duration::from_secs(20), |s| {
        s.iter().any(|s| s.name == "delivery.attempt")
            && s.iter().any(|s| s.name.starts_with("graphql mutation.enqueue"))
    });
    let op = spans
        .iter()
        .find(|s| s.name == "graphql mutation.enqueueNotification")
        .expect("the operation's span");
    assert_eq!(op.trace_id, TRACE, "the caller's trace is continued");
    assert_eq!(op.parent_span_id, PARENT);
    assert_eq!(op.service, "mailgate");
    assert_eq!(
        op.attributes.get("graphql.operation.name").map(String::as_str),
        Some("Hand")
    );
    let attempt = spans
        .iter()
        .find(|s| s.name == "delivery.attempt")
        .expect("the attempt's span");
    assert_eq!(attempt.attributes["tenant.id"], tenant);
    assert_eq!(attempt.attributes["delivery.id"], delivery);
    assert_eq!(attempt.attributes["mailgate.route"], "custom");
    assert_eq!(attempt.attributes["mailgate.outcome"], "SENT");
    assert_eq!(attempt.attributes["smtp.code"], "250");
    // The attempt continues the trace of the request that handed the mail in.
    assert_eq!(attempt.trace_id, TRACE, "one trace shows the mail's whole life");
    assert_eq!(attempt.parent_span_id, op.span_id);
    assert!(spans.iter().any(|s| s.name == "queue.claim"), "{spans:#?}");
    assert!(spans.iter().any(|s| s.name == "queue.finish"), "{spans:#?}");
    // Operations without a traceparent start traces of their own.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "graphql mutation.createTenant" && s.trace_id != TRACE)
    );
    let all = format!("{spans:?}");
    for private in [
        "secret-recipient@example.net",
        "private subject",
        "variables",
        "password",
    ] {
        assert!(!all.contains(private), "{private} is in a span: {all}");
    }
    testkit::process::stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
