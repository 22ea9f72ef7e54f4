//! Settings that break later keep the site's mail flowing: configuration failures on
//! real deliveries (a password changed at the provider) suspend the version after a few
//! in a row, its mail — the mail that failed and all new mail — goes through the platform
//! relay with the tenant's Reply-To, no further AUTH is tried with it, the tenant gets a
//! notice (at the contact address an operator set, never at the sender address the admin
//! typed, and never quoting the server) and audit rows; a proven save brings it back.
//! Time-critical mail that the tenant's server does not take in time goes through the
//! relay by itself.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, delivery, delivery_config, enqueue, wait_status};
use crate::support::*;

testkit::each_backend!(
    a_broken_password_suspends_the_settings_and_the_mail_goes_through_the_platform,
    time_critical_mail_falls_back_when_the_tenants_server_is_black_holed,
    time_critical_mail_does_not_wait_out_its_servers_back_off,
    a_phishing_reply_is_mailed_to_no_stranger_and_the_contact_gets_codes_only,
    operators_set_the_contact_address_and_only_they_and_the_tenant_see_it,
);

const CONTACT: &str =
    "mutation($t:ID!,$c:String){ setTenantContactEmail(tenantId:$t, contactEmail:$c){ id contactEmail } }";

const HEALTH: &str = "query($t:ID!){ tenant(id:$t){ effectiveSender { address source reasonCode replyTo } \
    mailSettings { version health { state consecutiveFailures lastFailure { stage smtpCode enhancedCode serverMessage route } hint hintCode } } } }";
const SAVE: &str =
    "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version health { state } } }";
const TEST: &str = "mutation($t:ID!){ sendTestMail(tenantId:$t, to:\"admin@example.net\"){ ok activated } }";
const PLAN: &str = "mutation($t:ID!,$p:Plan!){ changeTenantPlan(tenantId:$t, plan:$p){ id } }";
const ATTEMPTS: &str =
    "query($id:ID!){ delivery(id:$id){ status attempts { outcome stage smtpCode route senderSource } } }";
const AUDIT: &str = "query($t:ID!){ tenant(id:$t){ auditTrail(first:50){ edges { node { action actorSubject } } } } }";
const METRICS_FALLBACK: &str = "mailgate_deliveries_fallbacks_total{reason=\"suspended\"}";

fn settings(port: u16, password: &str) -> Value {
    SettingsInput::plain(port).with_auth("shop", password).json()
}

fn reset(tenant: &str) -> Value {
    json!({
        "tenantId": tenant, "kind": "PASSWORD_RESET", "to": "member@example.net", "locale": "ja",
        "variables": { "name": "山田", "siteName": "Sakura", "resetUrl": "https://sakura.example/reset?t=1", "expiresInMinutes": 30 },
    })
}

fn custom(tenant: &str) -> Value {
    json!({
        "tenantId": tenant, "kind": "CUSTOM", "to": "member@example.net", "locale": "en",
        "subject": "Newsletter", "text": "Hello",
    })
}

async fn health(app: &TestApp, tenant: &str) -> Value {
    app.ok(&app.operator(), HEALTH, json!({ "t": tenant })).await["tenant"].clone()
}

fn auths(server: &SmtpServer) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.to_ascii_uppercase().contains("AUTH "))
        .count()
}

/// A received message's text body, with its base64 transfer encoding undone.
fn decoded_body(mail: &Received) -> String {
    use base64::Engine as _;
    let body = mail.body();
    if !mail
        .data
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: base64")
    {
        return body.to_owned();
    }
    let joined: String = body.split("\r\n").collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(joined.trim())
            .expect("base64 body"),
    )
    .expect("UTF-8")
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("http://{}/metrics", app.addr))
        .bearer_auth(app.operator())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{series} in {text}"))
}

/// Enqueues a password-reset mail and waits until it is sent; returns its id.
async fn send_one(app: &TestApp, tenant: &str) -> String {
    let id = enqueue(app, reset(tenant)).await["id"].as_str().unwrap().to_owned();
    wait_status(app, &id, "SENT", Duration::from_secs(30)).await;
    id
}

async fn a_broken_password_suspends_the_settings_and_the_mail_goes_through_the_platform(backend: Backend) {
    let relay = SmtpServer::start(SmtpOptions::plain());
    let first = SmtpServer::start(SmtpOptions::plain().with_auth("shop", "right"));
    let port = first.port;
    let relay_url = format!("smtp://127.0.0.1:{}", relay.port);
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, vec![port]);
        c.settings_activation = mailgate::config::SettingsActivation::Test;
        c.default_smtp_url = Some(secrecy::SecretString::from(relay_url));
        c.suspend_after_failures = 3;
    })
    .await;
    let tenant = app.create_tenant("Sakura", "BIZ").await;
    app.ok(
        &app.operator(),
        CONTACT,
        json!({ "t": tenant, "c": "it@sakura.example" }),
    )
    .await;
    let admin = app.admin(&tenant);
    let worker = RunningWorker::start(&app);

    // Save, prove, send through the tenant's server.
    app.ok(&admin, SAVE, json!({ "t": tenant, "i": settings(port, "right") }))
        .await;
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await;
    assert_eq!(r["sendTestMail"]["activated"], true, "{r}");
    send_one(&app, &tenant).await;
    assert_eq!(
        first.wait_for(2, Duration::from_secs(5))[1].mail_from,
        "shop@example.jp"
    );

    // The provider changes the password: the same server now refuses the stored one.
    drop(first);
    let mut opts = SmtpOptions::plain().with_auth("shop", "changed");
    opts.port = port;
    opts.log_commands = true;
    let changed = SmtpServer::start(opts);
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned());
    }
    // Every one of them arrives at the relay, with the tenant's Reply-To; none fails.
    for id in &waiting {
        let d = wait_status(&app, id, "SENT", Duration::from_secs(60)).await;
        let attempts =
            app.ok(&app.operator(), ATTEMPTS, json!({ "id": d["id"] })).await["delivery"]["attempts"].clone();
        let routes: Vec<&str> = attempts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["route"].as_str().unwrap())
            .collect();
        assert_eq!(routes.last(), Some(&"PLATFORM_DEFAULT"), "{attempts}");
        // On the tenant's server: the refused AUTH (waiting, never failed), or a pooled
        // connection the replaced server had closed (retried).
        for a in attempts.as_array().unwrap().iter().filter(|a| a["route"] == "CUSTOM") {
            let refused = (a["outcome"].as_str(), a["stage"].as_str(), a["smtpCode"].as_i64())
                == (Some("DEFERRED"), Some("AUTH"), Some(535));
            assert!(refused || a["outcome"] == "RETRY", "{attempts}");
        }
    }
    let h = health(&app, &tenant).await;
    assert_eq!(h["mailSettings"]["health"]["state"], "SUSPENDED", "{h}");
    assert_eq!(h["mailSettings"]["health"]["consecutiveFailures"], 3);
    assert_eq!(h["mailSettings"]["health"]["lastFailure"]["smtpCode"], 535);
    assert_eq!(h["mailSettings"]["health"]["lastFailure"]["stage"], "AUTH");
    assert_eq!(h["mailSettings"]["health"]["hintCode"], "WRONG_CREDENTIALS");
    assert!(h["mailSettings"]["health"]["hint"].is_string());
    assert_eq!(h["effectiveSender"]["reasonCode"], "SUSPENDED");
    assert_eq!(h["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    assert_eq!(h["effectiveSender"]["replyTo"], "ショップ <shop@example.jp>");

    // New mail goes the same way, and the tenant's server sees no fourth AUTH.
    let fourth = send_one(&app, &tenant).await;
    let all = app
        .ok(&app.operator(), "query($t:ID!){ tenant(id:$t){ deliveries(first:50){ edges { node { id attempts { at outcome stage route } } } } } }", json!({ "t": tenant }))
        .await;
    assert_eq!(auths(&changed), 3, "{:?} {fourth} {all}", changed.commands());
    assert_eq!(changed.count(), 0);
    let at_relay = relay.received();
    let resets: Vec<&Received> = at_relay
        .iter()
        .filter(|m| m.rcpt_tos == ["member@example.net"])
        .collect();
    assert_eq!(resets.len(), 4, "{at_relay:?}");
    for m in &resets {
        assert_eq!(m.mail_from, "noreply@platform.example");
        let reply_to = m.header("Reply-To").expect("Reply-To");
        assert!(reply_to.ends_with("<shop@example.jp>"), "{reply_to}");
    }
    // The tenant is told, at the contact address the operator set, through the relay;
    // nothing goes to the sender address the admin typed.
    let notice = wait_for_mail_to(&relay, "it@sakura.example").await;
    assert!(
        relay.received().iter().all(|m| m.rcpt_tos != ["shop@example.jp"]),
        "{at_relay:?}"
    );
    assert_eq!(notice.mail_from, "noreply@platform.example");
    let text = decoded_body(&notice);
    for needle in ["AUTH", "535", "password", "パスワード", "Settings > Mail server"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let audit = app.ok(&app.operator(), AUDIT, json!({ "t": tenant })).await;
    let suspended: Vec<&Value> = audit["tenant"]["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "MAIL_SETTINGS_SUSPENDED")
        .collect();
    assert_eq!(suspended.len(), 1, "{audit}");
    assert_eq!(suspended[0]["node"]["actorSubject"], "mailgate");
    let m = metrics(&app).await;
    assert!(metric(&m, METRICS_FALLBACK) >= 1, "{m}");
    assert_eq!(metric(&m, "mailgate_mail_settings{state=\"suspended\"}"), 1, "{m}");
    assert_eq!(metric(&m, "mailgate_settings_suspended_total"), 1);
    let failed = app
        .ok(
            &app.operator(),
            "query($t:ID!){ tenant(id:$t){ deliveries(first:50, status:FAILED){ edges { node { id } } } } }",
            json!({ "t": tenant }),
        )
        .await;
    assert_eq!(
        failed["tenant"]["deliveries"]["edges"],
        json!([]),
        "nothing FAILED for a configuration fault"
    );

    // A downgrade while suspended: the plan decides (no Reply-To); back up: still suspended.
    app.ok(&app.operator(), PLAN, json!({ "t": tenant, "p": "PRO" })).await;
    let h = health(&app, &tenant).await;
    assert_eq!(h["effectiveSender"]["reasonCode"], "PLAN_FORBIDS");
    assert_eq!(h["effectiveSender"]["replyTo"], Value::Null);
    app.ok(&app.operator(), PLAN, json!({ "t": tenant, "p": "BIZ" })).await;
    assert_eq!(
        health(&app, &tenant).await["effectiveSender"]["reasonCode"],
        "SUSPENDED"
    );
    assert_eq!(auths(&changed), 3);

    // A test of the suspended version that still fails changes nothing, and is one AUTH.
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await;
    assert_eq!(r["sendTestMail"]["activated"], false, "{r}");
    assert_eq!(
        health(&app, &tenant).await["mailSettings"]["health"]["state"],
        "SUSPENDED"
    );
    assert_eq!(auths(&changed), 4, "the admin's own test is the only further AUTH");

    // The admin saves the new password and tests it: live again, through its server.
    app.ok(&admin, SAVE, json!({ "t": tenant, "i": settings(port, "changed") }))
        .await;
    assert_eq!(
        health(&app, &tenant).await["effectiveSender"]["reasonCode"],
        "PENDING_VERIFICATION"
    );
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await;
    assert_eq!(r["sendTestMail"]["activated"], true, "{r}");
    let h = health(&app, &tenant).await;
    assert_eq!(h["mailSettings"]["health"]["state"], "LIVE");
    assert_eq!(h["mailSettings"]["health"]["consecutiveFailures"], 0);
    send_one(&app, &tenant).await;
    let got = changed.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[1].rcpt_tos, vec!["member@example.net".to_owned()]);
    assert_eq!(got[1].header("Reply-To"), None, "its own sender: no Reply-To");
    worker.stop().await;
    app.finish().await;
}

/// A Share tenant whose saved server accepts connections and says nothing (its deadlines
/// are a second), a platform relay, and a fallback time of three seconds; `configure`
/// sets the rest.
async fn black_holed_tenant(
    backend: Backend,
    configure: impl FnOnce(&mut mailgate::config::Config) + Send + 'static,
) -> (SmtpServer, SilentListener, TestApp, String) {
    let relay = SmtpServer::start(SmtpOptions::plain());
    let (port, silent) = silent_listener();
    let relay_url = format!("smtp://127.0.0.1:{}", relay.port);
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, vec![port]);
        c.smtp_command_timeout_secs = 1;
        c.smtp_connect_timeout_secs = 1;
        c.default_smtp_url = Some(secrecy::SecretString::from(relay_url));
        c.fallback_after_secs = 3;
        configure(c);
    })
    .await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        SAVE,
        json!({ "t": tenant, "i": SettingsInput::plain(port).json() }),
    )
    .await;
    (relay, silent, app, tenant)
}

async fn time_critical_mail_falls_back_when_the_tenants_server_is_black_holed(backend: Backend) {
    let (relay, silent, app, tenant) = black_holed_tenant(backend, |_| {}).await;
    let started = Instant::now();
    let urgent = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    let newsletter = enqueue(&app, custom(&tenant)).await["id"].as_str().unwrap().to_owned();
    let worker = RunningWorker::start(&app);

    let d = wait_status(&app, &urgent, "SENT", Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before its fallback time"
    );
    let (attempts, routes) = routes(&app, &d).await;
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    assert_eq!(routes.first(), Some(&"CUSTOM"), "{attempts}");
    assert_eq!(routes.last(), Some(&"PLATFORM_DEFAULT"), "{attempts}");
    assert_eq!(
        routes.iter().filter(|r| **r == "PLATFORM_DEFAULT").count(),
        1,
        "once: {attempts}"
    );
    let got = relay.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].mail_from, "noreply@platform.example");
    assert!(got[0].header("Reply-To").unwrap().ends_with("<shop@example.jp>"));
    assert!(silent.accepted() >= 1, "the tenant's server was tried first");

    // CUSTOM mail keeps waiting for the tenant's server.
    let n = loop {
        let n = delivery(&app, &newsletter).await;
        if !n["attempts"].as_array().unwrap().is_empty() {
            break n;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(n["status"], "SENT", "{n}");
    assert!(
        n["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["senderSource"] == "CUSTOM"),
        "{n}"
    );
    assert_eq!(relay.count(), 1);
    let m = metrics(&app).await;
    assert_eq!(
        metric(&m, "mailgate_deliveries_fallbacks_total{reason=\"time_critical\"}"),
        1,
        "{m}"
    );
    worker.stop().await;
    app.finish().await;
}

/// The tenant's server stopped answering before a password reset was handed in: the
/// server backs off for about half a minute (the first retry's backoff), and the reset,
/// claimed during it, does not wait that out. It goes through the platform default at
/// its fallback time, three seconds after it was handed in, without trying the server
/// again; the newsletter that met the silence keeps waiting for it.
async fn time_critical_mail_does_not_wait_out_its_servers_back_off(backend: Backend) {
    let (relay, silent, app, tenant) = black_holed_tenant(backend, |c| c.retry_base_secs = 30).await;
    let newsletter = enqueue(&app, custom(&tenant)).await["id"].as_str().unwrap().to_owned();
    let worker = RunningWorker::start(&app);
    // The newsletter meets the silence: the server backs off.
    wait_status(&app, &newsletter, "RETRYING", Duration::from_secs(15)).await;
    let tried = silent.accepted();
    let handed_in = Instant::now();
    let urgent = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &urgent, "SENT", Duration::from_secs(20)).await;
    let took = handed_in.elapsed();
    assert!(took >= Duration::from_secs(3), "not before its fallback time");
    // The back-off lasts at least 24 s (30 s less its jitter).
    assert!(
        took < Duration::from_secs(15),
        "at its fallback time, not at the back-off's end: {took:?}"
    );
    let (attempts, routes) = routes(&app, &d).await;
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    assert_eq!(
        routes,
        ["PLATFORM_DEFAULT"],
        "not tried on the backing-off server: {attempts}"
    );
    let got = wait_for_mail_to(&relay, "member@example.net").await;
    assert_eq!(got.mail_from, "noreply@platform.example");
    assert!(got.header("Reply-To").unwrap().ends_with("<shop@example.jp>"));
    assert_eq!(silent.accepted(), tried, "the server was not tried again");
    let n = delivery(&app, &newsletter).await;
    assert_eq!(n["status"], "RETRYING", "{n}");
    worker.stop().await;
    app.finish().await;
}

/// The attempts of delivery `d` as the operator sees them, and the route of each.
async fn routes(app: &TestApp, d: &Value) -> (Value, Vec<String>) {
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": d["id"] })).await["delivery"]["attempts"].clone();
    let routes = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["route"].as_str().unwrap().to_owned())
        .collect();
    (attempts, routes)
}

/// Waits until the relay received a mail for `to`; returns it.
async fn wait_for_mail_to(relay: &SmtpServer, to: &str) -> Received {
    let started = Instant::now();
    loop {
        let mut to_them: Vec<Received> = relay.received().into_iter().filter(|m| m.rcpt_tos == [to]).collect();
        if let Some(mail) = to_them.pop() {
            assert!(to_them.is_empty(), "one mail to {to}");
            return mail;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no mail to {to}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Biz admin aims its sender address at a stranger and points at a server that
/// answers AUTH with a phishing line. After the failures the settings are suspended, and
/// the platform's own sender mails nothing to the stranger: without a contact address no
/// notice at all, with one a notice to the contact that names the stage and the reply
/// codes (once) but not a word of the server's text.
async fn a_phishing_reply_is_mailed_to_no_stranger_and_the_contact_gets_codes_only(backend: Backend) {
    const PHISHING: &str = "535 5.7.8 Verify your bank details at https://phish.example/login";
    let relay = SmtpServer::start(SmtpOptions::plain());
    let mut opts = SmtpOptions::plain().with_auth("shop", "right");
    opts.auth_reply = Some(PHISHING.into());
    let hostile = SmtpServer::start(opts);
    let port = hostile.port;
    let relay_url = format!("smtp://127.0.0.1:{}", relay.port);
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, vec![port]);
        c.settings_activation = mailgate::config::SettingsActivation::Save;
        c.default_smtp_url = Some(secrecy::SecretString::from(relay_url));
        c.suspend_after_failures = 3;
    })
    .await;
    let without_contact = app.create_tenant("No contact", "BIZ").await;
    let with_contact = app
        .ok(
            &app.operator(),
            "mutation($n:String!,$c:String){ createTenant(name:$n, plan:BIZ, contactEmail:$c){ id contactEmail } }",
            json!({ "n": "Contact", "c": "it@sakura.example" }),
        )
        .await["createTenant"]
        .clone();
    assert_eq!(with_contact["contactEmail"], "it@sakura.example");
    let with_contact = with_contact["id"].as_str().unwrap().to_owned();
    let stranger = SettingsInput::plain(port)
        .from("stranger@victim.example")
        .from_name("Your Bank")
        .with_auth("shop", "right")
        .json();
    let worker = RunningWorker::start(&app);
    for tenant in [&without_contact, &with_contact] {
        let saved = app
            .ok(&app.admin(tenant), SAVE, json!({ "t": tenant, "i": stranger }))
            .await;
        assert_eq!(saved["updateMailSettings"]["health"]["state"], "LIVE", "{saved}");
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(enqueue(&app, reset(tenant)).await["id"].as_str().unwrap().to_owned());
        }
        for id in &waiting {
            wait_status(&app, id, "SENT", Duration::from_secs(60)).await;
        }
        let h = health(&app, tenant).await;
        assert_eq!(h["mailSettings"]["health"]["state"], "SUSPENDED", "{h}");
    }

    // The contact's notice: codes and our hint, nothing the server wrote.
    let notice = wait_for_mail_to(&relay, "it@sakura.example").await;
    assert_eq!(notice.mail_from, "noreply@platform.example");
    let text = decoded_body(&notice);
    for needle in ["AUTH", "535 5.7.8", "パスワード", "password"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    for words in [
        "Verify",
        "bank",
        "phish.example",
        "https://",
        "stranger@victim.example",
        "5.7.8 5.7.8",
    ] {
        assert!(!text.contains(words), "{words}: {text}");
    }
    // Nothing from the platform to the stranger, and no notice for the tenant without a
    // contact: its deliveries are the three resets.
    assert!(
        relay
            .received()
            .iter()
            .all(|m| m.rcpt_tos != ["stranger@victim.example"]),
        "{:?}",
        relay.received()
    );
    for (tenant, expected) in [(&without_contact, 3), (&with_contact, 4)] {
        let all = app
            .ok(
                &app.operator(),
                "query($t:ID!){ tenant(id:$t){ deliveries(first:50){ edges { node { to } } } } }",
                json!({ "t": tenant }),
            )
            .await;
        let to: Vec<&str> = all["tenant"]["deliveries"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["to"].as_str().unwrap())
            .collect();
        assert_eq!(to.len(), expected, "{all}");
        assert!(!to.contains(&"stranger@victim.example"), "{all}");
    }
    // Each suspension is still in the audit trail.
    for tenant in [&without_contact, &with_contact] {
        let audit = app.ok(&app.operator(), AUDIT, json!({ "t": tenant })).await;
        let suspended = audit["tenant"]["auditTrail"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["node"]["action"] == "MAIL_SETTINGS_SUSPENDED")
            .count();
        assert_eq!(suspended, 1, "{audit}");
    }
    worker.stop().await;
    app.finish().await;
}

/// The contact address: operators set, change and clear it (validated like any address,
/// audited); operators and the tenant's own admins see it, a service does not; nobody
/// else may set it.
async fn operators_set_the_contact_address_and_only_they_and_the_tenant_see_it(backend: Backend) {
    const SEE: &str = "query($t:ID!){ tenant(id:$t){ contactEmail } }";
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Sakura", "BIZ").await;
    let seen = app.ok(&app.operator(), SEE, json!({ "t": tenant })).await;
    assert_eq!(seen["tenant"]["contactEmail"], Value::Null);

    let bad = app
        .gql(&app.operator(), CONTACT, json!({ "t": tenant, "c": "not an address" }))
        .await;
    assert_eq!(code(&bad), "VALIDATION_FAILED", "{bad}");
    assert_eq!(
        fields(&bad),
        vec![("contactEmail".to_owned(), "INVALID_FORMAT".to_owned())]
    );
    let bad = app
        .gql(
            &app.operator(),
            "mutation{ createTenant(name:\"X\", plan:BIZ, contactEmail:\"x@[127.0.0.1]\"){ id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), "VALIDATION_FAILED", "{bad}");
    assert_eq!(fields(&bad)[0].0, "contactEmail", "{bad}");
    for token in [app.admin(&tenant), app.service()] {
        let denied = app
            .gql(&token, CONTACT, json!({ "t": tenant, "c": "me@evil.example" }))
            .await;
        assert_eq!(code(&denied), "FORBIDDEN", "{denied}");
    }

    let set = app
        .ok(
            &app.operator(),
            CONTACT,
            json!({ "t": tenant, "c": "it@sakura.example" }),
        )
        .await;
    assert_eq!(set["setTenantContactEmail"]["contactEmail"], "it@sakura.example");
    let admin = app.ok(&app.admin(&tenant), SEE, json!({ "t": tenant })).await;
    assert_eq!(admin["tenant"]["contactEmail"], "it@sakura.example");
    let service = app.ok(&app.service(), SEE, json!({ "t": tenant })).await;
    assert_eq!(
        service["tenant"]["contactEmail"],
        Value::Null,
        "a service does not see it"
    );

    // Null (or empty) clears it.
    let cleared = app
        .ok(&app.operator(), CONTACT, json!({ "t": tenant, "c": null }))
        .await;
    assert_eq!(cleared["setTenantContactEmail"]["contactEmail"], Value::Null);
    let missing = app
        .gql(
            &app.operator(),
            CONTACT,
            json!({ "t": "0191a2b3-0000-7000-8000-000000000000", "c": "it@sakura.example" }),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");
    let audit = app.ok(&app.operator(), AUDIT, json!({ "t": tenant })).await;
    let changed = audit["tenant"]["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "TENANT_CONTACT_CHANGED")
        .count();
    assert_eq!(changed, 2, "{audit}");
    app.finish().await;
}
