//! Retention: once a delivery has been done for longer than `MAILGATE_RETENTION_DAYS`,
//! the background task removes its recipient, subject, bodies and the servers' reply
//! texts; status, times, codes and the recipient's hash stay, newer deliveries keep
//! everything, and the counts do not change. An idempotency key still tells another
//! payload apart afterwards (by the payload's hash). The audit trail loses test mails'
//! recipients past the same window.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, delivery_config, enqueue, registration, wait_status};
use crate::support::*;

testkit::each_backend!(
    old_deliveries_lose_their_content_and_keep_their_record,
    deliveries_past_the_history_horizon_are_deleted,
    test_mail_recipients_leave_the_audit_trail_past_retention,
);

const DELIVERY: &str = "query($id:ID!){ delivery(id:$id){ id status to subject failureReason failureDetail sentAt contentRemovedAt recipientHash \
    attempts { outcome stage smtpCode serverMessage } } }";
const COUNTS: &str = "query($t:ID!){ tenant(id:$t){ deliveries(first:1){ counts { status count } } } }";
const RETRY: &str = "mutation($id:ID!){ retryDelivery(id:$id){ id } }";

/// SHA-256 (hex) by the system's `sha256sum`, not by the code under test.
fn sha256_hex(text: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn get(app: &TestApp, id: &str) -> Value {
    app.ok(&app.operator(), DELIVERY, json!({ "id": id })).await["delivery"].clone()
}

/// Moves a delivery's last change `days` into the past, behind the API's back.
async fn age(app: &TestApp, id: &str, days: i64) {
    let backend = app.app.db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE deliveries SET updated_at = $1 WHERE id = $2",
        _ => "UPDATE deliveries SET updated_at = ? WHERE id = ?",
    };
    let then = chrono::Utc::now() - chrono::Duration::days(days);
    sea_orm::ConnectionTrait::execute_raw(
        &app.app.db,
        sea_orm::Statement::from_sql_and_values(backend, sql, [then.into(), id.to_owned().into()]),
    )
    .await
    .unwrap();
}

async fn old_deliveries_lose_their_content_and_keep_their_record(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let refusing = SmtpServer::start(SmtpOptions {
        rcpt_reply: Some("550 5.1.1 <member@example.net>: Recipient address rejected: User unknown".into()),
        ..SmtpOptions::plain()
    });
    let ports = vec![smtp.port, refusing.port];
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.retention_days = 30;
    })
    .await;
    let ok_tenant = app.create_tenant("Kept", "SHARE").await;
    let bad_tenant = app.create_tenant("Refused", "SHARE").await;
    app.ok(
        &app.admin(&ok_tenant),
        UPDATE,
        json!({ "t": ok_tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    app.ok(
        &app.admin(&bad_tenant),
        UPDATE,
        json!({ "t": bad_tenant, "i": SettingsInput::plain(refusing.port).json() }),
    )
    .await;
    let old_sent = enqueue(&app, registration(&ok_tenant, "ja", Some("old"))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_sent = enqueue(&app, registration(&ok_tenant, "ja", Some("new"))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_failed = enqueue(&app, registration(&bad_tenant, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = RunningWorker::start(&app);
    for id in [&old_sent, &new_sent] {
        wait_status(&app, id, "SENT", Duration::from_secs(10)).await;
    }
    wait_status(&app, &old_failed, "FAILED", Duration::from_secs(10)).await;
    worker.stop().await;
    let counts_before = app.ok(&app.operator(), COUNTS, json!({ "t": ok_tenant })).await;
    let before_old = get(&app, &old_sent).await;

    // Two of them were done 40 days ago; the task's first round takes them.
    age(&app, &old_sent, 40).await;
    age(&app, &old_failed, 40).await;
    age(&app, &new_sent, 29).await;
    let worker = RunningWorker::start(&app);
    let started = Instant::now();
    let cleared = loop {
        let d = get(&app, &old_sent).await;
        if d["contentRemovedAt"].is_string() {
            break d;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never cleared: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected_hash = sha256_hex("member@example.net");
    assert_eq!(
        (cleared["to"].as_str(), cleared["subject"].as_str()),
        (Some(""), Some("")),
        "{cleared}"
    );
    assert_eq!(cleared["recipientHash"], expected_hash);
    assert_eq!(cleared["status"], "SENT");
    assert_eq!(cleared["sentAt"], before_old["sentAt"], "times stay");
    assert_eq!(cleared["attempts"][0]["smtpCode"], 250, "codes stay");
    assert_eq!(cleared["attempts"][0]["serverMessage"], Value::Null, "reply texts go");

    let failed = loop {
        let d = get(&app, &old_failed).await;
        if d["contentRemovedAt"].is_string() {
            break d;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never cleared: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        failed["failureDetail"], "RCPT_TO 550",
        "the reply naming the recipient is gone: {failed}"
    );
    assert_eq!(failed["attempts"][0]["smtpCode"], 550);
    assert_eq!(failed["attempts"][0]["serverMessage"], Value::Null);
    assert!(!failed.to_string().contains("member@example.net"), "{failed}");
    // It cannot be sent again: there is nothing left to send.
    let body = app.gql(&app.operator(), RETRY, json!({ "id": old_failed })).await;
    assert_eq!(
        fields(&body),
        vec![("id".to_owned(), "CONTENT_REMOVED".to_owned())],
        "{body}"
    );
    // The same idempotency key still answers with the delivery it named.
    let again = enqueue(&app, registration(&ok_tenant, "ja", Some("old"))).await;
    assert_eq!(again["id"], old_sent.as_str());
    // With another payload it is still refused, though the content it stood for is gone.
    let reused = app
        .gql(
            &app.service(),
            "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
            json!({ "i": registration(&ok_tenant, "en", Some("old")) }),
        )
        .await;
    assert_eq!(code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");
    let mut other_recipient = registration(&ok_tenant, "ja", Some("old"));
    other_recipient["to"] = json!("someone-else@example.net");
    let reused = app
        .gql(
            &app.service(),
            "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
            json!({ "i": other_recipient }),
        )
        .await;
    assert_eq!(code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    // Newer deliveries keep everything; the counts do not change.
    let kept = get(&app, &new_sent).await;
    assert_eq!(kept["contentRemovedAt"], Value::Null);
    assert_eq!(kept["to"], "member@example.net");
    assert_eq!(
        kept["subject"], "【Sakura】会員登録が完了しました",
        "the siteName variable"
    );
    assert_eq!(
        app.ok(&app.operator(), COUNTS, json!({ "t": ok_tenant })).await,
        counts_before
    );
    // Nothing of the address is left in the row itself.
    let backend_db = app.app.db.get_database_backend();
    let row = sea_orm::ConnectionTrait::query_one_raw(
        &app.app.db,
        sea_orm::Statement::from_string(
            backend_db,
            format!("SELECT to_address, text_body, subject FROM deliveries WHERE id = '{old_sent}'"),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let to: String = row.try_get("", "to_address").unwrap();
    let text: String = row.try_get("", "text_body").unwrap();
    assert!(!to.contains("member") && text.is_empty(), "{to} / {text}");
    worker.stop().await;
    app.finish().await;
}

/// Makes a delivery look handed in and done `days` ago: its id (a UUIDv7, whose first
/// 48 bits are its time) and its last change move back. Its attempts are dropped first
/// (they point at the id).
async fn hand_in_earlier(app: &TestApp, id: &str, days: i64) -> String {
    let backend = app.app.db.get_database_backend();
    let then = chrono::Utc::now() - chrono::Duration::days(days);
    let ms = u64::try_from(then.timestamp_millis()).unwrap();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from(ms % 1000).unwrap() * 1_000_000,
    );
    let old_id = uuid::Uuid::new_v7(ts).hyphenated().to_string();
    let p = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    for (sql, values) in [
        (
            format!("DELETE FROM delivery_attempts WHERE delivery_id = {}", p(1)),
            vec![id.to_owned().into()],
        ),
        (
            format!(
                "UPDATE deliveries SET id = {}, updated_at = {} WHERE id = {}",
                p(1),
                p(2),
                p(3)
            ),
            vec![old_id.clone().into(), then.into(), id.to_owned().into()],
        ),
    ] {
        sea_orm::ConnectionTrait::execute_raw(
            &app.app.db,
            sea_orm::Statement::from_sql_and_values(backend, sql, values),
        )
        .await
        .unwrap();
    }
    old_id
}

/// With `MAILGATE_DELIVERY_HISTORY_DAYS`, the worker deletes what was done before the
/// horizon; what is newer stays whole, and the counts drop by what went.
async fn deliveries_past_the_history_horizon_are_deleted(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let ports = vec![smtp.port];
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.retention_days = 30;
        c.delivery_history_days = 365;
    })
    .await;
    let tenant = app.create_tenant("Kept", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    let mut ids = Vec::new();
    for key in ["a", "b", "c"] {
        let d = enqueue(&app, registration(&tenant, "ja", Some(key))).await;
        ids.push(d["id"].as_str().unwrap().to_owned());
    }
    let worker = RunningWorker::start(&app);
    for id in &ids {
        wait_status(&app, id, "SENT", Duration::from_secs(10)).await;
    }
    worker.stop().await;
    let gone = hand_in_earlier(&app, &ids[0], 400).await;
    let within = hand_in_earlier(&app, &ids[1], 300).await;
    assert!(get(&app, &gone).await.is_object(), "moved back, still there");

    let worker = RunningWorker::start(&app);
    let started = Instant::now();
    while !get(&app, &gone).await.is_null() {
        assert!(started.elapsed() < Duration::from_secs(20), "never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    let kept = get(&app, &within).await;
    assert_eq!(kept["status"], "SENT", "inside the horizon: {kept}");
    assert_eq!(
        get(&app, &ids[2]).await["to"],
        "member@example.net",
        "a new one is whole"
    );
    let counts = app.ok(&app.operator(), COUNTS, json!({ "t": tenant })).await;
    let sent = counts["tenant"]["deliveries"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "SENT")
        .map(|c| c["count"].clone());
    assert_eq!(sent, Some(json!(2)), "{counts}");
    // Its idempotency key was deleted with it: the same key hands in a new delivery.
    let again = enqueue(&app, registration(&tenant, "ja", Some("a"))).await;
    assert_ne!(again["id"].as_str(), Some(gone.as_str()), "{again}");
    assert_eq!(again["status"], "QUEUED", "{again}");
    app.finish().await;
}

const TRAIL: &str =
    "query($t:ID!){ tenant(id:$t){ auditTrail(first:50){ edges { node { action at changes { field after } } } } } }";

/// The `TEST_MAIL_SENT` entries of the tenant's trail, oldest first, as field → after.
async fn test_mail_entries(app: &TestApp, tenant: &str) -> Vec<Vec<(String, Value)>> {
    let trail = app.ok(&app.operator(), TRAIL, json!({ "t": tenant })).await;
    trail["tenant"]["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "TEST_MAIL_SENT")
        .map(|e| {
            e["node"]["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["field"].as_str().unwrap().to_owned(), c["after"].clone()))
                .collect()
        })
        .collect()
}

fn after<'a>(entry: &'a [(String, Value)], field: &str) -> Option<&'a Value> {
    entry.iter().find(|(f, _)| f == field).map(|(_, v)| v)
}

/// A test mail's recipient stays in the audit trail only for the retention window, like a
/// delivery's: then it reads as the placeholder, with the address's hash; the rest of the
/// entry (result, host) stays, and a newer entry keeps its recipient.
async fn test_mail_recipients_leave_the_audit_trail_past_retention(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let ports = vec![smtp.port];
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.retention_days = 30;
    })
    .await;
    let tenant = app.create_tenant("Kept", "SHARE").await;
    let admin = app.admin(&tenant);
    app.ok(
        &admin,
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    for to in ["old.person@example.net", "new.person@example.net"] {
        let sent = app
            .ok(
                &admin,
                "mutation($t:ID!,$to:String!){ sendTestMail(tenantId:$t, to:$to){ ok } }",
                json!({ "t": tenant, "to": to }),
            )
            .await;
        assert_eq!(sent["sendTestMail"]["ok"], true, "{sent}");
    }
    let entries = test_mail_entries(&app, &tenant).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(after(&entries[0], "to"), Some(&json!("old.person@example.net")));

    // The first test mail was sent 40 days ago.
    let backend_db = app.app.db.get_database_backend();
    let sql = match backend_db {
        sea_orm::DbBackend::Postgres => {
            "UPDATE audit_events SET at = $1 WHERE tenant_id = $2 AND action = 'TEST_MAIL_SENT' AND changes LIKE '%old.person%'"
        }
        _ => {
            "UPDATE audit_events SET at = ? WHERE tenant_id = ? AND action = 'TEST_MAIL_SENT' AND changes LIKE '%old.person%'"
        }
    };
    let then = chrono::Utc::now() - chrono::Duration::days(40);
    let aged = sea_orm::ConnectionTrait::execute_raw(
        &app.app.db,
        sea_orm::Statement::from_sql_and_values(backend_db, sql, [then.into(), tenant.clone().into()]),
    )
    .await
    .unwrap();
    assert_eq!(aged.rows_affected(), 1);

    let worker = RunningWorker::start(&app);
    let started = Instant::now();
    let entries = loop {
        let entries = test_mail_entries(&app, &tenant).await;
        if after(&entries[0], "recipientHash").is_some() {
            break entries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never cleared: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    worker.stop().await;
    let old = &entries[0];
    assert_eq!(
        after(old, "to"),
        Some(&json!("removed@content-removed.invalid")),
        "{old:?}"
    );
    assert_eq!(
        after(old, "recipientHash"),
        Some(&json!(sha256_hex("old.person@example.net")))
    );
    assert_eq!(after(old, "result"), Some(&json!("ok")), "the outcome stays");
    assert_eq!(after(old, "host"), Some(&json!("localhost")), "the host stays");
    let new = &entries[1];
    assert_eq!(
        after(new, "to"),
        Some(&json!("new.person@example.net")),
        "newer entries keep it"
    );
    assert_eq!(after(new, "recipientHash"), None);
    // Nothing of the old address is left in the table.
    let left = sea_orm::ConnectionTrait::query_one_raw(
        &app.app.db,
        sea_orm::Statement::from_string(
            backend_db,
            "SELECT COUNT(*) AS n FROM audit_events WHERE changes LIKE '%old.person%'".to_owned(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let n: i64 = left.try_get("", "n").unwrap();
    assert_eq!(n, 0);
    app.finish().await;
}
