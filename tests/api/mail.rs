//! Real mail through real servers on loopback (aiosmtpd in four modes, Dovecot for
//! POP-before-SMTP): test mails with their diagnosis, what the server received, the
//! address guard, the rate limit, and the per-tenant transport cache.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::*;

testkit::each_backend!(
    sessions_are_reset_after_a_refusal_and_closed_with_quit_when_idle,
    a_hostile_server_can_neither_bloat_nor_trick_a_session,
    a_foreign_service_is_not_echoed_back,
    a_pipelined_refusal_is_named_whatever_the_server_does_next,
    test_mail_in_each_mode_reaches_the_server,
    default_ehlo_name_is_the_platform_domain_never_localhost,
    pop_before_smtp_logs_in_first,
    each_failure_is_diagnosed,
    a_server_that_never_answers_cannot_hold_a_test_past_20_seconds,
    private_addresses_are_refused_without_connecting,
    test_mails_are_rate_limited_per_tenant,
    test_mails_are_rate_limited_per_caller_across_tenants,
    internationalised_addresses_go_with_smtputf8_or_not_at_all,
    test_mail_follows_the_plan_gate_and_validation,
    settings_and_plan_changes_take_effect_on_the_next_send,
    pooled_sends_reuse_connections_and_keep_the_interval,
    a_tenants_first_sends_at_once_share_one_pool_and_its_cap,
    platform_relay_from_configuration,
    platform_relay_with_starttls_required,
    connections_to_one_host_are_capped_across_tenants,
);

const SEND_TEST: &str = "mutation($t:ID!,$to:String!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:$to, settings:$s){ \
    ok stage smtpCode enhancedCode serverMessage hint hintCode field elapsedMs messageId sender { address name source } } }";

/// A server for tests that mail through `ports`, trusting the test CA, private hosts allowed.
async fn mail_app(backend: Backend, ports: &[u16]) -> TestApp {
    let ports = ports.to_vec();
    spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = ports.clone();
        c.pop_allowed_ports = ports;
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
        c.smtp_connect_timeout_secs = 3;
        c.smtp_command_timeout_secs = 5;
    })
    .await
}

fn settings_for(port: u16, encryption: &str, auth: Option<(&str, &str)>) -> Value {
    let input = SettingsInput::plain(port)
        .encryption(encryption)
        .from_name("株式会社サンプル 通知")
        .local_hostname("web01.shop.example.jp");
    match auth {
        Some((user, password)) => input.with_auth(user, password),
        None => input.without_auth(),
    }
    .json()
}

async fn send_test(app: &TestApp, tenant: &str, settings: Option<Value>) -> Value {
    let body = app
        .gql(
            &app.admin(tenant),
            SEND_TEST,
            json!({ "t": tenant, "to": "customer@example.net", "s": settings }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["sendTestMail"].clone()
}

fn assert_delivered(r: &Value, got: &Received, expect_tls: bool) {
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["stage"], Value::Null);
    assert_eq!(
        r["sender"],
        json!({ "address": "shop@example.jp", "name": "株式会社サンプル 通知", "source": "CUSTOM" })
    );
    assert_eq!(got.mail_from, "shop@example.jp");
    assert_eq!(got.rcpt_tos, vec!["customer@example.net".to_owned()]);
    assert_eq!(got.ehlo.as_deref(), Some("web01.shop.example.jp"));
    assert_eq!(got.tls, expect_tls);
    let from = got.header("From").expect("From header");
    assert!(
        from.contains("=?utf-8?b?"),
        "Japanese display name is RFC 2047-encoded: {from}"
    );
    assert!(from.ends_with("<shop@example.jp>"), "{from}");
    assert_eq!(got.header("Message-ID").as_deref(), r["messageId"].as_str());
    assert!(r["messageId"].as_str().is_some_and(|m| m.ends_with("@example.jp>")));
    assert_eq!(got.header("To").as_deref(), Some("customer@example.net"));
    assert!(
        got.data.contains("test mail") || got.data.contains("dGVzdCBtYWls"),
        "body: {}",
        got.data
    );
}

async fn test_mail_in_each_mode_reaches_the_server(backend: Backend) {
    let plain = SmtpServer::start(SmtpOptions::plain());
    let starttls = SmtpServer::start(SmtpOptions::starttls().with_auth("shop", "pw-starttls"));
    let implicit = SmtpServer::start(SmtpOptions::implicit_tls().with_auth("shop", "pw-implicit"));
    let auth_plain = SmtpServer::start(SmtpOptions::plain().with_auth("shop", "pw-plain"));
    let app = mail_app(backend, &[plain.port, starttls.port, implicit.port, auth_plain.port]).await;
    let tenant = app.create_tenant("Mailer", "SHARE").await;

    let r = send_test(&app, &tenant, Some(settings_for(plain.port, "NONE", None))).await;
    assert_delivered(&r, &plain.wait_for(1, Duration::from_secs(5))[0], false);

    let r = send_test(
        &app,
        &tenant,
        Some(settings_for(starttls.port, "STARTTLS", Some(("shop", "pw-starttls")))),
    )
    .await;
    let got = starttls.wait_for(1, Duration::from_secs(5));
    assert_delivered(&r, &got[0], true);
    assert_eq!(got[0].auth_user.as_deref(), Some("shop"));

    let r = send_test(
        &app,
        &tenant,
        Some(settings_for(implicit.port, "SSL", Some(("shop", "pw-implicit")))),
    )
    .await;
    let got = implicit.wait_for(1, Duration::from_secs(5));
    assert_delivered(&r, &got[0], true);
    assert_eq!(got[0].auth_user.as_deref(), Some("shop"));

    let r = send_test(
        &app,
        &tenant,
        Some(settings_for(auth_plain.port, "NONE", Some(("shop", "pw-plain")))),
    )
    .await;
    let got = auth_plain.wait_for(1, Duration::from_secs(5));
    assert_delivered(&r, &got[0], false);
    assert_eq!(got[0].auth_user.as_deref(), Some("shop"));

    // Without a draft the saved settings are used, and the stored password is reused.
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": settings_for(starttls.port, "STARTTLS", Some(("shop", "pw-starttls"))) }),
    )
    .await;
    let r = send_test(&app, &tenant, None).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(starttls.wait_for(2, Duration::from_secs(5)).len(), 2);
    // A draft for the same server without the password reuses the stored one.
    let mut draft = settings_for(starttls.port, "STARTTLS", Some(("shop", "x")));
    draft.as_object_mut().unwrap().remove("password");
    let r = send_test(&app, &tenant, Some(draft)).await;
    assert_eq!(r["ok"], true, "{r}");
    // A draft for another server without the password is refused before any connection.
    let mut other = settings_for(implicit.port, "SSL", Some(("shop", "x")));
    other.as_object_mut().unwrap().remove("password");
    let body = app
        .gql(
            &app.admin(&tenant),
            SEND_TEST,
            json!({ "t": tenant, "to": "a@example.net", "s": other }),
        )
        .await;
    assert_eq!(
        fields(&body),
        vec![("password".to_owned(), "PASSWORD_REENTRY_REQUIRED".to_owned())]
    );
    assert_eq!(implicit.count(), 1);

    // Every test is in the audit trail, with recipient and result and no secret.
    let trail = app
        .ok(&app.admin(&tenant), "query($id:ID!){ tenant(id:$id){ auditTrail(first:100){ edges { node { action changes { field after } } } } } }", json!({ "id": tenant }))
        .await;
    let tests: Vec<&Value> = trail["tenant"]["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "TEST_MAIL_SENT")
        .collect();
    assert_eq!(tests.len(), 6, "{trail}");
    assert!(
        tests[0]["node"]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "field": "to", "after": "customer@example.net" }))
    );
    assert!(
        tests[0]["node"]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "field": "result", "after": "ok" }))
    );
    let text = trail.to_string();
    assert!(!text.contains("pw-starttls") && !text.contains("pw-implicit") && !text.contains("pw-plain"));
    app.finish().await;
}

async fn default_ehlo_name_is_the_platform_domain_never_localhost(backend: Backend) {
    let plain = SmtpServer::start(SmtpOptions::plain());
    let app = mail_app(backend, &[plain.port]).await;
    let tenant = app.create_tenant("Ehlo", "BIZ").await;
    let mut s = settings_for(plain.port, "NONE", None);
    s.as_object_mut().unwrap().remove("localHostname");
    assert_eq!(send_test(&app, &tenant, Some(s)).await["ok"], true);
    assert_eq!(
        plain.wait_for(1, Duration::from_secs(5))[0].ehlo.as_deref(),
        Some("platform.example")
    );
    app.finish().await;
}

async fn pop_before_smtp_logs_in_first(backend: Backend) {
    let pop = Pop3Server::start_tls("popper", "pop-secret");
    let smtp = SmtpServer::start(SmtpOptions {
        pop_gate: Some((pop.gate_file.clone(), 300)),
        log_commands: true,
        ..SmtpOptions::plain()
    });
    let pop_tls_port = pop.tls_port.expect("POP3S port");
    let app = mail_app(backend, &[smtp.port, pop.port, pop_tls_port]).await;
    let tenant = app.create_tenant("Pop", "SHARE").await;

    // Without POP-before-SMTP the server refuses to relay: the result suggests POP before
    // SMTP (not the sender address, which is not what is wrong).
    let r = send_test(&app, &tenant, Some(settings_for(smtp.port, "NONE", None))).await;
    assert_eq!(
        (r["ok"].clone(), r["stage"].clone(), r["smtpCode"].clone()),
        (json!(false), json!("MAIL_FROM"), json!(554)),
        "{r}"
    );
    assert_eq!(
        failure(&r),
        ("MAIL_FROM", "POP_BEFORE_SMTP_SUGGESTED", "popBeforeSmtp.host"),
        "{r}"
    );
    assert!(r["hint"].as_str().unwrap().contains("POP before SMTP"), "{r}");
    assert_eq!(smtp.count(), 0);
    // The refused test mail's session still stood: it ended with QUIT.
    let conversations = smtp.conversations();
    assert!(
        !conversations.is_empty() && conversations.iter().all(Conversation::ended_with_quit),
        "{:?}",
        conversations.iter().map(Conversation::verbs).collect::<Vec<_>>()
    );

    // A wrong POP password is reported as such, and nothing is sent.
    let mut s = settings_for(smtp.port, "NONE", None);
    s["popBeforeSmtp"] =
        json!({ "host": "localhost", "port": pop.port, "username": "popper", "password": "wrong", "tls": false });
    let r = send_test(&app, &tenant, Some(s.clone())).await;
    assert_eq!(
        failure(&r),
        ("POP_LOGIN", "POP_LOGIN_FAILED", "popBeforeSmtp.password"),
        "{r}"
    );
    assert!(!r.to_string().contains("\"wrong\""));
    assert_eq!(smtp.count(), 0);
    // The refused POP3 login still ended with QUIT (Dovecot logs a logout, not a lost
    // connection), once Dovecot has logged the disconnection at all.
    let started = Instant::now();
    while !pop.log().contains("auth failed") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", pop.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pop.log().contains("Aborted login by logging out"), "{}", pop.log());

    // With the right password (over POP3S) the login happens first and the mail is relayed.
    s["popBeforeSmtp"] = json!({ "host": "localhost", "port": pop_tls_port, "username": "popper", "password": "pop-secret", "tls": true });
    let r = send_test(&app, &tenant, Some(s)).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(pop.gate_lines().len(), 1, "one POP login");
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).len(), 1);
    app.finish().await;
}

/// One failing test mail per diagnosis: `(server options, settings, stage, code, hint, field)`.
async fn each_failure_is_diagnosed(backend: Backend) {
    let wrong_pw = SmtpServer::start(SmtpOptions::starttls().with_auth("shop", "right"));
    let gmail = SmtpServer::start(SmtpOptions {
        auth_reply: Some("534 5.7.9 Application-specific password required. Learn more at https://support.google.com/mail/?p=InvalidSecondFactor".into()),
        ..SmtpOptions::starttls().with_auth("shop", "right")
    });
    let m365 = SmtpServer::start(SmtpOptions {
        auth_reply: Some(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.".into(),
        ),
        ..SmtpOptions::starttls().with_auth("shop", "right")
    });
    let sender = SmtpServer::start(SmtpOptions {
        mail_from_reply: Some("553 5.7.1 <shop@example.jp>: Sender address rejected: not owned by user shop".into()),
        ..SmtpOptions::plain()
    });
    let implicit = SmtpServer::start(SmtpOptions::implicit_tls());
    // Logs every command it is sent, so the log shows whether AUTH was tried.
    let plain = SmtpServer::start(SmtpOptions {
        log_commands: true,
        ..SmtpOptions::plain()
    });
    let wrong_cert = SmtpServer::start(SmtpOptions {
        cert: CertChoice::WrongName,
        ..SmtpOptions::starttls()
    });
    let (silent_port, silent) = silent_listener();
    let closed = refused_port();
    let closed_port = closed.port;
    let ports = [
        wrong_pw.port,
        gmail.port,
        m365.port,
        sender.port,
        implicit.port,
        plain.port,
        wrong_cert.port,
        silent_port,
        closed_port,
    ];
    let app = mail_app(backend, &ports).await;
    let tenant = app.create_tenant("Diagnosed", "SHARE").await;

    let cases: Vec<(Value, &str, Option<i64>, &str, &str)> = vec![
        (
            settings_for(wrong_pw.port, "STARTTLS", Some(("shop", "wrong-pw"))),
            "AUTH",
            Some(535),
            "WRONG_CREDENTIALS",
            "password",
        ),
        (
            settings_for(gmail.port, "STARTTLS", Some(("shop", "right"))),
            "AUTH",
            Some(534),
            "GMAIL_APP_PASSWORD",
            "password",
        ),
        (
            settings_for(m365.port, "STARTTLS", Some(("shop", "right"))),
            "AUTH",
            Some(535),
            "M365_SMTP_AUTH_DISABLED",
            "username",
        ),
        (
            settings_for(sender.port, "NONE", None),
            "MAIL_FROM",
            Some(553),
            "SENDER_NOT_ALLOWED",
            "fromAddress",
        ),
        // TLS handshake against a plain-text server.
        (
            settings_for(plain.port, "SSL", None),
            "TLS",
            None,
            "TLS_MODE_MISMATCH",
            "encryption",
        ),
        // Plain text against an implicit-TLS port: the server waits for a handshake, never greets.
        (
            settings_for(implicit.port, "NONE", None),
            "GREETING",
            None,
            "TIMED_OUT",
            "port",
        ),
        (
            settings_for(plain.port, "STARTTLS", Some(("shop", "never-sent"))),
            "TLS",
            None,
            "STARTTLS_NOT_OFFERED",
            "encryption",
        ),
        (
            settings_for(wrong_cert.port, "STARTTLS", None),
            "TLS",
            None,
            "CERTIFICATE_NAME_MISMATCH",
            "host",
        ),
        (
            settings_for(closed_port, "NONE", None),
            "CONNECT",
            None,
            "CONNECTION_REFUSED",
            "port",
        ),
        (
            settings_for(silent_port, "NONE", None),
            "GREETING",
            None,
            "TIMED_OUT",
            "port",
        ),
    ];
    for (settings, stage, code, hint, field) in cases {
        // A tenant per case keeps each under the test-mail rate limit.
        let tenant = app.create_tenant(hint, "SHARE").await;
        let started = Instant::now();
        let r = send_test(&app, &tenant, Some(settings)).await;
        assert_eq!(r["ok"], false, "{hint}: {r}");
        assert_eq!(r["stage"], stage, "{hint}: {r}");
        assert_eq!(r["smtpCode"], code.map_or(Value::Null, |c| json!(c)), "{hint}: {r}");
        assert_eq!(r["hintCode"], hint, "{r}");
        assert_eq!(r["field"], field, "{hint}: {r}");
        assert!(
            r["hint"].as_str().is_some_and(|h| h.len() > 20),
            "{hint}: a sentence: {r}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{hint}: within 20 s");
        assert!(!r.to_string().contains("wrong-pw") && !r.to_string().contains("never-sent"));
    }
    // The enhanced codes the server sent are reported.
    let r = send_test(
        &app,
        &tenant,
        Some(settings_for(gmail.port, "STARTTLS", Some(("shop", "right")))),
    )
    .await;
    assert_eq!(r["enhancedCode"], "5.7.9");
    assert!(
        r["serverMessage"]
            .as_str()
            .unwrap()
            .contains("Application-specific password required")
    );
    // STARTTLS missing: no credentials went over the plain connection (the server saw the
    // client's EHLO, and no AUTH after it).
    let commands = plain.commands();
    assert!(
        commands.iter().any(|c| c.contains("EHLO")),
        "the command log works: {commands:?}"
    );
    assert!(!commands.iter().any(|c| c.contains("AUTH")), "{commands:?}");
    assert!(silent.accepted() >= 1);
    // Japanese hints.
    let (_, ja) = app
        .post(Some(&app.admin(&tenant)), Some("ja"), &json!({ "query": SEND_TEST, "variables": { "t": tenant, "to": "a@example.net", "s": settings_for(wrong_pw.port, "STARTTLS", Some(("shop", "bad"))) } }))
        .await;
    assert!(
        ja["data"]["sendTestMail"]["hint"]
            .as_str()
            .unwrap()
            .contains("パスワード"),
        "{ja}"
    );
    // The trail keeps the failure as a code for programs and reads it in words, newest first.
    let q = "query($id:ID!){ tenant(id:$id){ auditTrail(first:1, order:NEWEST_FIRST){ edges { node { action \
        actorLabel changes { field label after afterText } } } } } }";
    let (_, ja) = app
        .post(
            Some(&app.admin(&tenant)),
            Some("ja"),
            &json!({ "query": q, "variables": { "id": tenant } }),
        )
        .await;
    let newest = &ja["data"]["tenant"]["auditTrail"]["edges"][0]["node"];
    assert_eq!(newest["action"], "TEST_MAIL_SENT", "{ja}");
    assert_eq!(newest["actorLabel"], "サイト管理者（tenant_admin-subject）");
    let result = newest["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "result")
        .unwrap();
    assert_eq!(
        result,
        &json!({ "field": "result", "label": "結果", "after": "failed at AUTH (535)", "afterText": "認証の段階で失敗（応答コード 535）" })
    );
    assert_eq!(
        wrong_pw.count() + gmail.count() + m365.count() + sender.count() + plain.count(),
        0,
        "nothing was delivered"
    );
    app.finish().await;
}

async fn a_server_that_never_answers_cannot_hold_a_test_past_20_seconds(backend: Backend) {
    let (port, silent) = silent_listener();
    // Even with generous step deadlines, the whole test mail is cut at 20 s.
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = vec![port];
        c.smtp_connect_timeout_secs = 120;
        c.smtp_command_timeout_secs = 120;
    })
    .await;
    let tenant = app.create_tenant("Silent", "SHARE").await;
    let started = Instant::now();
    let r = send_test(&app, &tenant, Some(settings_for(port, "NONE", None))).await;
    let took = started.elapsed();
    assert_eq!(r["ok"], false);
    assert!(took < Duration::from_secs(21), "took {took:?}");
    assert!(
        took >= Duration::from_secs(9),
        "the server really was waited for: {took:?}"
    );
    assert!(silent.accepted() >= 1);
    app.finish().await;
}

async fn private_addresses_are_refused_without_connecting(backend: Backend) {
    let (port, connections) = counting_listener();
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = false;
        c.smtp_allowed_ports = vec![port, 25];
        c.pop_allowed_ports = vec![port];
    })
    .await;
    let tenant = app.create_tenant("Guarded", "SHARE").await;
    for host in [
        "127.0.0.1",
        "[::1]",
        "::ffff:127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
    ] {
        let mut s = settings_for(port, "NONE", None);
        s["host"] = json!(host);
        let r = send_test(&app, &tenant, Some(s)).await;
        assert_eq!(failure(&r), ("RESOLVE", "FORBIDDEN_ADDRESS", "host"), "{host}: {r}");
    }
    // A name that resolves to an internal address answers as a name that does not exist
    // (so a tenant cannot map which internal names exist), word for word.
    let mut s = settings_for(port, "NONE", None);
    s["host"] = json!("localhost");
    let internal = send_test(&app, &tenant, Some(s)).await;
    assert_eq!(failure(&internal), ("RESOLVE", "HOST_NOT_FOUND", "host"), "{internal}");
    for leak in ["internal", "private", "127.0.0.1", "loopback", "forbidden"] {
        assert!(
            !internal.to_string().to_ascii_lowercase().contains(leak),
            "{leak}: {internal}"
        );
    }
    // A POP host on a private address is refused too, before the SMTP part.
    let mut s = settings_for(25, "NONE", None);
    s["host"] = json!("smtp.example.com");
    s["popBeforeSmtp"] = json!({ "host": "127.0.0.1", "port": port, "username": "u", "password": "p" });
    let r = send_test(&app, &tenant, Some(s)).await;
    assert_eq!(
        failure(&r),
        ("POP_LOGIN", "FORBIDDEN_ADDRESS", "popBeforeSmtp.host"),
        "{r}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "no connection was attempted");

    // Ports outside the list are refused on save and on test.
    let mut s = settings_for(2526, "NONE", None);
    s["host"] = json!("smtp.example.com");
    let body = app
        .gql(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": s.clone() }))
        .await;
    assert_eq!(fields(&body), vec![("port".to_owned(), "PORT_NOT_ALLOWED".to_owned())]);
    let body = app
        .gql(
            &app.admin(&tenant),
            SEND_TEST,
            json!({ "t": tenant, "to": "a@example.net", "s": s }),
        )
        .await;
    assert_eq!(fields(&body), vec![("port".to_owned(), "PORT_NOT_ALLOWED".to_owned())]);
    app.finish().await;
}

async fn test_mails_are_rate_limited_per_tenant(backend: Backend) {
    let plain = SmtpServer::start(SmtpOptions::plain());
    let app = mail_app(backend, &[plain.port]).await;
    let tenant = app.create_tenant("Busy", "SHARE").await;
    let other = app.create_tenant("Quiet", "SHARE").await;
    for _ in 0..10 {
        assert_eq!(
            send_test(&app, &tenant, Some(settings_for(plain.port, "NONE", None))).await["ok"],
            true
        );
    }
    let body = app
        .gql(
            &app.admin(&tenant),
            SEND_TEST,
            json!({ "t": tenant, "to": "a@example.net", "s": settings_for(plain.port, "NONE", None) }),
        )
        .await;
    assert_eq!(code(&body), "RATE_LIMITED");
    assert_eq!(plain.wait_for(10, Duration::from_secs(5)).len(), 10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(plain.count(), 10, "the refused test made no connection");
    assert_eq!(
        send_test(&app, &other, Some(settings_for(plain.port, "NONE", None))).await["ok"],
        true,
        "other tenants are not affected"
    );
    app.finish().await;
}

/// `山田@example.jp` goes with SMTPUTF8 to a server that offers it; a server that does not
/// gets nothing (a clear failure, never a mangled address); an internationalised domain
/// alone goes as its A-label without SMTPUTF8.
async fn internationalised_addresses_go_with_smtputf8_or_not_at_all(backend: Backend) {
    let utf8 = SmtpServer::start(SmtpOptions::plain());
    let ascii_only = SmtpServer::start(SmtpOptions {
        no_smtputf8: true,
        log_commands: true,
        ..SmtpOptions::plain()
    });
    let app = mail_app(backend, &[utf8.port, ascii_only.port]).await;
    let tenant = app.create_tenant("Intl", "BIZ").await;
    let test_to = |to: &'static str, port: u16| {
        let app = &app;
        let tenant = tenant.clone();
        async move {
            let body = app
                .gql(
                    &app.admin(&tenant),
                    SEND_TEST,
                    json!({ "t": tenant, "to": to, "s": settings_for(port, "NONE", None) }),
                )
                .await;
            assert!(body.get("errors").is_none(), "{body}");
            body["data"]["sendTestMail"].clone()
        }
    };
    let r = test_to("山田@example.jp", utf8.port).await;
    assert_eq!(r["ok"], true, "{r}");
    let got = utf8.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].rcpt_tos, vec!["山田@example.jp".to_owned()]);
    assert!(
        got[0].mail_options.iter().any(|o| o == "SMTPUTF8"),
        "{:?}",
        got[0].mail_options
    );

    let r = test_to("山田@example.jp", ascii_only.port).await;
    assert_eq!(
        (
            r["ok"].clone(),
            r["stage"].clone(),
            r["hintCode"].clone(),
            r["field"].clone()
        ),
        (
            json!(false),
            json!("MAIL_FROM"),
            json!("SMTPUTF8_NOT_SUPPORTED"),
            json!("to")
        ),
        "{r}"
    );
    assert!(r["serverMessage"].is_null());

    let r = test_to("info@日本語.jp", ascii_only.port).await;
    assert_eq!(r["ok"], true, "{r}");
    let got = ascii_only.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "only the ASCII one arrived");
    assert_eq!(got[0].rcpt_tos, vec!["info@xn--wgv71a119e.jp".to_owned()]);
    assert!(
        got[0].mail_options.iter().all(|o| o != "SMTPUTF8"),
        "{:?}",
        got[0].mail_options
    );

    // A notification to such an address through a server without SMTPUTF8 fails at once,
    // saying why.
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": settings_for(ascii_only.port, "NONE", None) }),
    )
    .await;
    let d = app
        .ok(
            &app.service(),
            "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
            json!({ "i": { "tenantId": tenant, "kind": "CUSTOM", "to": "山田@example.jp", "locale": "ja", "subject": "件名", "text": "本文" } }),
        )
        .await;
    let id = d["enqueueNotification"]["id"].as_str().unwrap().to_owned();
    let worker = crate::support::deliveries::RunningWorker::start(&app);
    let failed = crate::support::deliveries::wait_status(&app, &id, "FAILED", Duration::from_secs(10)).await;
    assert_eq!(failed["failureCode"], "REFUSED", "{failed}");
    assert_eq!(failed["failureDetail"], "MAIL_FROM SmtpUtf8NotOffered", "{failed}");
    assert_eq!(failed["retries"], 0, "no retry: it cannot pass");
    worker.stop().await;
    assert_eq!(ascii_only.count(), 1);
    // The sessions that could not take the address still stood: the test mail's ended
    // with QUIT at once (not "lost connection after EHLO"), the worker's was kept and
    // ended with QUIT when the worker stopped.
    let conversations = ascii_only.conversations();
    assert!(
        conversations.len() >= 3 && conversations.iter().all(Conversation::ended_with_quit),
        "{:?}",
        conversations.iter().map(Conversation::verbs).collect::<Vec<_>>()
    );
    app.finish().await;
}

/// One caller (an operator token here) cannot use every tenant's server for test mails:
/// 30 a minute across all tenants, while each tenant's own admin keeps its own limit.
async fn test_mails_are_rate_limited_per_caller_across_tenants(backend: Backend) {
    let plain = SmtpServer::start(SmtpOptions::plain());
    let app = mail_app(backend, &[plain.port]).await;
    let operator = app.operator();
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(app.create_tenant(&format!("Target {i}"), "SHARE").await);
    }
    let test = |tenant: &str, token: &str| {
        let body = json!({ "t": tenant, "to": "a@example.net", "s": settings_for(plain.port, "NONE", None) });
        let (token, app) = (token.to_owned(), &app);
        async move { app.gql(&token, SEND_TEST, body).await }
    };
    for tenant in &tenants[..3] {
        for _ in 0..10 {
            let body = test(tenant, &operator).await;
            assert_eq!(body["data"]["sendTestMail"]["ok"], true, "{body}");
        }
    }
    let body = test(&tenants[3], &operator).await;
    assert_eq!(code(&body), "RATE_LIMITED", "the 31st test of one caller: {body}");
    assert_eq!(plain.wait_for(30, Duration::from_secs(10)).len(), 30);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(plain.count(), 30, "the refused test made no connection");
    let own = test(&tenants[3], &app.admin(&tenants[3])).await;
    assert_eq!(
        own["data"]["sendTestMail"]["ok"], true,
        "the tenant's own admin is another caller: {own}"
    );
    app.finish().await;
}

async fn test_mail_follows_the_plan_gate_and_validation(backend: Backend) {
    let app = mail_app(backend, &[25]).await;
    let basic = app.create_tenant("Basic", "BASIC").await;
    let body = app
        .gql(
            &app.admin(&basic),
            SEND_TEST,
            json!({ "t": basic, "to": "a@example.net", "s": settings_for(25, "NONE", None) }),
        )
        .await;
    assert_eq!(code(&body), "PLAN_FORBIDS_CUSTOM_SENDER");
    let share = app.create_tenant("Share", "SHARE").await;
    let body = app
        .gql(
            &app.admin(&share),
            SEND_TEST,
            json!({ "t": share, "to": "not an address", "s": settings_for(25, "NONE", None) }),
        )
        .await;
    assert_eq!(fields(&body), vec![("to".to_owned(), "INVALID_FORMAT".to_owned())]);
    for literal in ["a@[10.0.0.5]", "a@10.0.0.5"] {
        let body = app
            .gql(
                &app.admin(&share),
                SEND_TEST,
                json!({ "t": share, "to": literal, "s": settings_for(25, "NONE", None) }),
            )
            .await;
        assert_eq!(
            fields(&body),
            vec![("to".to_owned(), "ADDRESS_LITERAL".to_owned())],
            "{literal}"
        );
    }
    let body = app
        .gql(
            &app.admin(&share),
            SEND_TEST,
            json!({ "t": share, "to": "a@example.net" }),
        )
        .await;
    assert_eq!(fields(&body), vec![("settings".to_owned(), "REQUIRED".to_owned())]);
    let body = app
        .gql(
            &app.admin(&basic),
            SEND_TEST,
            json!({ "t": share, "to": "a@example.net" }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "another tenant's admin");
    app.finish().await;
}

/// A failed test mail's verdict: stage, hint code and the field to fix (and it did fail).
fn failure(r: &Value) -> (&str, &str, &str) {
    assert_eq!(r["ok"], false, "{r}");
    let text = |k: &str| r[k].as_str().unwrap_or("");
    (text("stage"), text("hintCode"), text("field"))
}

/// Sends one mail the way the rest of the system does: load the tenant, call the
/// mailer's single entry point.
async fn send_through_mailer(
    app: &TestApp,
    tenant: &str,
    subject: &str,
) -> Result<domain::mail::SendReceipt, domain::mail::SendFailure> {
    use domain::ports::MailTransport as _;
    let id: domain::TenantId = tenant.parse().expect("tenant id");
    let record = app
        .app
        .service
        .store()
        .tenant(id)
        .await
        .expect("store")
        .expect("tenant");
    let mail = domain::mail::OutgoingMail {
        to: domain::values::EmailAddress::parse("member@example.net").expect("address"),
        subject: domain::mail::Subject::parse(subject).expect("subject"),
        text: format!("{subject}\r\n"),
        html: Some(format!("<p>{subject}</p>")),
        message_id: None,
        via_platform: false,
    };
    app.app.mailer.send(&record, &mail).await
}

fn eml_files(app: &TestApp) -> Vec<String> {
    let dir = app.app.config.data_dir.join("mail");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn settings_and_plan_changes_take_effect_on_the_next_send(backend: Backend) {
    let first = SmtpServer::start(SmtpOptions::starttls().with_auth("shop", "pw-1"));
    let second = SmtpServer::start(SmtpOptions::plain());
    let app = mail_app(backend, &[first.port, second.port]).await;
    let tenant = app.create_tenant("Switcher", "SHARE").await;
    let admin = app.admin(&tenant);

    // No settings: the platform default (development: .eml files).
    let r = send_through_mailer(&app, &tenant, "one").await.expect("sent");
    assert_eq!(r.sender.source, domain::SenderSource::PlatformDefault);
    assert_eq!(eml_files(&app).len(), 1);
    assert!(eml_files(&app)[0].contains("noreply@platform.example"));

    app.ok(
        &admin,
        UPDATE,
        json!({ "t": tenant, "i": settings_for(first.port, "STARTTLS", Some(("shop", "pw-1"))) }),
    )
    .await;
    for n in ["two", "three"] {
        let r = send_through_mailer(&app, &tenant, n).await.expect("sent");
        assert_eq!(r.sender.source, domain::SenderSource::Custom);
    }
    let got = first.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[1].header("Subject").as_deref(), Some("three"));
    assert!(got[1].data.contains("<p>three</p>"), "HTML part present");

    // A settings change: the very next send goes to the new server.
    app.ok(
        &admin,
        UPDATE,
        json!({ "t": tenant, "i": settings_for(second.port, "NONE", None) }),
    )
    .await;
    send_through_mailer(&app, &tenant, "four").await.expect("sent");
    assert_eq!(second.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(first.count(), 2);

    // A downgrade: the very next send goes out from the platform default.
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:ECONOMY){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    let r = send_through_mailer(&app, &tenant, "five").await.expect("sent");
    assert_eq!(r.sender.source, domain::SenderSource::PlatformDefault);
    assert_eq!(eml_files(&app).len(), 2);
    assert_eq!(second.count(), 1);

    // Back up: the saved settings are used again at once.
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BIZ){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    send_through_mailer(&app, &tenant, "six").await.expect("sent");
    assert_eq!(second.wait_for(2, Duration::from_secs(5)).len(), 2);

    // Cleared: the platform default again.
    app.ok(
        &admin,
        "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    let r = send_through_mailer(&app, &tenant, "seven").await.expect("sent");
    assert_eq!(r.sender.source, domain::SenderSource::PlatformDefault);
    assert_eq!(second.count(), 2);
    app.finish().await;
}

async fn pooled_sends_reuse_connections_and_keep_the_interval(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::starttls().with_auth("shop", "pw"));
    let app = mail_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Paced", "SHARE").await;
    let mut s = settings_for(smtp.port, "STARTTLS", Some(("shop", "pw")));
    s["sendIntervalMs"] = json!(300);
    app.ok(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": s }))
        .await;

    // Six concurrent callers: the server receives them at least 300 ms apart.
    let mut handles = Vec::new();
    let app = std::sync::Arc::new(app);
    for i in 0..6 {
        let app = app.clone();
        let tenant = tenant.clone();
        handles.push(tokio::spawn(async move {
            send_through_mailer(&app, &tenant, &format!("paced {i}"))
                .await
                .map(|_| ())
        }));
    }
    for h in handles {
        h.await.expect("join").expect("sent");
    }
    let got = smtp.wait_for(6, Duration::from_secs(10));
    let mut times: Vec<f64> = got.iter().map(|r| r.mail_from_at.expect("MAIL FROM time")).collect();
    times.sort_by(f64::total_cmp);
    for w in times.windows(2) {
        // Starts as the server saw them (MAIL FROM); 2 ms allowed for loopback transit.
        assert!(w[1] - w[0] >= 0.298, "sends {:.3} s apart: {times:?}", w[1] - w[0]);
    }
    // At most the per-tenant cap of connections (4 by default) carried the six mails.
    let connections: std::collections::HashSet<_> = got.iter().map(|r| r.peer_port.expect("peer port")).collect();
    assert!(
        connections.len() <= 4,
        "per-tenant connection cap: {connections:?} {:?}",
        got.iter().map(|r| (r.peer_port, r.mail_from_at)).collect::<Vec<_>>()
    );
    // Sequential sends reuse one pooled connection.
    for i in 0..3 {
        send_through_mailer(&app, &tenant, &format!("after {i}"))
            .await
            .expect("sent");
    }
    let got = smtp.wait_for(9, Duration::from_secs(10));
    let later: std::collections::HashSet<_> = got[6..].iter().map(|r| r.peer_port.expect("peer port")).collect();
    assert_eq!(later.len(), 1, "one connection reused: {later:?}");
    assert!(
        connections.contains(later.iter().next().expect("one")),
        "reused from the pool, not reopened"
    );
    let app = std::sync::Arc::try_unwrap(app).expect("sole owner");
    app.finish().await;
}

/// Many sends for a tenant whose transport is not cached yet, all at once: they find one
/// pool between them, so its per-tenant cap (4 by default) holds. (Each used to build and
/// insert a pool of its own when they raced past the cache, each with its own cap.)
async fn a_tenants_first_sends_at_once_share_one_pool_and_its_cap(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::starttls().with_auth("shop", "pw"));
    let app = mail_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Busy", "SHARE").await;
    let s = settings_for(smtp.port, "STARTTLS", Some(("shop", "pw")));
    app.ok(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": s }))
        .await;
    assert_eq!(
        app.app.mailer.cached_transports().await,
        0,
        "no pool before the first send"
    );

    let app = std::sync::Arc::new(app);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut handles = Vec::new();
    for i in 0..16 {
        let (app, tenant, start) = (app.clone(), tenant.clone(), start.clone());
        handles.push(tokio::spawn(async move {
            start.wait().await;
            send_through_mailer(&app, &tenant, &format!("at once {i}"))
                .await
                .map(|_| ())
        }));
    }
    for h in handles {
        h.await.expect("join").expect("sent");
    }
    let got = smtp.wait_for(16, Duration::from_secs(10));
    let connections: std::collections::HashSet<_> = got.iter().map(|r| r.peer_port.expect("peer port")).collect();
    assert!(
        connections.len() <= 4,
        "{} connections for a cap of 4: {connections:?}",
        connections.len()
    );
    assert_eq!(app.app.mailer.cached_transports().await, 1, "one pool for the tenant");
    let app = std::sync::Arc::try_unwrap(app).expect("sole owner");
    app.finish().await;
}

async fn platform_relay_from_configuration(backend: Backend) {
    let relay = SmtpServer::start(SmtpOptions::implicit_tls().with_auth("platform", "relay pw/1"));
    let url = format!("smtps://platform:relay%20pw%2F1@localhost:{}", relay.port);
    let app = spawn_app_with(backend, move |c| {
        c.default_smtp_url = Some(secrecy::SecretString::from(url));
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
    })
    .await;
    let tenant = app.create_tenant("Basic site", "BASIC").await;
    for i in 0..3 {
        let r = send_through_mailer(&app, &tenant, &format!("welcome {i}"))
            .await
            .expect("sent");
        assert_eq!(r.sender.source, domain::SenderSource::PlatformDefault);
    }
    let got = relay.wait_for(3, Duration::from_secs(5));
    assert!(
        got.iter()
            .all(|r| r.mail_from == "noreply@platform.example" && r.auth_user.as_deref() == Some("platform") && r.tls)
    );
    assert_eq!(
        got[0].header("From").as_deref(),
        Some("Platform <noreply@platform.example>")
    );
    assert!(
        eml_files(&app).is_empty(),
        "nothing written to files when a relay is set"
    );
    app.finish().await;
}

async fn platform_relay_with_starttls_required(backend: Backend) {
    // A relay that offers STARTTLS: the session is upgraded before AUTH.
    let relay = SmtpServer::start(SmtpOptions::starttls().with_auth("platform", "relay-pw"));
    let url = format!("smtp://platform:relay-pw@localhost:{}?starttls=required", relay.port);
    let app = spawn_app_with(backend, move |c| {
        c.default_smtp_url = Some(secrecy::SecretString::from(url));
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
    })
    .await;
    let tenant = app.create_tenant("Basic site", "BASIC").await;
    let r = send_through_mailer(&app, &tenant, "over starttls").await.expect("sent");
    assert_eq!(r.sender.source, domain::SenderSource::PlatformDefault);
    let got = relay.wait_for(1, Duration::from_secs(5));
    assert!(
        got[0].tls && got[0].auth_user.as_deref() == Some("platform"),
        "{:?}",
        got[0]
    );
    app.finish().await;

    // A relay that does not offer it: nothing is sent, and no credentials cross in clear.
    let plain = SmtpServer::start(SmtpOptions {
        log_commands: true,
        ..SmtpOptions::plain()
    });
    let url = format!("smtp://platform:relay-pw@localhost:{}?starttls=required", plain.port);
    let app = spawn_app_with(backend, move |c| {
        c.default_smtp_url = Some(secrecy::SecretString::from(url));
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
    })
    .await;
    let tenant = app.create_tenant("Basic site", "BASIC").await;
    let failure = send_through_mailer(&app, &tenant, "must not go in clear")
        .await
        .expect_err("refused without STARTTLS");
    assert_eq!(failure.stage, domain::mail::SendStage::Tls, "{failure:?}");
    let commands = plain.commands();
    assert!(commands.iter().any(|c| c.contains("EHLO")), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.contains("AUTH") || c.contains("MAIL FROM")),
        "{commands:?}"
    );
    assert_eq!(plain.count(), 0);
    app.finish().await;
}

/// Servers that break the protocol on purpose: each session ends at once with a clear
/// stage and hint (not at the deadline), memory stays bounded, and plain text after a
/// STARTTLS reply is never taken for a reply after the upgrade.
async fn a_hostile_server_can_neither_bloat_nor_trick_a_session(backend: Backend) {
    let greeting = HostileServer::start(Hostility::EndlessGreeting);
    let ehlo = HostileServer::start(Hostility::EndlessEhlo);
    let pop = HostileServer::start(Hostility::EndlessPopGreeting);
    let injection = HostileServer::start(Hostility::StartTlsInjection);
    let app = mail_app(backend, &[greeting.port, ehlo.port, pop.port, injection.port]).await;
    let (rss_before, _) = memory_kib();

    // Eight test mails at once into a greeting that never ends.
    let mut tenants = Vec::new();
    for i in 0..8 {
        tenants.push(app.create_tenant(&format!("Endless {i}"), "BIZ").await);
    }
    let results = futures_join(
        tenants
            .iter()
            .map(|t| send_test(&app, t, Some(settings_for(greeting.port, "NONE", None)))),
    )
    .await;
    for r in &results {
        assert_eq!(failure(r), ("GREETING", "PROTOCOL_VIOLATION", "port"), "{r}");
        assert!(r["serverMessage"].is_null(), "nothing of the stream is echoed: {r}");
    }
    let tenant = &tenants[0];
    // A multi-line EHLO reply that never ends.
    let r = send_test(&app, tenant, Some(settings_for(ehlo.port, "NONE", None))).await;
    assert_eq!(
        (r["stage"].clone(), r["hintCode"].clone()),
        (json!("EHLO"), json!("PROTOCOL_VIOLATION")),
        "{r}"
    );
    // A POP3 greeting that never ends, before SMTP.
    let mut s = settings_for(greeting.port, "NONE", None);
    s["popBeforeSmtp"] = json!({ "host": "localhost", "port": pop.port, "username": "u", "password": "p" });
    let r = send_test(&app, &tenants[1], Some(s)).await;
    assert_eq!(
        (r["stage"].clone(), r["hintCode"].clone(), r["field"].clone()),
        (
            json!("POP_LOGIN"),
            json!("PROTOCOL_VIOLATION"),
            json!("popBeforeSmtp.port")
        ),
        "{r}"
    );
    let (rss_after, peak) = memory_kib();
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "endless replies: {} MiB streamed at us; this process grew by {grown} KiB (peak resident {} MiB)",
        (greeting.streamed.load(std::sync::atomic::Ordering::Relaxed)
            + ehlo.streamed.load(std::sync::atomic::Ordering::Relaxed)
            + pop.streamed.load(std::sync::atomic::Ordering::Relaxed))
            / (1024 * 1024),
        peak / 1024
    );
    assert!(grown < 64 * 1024, "memory stays bounded: grew by {grown} KiB");

    // STARTTLS answered with `220 go ahead` and a fake `250` in the same segment: the
    // session ends before any TLS, AUTH or mail goes to that server.
    let r = send_test(
        &app,
        &tenants[2],
        Some(settings_for(injection.port, "STARTTLS", Some(("shop", "never-sent")))),
    )
    .await;
    assert_eq!(
        (r["ok"].clone(), r["stage"].clone(), r["hintCode"].clone()),
        (json!(false), json!("TLS"), json!("PROTOCOL_VIOLATION")),
        "{r}"
    );
    assert_eq!(
        injection.after_script.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing was sent after the injected reply"
    );
    app.finish().await;
}

/// Another service on the tenant's host and port (an SSH server): the answer says the
/// server does not speak SMTP and echoes nothing it sent.
async fn a_foreign_service_is_not_echoed_back(backend: Backend) {
    let ssh = HostileServer::start(Hostility::ForeignBanner);
    let app = mail_app(backend, &[ssh.port]).await;
    let tenant = app.create_tenant("Grabber", "BIZ").await;
    let r = send_test(&app, &tenant, Some(settings_for(ssh.port, "NONE", None))).await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["serverMessage"].is_null(), "{r}");
    assert!(
        !r.to_string().contains("internal-build-host"),
        "nothing of the banner comes back: {r}"
    );
    assert!(!r.to_string().contains("SSH"), "{r}");
    assert_eq!(r["hintCode"], "PROTOCOL_VIOLATION", "{r}");
    app.finish().await;
}

/// Runs futures together and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// Good manners on the wire: a mail the server refused leaves the session usable (RSET,
/// then the next mail on the same connection, no new TLS or login), and a session that
/// sits idle past the limit is closed with QUIT on a timer, while Mailgate runs.
async fn sessions_are_reset_after_a_refusal_and_closed_with_quit_when_idle(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions {
        data_reply: Some("451 4.3.0 Temporary local problem".into()),
        data_reply_times: 2,
        log_commands: true,
        ..SmtpOptions::plain()
    });
    let port = smtp.port;
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = vec![port];
        c.smtp_idle_timeout_secs = 1;
    })
    .await;
    let tenant = app.create_tenant("Manners", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": settings_for(port, "NONE", None) }),
    )
    .await;
    for i in 0..2 {
        let f = send_through_mailer(&app, &tenant, &format!("refused {i}"))
            .await
            .expect_err("451 at DATA");
        assert_eq!((f.stage, f.smtp_code), (domain::mail::SendStage::Data, Some(451)));
    }
    send_through_mailer(&app, &tenant, "accepted").await.expect("sent");
    let commands = smtp.commands();
    let count = |verb: &str| commands.iter().filter(|c| c.contains(verb)).count();
    assert_eq!(count("EHLO"), 1, "one session for three mails: {commands:?}");
    assert_eq!(count("RSET"), 2, "each refusal reset, not dropped: {commands:?}");
    assert_eq!(count("QUIT"), 0, "{commands:?}");
    // Idle past the 1 s limit: closed with QUIT while the server runs.
    let start = Instant::now();
    while !smtp.commands().iter().any(|c| c.contains("QUIT")) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the idle session was never closed: {:?}",
            smtp.commands()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}

/// Many tenants on one provider share its limits: the sessions open to one host name are
/// capped across tenants (here 2, with 4 per tenant), every mail still goes out, and a
/// send that finds no place within a connect's time is deferred (`HostBusy`: a "slow
/// down", no retry used), not failed.
async fn connections_to_one_host_are_capped_across_tenants(backend: Backend) {
    // Each session greets after 100 ms, so sessions that overlap do so for longer than
    // the proxy's 20 ms allowance.
    let smtp = SmtpServer::start(SmtpOptions {
        greeting_delay: Some(Duration::from_millis(100)),
        ..SmtpOptions::plain()
    });
    let proxy = counting_proxy(smtp.port);
    let ports = vec![proxy.port];
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = ports;
        c.smtp_connect_timeout_secs = 3;
        c.smtp_command_timeout_secs = 5;
        c.smtp_max_connections_per_tenant = 4;
        c.smtp_max_connections_per_host = 2;
    })
    .await;
    let mut tenants = Vec::new();
    for name in ["Ichi", "Ni", "San"] {
        let t = app.create_tenant(name, "SHARE").await;
        app.ok(
            &app.admin(&t),
            UPDATE,
            json!({ "t": t, "i": settings_for(proxy.port, "NONE", None) }),
        )
        .await;
        tenants.push(t);
    }
    let app = std::sync::Arc::new(app);
    let mut sends = Vec::new();
    for i in 0..15 {
        let (app, tenant) = (app.clone(), tenants[i % 3].clone());
        sends.push(tokio::spawn(async move {
            send_through_mailer(&app, &tenant, &format!("shared host {i}"))
                .await
                .map(|_| ())
        }));
    }
    for s in sends {
        s.await.expect("join").unwrap_or_else(|f| panic!("sent: {f:?}"));
    }
    assert_eq!(smtp.wait_for(15, Duration::from_secs(10)).len(), 15);
    assert!(proxy.accepted() >= 2, "both places were used: {}", proxy.accepted());
    assert!(
        proxy.most_open() <= 2,
        "at most 2 open to the host at once: {}",
        proxy.most_open()
    );

    // One place at a host whose server answers EHLO and then never answers MAIL FROM (the
    // holder keeps its place for the command timeout): a second tenant's send waits no
    // longer than a connect may take, then is deferred, not failed.
    let app = std::sync::Arc::try_unwrap(app).expect("sole owner");
    app.finish().await;
    let stalling = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = stalling.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in stalling.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead as _, Write as _};
                let mut writer = stream.try_clone().expect("clone");
                let _ = writer.write_all(b"220 stalling.example ESMTP\r\n");
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if line.to_ascii_uppercase().starts_with("EHLO") {
                        let _ = writer.write_all(b"250 stalling.example\r\n");
                    }
                    // Anything else: no answer, ever.
                }
            });
        }
    });
    let ports = vec![silent_port];
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = ports;
        c.smtp_connect_timeout_secs = 2;
        c.smtp_command_timeout_secs = 5;
        c.smtp_max_connections_per_host = 1;
    })
    .await;
    let (first, second) = (
        app.create_tenant("Holder", "SHARE").await,
        app.create_tenant("Waiter", "SHARE").await,
    );
    for t in [&first, &second] {
        app.ok(
            &app.admin(t),
            UPDATE,
            json!({ "t": t, "i": settings_for(silent_port, "NONE", None) }),
        )
        .await;
    }
    let app = std::sync::Arc::new(app);
    let holder = {
        let (app, t) = (app.clone(), first.clone());
        tokio::spawn(async move { send_through_mailer(&app, &t, "holds the place").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let waited = send_through_mailer(&app, &second, "waits").await.expect_err("no place");
    assert_eq!(waited.kind, domain::mail::FailureKind::HostBusy, "{waited:?}");
    assert_eq!(waited.stage, domain::mail::SendStage::Connect);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited about a connect timeout"
    );
    assert!(
        domain::delivery::is_rate_limit(&waited),
        "deferred like a slow-down reply"
    );
    let held = holder
        .await
        .expect("join")
        .expect_err("the server never answers MAIL FROM");
    assert_eq!(held.stage, domain::mail::SendStage::MailFrom, "{held:?}");
    let app = std::sync::Arc::try_unwrap(app).expect("sole owner");
    app.finish().await;
}

/// A pipelined send met by the rare answers RFC 2920 leaves open: a `421` to MAIL FROM
/// and a hang-up (the refusal is what is reported, not the missing reply to RCPT TO), and
/// a `354` to DATA after RCPT TO was refused (an empty message ends it, and the refusal
/// of the recipient is what is reported).
async fn a_pipelined_refusal_is_named_whatever_the_server_does_next(backend: Backend) {
    let hang_up = HostileServer::start(Hostility::PipelinedHangUp);
    let data_anyway = HostileServer::start(Hostility::PipelinedDataAfterRefusal);
    let app = mail_app(backend, &[hang_up.port, data_anyway.port]).await;
    let tenant = app.create_tenant("Pipelined", "BIZ").await;
    let r = send_test(&app, &tenant, Some(settings_for(hang_up.port, "NONE", None))).await;
    assert_eq!(
        (r["ok"].clone(), r["stage"].clone(), r["smtpCode"].clone()),
        (json!(false), json!("MAIL_FROM"), json!(421)),
        "{r}"
    );
    let r = send_test(&app, &tenant, Some(settings_for(data_anyway.port, "NONE", None))).await;
    assert_eq!(
        (r["ok"].clone(), r["stage"].clone(), r["smtpCode"].clone()),
        (json!(false), json!("RCPT_TO"), json!(550)),
        "{r}"
    );
    assert_eq!(
        data_anyway.after_script.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the 354 was answered with an empty message"
    );
    app.finish().await;
}
