//! The setup assistant's DNS and web lookups against a real DNS server with fixture zones
//! and a real HTTPS server on loopback: discovery from bundled data, MX, SRV and
//! autoconfig (refused when it points at an internal address, capped when too large,
//! cached), and every verdict of the sender-domain check from fixture records.

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::*;

testkit::each_backend!(
    discovery_from_bundled_data_mx_srv_and_autoconfig,
    autoconfig_at_an_internal_address_is_not_fetched_and_large_documents_are_refused,
    each_sender_domain_verdict_from_fixture_records,
    saves_warn_about_the_sender_domain_and_tests_about_a_recipient_at_home,
    what_dns_did_not_answer_is_said_so_not_called_missing,
);

const DKIM_KEY: &str = "\"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwnR0Dr3JlqBH9iVx0v6Q2b8G1mE5Yd9t\" \
    \"7c2Jm6pA3wF0XHk1NqLr9Yb5pC8xXvE4o2sQmD1uW7zT6gJ0aRkL3nS9bY2fV8hC5eM4iP7tK1oU6dN0wQ3rZ2xJ5cA8vB9gH1sE7yF4lT2mO6\"";

fn zone() -> String {
    format!(
        r#"
workspace.test.            300 IN MX  1 aspmx.l.google.com.
workspace.test.            300 IN MX  5 alt1.aspmx.l.google.com.
m365.test.                 300 IN MX  0 m365-test.mail.protection.outlook.com.
plain.test.                300 IN MX  10 mx.plain.test.
mx.plain.test.             300 IN A   127.0.0.1
_submissions._tcp.srv.test. 300 IN SRV 0 1 465 mail.srv.test.
_submission._tcp.srv.test.  300 IN SRV 0 1 587 mail.srv.test.
mail.srv.test.             300 IN A   127.0.0.1
autoconfig.shop.test.      300 IN A   127.0.0.1
smtp.shop.test.            300 IN A   127.0.0.1
shop.test.                 300 IN A   127.0.0.1
autoconfig.big.test.       300 IN A   127.0.0.1

pass.test.                 300 IN TXT "v=spf1 include:_spf.google.com ~all"
google._domainkey.pass.test. 300 IN TXT {DKIM_KEY}
_dmarc.pass.test.          300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@pass.test"
nested.test.               300 IN TXT "v=spf1 include:_spf.nested.test -all"
_spf.nested.test.          300 IN TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.google.com -all"
google._domainkey.nested.test. 300 IN TXT {DKIM_KEY}
_dmarc.nested.test.        300 IN TXT "v=DMARC1; p=quarantine"
risk.test.                 300 IN TXT "v=spf1 mx -all"
_dmarc.risk.test.          300 IN TXT "v=DMARC1; p=none"
fail.test.                 300 IN TXT "v=spf1 -all"
_dmarc.fail.test.          300 IN TXT "v=DMARC1; p=reject"
own.test.                  300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
mail.own.test.             300 IN A   127.0.0.1
_dmarc.own.test.           300 IN TXT "v=DMARC1; p=quarantine"
sub.parent.test.           300 IN TXT "v=spf1 include:spf.protection.outlook.com -all"
nested-down.test.          300 IN TXT "v=spf1 include:_spf.down.test -all"
_dmarc.parent.test.        300 IN TXT "v=DMARC1; p=none; sp=reject"
"#
    )
}

const AUTOCONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="shop.test">
    <domain>shop.test</domain>
    <outgoingServer type="smtp">
      <hostname>smtp.%EMAILDOMAIN%</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

const DISCOVER: &str = "query($t:ID!,$a:String!){ discoverMailServer(tenantId:$t, fromAddress:$a){ domain \
    candidates { serverKind host port encryption smtpAuth username source confidence confidenceText evidence preset { kind name } } \
    steps { source asked outcome } } }";

const CHECK: &str = "query($t:ID!,$a:String!,$s:MailSettingsInput){ checkSenderDomain(tenantId:$t, fromAddress:$a, settings:$s){ \
    domain provider verdict summary spf { result record include aligned } dkim { result selectors found } \
    dmarc { policy record domain } issues { code message } fixes { name type value replaces } } }";

async fn lookup_app(backend: Backend, dns: &DnsServer, https_port: u16, allow_private: bool) -> TestApp {
    let dns = dns.addr();
    spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = allow_private;
        c.dns_servers = vec![dns];
        c.autoconfig_https_port = https_port;
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
    })
    .await
}

async fn discover(app: &TestApp, tenant: &str, address: &str) -> Value {
    let data = app
        .ok(&app.admin(tenant), DISCOVER, json!({ "t": tenant, "a": address }))
        .await;
    data["discoverMailServer"].clone()
}

fn step<'a>(d: &'a Value, source: &str, asked_prefix: &str) -> &'a Value {
    d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == json!(source) && s["asked"].as_str().unwrap().starts_with(asked_prefix))
        .unwrap_or_else(|| panic!("no {source} step {asked_prefix} in {d}"))
}

async fn discovery_from_bundled_data_mx_srv_and_autoconfig(backend: Backend) {
    let dns = DnsServer::start(&zone());
    let web = HttpsServer::start(&[("mail/config-v1.1.xml", AUTOCONFIG)], &[]);
    let app = lookup_app(backend, &dns, web.port, true).await;
    let tenant = app.create_tenant("Shop", "BIZ").await;

    // Bundled: no DNS at all.
    let d = discover(&app, &tenant, "someone@gmail.com").await;
    assert_eq!(d["candidates"].as_array().unwrap().len(), 1, "{d}");
    let c = &d["candidates"][0];
    assert_eq!(
        (&c["serverKind"], &c["host"], &c["source"], &c["confidence"]),
        (
            &json!("GMAIL"),
            &json!("smtp.gmail.com"),
            &json!("BUNDLED"),
            &json!("HIGH")
        )
    );
    assert_eq!(c["preset"]["name"], json!("Gmail"));
    assert!(dns.queries().is_empty(), "{:?}", dns.queries());

    // MX at Google: Google Workspace; at Exchange Online: Microsoft 365.
    let d = discover(&app, &tenant, "info@workspace.test").await;
    let c = &d["candidates"][0];
    assert_eq!(
        (&c["serverKind"], &c["host"], &c["port"], &c["source"], &c["confidence"]),
        (
            &json!("GOOGLE_WORKSPACE"),
            &json!("smtp.gmail.com"),
            &json!(587),
            &json!("MX"),
            &json!("HIGH")
        )
    );
    assert_eq!(c["evidence"], json!("aspmx.l.google.com"));
    assert_eq!(step(&d, "MX", "workspace.test")["outcome"], json!("FOUND"));
    let d = discover(&app, &tenant, "info@m365.test").await;
    assert_eq!(d["candidates"][0]["serverKind"], json!("MICROSOFT_365"));
    assert_eq!(d["candidates"][0]["host"], json!("smtp.office365.com"));
    // An MX nobody knows suggests nothing (and says so).
    let d = discover(&app, &tenant, "info@plain.test").await;
    assert_eq!(d["candidates"], json!([]));
    assert_eq!(step(&d, "MX", "plain.test")["outcome"], json!("NOT_FOUND"));

    // SRV (RFC 6186 and RFC 8314).
    let d = discover(&app, &tenant, "info@srv.test").await;
    let found: Vec<(Value, Value, Value)> = d["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["host"].clone(), c["port"].clone(), c["encryption"].clone()))
        .collect();
    assert!(
        found.contains(&(json!("mail.srv.test"), json!(465), json!("SSL"))),
        "{d}"
    );
    assert!(
        found.contains(&(json!("mail.srv.test"), json!(587), json!("STARTTLS"))),
        "{d}"
    );
    assert!(
        d["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["source"] == json!("SRV"))
    );
    assert_eq!(step(&d, "SRV", "_submission._tcp.srv.test")["outcome"], json!("FOUND"));

    // Autoconfig over HTTPS, with the address in the query, %EMAILDOMAIN% filled in.
    let d = discover(&app, &tenant, "info@shop.test").await;
    let c = &d["candidates"][0];
    assert_eq!(
        (
            &c["serverKind"],
            &c["host"],
            &c["port"],
            &c["encryption"],
            &c["username"],
            &c["source"],
            &c["confidence"]
        ),
        (
            &json!("CUSTOM"),
            &json!("smtp.shop.test"),
            &json!(587),
            &json!("STARTTLS"),
            &json!("ADDRESS"),
            &json!("AUTOCONFIG"),
            &json!("MEDIUM")
        ),
        "{d}"
    );
    assert_eq!(
        step(&d, "AUTOCONFIG", "https://autoconfig.shop.test")["outcome"],
        json!("FOUND")
    );
    let requests = web.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /mail/config-v1.1.xml?emailaddress=info%40shop.test autoconfig.shop.test")),
        "{requests:?}"
    );
    // Cached per domain: asking again fetches nothing.
    let before = web.requests().len();
    discover(&app, &tenant, "other@shop.test").await;
    assert_eq!(web.requests().len(), before);

    // The plan gate and the address's validity come first.
    let basic = app.create_tenant("Basic", "BASIC").await;
    let body = app
        .gql(&app.admin(&basic), DISCOVER, json!({ "t": basic, "a": "a@shop.test" }))
        .await;
    assert_eq!(code(&body), "PLAN_FORBIDS_CUSTOM_SENDER");
    let body = app
        .gql(
            &app.admin(&tenant),
            DISCOVER,
            json!({ "t": tenant, "a": "not-an-address" }),
        )
        .await;
    assert_eq!(
        fields(&body),
        vec![("fromAddress".to_owned(), "INVALID_FORMAT".to_owned())]
    );
    app.finish().await;
}

async fn autoconfig_at_an_internal_address_is_not_fetched_and_large_documents_are_refused(backend: Backend) {
    let dns = DnsServer::start(&zone());
    let web = HttpsServer::start(&[("mail/config-v1.1.xml", AUTOCONFIG)], &[]);
    // The production guard: autoconfig.shop.test resolves to 127.0.0.1, which tenants'
    // lookups may not reach.
    let guarded = lookup_app(backend, &dns, web.port, false).await;
    let tenant = guarded.create_tenant("Shop", "BIZ").await;
    let d = discover(&guarded, &tenant, "info@shop.test").await;
    assert_eq!(d["candidates"], json!([]), "{d}");
    // Told apart from a missing name only in the log (tenants cannot map internal names).
    assert_eq!(
        step(&d, "AUTOCONFIG", "https://autoconfig.shop.test")["outcome"],
        json!("NOT_FOUND")
    );
    assert!(web.requests().is_empty(), "nothing was fetched: {:?}", web.requests());
    // DNS-only steps still work under the guard.
    let d = discover(&guarded, &tenant, "info@workspace.test").await;
    assert_eq!(d["candidates"][0]["serverKind"], json!("GOOGLE_WORKSPACE"));
    guarded.finish().await;

    // A document over the cap is refused, not read to the end.
    let big = HttpsServer::start(&[], &["--big", "5000000"]);
    let app = lookup_app(backend, &dns, big.port, true).await;
    let tenant = app.create_tenant("Big", "BIZ").await;
    let d = discover(&app, &tenant, "info@big.test").await;
    assert_eq!(d["candidates"], json!([]));
    assert_eq!(
        step(&d, "AUTOCONFIG", "https://autoconfig.big.test")["outcome"],
        json!("REFUSED"),
        "{d}"
    );
    app.finish().await;
}

async fn check(app: &TestApp, tenant: &str, address: &str, settings: Value) -> Value {
    let data = app
        .ok(
            &app.admin(tenant),
            CHECK,
            json!({ "t": tenant, "a": address, "s": settings }),
        )
        .await;
    data["checkSenderDomain"].clone()
}

fn codes(c: &Value) -> Vec<String> {
    c["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn each_sender_domain_verdict_from_fixture_records(backend: Backend) {
    let dns = DnsServer::start(&zone());
    let app = lookup_app(backend, &dns, 1, true).await;
    let tenant = app.create_tenant("Domains", "SHARE").await;
    let workspace = json!({ "serverKind": "GOOGLE_WORKSPACE" });

    // PASS: the include, a DKIM key under Google's selector, DMARC reject.
    let c = check(&app, &tenant, "info@pass.test", workspace.clone()).await;
    assert_eq!(c["verdict"], json!("PASS"), "{c}");
    assert_eq!(c["provider"], json!("Google Workspace"));
    assert_eq!(c["spf"]["result"], json!("PASS"));
    assert_eq!(c["dkim"]["found"], json!(["google"]));
    assert_eq!(c["dmarc"]["policy"], json!("REJECT"));
    assert_eq!(c["fixes"], json!([]));
    // The include found through a nested include.
    let c = check(&app, &tenant, "info@nested.test", workspace.clone()).await;
    assert_eq!(
        (&c["verdict"], &c["spf"]["result"]),
        (&json!("PASS"), &json!("PASS")),
        "{c}"
    );

    // AT_RISK: SPF without the include, no DKIM key, DMARC p=none — with the exact record.
    let c = check(&app, &tenant, "info@risk.test", workspace.clone()).await;
    assert_eq!(c["verdict"], json!("AT_RISK"), "{c}");
    assert_eq!(codes(&c), vec!["SPF_NOT_ALLOWED", "DKIM_MISSING", "DMARC_POLICY_NONE"]);
    assert_eq!(
        c["fixes"],
        json!([{ "name": "risk.test", "type": "TXT", "value": "v=spf1 mx include:_spf.google.com -all", "replaces": "v=spf1 mx -all" }])
    );

    // WILL_FAIL: DMARC reject and nothing aligned.
    let c = check(&app, &tenant, "info@fail.test", workspace.clone()).await;
    assert_eq!(c["verdict"], json!("WILL_FAIL"), "{c}");
    assert!(codes(&c).contains(&"DMARC_WILL_FAIL".to_owned()));
    // No DMARC at all: at risk, with the record to start with.
    let c = check(&app, &tenant, "info@workspace.test", workspace.clone()).await;
    assert_eq!(c["verdict"], json!("AT_RISK"));
    assert!(
        c["fixes"].as_array().unwrap().contains(
            &json!({ "name": "_dmarc.workspace.test", "type": "TXT", "value": "v=DMARC1; p=none", "replaces": null })
        ),
        "{c}"
    );
    assert_eq!(c["spf"]["result"], json!("MISSING"));

    // A server Mailgate does not know: SPF evaluated for its addresses (mail-auth).
    let own = json!({ "host": "mail.own.test", "port": 587 });
    let c = check(&app, &tenant, "info@own.test", own.clone()).await;
    assert_eq!(c["spf"]["result"], json!("PASS"), "{c}");
    assert_eq!(c["dkim"]["result"], json!("UNKNOWN"));
    assert_eq!(c["verdict"], json!("AT_RISK"));
    let c = check(&app, &tenant, "info@fail.test", own).await;
    assert_eq!(c["spf"]["result"], json!("NOT_ALLOWED"));
    assert_eq!(c["verdict"], json!("WILL_FAIL"));

    // A subdomain without DMARC gets its organisational domain's sp=.
    let c = check(
        &app,
        &tenant,
        "info@sub.parent.test",
        json!({ "serverKind": "MICROSOFT_365" }),
    )
    .await;
    assert_eq!(c["dmarc"]["domain"], json!("parent.test"));
    assert_eq!(c["dmarc"]["policy"], json!("REJECT"));
    assert_eq!(c["spf"]["result"], json!("PASS"));
    assert_eq!(c["verdict"], json!("AT_RISK"), "no DKIM key, but SPF aligns: {c}");

    // Amazon SES sends with its own envelope domain: SPF cannot save the mail.
    let c = check(
        &app,
        &tenant,
        "info@fail.test",
        json!({ "serverKind": "AMAZON_SES", "host": "email-smtp.ap-northeast-1.amazonaws.com" }),
    )
    .await;
    assert_eq!(c["spf"]["aligned"], json!(false));
    assert_eq!(c["verdict"], json!("WILL_FAIL"));

    // In Japanese.
    let (_, body) = app
        .post(
            Some(&app.admin(&tenant)),
            Some("ja"),
            &json!({ "query": CHECK, "variables": { "t": tenant, "a": "info@risk.test", "s": workspace } }),
        )
        .await;
    let msg = body["data"]["checkSenderDomain"]["issues"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("SPF レコード"), "{msg}");
    app.finish().await;
}

/// A domain whose DNS fails (SERVFAIL from the fixture server): discovery's steps say
/// FAILED, and the sender-domain check says it could not look up, with no verdict and
/// no record to publish, instead of calling SPF, DKIM and DMARC missing.
async fn what_dns_did_not_answer_is_said_so_not_called_missing(backend: Backend) {
    let dns = DnsServer::start_with(&zone(), &["down.test"]);
    let app = lookup_app(backend, &dns, 1, true).await;
    let tenant = app.create_tenant("Unanswered", "SHARE").await;

    let d = discover(&app, &tenant, "info@down.test").await;
    assert_eq!(d["candidates"], json!([]), "{d}");
    assert_eq!(step(&d, "MX", "down.test")["outcome"], json!("FAILED"), "{d}");

    let workspace = json!({ "serverKind": "GOOGLE_WORKSPACE" });
    let c = check(&app, &tenant, "info@down.test", workspace.clone()).await;
    assert_eq!(c["verdict"], json!("UNKNOWN"), "{c}");
    assert_eq!(codes(&c), ["DNS_UNANSWERED"], "{c}");
    assert_eq!(
        (&c["spf"]["result"], &c["dkim"]["result"], &c["dmarc"]["policy"]),
        (&json!("UNANSWERED"), &json!("UNANSWERED"), &json!("UNANSWERED")),
        "{c}"
    );
    assert_eq!(c["fixes"], json!([]), "{c}");
    // An include that does not answer (`_spf.down.test`): SPF is unanswered, not "not
    // allowed", so no record re-adding an include that may be there; DMARC is missing
    // (that answered), so the mail is at risk whatever SPF would say.
    let c = check(&app, &tenant, "info@nested-down.test", workspace.clone()).await;
    assert_eq!(c["spf"]["result"], json!("UNANSWERED"), "{c}");
    assert_eq!(c["verdict"], json!("AT_RISK"), "{c}");
    assert_eq!(codes(&c)[0], "DNS_UNANSWERED", "{c}");
    assert!(
        !c["fixes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == json!("nested-down.test")),
        "{c}"
    );
    // The same domain's records answered: a verdict as before (the fixture's PASS).
    assert_eq!(
        check(&app, &tenant, "info@pass.test", workspace).await["verdict"],
        json!("PASS")
    );

    // In Japanese, the summary and the issue say it could not be looked up.
    let (_, body) = app
        .post(
            Some(&app.admin(&tenant)),
            Some("ja"),
            &json!({ "query": CHECK, "variables": { "t": tenant, "a": "info@down.test", "s": { "serverKind": "GOOGLE_WORKSPACE" } } }),
        )
        .await;
    let ja = &body["data"]["checkSenderDomain"];
    assert!(
        ja["summary"].as_str().unwrap().contains("調べられませんでした"),
        "{body}"
    );
    assert!(
        ja["issues"][0]["message"].as_str().unwrap().contains("応答しなかった"),
        "{body}"
    );

    // Saving such settings warns of nothing it could not look up.
    let save =
        "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ warnings { code } } }";
    let input = SettingsInput::preset("GOOGLE_WORKSPACE", "info@down.test")
        .login("info@down.test", "app-password-123")
        .json();
    let data = app
        .ok(&app.admin(&tenant), save, json!({ "t": tenant, "i": input }))
        .await;
    let warnings = data["updateMailSettings"]["warnings"].as_array().unwrap().clone();
    assert!(
        !warnings
            .iter()
            .any(|w| w["code"].as_str().unwrap().starts_with("SENDER_DOMAIN")),
        "{warnings:?}"
    );
    app.finish().await;
}

async fn saves_warn_about_the_sender_domain_and_tests_about_a_recipient_at_home(backend: Backend) {
    let dns = DnsServer::start(&zone());
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let port = smtp.port;
    let dns_addr = dns.addr();
    let app = spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = true;
        c.dns_servers = vec![dns_addr];
        c.smtp_allowed_ports = vec![587, port];
    })
    .await;
    let tenant = app.create_tenant("Warned", "SHARE").await;
    let save = "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ host warnings { code field } } }";
    let input = SettingsInput::preset("GOOGLE_WORKSPACE", "info@fail.test")
        .login("info@fail.test", "app-password-123")
        .json();
    let data = app
        .ok(&app.admin(&tenant), save, json!({ "t": tenant, "i": input }))
        .await;
    let warnings = data["updateMailSettings"]["warnings"].as_array().unwrap().clone();
    assert!(
        warnings.contains(&json!({ "code": "SENDER_DOMAIN_WILL_FAIL", "field": "fromAddress" })),
        "{warnings:?}"
    );
    let input = SettingsInput::preset("GOOGLE_WORKSPACE", "info@pass.test")
        .login("info@pass.test", "app-password-123")
        .json();
    let data = app
        .ok(&app.admin(&tenant), save, json!({ "t": tenant, "i": input }))
        .await;
    let warnings = data["updateMailSettings"]["warnings"].as_array().unwrap().clone();
    assert!(
        !warnings
            .iter()
            .any(|w| w["code"].as_str().unwrap().starts_with("SENDER_DOMAIN")),
        "{warnings:?}"
    );

    // A test mail to the sender's own domain says so (and is still sent).
    let send = "mutation($t:ID!,$to:String!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:$to, settings:$s){ ok warnings { code field message } } }";
    let draft = SettingsInput::plain(port)
        .host("mx.plain.test")
        .from("shop@plain.test")
        .without_from_name()
        .json();
    let r = app
        .ok(
            &app.admin(&tenant),
            send,
            json!({ "t": tenant, "to": "owner@PLAIN.test", "s": draft }),
        )
        .await;
    assert_eq!(r["sendTestMail"]["ok"], json!(true), "{r}");
    assert_eq!(
        r["sendTestMail"]["warnings"][0]["code"],
        json!("RECIPIENT_IN_SENDER_DOMAIN")
    );
    assert_eq!(r["sendTestMail"]["warnings"][0]["field"], json!("to"));
    let r = app
        .ok(
            &app.admin(&tenant),
            send,
            json!({ "t": tenant, "to": "someone@example.net", "s": draft }),
        )
        .await;
    assert_eq!(r["sendTestMail"]["warnings"], json!([]));
    app.finish().await;
}
