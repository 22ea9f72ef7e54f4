//! The real binary under failure: `kill -9` while sending loses nothing (duplicates only
//! for deliveries in flight at the kill, with the same Message-ID); SIGTERM with
//! deliveries in flight drains and exits 0; a tenant whose server never answers does not
//! stop another tenant's mail.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{call, mailgate, stop};
use crate::deliveries::{RunningWorker, delivery_app, plain_settings};
use crate::mailservers::*;
use crate::support::*;

crate::each_backend!(
    sigterm_with_deliveries_in_flight_drains_and_exits_0,
    a_silent_server_delays_only_its_own_tenant
);

/// Where a test's `mailgate` process keeps its data: SQLite in its data directory, or a
/// fresh schema of the test PostgreSQL database (dropped by `drop`).
pub(crate) struct Database {
    schema: Option<String>,
}

impl Database {
    pub(crate) fn for_backend(backend: Backend) -> Self {
        Self {
            schema: (backend == Backend::Postgres).then(|| format!("t_{}", uuid::Uuid::new_v4().simple())),
        }
    }

    /// The settings that point the process at it.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        match &self.schema {
            None => Vec::new(),
            Some(schema) => vec![
                ("MAILGATE_DATABASE_URL", postgres_url()),
                ("MAILGATE_DATABASE_SCHEMA", schema.clone()),
            ],
        }
    }

    pub(crate) fn drop(self) {
        if let Some(schema) = self.schema {
            // Best effort: a leftover schema only costs space.
            let _ = std::process::Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"])
                .arg(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .output();
        }
    }
}

/// Starts `mailgate serve` for mailing to `port` on loopback; returns (child, url, operator token).
fn start_mailer(dir: &std::path::Path, port: u16, extra: &[(&str, String)]) -> (Child, String, String) {
    // `start` reads the printed URL and token; the environment adds the mail settings.
    let mut cmd = mailgate(dir);
    cmd.env("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", "true")
        .env("MAILGATE_SETTINGS_ACTIVATION", "save")
        .env("MAILGATE_ENQUEUE_PER_MINUTE", "0")
        .env("MAILGATE_ENQUEUE_PER_DAY", "0")
        .env("MAILGATE_SMTP_ALLOWED_PORTS", port.to_string())
        .env("MAILGATE_WORKER_POLL_MS", "50")
        .env("MAILGATE_WORKER_LEASE_SECS", "3")
        .env("MAILGATE_WORKER_SHUTDOWN_GRACE_SECS", "20");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    start_with(cmd)
}

/// Servers these tests started and have not stopped: killed when a test panics, so a
/// failed test leaves no server behind (nextest runs each test in a process of its own,
/// which exits after the panic while its children would live on).
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn track(pid: u32) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
            for pid in pids {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
            default(info);
        }));
    });
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(pid);
}

/// A server stopped by the test itself.
pub(crate) fn untrack(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|p| *p != pid);
}

/// An operator token from the binary `cmd` runs, with `cmd`'s settings (for a process that
/// prints none: a JWT key of its own is configured).
pub(crate) fn mint_operator_like(cmd: &std::process::Command) -> String {
    let mut mint = std::process::Command::new(cmd.get_program());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => mint.env(k, v),
            None => mint.env_remove(k),
        };
    }
    let out = mint.args(["token", "--role", "operator"]).output().expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

pub(crate) fn start_with(mut cmd: std::process::Command) -> (Child, String, String) {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    track(child.id());
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut token) = (String::new(), String::new());
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("GraphiQL:") {
            url = rest.trim().to_owned();
        }
        if line.contains("Operator token") {
            token = lines.next().and_then(Result::ok).unwrap_or_default().trim().to_owned();
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    assert!(url.starts_with("http://"), "started: {url:?}");
    if token.split('.').count() != 3 {
        token = mint_operator_like(&cmd);
    }
    (child, url, token)
}

pub(crate) fn token(dir: &std::path::Path, role: &str) -> String {
    let out = mailgate(dir).args(["token", "--role", role]).output().expect("token");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

pub(crate) async fn counts(url: &str, operator: &str, tenant: &str) -> HashMap<String, i64> {
    let d = call(
        url,
        operator,
        "query($id:ID!){ tenant(id:$id){ deliveries(first:1){ counts { status count } } } }",
        json!({ "id": tenant }),
    )
    .await;
    d["data"]["tenant"]["deliveries"]["counts"]
        .as_array()
        .unwrap_or_else(|| panic!("counts: {d}"))
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["count"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

pub(crate) async fn all_message_ids(url: &str, operator: &str, tenant: &str) -> Vec<String> {
    message_ids(url, operator, tenant, None).await
}

/// The Message-IDs of a tenant's deliveries (of one status, if given).
pub(crate) async fn message_ids(url: &str, operator: &str, tenant: &str, status: Option<&str>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = call(
            url,
            operator,
            "query($id:ID!,$a:String,$s:DeliveryStatus){ tenant(id:$id){ deliveries(status:$s, first:100, after:$a){ edges { node { messageId } } pageInfo { hasNextPage endCursor } } } }",
            json!({ "id": tenant, "a": after, "s": status }),
        )
        .await;
        let conn = &d["data"]["tenant"]["deliveries"];
        ids.extend(
            conn["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["messageId"].as_str().unwrap_or("").to_owned()),
        );
        if conn["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

pub(crate) async fn setup_tenant(url: &str, operator: &str, port: u16) -> String {
    let t = call(
        url,
        operator,
        "mutation{ createTenant(name:\"Crashy\", plan:SHARE){ id } }",
        json!({}),
    )
    .await;
    let tenant = t["data"]["createTenant"]["id"].as_str().expect("tenant").to_owned();
    let s = call(url, operator, UPDATE, json!({ "t": tenant, "i": plain_settings(port) })).await;
    assert!(s.get("errors").is_none(), "{s}");
    tenant
}

pub(crate) async fn enqueue_many(url: &str, service: &str, tenant: &str, n: usize) {
    let client = reqwest::Client::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({ "query": "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
                    "variables": { "i": { "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": format!("n{i}"), "text": "t", "idempotencyKey": format!("k{i}") } } })
            })
            .collect();
        let resp: Value = client
            .post(url)
            .bearer_auth(service)
            .json(&batch)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        assert!(
            resp.as_array()
                .is_some_and(|a| a.iter().all(|r| r.get("errors").is_none())),
            "{resp}"
        );
    }
}

/// With the default lease (10 s, renewed every third of it), what a process killed with
/// `kill -9` held is taken up again by the next process and sent: everything is out
/// within 15 s of the kill (the bound is the feature; nothing here depends on a shorter
/// test lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_rest_goes_out_within_15_seconds() {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let dir = std::env::temp_dir().join(format!("mailgate-recover-{}", uuid::Uuid::new_v4().simple()));
    let start_default_lease = |worker: bool| {
        let mut cmd = mailgate(&dir);
        cmd.env("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", "true")
            .env("MAILGATE_SETTINGS_ACTIVATION", "save")
            .env("MAILGATE_SMTP_ALLOWED_PORTS", smtp.port.to_string())
            .env("MAILGATE_WORKER_ENABLED", worker.to_string());
        start_with(cmd)
    };
    let (child, url, operator) = start_default_lease(false);
    let service = token(&dir, "service");
    let tenant = setup_tenant(&url, &operator, smtp.port).await;
    enqueue_many(&url, &service, &tenant, 500).await;
    stop(child);

    let (mut child, _, _) = start_default_lease(true);
    let start = Instant::now();
    while smtp.count() < 50 {
        assert!(start.elapsed() < Duration::from_secs(60), "sending started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let killed_at = Instant::now();
    assert!(smtp.count() < 500, "killed mid-run");

    let (child, url, operator) = start_default_lease(true);
    loop {
        let c = counts(&url, &operator, &tenant).await;
        if c.get("SENT") == Some(&500) {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "everything sent within 15 s of the kill: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = killed_at.elapsed();
    let received = smtp.wait_for(500, Duration::from_secs(5));
    let unique: HashSet<String> = received.iter().filter_map(|r| r.header("Message-ID")).collect();
    assert_eq!(unique.len(), 500, "every delivery reached the server");
    eprintln!(
        "kill -9: all 500 sent {recovered:?} after the kill ({} received, duplicates only for sends in flight)",
        received.len()
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_sending_loses_nothing() {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let dir = std::env::temp_dir().join(format!("mailgate-crash-{}", uuid::Uuid::new_v4().simple()));
    // Enqueue everything first (worker off), so the kill surely lands mid-run.
    let (child, url, operator) = start_mailer(&dir, smtp.port, &[("MAILGATE_WORKER_ENABLED", "false".to_owned())]);
    let service = token(&dir, "service");
    let tenant = setup_tenant(&url, &operator, smtp.port).await;
    enqueue_many(&url, &service, &tenant, 1000).await;
    stop(child);
    assert_eq!(smtp.count(), 0);

    // Kill it hard while it sends.
    let (mut child, _, _) = start_mailer(&dir, smtp.port, &[]);
    let start = Instant::now();
    while smtp.count() < 100 {
        assert!(start.elapsed() < Duration::from_secs(60), "sending started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    let at_kill = smtp.count();
    assert!(at_kill < 1000, "killed mid-run ({at_kill} sent)");

    // What the database says was in flight at the kill (claimed, outcome not recorded):
    // read with the worker off, before anything is taken up again.
    let (child, url, operator) = start_mailer(&dir, smtp.port, &[("MAILGATE_WORKER_ENABLED", "false".to_owned())]);
    let in_flight: HashSet<String> = message_ids(&url, &operator, &tenant, Some("SENDING"))
        .await
        .into_iter()
        .collect();
    stop(child);

    let (child, url, operator) = start_mailer(&dir, smtp.port, &[]);
    let start = Instant::now();
    loop {
        let c = counts(&url, &operator, &tenant).await;
        if c.get("SENT") == Some(&1000) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "all sent after restart: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: HashSet<String> = all_message_ids(&url, &operator, &tenant).await.into_iter().collect();
    assert_eq!(expected.len(), 1000);
    let received = smtp.wait_for(1000, Duration::from_secs(10));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *seen.entry(r.header("Message-ID").expect("Message-ID")).or_default() += 1;
    }
    let got: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "every delivery reached the server, under its own Message-ID"
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    // Only deliveries in flight at the kill can repeat, each at most once more.
    let repeated: HashSet<String> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
    assert!(
        repeated.is_subset(&in_flight),
        "repeated but not in flight at the kill: {:?}",
        repeated.difference(&in_flight).collect::<Vec<_>>()
    );
    assert!(seen.values().all(|n| *n <= 2), "{seen:?}");
    // A worker holds at most its in-flight cap plus one claimed batch (64 + 32 by default).
    assert!(in_flight.len() <= 96, "{} in flight", in_flight.len());
    eprintln!(
        "kill -9 after {at_kill} sent: {} in flight, {} received for 1000 deliveries, {duplicates} duplicate(s)",
        in_flight.len(),
        received.len()
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn sigterm_with_deliveries_in_flight_drains_and_exits_0(backend: Backend) {
    // Each new connection waits five seconds for the greeting, so the first send is still
    // waiting for it when SIGTERM comes (well before it, however slow the machine is).
    let smtp = SmtpServer::start(SmtpOptions {
        greeting_delay: Some(Duration::from_millis(5000)),
        ..SmtpOptions::plain()
    });
    let dir = std::env::temp_dir().join(format!("mailgate-term-{}", uuid::Uuid::new_v4().simple()));
    let database = Database::for_backend(backend);
    let (child, url, operator) = start_mailer(&dir, smtp.port, &database.env());
    let service = token(&dir, "service");
    let tenant = setup_tenant(&url, &operator, smtp.port).await;
    enqueue_many(&url, &service, &tenant, 20).await;
    // Claimed rows are SENDING. The tenant's server has not taken a mail from this worker
    // yet, so it gets one lane (one connection) until it has, and holds at most two claimed
    // rows meanwhile (the one sending and one waiting for the lane; more only when a
    // single claim found more due at once): wait for both.
    let start = Instant::now();
    loop {
        let sending = counts(&url, &operator, &tenant).await;
        if sending.get("SENDING").copied().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "deliveries in flight: {sending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(child); // SIGTERM; asserts exit code 0
    // The tenant's one lane was waiting for a greeting when the signal came: that send
    // finished before the exit, and nothing waiting behind it was started after the
    // signal.
    let after_stop = smtp.count();
    assert_eq!(after_stop, 1, "the send in flight at SIGTERM, and only that, finished");

    let (child, url, operator) = start_mailer(&dir, smtp.port, &database.env());
    let start = Instant::now();
    loop {
        let c = counts(&url, &operator, &tenant).await;
        if c.get("SENT") == Some(&20) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "all sent after restart: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = smtp.wait_for(20, Duration::from_secs(5));
    let unique: HashSet<String> = received.iter().filter_map(|r| r.header("Message-ID")).collect();
    assert_eq!(
        (received.len(), unique.len()),
        (20, 20),
        "nothing lost, nothing sent twice"
    );
    stop(child);
    database.drop();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn a_silent_server_delays_only_its_own_tenant(backend: Backend) {
    let (silent_port, silent) = silent_listener();
    let smtp = SmtpServer::start(SmtpOptions {
        no_record: true,
        ..SmtpOptions::plain()
    });
    let app = delivery_app(backend, &[silent_port, smtp.port]).await;
    let stuck = app.create_tenant("Stuck", "SHARE").await;
    let busy = app.create_tenant("Busy", "SHARE").await;
    app.ok(
        &app.admin(&stuck),
        UPDATE,
        json!({ "t": stuck, "i": plain_settings(silent_port) }),
    )
    .await;
    app.ok(
        &app.admin(&busy),
        UPDATE,
        json!({ "t": busy, "i": plain_settings(smtp.port) }),
    )
    .await;
    let input = |t: &str, i: usize| json!({ "tenantId": t, "kind": "CUSTOM", "to": "a@example.net", "subject": format!("n{i}"), "text": "t" });
    for i in 0..50 {
        app.ok(
            &app.service(),
            "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
            json!({ "i": input(&stuck, i) }),
        )
        .await;
    }
    let worker = RunningWorker::start(&app);
    // The stuck tenant's send is hanging on its silent server (one connection: a server
    // that has never taken mail from this worker gets one lane)...
    let start = Instant::now();
    while silent.accepted() < 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "stuck tenant connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while 1,000 mails of another tenant all go out.
    let t0 = Instant::now();
    for i in 0..1000 {
        app.ok(
            &app.service(),
            "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
            json!({ "i": input(&busy, i) }),
        )
        .await;
    }
    while smtp.count() < 1000 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "busy tenant's mail kept flowing ({} sent)",
            smtp.count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_stuck = t0.elapsed();
    // The stuck tenant never had more than one connection open at once: it never took a
    // mail, so it never earned its cap of 4.
    let most_open = silent.most_open();
    assert_eq!(
        most_open,
        1,
        "the stuck tenant held one connection at once ({} accepted in all)",
        silent.accepted()
    );
    let sent_stuck = app
        .ok(
            &app.operator(),
            "query($id:ID!){ tenant(id:$id){ deliveries(status:SENT){ counts { status count } } } }",
            json!({ "id": stuck }),
        )
        .await;
    assert!(
        sent_stuck["tenant"]["deliveries"]["counts"]
            .as_array()
            .unwrap()
            .contains(&json!({ "status": "SENT", "count": 0 })),
        "nothing of the stuck tenant was sent"
    );
    eprintln!(
        "1,000 mails of one tenant in {with_stuck:?} while another tenant's server hung (rate comparison: see the delivery benchmark)"
    );
    worker.stop().await;
    app.finish().await;
}
