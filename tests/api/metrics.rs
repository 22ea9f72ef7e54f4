//! `/metrics` from the metrics library: HTTP requests by route and operation (a root field
//! of the schema, never a name the client chose), test mails by result, the queue's oldest
//! due delivery, the database pool and the transport cache; no series per tenant; every
//! series the Grafana dashboard and the alert rules in `deploy/` use exists; and
//! `mailgate worker` serves its own `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{delivery_config, enqueue, registration};
use crate::support::*;

testkit::each_backend!(series_are_bounded_and_cover_what_operators_watch);

/// The samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("http://{}/metrics", app.addr))
        .bearer_auth(app.operator())
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// The `mailgate_…` names a file's expressions use.
fn names_used(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("mailgate_") && w.len() > "mailgate_".len())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

async fn series_are_bounded_and_cover_what_operators_watch(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let port = smtp.port;
    let app = spawn_app_with(backend, move |c| delivery_config(c, vec![port])).await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(port).json() }),
    )
    .await;
    let test = app
        .ok(
            &app.admin(&tenant),
            "mutation($t:ID!){ sendTestMail(tenantId:$t, to:\"owner@example.net\"){ ok } }",
            json!({ "t": tenant }),
        )
        .await;
    assert_eq!(test["sendTestMail"]["ok"], true);
    // A client-chosen operation name and an unknown field create no series of their own.
    app.ok(&app.operator(), "query Evil_0123456789 { plans { code } }", json!({}))
        .await;
    let unknown = app.gql(&app.operator(), "query { noSuchField }", json!({})).await;
    assert!(unknown.get("errors").is_some());
    // Due mail with no worker running: the queue's oldest due delivery waits.
    enqueue(&app, registration(&tenant, "en", None)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let text = scrape(&app).await;
    let s = samples(&text);
    let get = |series: &str| {
        *s.get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    };
    assert_eq!(
        get(r#"mailgate_http_requests_total{route="/graphql",operation="mutation.createTenant",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"mailgate_http_requests_total{route="/graphql",operation="mutation.sendTestMail",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"mailgate_http_requests_total{route="/graphql",operation="query.plans",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"mailgate_http_requests_total{route="/graphql",operation="other",status="200"}"#),
        1.0
    );
    assert!(
        get(r#"mailgate_http_request_duration_seconds_count{route="/graphql",operation="mutation.sendTestMail"}"#)
            >= 1.0
    );
    assert_eq!(get(r#"mailgate_test_mails_total{result="sent",stage=""}"#), 1.0);
    assert!(
        get("mailgate_queue_oldest_due_age_seconds") >= 1.0,
        "the enqueued mail waits"
    );
    assert_eq!(get(r#"mailgate_deliveries{status="queued"}"#), 1.0);
    // MAILGATE_DATABASE_MAX_CONNECTIONS (5 in the tests) on PostgreSQL; SQLite's own pool of 4.
    let max = match backend {
        Backend::Postgres => 5.0,
        Backend::Sqlite => 4.0,
    };
    assert_eq!(get("mailgate_db_pool_max_connections"), max);
    assert!(get(r#"mailgate_db_pool_connections{state="in_use"}"#) >= 0.0);
    assert_eq!(
        get("mailgate_transport_cache_entries"),
        0.0,
        "a test mail caches no transport"
    );
    assert_eq!(get(r#"mailgate_webhook_attempts_total{result="delivered"}"#), 0.0);
    assert_eq!(get(r#"mailgate_sends_total{outcome="sent",source="custom"}"#), 0.0);
    assert!(
        !text.contains("Evil_0123456789") && !text.contains("noSuchField"),
        "{text}"
    );
    assert!(!text.contains(&tenant), "no series names a tenant");
    // The operation label has a fixed set of values: the schema's root fields, and a few more.
    let mut operations: Vec<&str> = text
        .split("operation=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    operations.sort();
    operations.dedup();
    for op in &operations {
        assert!(
            op.starts_with("query.") || op.starts_with("mutation.") || ["other", "batch", "invalid", ""].contains(op),
            "{op}"
        );
    }

    // What the dashboard and the alerts use is all there.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/mailgate.json")).expect("dashboard");
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).expect("alerts");
    for name in names_used(&dashboard).into_iter().chain(names_used(&alerts)) {
        assert!(
            text.lines().any(|l| !l.starts_with('#') && l.starts_with(&name)),
            "{name} is used by deploy/ but /metrics has no such series"
        );
    }
    app.finish().await;
}

/// `mailgate worker` answers `/metrics` (operator token), `/healthz` and `/readyz` on
/// `MAILGATE_WORKER_LISTEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_serves_its_own_metrics() {
    let dir = std::env::temp_dir().join(format!("mailgate-worker-metrics-{}", uuid::Uuid::new_v4().simple()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = crate::support::process::mailgate(&dir)
        .arg("worker")
        .env("MAILGATE_WORKER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("worker starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the worker answers /healthz");
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .status(),
        401
    );
    let operator = crate::support::process::token(&dir, "operator");
    let text = client
        .get(format!("{base}/metrics"))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("mailgate_sends_total{outcome=\"sent\",source=\"custom\"} 0"),
        "{text}"
    );
    assert!(text.contains("mailgate_webhook_attempts_total"), "{text}");
    assert_eq!(
        client
            .post(format!("{base}/graphql"))
            .send()
            .await
            .expect("graphql")
            .status(),
        404,
        "no GraphQL on the worker's address"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
