//! The setup assistant against real servers on loopback: the probe finds the working
//! port and encryption among a refused port, a plain-only server, a STARTTLS server and
//! an implicit-TLS server, with exactly one AUTH seen by the servers.

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::*;

testkit::each_backend!(
    the_probe_finds_the_working_pair_and_logs_in_once,
    the_probe_logs_in_on_the_typed_pair_and_never_retries_a_refused_login,
    every_session_the_probe_opens_ends_with_quit,
    the_probe_follows_the_plan_gate_validation_and_audit,
    presets_name_the_providers_with_their_limits_hints_and_sources,
    a_template_preset_saves_only_a_host_of_its_template,
);

const PROBE: &str = "mutation($t:ID!,$s:MailSettingsInput!){ probeMailServer(tenantId:$t, settings:$s){ \
    pairs { port encryption works typed authMechanisms starttlsOffered smtputf8 failure { stage smtpCode hint hintCode field } } \
    suggestion { host port encryption smtpAuth } summary authTried authOk authFailure { stage smtpCode hintCode field hint } elapsedMs } }";

struct Lab {
    refused: RefusedPort,
    plain: SmtpServer,
    starttls: SmtpServer,
    tls: SmtpServer,
}

impl Lab {
    fn start() -> Self {
        let logged = |mut o: SmtpOptions| {
            o.log_commands = true;
            o.with_auth("shop", "right-password")
        };
        Self {
            refused: refused_port(),
            plain: SmtpServer::start(logged(SmtpOptions::plain())),
            starttls: SmtpServer::start(logged(SmtpOptions::starttls())),
            tls: SmtpServer::start(logged(SmtpOptions::implicit_tls())),
        }
    }

    /// The AUTH commands each server saw: (plain, starttls, tls).
    fn auths(&self) -> (usize, usize, usize) {
        let n = |s: &SmtpServer| {
            s.commands()
                .iter()
                .filter(|c| c.trim_start_matches("b'").to_ascii_uppercase().starts_with("AUTH"))
                .count()
        };
        (n(&self.plain), n(&self.starttls), n(&self.tls))
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.refused.port, self.plain.port, self.starttls.port, self.tls.port]
    }
}

/// A server whose probe tries the lab's four listeners as its usual pairs.
async fn probe_app(backend: Backend, lab: &Lab) -> TestApp {
    let pairs = vec![
        (lab.refused.port, domain::settings::Encryption::StartTls),
        (lab.plain.port, domain::settings::Encryption::StartTls),
        (lab.starttls.port, domain::settings::Encryption::StartTls),
        (lab.tls.port, domain::settings::Encryption::Ssl),
    ];
    let ports = lab.ports();
    spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = ports;
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
        c.probe_pairs = pairs;
    })
    .await
}

async fn probe(app: &TestApp, tenant: &str, settings: Value) -> Value {
    let body = app
        .gql(&app.admin(tenant), PROBE, json!({ "t": tenant, "s": settings }))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["probeMailServer"].clone()
}

fn pair<'a>(r: &'a Value, port: u16, encryption: &str) -> &'a Value {
    r["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == json!(port) && p["encryption"] == json!(encryption))
        .unwrap_or_else(|| panic!("no pair {port} {encryption} in {r}"))
}

async fn the_probe_finds_the_working_pair_and_logs_in_once(backend: Backend) {
    let lab = Lab::start();
    let app = probe_app(backend, &lab).await;
    let tenant = app.create_tenant("Probe", "BIZ").await;

    let r = probe(
        &app,
        &tenant,
        json!({ "host": "localhost", "username": "shop", "password": "right-password" }),
    )
    .await;

    // Ranked: the encrypted pairs with a login first (in the order tried), then the
    // plain-only server in plain text, then the failures.
    let ranked: Vec<(u64, String, bool)> = r["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["encryption"].as_str().unwrap().to_owned(),
                p["works"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranked[..3],
        [
            (u64::from(lab.starttls.port), "STARTTLS".to_owned(), true),
            (u64::from(lab.tls.port), "SSL".to_owned(), true),
            (u64::from(lab.plain.port), "NONE".to_owned(), true),
        ],
        "{r}"
    );
    assert_eq!(
        pair(&r, lab.starttls.port, "STARTTLS")["authMechanisms"],
        json!(["PLAIN", "LOGIN"])
    );
    assert_eq!(pair(&r, lab.plain.port, "NONE")["starttlsOffered"], json!(false));
    let no_starttls = pair(&r, lab.plain.port, "STARTTLS");
    assert_eq!(no_starttls["works"], json!(false));
    assert_eq!(no_starttls["failure"]["hintCode"], json!("STARTTLS_NOT_OFFERED"));
    let refused = pair(&r, lab.refused.port, "STARTTLS");
    assert_eq!(refused["failure"]["stage"], json!("CONNECT"));
    assert_eq!(refused["failure"]["hintCode"], json!("CONNECTION_REFUSED"));

    assert_eq!(
        r["suggestion"],
        json!({ "host": "localhost", "port": lab.starttls.port, "encryption": "STARTTLS", "smtpAuth": true })
    );
    assert_eq!(r["authTried"], json!(true));
    assert_eq!(r["authOk"], json!(true), "{r}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} + STARTTLS works", lab.starttls.port)),
        "{r}"
    );
    // Exactly one login, on the suggested pair; the others heard no credentials.
    assert_eq!(lab.auths(), (0, 1, 0));
    assert!(r["elapsedMs"].as_i64().unwrap() < 20_000);

    // The suggestion saves as it is.
    let mut input = r["suggestion"].clone();
    input["fromAddress"] = json!("shop@example.jp");
    input["username"] = json!("shop");
    input["password"] = json!("right-password");
    let saved = app
        .gql(
            &app.admin(&tenant),
            "mutation($t:ID!,$s:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$s){ port encryption } }",
            json!({ "t": tenant, "s": input }),
        )
        .await;
    assert!(saved.get("errors").is_none(), "{saved}");
    app.finish().await;
}

async fn the_probe_logs_in_on_the_typed_pair_and_never_retries_a_refused_login(backend: Backend) {
    let lab = Lab::start();
    let app = probe_app(backend, &lab).await;
    let tenant = app.create_tenant("Probe", "SHARE").await;

    // The typed pair (implicit TLS) wins among equals, and gets the one login.
    let r = probe(
        &app,
        &tenant,
        json!({ "host": "localhost", "port": lab.tls.port, "encryption": "SSL", "username": "shop", "password": "right-password" }),
    )
    .await;
    assert_eq!(r["pairs"][0]["port"], json!(lab.tls.port), "{r}");
    assert_eq!(r["pairs"][0]["typed"], json!(true));
    assert_eq!(r["suggestion"]["encryption"], json!("SSL"));
    assert_eq!(r["authOk"], json!(true));
    assert_eq!(lab.auths(), (0, 0, 1));

    // A wrong password: one attempt, its failure beside the password field, no retry
    // on any other pair.
    let r = probe(
        &app,
        &tenant,
        json!({ "host": "localhost", "username": "shop", "password": "wrong-password" }),
    )
    .await;
    assert_eq!(r["authTried"], json!(true));
    assert_eq!(r["authOk"], json!(false));
    assert_eq!(r["authFailure"]["stage"], json!("AUTH"), "{r}");
    assert_eq!(r["authFailure"]["hintCode"], json!("WRONG_CREDENTIALS"));
    assert_eq!(r["authFailure"]["field"], json!("password"));
    assert_eq!(r["suggestion"]["smtpAuth"], json!(false));
    assert_eq!(lab.auths(), (0, 1, 1));

    // Without a password nothing is sent but EHLO.
    let r = probe(&app, &tenant, json!({ "host": "localhost", "username": "shop" })).await;
    assert_eq!(r["authTried"], json!(false));
    assert_eq!(r["authOk"], Value::Null);
    assert_eq!(lab.auths(), (0, 1, 1));
    app.finish().await;
}

/// The probe's conversations — the ones that worked, the one that logged in, one that
/// found no STARTTLS, one whose STARTTLS was refused (Postfix's `454` when its TLS is
/// broken) and a refused login — each end with QUIT by the time the report is back.
async fn every_session_the_probe_opens_ends_with_quit(backend: Backend) {
    let lab = Lab::start();
    let broken_tls = SmtpServer::start(SmtpOptions {
        log_commands: true,
        starttls_reply: Some("454 4.7.0 TLS not available due to local problem".into()),
        ..SmtpOptions::starttls()
    });
    let pairs = vec![
        (lab.plain.port, domain::settings::Encryption::StartTls),
        (lab.starttls.port, domain::settings::Encryption::StartTls),
        (lab.tls.port, domain::settings::Encryption::Ssl),
        (broken_tls.port, domain::settings::Encryption::StartTls),
    ];
    let ports = vec![lab.plain.port, lab.starttls.port, lab.tls.port, broken_tls.port];
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = ports;
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
        c.probe_pairs = pairs;
    })
    .await;
    let tenant = app.create_tenant("Probe", "BIZ").await;
    let servers = [
        ("plain", &lab.plain),
        ("starttls", &lab.starttls),
        ("tls", &lab.tls),
        ("broken STARTTLS", &broken_tls),
    ];
    let verbs = |s: &SmtpServer| s.conversations().iter().map(|c| c.verbs()).collect::<Vec<_>>();

    for password in ["right-password", "wrong-password"] {
        let r = probe(
            &app,
            &tenant,
            json!({ "host": "localhost", "username": "shop", "password": password }),
        )
        .await;
        assert_eq!(r["authOk"], json!(password == "right-password"), "{r}");
        let refused = pair(&r, broken_tls.port, "STARTTLS");
        assert_eq!(refused["works"], json!(false), "{r}");
        assert_eq!(refused["failure"]["stage"], json!("TLS"), "{r}");
        for (name, server) in servers {
            let conversations = server.conversations();
            assert!(!conversations.is_empty(), "{name}: the probe talked to it");
            assert!(
                conversations.iter().all(|c| c.ended_with_quit()),
                "{name}: every session the probe opened ended with QUIT: {:?}",
                verbs(server)
            );
        }
    }
    assert_eq!(lab.auths(), (0, 2, 0), "one login per probe");
    app.finish().await;
}

async fn the_probe_follows_the_plan_gate_validation_and_audit(backend: Backend) {
    let lab = Lab::start();
    let app = probe_app(backend, &lab).await;
    let basic = app.create_tenant("Basic", "BASIC").await;
    let body = app
        .gql(
            &app.admin(&basic),
            PROBE,
            json!({ "t": basic, "s": { "host": "localhost" } }),
        )
        .await;
    assert_eq!(code(&body), "PLAN_FORBIDS_CUSTOM_SENDER");

    let biz = app.create_tenant("Biz", "BIZ").await;
    let body = app
        .gql(&app.admin(&biz), PROBE, json!({ "t": biz, "s": { "port": 70000 } }))
        .await;
    assert_eq!(code(&body), "VALIDATION_FAILED");
    assert_eq!(
        fields(&body),
        vec![
            ("host".to_owned(), "REQUIRED".to_owned()),
            ("port".to_owned(), "OUT_OF_RANGE".to_owned())
        ]
    );
    // A template preset wants its part filled in.
    let body = app
        .gql(
            &app.admin(&biz),
            PROBE,
            json!({ "t": biz, "s": { "serverKind": "SAKURA", "host": "smtp.example.jp" } }),
        )
        .await;
    assert_eq!(
        fields(&body),
        vec![("host".to_owned(), "HOST_NOT_OF_PRESET".to_owned())]
    );
    // Another tenant's admin sees nothing.
    let body = app
        .gql(
            &app.admin(&basic),
            PROBE,
            json!({ "t": biz, "s": { "host": "localhost" } }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    assert_eq!(lab.auths(), (0, 0, 0));
    assert!(lab.starttls.commands().is_empty(), "refused probes connect nowhere");

    probe(&app, &biz, json!({ "host": "localhost" })).await;
    let audit = app
        .ok(
            &app.operator(),
            "query($t:ID!){ tenant(id:$t){ auditTrail(first:10){ edges { node { action changes { field after } } } } } }",
            json!({ "t": biz }),
        )
        .await;
    let entries = audit["tenant"]["auditTrail"]["edges"].as_array().unwrap().clone();
    let probed = entries
        .iter()
        .find(|e| e["node"]["action"] == json!("MAIL_SERVER_PROBED"))
        .unwrap_or_else(|| panic!("no probe in {audit}"));
    assert!(
        probed["node"]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "field": "found", "after": format!("{} STARTTLS", lab.starttls.port) })),
        "{probed}"
    );

    // Probes count as test mails: 10 per tenant a minute, then refused before connecting.
    let limited = app.create_tenant("Limited", "BIZ").await;
    for _ in 0..10 {
        probe(&app, &limited, json!({ "host": "localhost" })).await;
    }
    // Count the EHLOs: each is logged before its reply, so before the probe answers (a
    // QUIT after the last reply may still be on its way and must not count).
    let ehlos = || {
        lab.starttls
            .commands()
            .iter()
            .filter(|c| c.trim_start_matches("b'").to_ascii_uppercase().starts_with("EHLO"))
            .count()
    };
    let seen = ehlos();
    assert!(
        seen >= 10,
        "every allowed probe said EHLO: {:?}",
        lab.starttls.commands()
    );
    let body = app
        .gql(
            &app.admin(&limited),
            PROBE,
            json!({ "t": limited, "s": { "host": "localhost" } }),
        )
        .await;
    assert_eq!(code(&body), "RATE_LIMITED");
    assert_eq!(ehlos(), seen, "a refused probe connects nowhere");
    app.finish().await;
}

async fn presets_name_the_providers_with_their_limits_hints_and_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    let query = "{ mailServerPresets { kind name host hostTemplate hostInput port encryption smtpAuth username \
        addressDomains sendLimit { count period } sendIntervalMs hints { code message } spfInclude source } }";
    let (status, body) = app
        .post(Some(&app.operator()), Some("ja"), &json!({ "query": query }))
        .await;
    assert_eq!(status, 200, "{body}");
    let presets = body["data"]["mailServerPresets"].as_array().unwrap().clone();
    let by_kind = |kind: &str| {
        presets
            .iter()
            .find(|p| p["kind"] == json!(kind))
            .unwrap_or_else(|| panic!("no {kind} preset"))
            .clone()
    };
    for kind in [
        "GMAIL",
        "GOOGLE_WORKSPACE",
        "MICROSOFT_365",
        "OUTLOOK_COM",
        "YAHOO_JAPAN",
        "ICLOUD",
        "AMAZON_SES",
        "SENDGRID",
        "XSERVER",
        "SAKURA",
        "LOLIPOP",
        "CONOHA_WING",
        "OCN",
        "BIGLOBE",
        "SO_NET",
    ] {
        let p = by_kind(kind);
        assert!(!p["source"].as_str().unwrap().is_empty(), "{kind}");
    }
    // The old preset is unchanged.
    let gmail = by_kind("GMAIL");
    assert_eq!(
        (&gmail["host"], &gmail["port"], &gmail["encryption"], &gmail["smtpAuth"]),
        (&json!("smtp.gmail.com"), &json!(587), &json!("STARTTLS"), &json!(true))
    );
    assert!(
        gmail["addressDomains"]
            .as_array()
            .unwrap()
            .contains(&json!("gmail.com"))
    );
    assert!(
        gmail["hints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["code"] == json!("APP_PASSWORD") && h["message"].as_str().unwrap().contains("アプリパスワード"))
    );
    // Microsoft 365: 30 a minute is one every 2 s; the retirement of password AUTH is said.
    let m365 = by_kind("MICROSOFT_365");
    assert_eq!(m365["sendLimit"], json!({ "count": 30, "period": "MINUTE" }));
    assert_eq!(m365["sendIntervalMs"], json!(2000));
    let retiring = m365["hints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["code"] == json!("BASIC_AUTH_RETIRING"))
        .unwrap()
        .clone();
    assert!(
        retiring["message"].as_str().unwrap().contains("535 5.7.139"),
        "{retiring}"
    );
    assert_eq!(m365["spfInclude"], json!("include:spf.protection.outlook.com"));
    // SendGrid logs in as `apikey`; Sakura's host has a part to fill in.
    assert_eq!(by_kind("SENDGRID")["username"], json!("APIKEY"));
    let sakura = by_kind("SAKURA");
    assert_eq!(sakura["hostTemplate"], json!("{account}.sakura.ne.jp"));
    assert_eq!(sakura["hostInput"], json!("ACCOUNT"));
    assert_eq!(by_kind("AMAZON_SES")["hostInput"], json!("REGION"));
    assert_eq!(by_kind("GMAIL")["hostTemplate"], Value::Null);
    app.finish().await;
}

async fn a_template_preset_saves_only_a_host_of_its_template(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    let save = "mutation($t:ID!,$s:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$s){ serverKind host port encryption smtpAuth } }";
    let input = |host: &str| {
        SettingsInput::preset("SAKURA", "info@example.jp")
            .host(host)
            .login("info@example.jp", "secret-password")
            .json()
    };
    let body = app
        .gql(
            &app.admin(&tenant),
            save,
            json!({ "t": tenant, "s": input("smtp.example.jp") }),
        )
        .await;
    assert_eq!(
        fields(&body),
        vec![("host".to_owned(), "HOST_NOT_OF_PRESET".to_owned())]
    );
    let body = app
        .gql(
            &app.admin(&tenant),
            save,
            json!({ "t": tenant, "s": input("a.b.sakura.ne.jp") }),
        )
        .await;
    assert_eq!(
        fields(&body),
        vec![("host".to_owned(), "HOST_NOT_OF_PRESET".to_owned())]
    );
    assert_eq!(app.tenant(&tenant).await["mailSettings"], Value::Null, "nothing stored");
    let data = app
        .ok(
            &app.admin(&tenant),
            save,
            json!({ "t": tenant, "s": input("mgate.sakura.ne.jp") }),
        )
        .await;
    assert_eq!(
        data["updateMailSettings"],
        json!({ "serverKind": "SAKURA", "host": "mgate.sakura.ne.jp", "port": 587, "encryption": "STARTTLS", "smtpAuth": true })
    );
    app.finish().await;
}
