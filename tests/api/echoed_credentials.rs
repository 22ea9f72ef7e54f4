//! Credentials in any form never leave the process: a server that echoes what it got in
//! its `535` reply (the AUTH PLAIN blob; LOGIN's base64 user name and password; the
//! decoded password) gets none of it back to anyone — not in `sendTestMail`, the probe's
//! `authFailure`, a version's stored `health.lastFailure`, a delivery's attempts, the
//! audit trail, nor the log.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use testkit::servers::{python, scripts_dir};
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, delivery_config, enqueue, wait_status};
use crate::support::*;

testkit::each_backend!(an_echoed_auth_blob_never_comes_back_in_any_form);

const USER: &str = "shop@example.jp";
const PASSWORD: &str = "Echo-Secret-8842!";

const SEND_TEST: &str = "mutation($t:ID!,$to:String!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:$to, settings:$s){ \
    ok stage smtpCode enhancedCode serverMessage hint hintCode field } }";
const PROBE: &str = "mutation($t:ID!,$s:MailSettingsInput!){ probeMailServer(tenantId:$t, settings:$s){ \
    pairs { port encryption works typed failure { stage smtpCode serverMessage hintCode } } \
    authTried authOk authFailure { stage smtpCode enhancedCode serverMessage hintCode field hint } } }";
const HEALTH: &str = "query($t:ID!){ tenant(id:$t){ mailSettings { version health { state consecutiveFailures \
    lastFailure { stage smtpCode enhancedCode serverMessage route } hint hintCode } } } }";
const ATTEMPTS: &str = "query($id:ID!){ delivery(id:$id){ status failureReason \
    attempts { outcome stage smtpCode enhancedCode serverMessage route } } }";
const AUDIT: &str = "query($t:ID!){ tenant(id:$t){ auditTrail(first:50){ edges { node { action \
    changes { field before after secret } } } } } }";

/// The test SMTP server in `--auth-echo` mode: every AUTH is answered with `535 5.7.8`
/// and what the client sent (and the decoded password).
struct EchoSmtp {
    port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl EchoSmtp {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(scripts_dir().join("smtp_server.py"))
            .args(["--port", "0", "--mode", "plain", "--auth-echo", "--watch-stdin"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp_server.py starts (run tests/mailservers/install.sh)");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("READY line");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {line:?}"));
        Self { port, child, stdin }
    }
}

impl Drop for EchoSmtp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every form the credentials went over the wire in.
fn sent_forms() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        b64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        b64(PASSWORD.as_bytes()),
    ]
}

/// Fails when `text` holds any 8 characters in a row of anything we sent.
fn assert_no_credential(what: &str, text: &str) {
    for form in sent_forms() {
        let chars: Vec<char> = form.chars().collect();
        for window in chars.windows(8) {
            let run: String = window.iter().collect();
            assert!(!text.contains(&run), "{what} carries {run:?} of {form:?}: {text}");
        }
    }
}

fn settings(port: u16) -> Value {
    SettingsInput::plain(port)
        .from(USER)
        .without_from_name()
        .with_auth(USER, PASSWORD)
        .json()
}

async fn an_echoed_auth_blob_never_comes_back_in_any_form(backend: Backend) {
    let plain = EchoSmtp::start(&[]);
    let login = EchoSmtp::start(&["--auth-mechanisms", "LOGIN"]);
    let ports = vec![plain.port, login.port];
    let probe_port = plain.port;
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.probe_pairs = vec![(probe_port, domain::settings::Encryption::None)];
        c.suspend_after_failures = 1;
    })
    .await;
    let tenant = app.create_tenant("Echo", "BIZ").await;
    let admin = app.admin(&tenant);

    // A test mail: AUTH PLAIN, then AUTH LOGIN, each echoed back in a 535.
    for port in [plain.port, login.port] {
        let body = app
            .gql(
                &admin,
                SEND_TEST,
                json!({ "t": tenant, "to": "admin@example.net", "s": settings(port) }),
            )
            .await;
        let r = &body["data"]["sendTestMail"];
        assert_eq!(
            (&r["ok"], &r["stage"], &r["smtpCode"]),
            (&json!(false), &json!("AUTH"), &json!(535)),
            "{body}"
        );
        let message = r["serverMessage"].as_str().unwrap_or_default();
        assert!(message.contains("[redacted]"), "{body}");
        assert!(message.contains("Authentication failed for"), "the rest stays: {body}");
        assert_no_credential("sendTestMail", &body.to_string());
    }

    // The probe's one login on the typed (plain) pair.
    let body = app
        .gql(&admin, PROBE, json!({ "t": tenant, "s": settings(plain.port) }))
        .await;
    let r = &body["data"]["probeMailServer"];
    assert_eq!((&r["authTried"], &r["authOk"]), (&json!(true), &json!(false)), "{body}");
    assert_eq!(r["authFailure"]["smtpCode"], json!(535), "{body}");
    assert!(
        r["authFailure"]["serverMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("[redacted]"),
        "{body}"
    );
    assert_no_credential("the probe", &body.to_string());

    // Saved (live at once here), a real delivery: its 535 suspends the version and is
    // stored as the last failure; the mail goes out through the platform default.
    app.ok(&admin, UPDATE, json!({ "t": tenant, "i": settings(plain.port) }))
        .await;
    let worker = RunningWorker::start(&app);
    let id = enqueue(
        &app,
        json!({
            "tenantId": tenant, "kind": "CUSTOM", "to": "member@example.net", "locale": "en",
            "subject": "Hello", "text": "Hello",
        }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&app, &id, "SENT", Duration::from_secs(60)).await;
    worker.stop().await;

    let health = app.ok(&app.operator(), HEALTH, json!({ "t": tenant })).await;
    let last = &health["tenant"]["mailSettings"]["health"]["lastFailure"];
    assert_eq!(
        (&last["stage"], &last["smtpCode"]),
        (&json!("AUTH"), &json!(535)),
        "{health}"
    );
    assert!(
        last["serverMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("[redacted]"),
        "{health}"
    );
    assert_no_credential("health", &health.to_string());
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": id })).await;
    assert_no_credential("the delivery's attempts", &attempts.to_string());
    let audit = app.ok(&app.operator(), AUDIT, json!({ "t": tenant })).await;
    assert_no_credential("the audit trail", &audit.to_string());
    assert_no_credential("the log", &logs());
    app.finish().await;
}
