//! Webhooks by the Standard Webhooks specification, against real receivers on loopback
//! that verify every request with the `standardwebhooks` package from PyPI: events of
//! tenants, settings and deliveries; a receiver that fails first, one that never answers
//! (holding up no other endpoint), secret rotation, the address guard on save and on send,
//! validation, and a killed process that loses no event.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, enqueue, registration, wait_status};
use crate::support::*;

testkit::each_backend!(
    events_arrive_signed_and_verified,
    failures_and_first_retries_of_deliveries_are_events,
    a_failing_endpoint_is_retried_and_a_silent_one_holds_up_no_other,
    secret_rotation_signs_with_both_during_the_overlap,
    bad_endpoints_are_refused_and_store_nothing,
    the_event_types_offered_are_the_domains,
);

const CREATE: &str = "mutation($i:WebhookEndpointInput!){ createWebhookEndpoint(input:$i){ secret \
    endpoint { id url tenantId eventTypes enabled description previousSecretExpiresAt } } }";
const ENDPOINTS: &str = "{ webhookEndpoints { edges { node { id url } } } }";
const MESSAGES: &str = "query($id:ID!){ webhookEndpoint(id:$id){ messages { edges { node { id eventId \
    eventType eventTypeCode tenant { name } status attempts nextAttemptAt deliveredAt body \
    recentAttempts { statusCode error durationMs responseExcerpt } } } } } }";
const ROTATE: &str = "mutation($id:ID!,$s:String,$m:Int){ rotateWebhookSecret(id:$id, secret:$s, overlapMinutes:$m){ \
    secret endpoint { previousSecretExpiresAt } } }";
const REPLAY: &str = "mutation($id:ID!){ replayWebhookMessage(id:$id){ id status attempts } }";

/// Every event type, as the API names them.
const ALL_TYPES: [&str; 10] = [
    "DELIVERY_SENT",
    "DELIVERY_FAILED",
    "DELIVERY_RETRYING",
    "DELIVERY_FELL_BACK",
    "MAIL_SETTINGS_SAVED",
    "MAIL_SETTINGS_CLEARED",
    "MAIL_SETTINGS_LIVE",
    "MAIL_SETTINGS_SUSPENDED",
    "TENANT_CREATED",
    "TENANT_PLAN_CHANGED",
];

/// A running in-process webhook dispatcher; `stop` lets its attempts finish.
struct RunningDispatcher {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl RunningDispatcher {
    fn start(app: &TestApp) -> Self {
        Self::of(app.app.dispatcher())
    }

    fn of(dispatcher: webhooks::Dispatcher) -> Self {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(dispatcher.run(async {
            let _ = rx.await;
        }));
        Self { stop, handle }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

fn webhook_config(c: &mut mailgate::config::Config) {
    c.webhook_allow_private_hosts = true;
    c.webhook_poll_ms = 50;
    c.webhook_timeout_secs = 2;
}

async fn webhook_app(backend: Backend, smtp_ports: &[u16]) -> TestApp {
    let ports = smtp_ports.to_vec();
    spawn_app_with(backend, move |c| {
        crate::support::deliveries::delivery_config(c, ports);
        webhook_config(c);
    })
    .await
}

async fn create_endpoint(app: &TestApp, input: Value) -> (String, String) {
    let created = app.ok(&app.operator(), CREATE, json!({ "i": input })).await["createWebhookEndpoint"].clone();
    let id = created["endpoint"]["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    (id, secret)
}

async fn messages(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let got = app.ok(&app.operator(), MESSAGES, json!({ "id": endpoint })).await;
    got["webhookEndpoint"]["messages"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// Polls the endpoint's messages until `done` holds for them (panics after `timeout`).
async fn wait_messages(
    app: &TestApp,
    endpoint: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let got = messages(app, endpoint).await;
        if done(&got) {
            return got;
        }
        assert!(
            start.elapsed() < timeout,
            "messages of {endpoint} never settled: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_arrive_signed_and_verified(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = webhook_app(backend, &[smtp.port]).await;
    // The secret is generated and answered once; the receiver verifies with it, at the
    // URL the endpoint is then moved to.
    let (all_id, secret) = create_endpoint(
        &app,
        json!({ "url": "http://127.0.0.1:9/not-yet", "eventTypes": ALL_TYPES, "description": "platform" }),
    )
    .await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let all = WebhookReceiver::start(&[&secret], "ok", &[]);
    app.ok(
        &app.operator(),
        "mutation($id:ID!,$u:String!){ updateWebhookEndpoint(id:$id, input:{url:$u}){ id url } }",
        json!({ "id": all_id, "u": all.url() }),
    )
    .await;
    let dispatcher = RunningDispatcher::start(&app);

    let tenant = app.create_tenant("Sakura", "SHARE").await;
    let other = app.create_tenant("Momiji", "BIZ").await;
    // An endpoint for one tenant's deliveries only.
    let scoped = WebhookReceiver::start(&["whsec_c2NvcGVkLXNlY3JldC1mb3ItdGVzdHMtb25seQ=="], "ok", &[]);
    create_endpoint(
        &app,
        json!({ "url": scoped.url(), "eventTypes": ["DELIVERY_SENT"], "tenantId": tenant,
                "secret": "whsec_c2NvcGVkLXNlY3JldC1mb3ItdGVzdHMtb25seQ==" }),
    )
    .await;

    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    app.ok(
        &app.admin(&other),
        UPDATE,
        json!({ "t": other, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    let worker = RunningWorker::start(&app);
    let mine = enqueue(&app, registration(&tenant, "ja", Some("signup-1"))).await;
    let theirs = enqueue(&app, registration(&other, "ja", Some("signup-2"))).await;
    wait_status(&app, mine["id"].as_str().expect("id"), "SENT", Duration::from_secs(20)).await;
    wait_status(
        &app,
        theirs["id"].as_str().expect("id"),
        "SENT",
        Duration::from_secs(20),
    )
    .await;
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BASIC){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    app.ok(
        &app.admin(&other),
        "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id } }",
        json!({ "t": other }),
    )
    .await;

    // 2 created, 2 saved, 2 sent, 1 plan change, 1 cleared.
    let got = all.wait_for(8, Duration::from_secs(20));
    for r in &got {
        assert!(r.verified, "the reference verifier accepts every request: {r:?}");
        assert_eq!(r.path, "/hooks/mailgate");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert!(r.headers["webhook-id"].starts_with("msg_"));
        let body = r.json();
        assert!(body["timestamp"].is_string() && body["data"].is_object(), "{body}");
    }
    let ids: HashSet<&str> = got.iter().map(|r| r.headers["webhook-id"].as_str()).collect();
    assert_eq!(ids.len(), got.len(), "one webhook-id per event");
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    for (kind, n) in [
        ("tenant.created", 2),
        ("mail_settings.saved", 2),
        ("delivery.sent", 2),
        ("tenant.plan_changed", 1),
        ("mail_settings.cleared", 1),
    ] {
        assert_eq!(types.iter().filter(|t| *t == kind).count(), n, "{kind} in {types:?}");
    }
    let plan = &all.of_type("tenant.plan_changed")[0].json()["data"];
    assert_eq!(
        (plan["from"].as_str(), plan["to"].as_str()),
        (Some("SHARE"), Some("BASIC"))
    );
    assert_eq!(plan["tenantId"], tenant.as_str());
    let sent: Vec<Value> = all.of_type("delivery.sent").iter().map(WebhookRequest::json).collect();
    let of_mine = sent
        .iter()
        .find(|b| b["data"]["deliveryId"] == mine["id"])
        .expect("my delivery's event");
    assert_eq!(of_mine["data"]["idempotencyKey"], "signup-1");
    assert_eq!(of_mine["data"]["attempt"]["smtpCode"], 250);
    // No recipient, subject or message text in any event.
    for r in &got {
        assert!(!r.body.contains("member@example.net"), "no recipient: {}", r.body);
        assert!(!r.body.contains("会員登録"), "no subject: {}", r.body);
    }

    // The scoped endpoint got exactly its tenant's delivery.
    scoped.wait_for(1, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let only: Vec<WebhookRequest> = scoped.requests();
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(only[0].verified);
    assert_eq!(only[0].json()["data"]["deliveryId"], mine["id"]);
    // What the operator sees: delivered messages, each with its 204.
    let listed = wait_messages(&app, &all_id, Duration::from_secs(5), |m| {
        m.len() == 8 && m.iter().all(|m| m["status"] == "DELIVERED")
    })
    .await;
    assert_eq!(listed[0]["recentAttempts"][0]["statusCode"], 204);
    // Each message names its tenant, for people too.
    let moved = listed
        .iter()
        .find(|m| m["eventType"] == "TENANT_PLAN_CHANGED")
        .expect("the plan change is listed");
    assert_eq!(moved["tenant"]["name"], "Sakura", "{moved}");
    // An endpoint for one tenant names it; one for every tenant names none.
    let named = app
        .ok(
            &app.operator(),
            "{ webhookEndpoints { edges { node { url tenantId tenant { name } } } } }",
            json!({}),
        )
        .await;
    let endpoints = named["webhookEndpoints"]["edges"].as_array().unwrap();
    let of =
        |url: String| endpoints.iter().find(|e| e["node"]["url"] == url.as_str()).unwrap()["node"]["tenant"].clone();
    assert_eq!(of(scoped.url()), json!({ "name": "Sakura" }));
    assert_eq!(of(all.url()), Value::Null);
    // The secret is never answered again.
    let listing = app.ok(&app.operator(), ENDPOINTS, json!({})).await;
    assert!(!listing.to_string().contains(&secret));
    drop(only);
    worker.stop().await;
    dispatcher.stop().await;
    app.finish().await;
}

async fn failures_and_first_retries_of_deliveries_are_events(backend: Backend) {
    let refusing = SmtpServer::start(SmtpOptions {
        rcpt_reply: Some("550 5.1.1 <member@example.net>: no such user".into()),
        ..SmtpOptions::plain()
    });
    let busy = SmtpServer::start(SmtpOptions {
        data_reply: Some("451 4.3.0 try again later".into()),
        data_reply_times: 2,
        ..SmtpOptions::plain()
    });
    let app = webhook_app(backend, &[refusing.port, busy.port]).await;
    let secret = "whsec_ZGVsaXZlcnktZXZlbnRzLXNlY3JldC1mb3ItdGVzdHM=";
    let receiver = WebhookReceiver::start(&[secret], "ok", &[]);
    create_endpoint(
        &app,
        json!({ "url": receiver.url(), "secret": secret,
                "eventTypes": ["DELIVERY_SENT", "DELIVERY_FAILED", "DELIVERY_RETRYING"] }),
    )
    .await;
    let refused_tenant = app.create_tenant("Refused", "SHARE").await;
    let busy_tenant = app.create_tenant("Busy", "SHARE").await;
    for (t, port) in [(&refused_tenant, refusing.port), (&busy_tenant, busy.port)] {
        app.ok(
            &app.admin(t),
            UPDATE,
            json!({ "t": t, "i": SettingsInput::plain(port).json() }),
        )
        .await;
    }
    let dispatcher = RunningDispatcher::start(&app);
    let worker = RunningWorker::start(&app);
    let refused = enqueue(&app, registration(&refused_tenant, "en", None)).await;
    let retried = enqueue(&app, registration(&busy_tenant, "en", None)).await;
    wait_status(
        &app,
        refused["id"].as_str().expect("id"),
        "FAILED",
        Duration::from_secs(20),
    )
    .await;
    let sent = wait_status(
        &app,
        retried["id"].as_str().expect("id"),
        "SENT",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(sent["retries"], 2, "two retries before it went: {sent}");
    receiver.wait_for(3, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.requests();
    assert!(got.iter().all(|r| r.verified), "{got:?}");
    let kinds: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["type"].as_str().unwrap_or("").to_owned(),
                b["data"]["deliveryId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let of = |kind: &str, d: &Value| {
        kinds
            .iter()
            .filter(|(k, id)| k == kind && d["id"] == id.as_str())
            .count()
    };
    assert_eq!(of("delivery.failed", &refused), 1, "{kinds:?}");
    assert_eq!(of("delivery.retrying", &retried), 1, "the first retry only: {kinds:?}");
    assert_eq!(of("delivery.sent", &retried), 1, "{kinds:?}");
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    let failed = &receiver.of_type("delivery.failed")[0].json()["data"];
    assert_eq!(failed["attempt"]["smtpCode"], 550);
    assert_eq!(failed["attempt"]["enhancedCode"], "5.1.1");
    assert_eq!(failed["failureReason"], "REFUSED");
    assert!(
        !failed.to_string().contains("member@example.net"),
        "no recipient: {failed}"
    );
    let retrying = &receiver.of_type("delivery.retrying")[0].json()["data"];
    assert_eq!(
        (retrying["status"].as_str(), retrying["retries"].as_i64()),
        (Some("RETRYING"), Some(1))
    );
    assert!(retrying["nextAttemptAt"].is_string());
    worker.stop().await;
    dispatcher.stop().await;
    app.finish().await;
}

async fn a_failing_endpoint_is_retried_and_a_silent_one_holds_up_no_other(backend: Backend) {
    let app = webhook_app(backend, &[]).await;
    let secret = "whsec_ZmFpbGluZy1lbmRwb2ludC1zZWNyZXQtMzItYnl0ZXM=";
    let flaky = WebhookReceiver::start(&[secret], "fail-first", &["--fail", "1"]);
    let silent = WebhookReceiver::start(&[secret], "hang", &[]);
    let good = WebhookReceiver::start(&[secret], "ok", &[]);
    let mut ids = Vec::new();
    for r in [&flaky, &silent, &good] {
        let (id, _) = create_endpoint(
            &app,
            json!({ "url": r.url(), "eventTypes": ["TENANT_CREATED"], "secret": secret }),
        )
        .await;
        ids.push(id);
    }
    let dispatcher = RunningDispatcher::start(&app);
    // The silent endpoint holds its two places; the good one's events still go at once.
    for n in 0..4 {
        app.create_tenant(&format!("Tenant {n}"), "SHARE").await;
    }
    let got = good.wait_for(4, Duration::from_secs(10));
    assert!(got.iter().all(|r| r.verified));
    // Not one of the silent endpoint's attempts has ended (each lasts until its 2 s
    // deadline), and it holds no more than its two places.
    let held = messages(&app, &ids[1]).await;
    assert!(
        held.iter().all(|m| m["attempts"] == 0),
        "the good endpoint's events waited for the silent one: {held:#?}"
    );
    // At most two at once: each attempt holds its place until its deadline, so every
    // request after the first two came when an earlier one had ended, at least a deadline
    // (2 s) after the one two places before it (by the receiver's clock: a slow machine
    // may let the first deadlines pass before this line runs, which is no fault).
    let mut came: Vec<f64> = silent.requests().iter().map(|r| r.at).collect();
    came.sort_by(f64::total_cmp);
    for k in 2..came.len() {
        assert!(
            came[k] - came[k - 2] >= 1.5,
            "at most two attempts at once per endpoint: request {k} came {:.3} s after request {}",
            came[k] - came[k - 2],
            k - 2
        );
    }

    // The flaky endpoint: 500 first, then the same message again (same webhook-id) 5 s later.
    let flaky_got = flaky.wait_for(5, Duration::from_secs(20));
    let first = &flaky_got[0];
    assert_eq!(first.answered, Some(500));
    let again: Vec<&WebhookRequest> = flaky_got[1..]
        .iter()
        .filter(|r| r.headers["webhook-id"] == first.headers["webhook-id"])
        .collect();
    assert_eq!(again.len(), 1, "retried once: {flaky_got:?}");
    assert_eq!(again[0].answered, Some(204));
    assert!(again[0].verified);
    let listed = wait_messages(&app, &ids[0], Duration::from_secs(5), |m| {
        m.len() == 4 && m.iter().all(|m| m["status"] == "DELIVERED")
    })
    .await;
    let retried = listed
        .iter()
        .find(|m| m["eventId"] == first.headers["webhook-id"].as_str())
        .expect("the retried message");
    assert_eq!(retried["attempts"], 2);
    assert_eq!(retried["recentAttempts"][0]["statusCode"], 204);
    assert_eq!(retried["recentAttempts"][1]["statusCode"], 500);
    assert_eq!(retried["recentAttempts"][1]["error"], "HTTP_STATUS");
    assert_eq!(retried["recentAttempts"][1]["responseExcerpt"], "receiver says no");

    // The silent endpoint's attempts end at the deadline and wait for their retry.
    let silent_msgs = wait_messages(&app, &ids[1], Duration::from_secs(15), |m| {
        m.iter()
            .filter(|m| m["recentAttempts"][0]["error"] == "TIMED_OUT")
            .count()
            >= 2
    })
    .await;
    let timed_out = silent_msgs
        .iter()
        .find(|m| m["recentAttempts"][0]["error"] == "TIMED_OUT")
        .expect("timed out");
    assert!(timed_out["recentAttempts"][0]["durationMs"].as_i64().unwrap_or(0) >= 1900);
    assert!(timed_out["recentAttempts"][0]["statusCode"].is_null());

    // Operators see it in /metrics too.
    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.addr))
        .bearer_auth(app.operator())
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("mailgate_webhook_messages{status=\"delivered\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailgate_webhook_attempts_total{result=\"retrying\"}"),
        "{metrics}"
    );

    // Replay: the delivered message goes again, same webhook-id, schedule started over.
    let before = flaky.requests().len();
    let replayed = app.ok(&app.operator(), REPLAY, json!({ "id": retried["id"] })).await;
    // Due at once: the answer reads the row after the replay, and the dispatcher may have
    // claimed it in between (seen once in CI under load), so SENDING is as right as PENDING.
    let status = replayed["replayWebhookMessage"]["status"].as_str().unwrap_or_default();
    assert!(matches!(status, "PENDING" | "SENDING"), "{replayed}");
    assert_eq!(replayed["replayWebhookMessage"]["attempts"], 0);
    let after = flaky.wait_for(before + 1, Duration::from_secs(10));
    assert_eq!(after[before].headers["webhook-id"], first.headers["webhook-id"]);
    assert!(after[before].verified);
    dispatcher.stop().await;
    app.finish().await;
}

async fn secret_rotation_signs_with_both_during_the_overlap(backend: Backend) {
    let app = webhook_app(backend, &[]).await;
    let s1 = "whsec_Zmlyc3Qtc2VjcmV0LWZvci1yb3RhdGlvbi10ZXN0cw==";
    let s2 = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM=";
    let s3 = "whsec_dGhpcmQtc2VjcmV0LWZvci1yb3RhdGlvbi10ZXN0cyE=";
    let receiver = WebhookReceiver::start(&[s1, s2, s3], "ok", &[]);
    let (id, _) = create_endpoint(
        &app,
        json!({ "url": receiver.url(), "eventTypes": ["TENANT_CREATED"], "secret": s1 }),
    )
    .await;
    let dispatcher = RunningDispatcher::start(&app);
    app.create_tenant("One", "SHARE").await;
    let got = receiver.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].verified_by, [0]);

    // Rotated with an hour's overlap: both sign, each on its own verifies.
    let rotated = app
        .ok(&app.operator(), ROTATE, json!({ "id": id, "s": s2, "m": 60 }))
        .await;
    assert_eq!(rotated["rotateWebhookSecret"]["secret"], s2);
    assert!(rotated["rotateWebhookSecret"]["endpoint"]["previousSecretExpiresAt"].is_string());
    app.create_tenant("Two", "SHARE").await;
    let got = receiver.wait_for(2, Duration::from_secs(10));
    assert_eq!(got[1].verified_by, [0, 1], "{:?}", got[1]);
    assert_eq!(got[1].headers["webhook-signature"].split(' ').count(), 2);

    // Rotated with no overlap: only the newest signs.
    app.ok(&app.operator(), ROTATE, json!({ "id": id, "s": s3, "m": 0 }))
        .await;
    app.create_tenant("Three", "SHARE").await;
    let got = receiver.wait_for(3, Duration::from_secs(10));
    assert_eq!(got[2].verified_by, [2], "{:?}", got[2]);
    // Retention: delivered messages older than the window go, with their attempts.
    wait_messages(&app, &id, Duration::from_secs(5), |m| {
        m.len() == 3 && m.iter().all(|m| m["status"] == "DELIVERED")
    })
    .await;
    let queue = app.app.webhook_queue.clone();
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        queue.remove_finished(past, 10).await.expect("retention"),
        0,
        "none is that old"
    );
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        queue.remove_finished(later, 2).await.expect("retention"),
        2,
        "a batch at a time"
    );
    assert_eq!(queue.remove_finished(later, 10).await.expect("retention"), 1);
    assert!(messages(&app, &id).await.is_empty());

    // A generated secret is answered; a bad one or a long overlap is refused.
    let generated = app.ok(&app.operator(), ROTATE, json!({ "id": id })).await;
    assert!(
        generated["rotateWebhookSecret"]["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_") && s != s3)
    );
    let bad = app
        .gql(
            &app.operator(),
            ROTATE,
            json!({ "id": id, "s": "whsec_short", "m": 20000 }),
        )
        .await;
    assert_eq!(code(&bad), "VALIDATION_FAILED");
    let mut f = fields(&bad);
    f.sort();
    assert_eq!(
        f,
        [
            ("overlapMinutes".to_owned(), "OUT_OF_RANGE".to_owned()),
            ("secret".to_owned(), "INVALID_FORMAT".to_owned())
        ]
    );
    dispatcher.stop().await;
    app.finish().await;
}

async fn bad_endpoints_are_refused_and_store_nothing(backend: Backend) {
    // The production guard: internal addresses are refused on save and on send.
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    let refused = |input: Value| {
        let app = &app;
        async move { app.gql(&app.operator(), CREATE, json!({ "i": input })).await }
    };
    let bad = refused(
        json!({ "url": "ftp://hooks.example/", "eventTypes": [], "tenantId": "nope",
        "secret": "not-a-secret", "description": "x".repeat(201) }),
    )
    .await;
    assert_eq!(code(&bad), "VALIDATION_FAILED");
    let mut f = fields(&bad);
    f.sort();
    assert_eq!(
        f,
        [
            ("description", "TOO_LONG"),
            ("eventTypes", "REQUIRED"),
            ("secret", "INVALID_FORMAT"),
            ("tenantId", "INVALID_FORMAT"),
            ("url", "INVALID_FORMAT"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let unknown = refused(
        json!({ "url": "https://hooks.example/", "eventTypes": ["TENANT_CREATED"],
        "tenantId": "0190b6a4-0000-7000-8000-000000000000" }),
    )
    .await;
    assert_eq!(fields(&unknown), [("tenantId".to_owned(), "UNKNOWN_TENANT".to_owned())]);
    for url in [
        "http://127.0.0.1:9/h",
        "http://localhost/h",
        "https://[::1]/h",
        "http://169.254.169.254/latest",
    ] {
        let got = refused(json!({ "url": url, "eventTypes": ["TENANT_CREATED"] })).await;
        assert_eq!(
            fields(&got),
            [("url".to_owned(), "FORBIDDEN_ADDRESS".to_owned())],
            "{url}"
        );
    }
    // Only operators.
    let admin = app
        .gql(
            &app.admin(&tenant),
            CREATE,
            json!({ "i": { "url": "https://hooks.example/", "eventTypes": ["TENANT_CREATED"] } }),
        )
        .await;
    assert_eq!(code(&admin), "FORBIDDEN");
    let listing = app.gql(&app.admin(&tenant), ENDPOINTS, json!({})).await;
    assert_eq!(code(&listing), "FORBIDDEN");
    let none = app.ok(&app.operator(), ENDPOINTS, json!({})).await;
    assert_eq!(none["webhookEndpoints"]["edges"], json!([]), "nothing stored");
    // Unknown and malformed ids.
    let missing = app
        .gql(
            &app.operator(),
            "mutation{ deleteWebhookEndpoint(id:\"x\") }",
            json!({}),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND");
    let replay = app
        .gql(
            &app.operator(),
            REPLAY,
            json!({ "id": "0190b6a4-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_eq!(code(&replay), "NOT_FOUND");

    // On send: an endpoint stored while internal hosts were allowed is not reached by a
    // dispatcher under the production guard.
    let receiver = WebhookReceiver::start(&["whsec_c2VuZC1ndWFyZC1zZWNyZXQtZm9yLXRlc3RzLW9ubHk="], "ok", &[]);
    let allowing = webhooks::GuardCheck(mailer::guard::Guard {
        allow_private: true,
        resolver: app.app.webhook_guard.resolver.clone(),
    });
    let permissive = domain::services::webhooks::WebhookService::new(
        app.app.webhook_store.clone(),
        app.app.tenants.clone(),
        std::sync::Arc::new(allowing),
    );
    let operator = domain::Caller::new("op".into(), domain::Role::Operator, None).expect("caller");
    let created = permissive
        .create(
            &operator,
            &domain::webhook::EndpointDraft {
                url: Some(receiver.url()),
                event_types: Some(vec![domain::webhook::EventType::TenantCreated]),
                ..Default::default()
            },
        )
        .await
        .expect("stored");
    let dispatcher = RunningDispatcher::start(&app);
    app.create_tenant("Momiji", "BIZ").await;
    let id = created.endpoint.id.to_string();
    let listed = wait_messages(&app, &id, Duration::from_secs(10), |m| {
        // The listing reads the message and its attempts in two statements, so it can
        // see the attempt while the message still reads SENDING: wait for both.
        m.len() == 1 && m[0]["status"] != "SENDING" && !m[0]["recentAttempts"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
    assert_eq!(listed[0]["recentAttempts"][0]["error"], "FORBIDDEN_ADDRESS");
    assert_eq!(
        listed[0]["status"], "PENDING",
        "tried again later, in case the guard changes"
    );
    assert!(receiver.requests().is_empty(), "nothing reached the internal address");
    dispatcher.stop().await;
    app.finish().await;
}

/// A process killed while it sends webhook messages loses none: the message in flight is
/// sent again once its lease runs out, the waiting ones go out, every one verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_event() {
    use testkit::process::start_with;
    let secret = "whsec_a2lsbGVkLXByb2Nlc3Mtc2VjcmV0LWZvci10ZXN0cw==";
    let silent = WebhookReceiver::start(&[secret], "hang", &[]);
    let port = silent.port;
    let dir = std::env::temp_dir().join(format!("mailgate-webhook-kill-{}", uuid::Uuid::new_v4().simple()));
    let start = || {
        let mut cmd = crate::support::process::mailgate(&dir);
        cmd.env("MAILGATE_WEBHOOK_ALLOW_PRIVATE_HOSTS", "true")
            .env("MAILGATE_WEBHOOK_TIMEOUT_SECS", "2")
            .env("MAILGATE_WEBHOOK_POLL_MS", "50");
        start_with(cmd)
    };
    let (mut child, url, operator) = start();
    let client = reqwest::Client::new();
    let gql = |query: &'static str, variables: Value| {
        let (client, url, operator) = (client.clone(), url.clone(), operator.clone());
        async move {
            let body: Value = client
                .post(&url)
                .bearer_auth(&operator)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            assert!(body.get("errors").is_none(), "{body}");
            body
        }
    };
    gql(
        "mutation($i:WebhookEndpointInput!){ createWebhookEndpoint(input:$i){ endpoint { id } } }",
        json!({ "i": { "url": format!("http://127.0.0.1:{port}/hooks/mailgate"), "eventTypes": ["TENANT_CREATED"], "secret": secret } }),
    )
    .await;
    let mut tenants = Vec::new();
    for n in 0..5 {
        let t = gql(
            "mutation($n:String!){ createTenant(name:$n, plan:SHARE){ id } }",
            json!({ "n": format!("Tenant {n}") }),
        )
        .await;
        tenants.push(t["data"]["createTenant"]["id"].as_str().expect("id").to_owned());
    }
    // Two attempts hang in the silent receiver (its two places); then the process dies.
    silent.wait_for(2, Duration::from_secs(10));
    child.kill().expect("kill -9");
    let _ = child.wait();
    testkit::process::untrack(child.id());
    drop(silent);

    // A receiver that answers, at the same address; the process again.
    let good = WebhookReceiver::start(&[secret], "ok", &["--port", &port.to_string()]);
    let (child, _, _) = start();
    let got = good.wait_for(5, Duration::from_secs(40));
    let seen: HashSet<String> = got
        .iter()
        .filter(|r| r.verified)
        .map(|r| r.json()["data"]["tenantId"].as_str().unwrap_or("").to_owned())
        .collect();
    for t in &tenants {
        assert!(seen.contains(t), "the event of tenant {t} arrived: {got:?}");
    }
    testkit::process::stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn the_event_types_offered_are_the_domains(backend: Backend) {
    let app = spawn_app(backend).await;
    let types = app.ok(&app.operator(), "{ webhookEventTypes }", json!({})).await;
    let names: Vec<&str> = types["webhookEventTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Every type of the domain's one list, in its order, as GraphQL names them (the
    // event's `type` code with `.` as `_`, upper case).
    let expected: Vec<String> = domain::webhook::EventType::ALL
        .iter()
        .map(|t| t.code().replace('.', "_").to_ascii_uppercase())
        .collect();
    assert_eq!(names, expected);
    // Operators only, like the endpoints themselves.
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    for token in [app.admin(&tenant), app.service()] {
        let refused = app.gql(&token, "{ webhookEventTypes }", json!({})).await;
        assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    }
    app.finish().await;
}
