//! No tenant-facing answer tells an internal name from a nonexistent one: under the
//! production guard (`MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS` off), a name that resolves to an
//! internal address (10.1.2.3 in the fixture zone) gets exactly the answer of a name that
//! does not exist, at every entry point that looks a tenant's name up: the sender-domain
//! check's SPF evaluation, discovery (SRV targets), the save's warnings, a test mail over
//! SMTP, POP-before-SMTP and the probe — and every name the tenant's own SPF record names
//! (`a:`, `mx:`, `include:`, `exists:`), evaluated for a server at a public address. A
//! From domain under a private-use domain (`corp.internal`) is never looked up at all. The
//! DNS fixture itself listens on loopback: the guard checks the addresses names resolve
//! to, never the resolver's own address.
//! Also: autoconfig candidates are validated like saved hosts and must resolve.

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::*;

testkit::each_backend!(
    the_sender_domain_check_reads_an_internal_host_like_a_missing_one,
    discovery_drops_an_internal_srv_target_like_a_missing_one,
    save_warnings_read_an_internal_host_like_a_missing_one,
    a_test_mail_reads_an_internal_host_like_a_missing_one,
    pop_before_smtp_reads_an_internal_host_like_a_missing_one,
    the_probe_reads_an_internal_host_like_a_missing_one,
    autoconfig_candidates_are_valid_host_names_that_resolve,
    spf_a_naming_an_internal_name_reads_like_a_missing_one,
    spf_mx_naming_an_internal_name_reads_like_a_missing_one,
    spf_include_naming_an_internal_name_reads_like_a_missing_one,
    spf_exists_naming_an_internal_name_reads_like_a_missing_one,
    a_from_domain_under_a_private_use_domain_is_never_looked_up,
);

/// `internal` names resolve to 10.1.2.3 (tenants may not reach it); `missing` names do
/// not exist. `spf.test` allows exactly the internal address, so evaluating it against
/// the internal host would say PASS.
const ZONE: &str = r#"
mail.internal.test.          300 IN A   10.1.2.3
pop.internal.test.           300 IN A   10.1.2.3
spf.test.                    300 IN TXT "v=spf1 ip4:10.1.2.3 -all"
_dmarc.spf.test.             300 IN TXT "v=DMARC1; p=reject"
_submission._tcp.internal-srv.test. 300 IN SRV 0 1 587 mail.internal.test.
_submission._tcp.missing-srv.test.  300 IN SRV 0 1 587 mail.missing.test.
autoconfig.shop.test.        300 IN A   127.0.0.1
mail.shop.test.              300 IN A   127.0.0.1
spf.internal.test.           300 IN A   10.1.2.3
spf.internal.test.           300 IN TXT "v=spf1 +all"
mx.internal.test.            300 IN MX  10 mail.internal.test.
a-internal.test.             300 IN TXT "v=spf1 a:mail.internal.test/0 -all"
a-missing.test.              300 IN TXT "v=spf1 a:mail.missing.test/0 -all"
mx-internal.test.            300 IN TXT "v=spf1 mx:mx.internal.test/0 -all"
mx-missing.test.             300 IN TXT "v=spf1 mx:mx.missing.test/0 -all"
include-internal.test.       300 IN TXT "v=spf1 include:spf.internal.test -all"
include-missing.test.        300 IN TXT "v=spf1 include:spf.missing.test -all"
exists-internal.test.        300 IN TXT "v=spf1 exists:mail.internal.test -all"
exists-missing.test.         300 IN TXT "v=spf1 exists:mail.missing.test -all"
corp.internal.               300 IN TXT "v=spf1 ip4:93.184.216.34 -all"
_dmarc.corp.internal.        300 IN TXT "v=DMARC1; p=reject"
corp.internal.               300 IN MX  1 aspmx.l.google.com.
_submission._tcp.corp.internal. 300 IN SRV 0 1 587 smtp.gmail.com.
"#;

/// A public address typed as such: the server's address is not the point, the names in
/// the tenant's SPF record are.
const PUBLIC_HOST: &str = "93.184.216.34";

const INTERNAL: &str = "mail.internal.test";
const MISSING: &str = "mail.missing.test";

const CHECK: &str = "query($t:ID!,$a:String!,$s:MailSettingsInput){ checkSenderDomain(tenantId:$t, fromAddress:$a, settings:$s){ \
    domain provider verdict summary spf { result record include aligned } dkim { result selectors found } \
    dmarc { policy record domain } issues { code message } fixes { name type value replaces } } }";

const DISCOVER: &str = "query($t:ID!,$a:String!){ discoverMailServer(tenantId:$t, fromAddress:$a){ domain \
    candidates { serverKind host port encryption smtpAuth username source confidence evidence } \
    steps { source asked outcome } } }";

const SEND_TEST: &str = "mutation($t:ID!,$to:String!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:$to, settings:$s){ \
    ok stage smtpCode enhancedCode serverMessage hint hintCode field messageId sender { address name source } } }";

const PROBE: &str = "mutation($t:ID!,$s:MailSettingsInput!){ probeMailServer(tenantId:$t, settings:$s){ \
    pairs { port encryption works typed authMechanisms starttlsOffered smtputf8 failure { stage smtpCode enhancedCode serverMessage hint hintCode field } } \
    suggestion { host port encryption smtpAuth } summary authTried authOk authFailure { stage smtpCode serverMessage hintCode field hint } } }";

/// A server under the production guard whose names go to the fixture zone.
async fn guarded_app(backend: Backend, dns: &DnsServer, allow_private: bool, https_port: u16) -> TestApp {
    let dns = dns.addr();
    spawn_app_with(backend, move |c| {
        c.allow_private_smtp_hosts = allow_private;
        c.dns_servers = vec![dns];
        c.autoconfig_https_port = https_port;
        c.smtp_ca_file = Some(test_ca().ca_pem.clone());
        c.smtp_connect_timeout_secs = 3;
        c.smtp_command_timeout_secs = 5;
    })
    .await
}

/// `body` with the one word that differs between the two questions made the same.
fn normalised(body: &Value, words: &[&str]) -> String {
    let mut text = body.to_string();
    for w in words {
        text = text.replace(w, "<name>");
    }
    text
}

fn settings(host: &str) -> Value {
    SettingsInput::plain(587)
        .host(host)
        .starttls()
        .from("info@spf.test")
        .without_from_name()
        .with_auth("info@spf.test", "not-the-point-1")
        .json()
}

async fn the_sender_domain_check_reads_an_internal_host_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let ask = |host: &str| json!({ "t": tenant, "a": "info@spf.test", "s": { "host": host } });
    let internal = app.ok(&app.admin(&tenant), CHECK, ask(INTERNAL)).await;
    let missing = app.ok(&app.admin(&tenant), CHECK, ask(MISSING)).await;
    // Before the fix the internal host's addresses were evaluated: SPF PASS.
    assert_eq!(
        internal["checkSenderDomain"]["spf"]["result"],
        json!("ERROR"),
        "{internal}"
    );
    assert_eq!(internal, missing);
    app.finish().await;
}

async fn discovery_drops_an_internal_srv_target_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let discover = |address: &str| json!({ "t": tenant, "a": address });
    let internal = app
        .ok(&app.admin(&tenant), DISCOVER, discover("info@internal-srv.test"))
        .await;
    let missing = app
        .ok(&app.admin(&tenant), DISCOVER, discover("info@missing-srv.test"))
        .await;
    // Before the fix both targets were offered as candidates, the internal one included.
    assert_eq!(internal["discoverMailServer"]["candidates"], json!([]), "{internal}");
    assert_eq!(
        normalised(&internal, &["internal-srv"]),
        normalised(&missing, &["missing-srv"])
    );
    app.finish().await;
}

async fn save_warnings_read_an_internal_host_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let mut answers = Vec::new();
    for host in [INTERNAL, MISSING] {
        let tenant = app.create_tenant("Mapper", "BIZ").await;
        let saved = app
            .ok(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": settings(host) }))
            .await;
        answers.push(saved["updateMailSettings"]["warnings"].clone());
    }
    assert_ne!(answers[0], json!([]), "a host that cannot be reached is warned about");
    assert_eq!(answers[0], answers[1]);
    app.finish().await;
}

async fn send_test(app: &TestApp, tenant: &str, s: Value) -> Value {
    let body = app
        .gql(
            &app.admin(tenant),
            SEND_TEST,
            json!({ "t": tenant, "to": "customer@example.net", "s": s }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["sendTestMail"].clone()
}

async fn a_test_mail_reads_an_internal_host_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let internal = send_test(&app, &tenant, settings(INTERNAL)).await;
    let missing = send_test(&app, &tenant, settings(MISSING)).await;
    assert_eq!(
        (&internal["ok"], &internal["stage"]),
        (&json!(false), &json!("RESOLVE")),
        "{internal}"
    );
    assert_eq!(internal, missing);
    app.finish().await;
}

async fn pop_before_smtp_reads_an_internal_host_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let with_pop = |pop_host: &str| {
        let mut s = settings(MISSING);
        s["popBeforeSmtp"] =
            json!({ "host": pop_host, "port": 110, "username": "popper", "password": "pop-secret-1", "tls": false });
        s
    };
    let internal = send_test(&app, &tenant, with_pop("pop.internal.test")).await;
    let missing = send_test(&app, &tenant, with_pop("pop.missing.test")).await;
    assert_eq!(internal["stage"], json!("POP_LOGIN"), "{internal}");
    assert_eq!(internal, missing);
    app.finish().await;
}

async fn the_probe_reads_an_internal_host_like_a_missing_one(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let mut answers = Vec::new();
    for host in [INTERNAL, MISSING] {
        let body = app
            .gql(
                &app.admin(&tenant),
                PROBE,
                json!({ "t": tenant, "s": { "host": host, "username": "shop", "password": "probe-secret-1" } }),
            )
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        answers.push(body["data"]["probeMailServer"].clone());
    }
    assert_eq!(answers[0]["authTried"], json!(false), "{}", answers[0]);
    assert_eq!(
        normalised(&answers[0], &[INTERNAL]),
        normalised(&answers[1], &[MISSING])
    );
    app.finish().await;
}

/// An autoconfig document naming a host with a line feed in it, a host that does not
/// exist, and one that resolves (`shop.test`: a name the test certificate is valid for).
const AUTOCONFIG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="shop.test">
    <outgoingServer type="smtp">
      <hostname>smtp.shop.test&#10;Injected: header</hostname>
      <port>587</port><socketType>STARTTLS</socketType><username>%EMAILADDRESS%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>nowhere.shop.test</hostname>
      <port>587</port><socketType>STARTTLS</socketType><username>%EMAILADDRESS%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>mail.%EMAILDOMAIN%</hostname>
      <port>465</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

async fn autoconfig_candidates_are_valid_host_names_that_resolve(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let web = HttpsServer::start(&[("mail/config-v1.1.xml", AUTOCONFIG)], &[]);
    // The web server is on loopback: this server lets tenants' lookups reach it.
    let app = guarded_app(backend, &dns, true, web.port).await;
    let tenant = app.create_tenant("Docs", "BIZ").await;
    let d = app
        .ok(
            &app.admin(&tenant),
            DISCOVER,
            json!({ "t": tenant, "a": "info@shop.test" }),
        )
        .await;
    let hosts: Vec<Value> = d["discoverMailServer"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["host"].clone())
        .collect();
    // Before the fix all three were offered, the line feed included.
    assert_eq!(hosts, vec![json!("mail.shop.test")], "{d}");
    assert!(!d.to_string().contains("Injected"), "{d}");
    app.finish().await;
}

/// `checkSenderDomain` for a server at a public address, with the From domain's SPF record
/// naming (in the term `kind`) an internal name (`kind-internal.test`) and a nonexistent
/// one (`kind-missing.test`): the same answer, `expected`, for both. `internal` and
/// `missing` are the names each record names.
async fn spf_term_reads_the_same(backend: Backend, kind: &str, internal: &str, missing: &str, expected: &str) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let check = |domain: String| {
        let app = &app;
        let tenant = &tenant;
        async move {
            let ask = json!({ "t": tenant, "a": format!("info@{domain}"), "s": { "host": PUBLIC_HOST } });
            app.ok(&app.admin(tenant), CHECK, ask).await
        }
    };
    let internal_domain = format!("{kind}-internal.test");
    let missing_domain = format!("{kind}-missing.test");
    let with_internal = check(internal_domain.clone()).await;
    let with_missing = check(missing_domain.clone()).await;
    // Before the fix the internal name was used: PASS (or, for `include:`, its `+all`).
    assert_eq!(
        with_internal["checkSenderDomain"]["spf"]["result"],
        json!(expected),
        "{with_internal}"
    );
    assert_eq!(
        normalised(&with_internal, &[&internal_domain, internal]),
        normalised(&with_missing, &[&missing_domain, missing])
    );
    app.finish().await;
}

async fn spf_a_naming_an_internal_name_reads_like_a_missing_one(backend: Backend) {
    spf_term_reads_the_same(backend, "a", INTERNAL, MISSING, "NOT_ALLOWED").await;
}

async fn spf_mx_naming_an_internal_name_reads_like_a_missing_one(backend: Backend) {
    // `mx.internal.test`'s exchange is the internal name.
    spf_term_reads_the_same(backend, "mx", "mx.internal.test", "mx.missing.test", "NOT_ALLOWED").await;
}

async fn spf_include_naming_an_internal_name_reads_like_a_missing_one(backend: Backend) {
    // `spf.internal.test` resolves to the internal address and publishes `+all`; an
    // include of a name without a record is a permanent error (RFC 7208 §5.2).
    spf_term_reads_the_same(backend, "include", "spf.internal.test", "spf.missing.test", "ERROR").await;
}

async fn spf_exists_naming_an_internal_name_reads_like_a_missing_one(backend: Backend) {
    spf_term_reads_the_same(backend, "exists", INTERNAL, MISSING, "NOT_ALLOWED").await;
}

/// A From domain under a private-use domain (`corp.internal`, with SPF, DMARC, MX and SRV
/// records in the fixture) reads like a domain that does not exist, in the sender-domain
/// check and in discovery, and DNS is never asked about it.
async fn a_from_domain_under_a_private_use_domain_is_never_looked_up(backend: Backend) {
    let dns = DnsServer::start(ZONE);
    let app = guarded_app(backend, &dns, false, 1).await;
    let tenant = app.create_tenant("Mapper", "BIZ").await;
    let mut checks = Vec::new();
    let mut discoveries = Vec::new();
    for domain in ["corp.internal", "corp-missing.test"] {
        let address = format!("info@{domain}");
        let ask = json!({ "t": tenant, "a": address, "s": { "host": PUBLIC_HOST } });
        checks.push(normalised(&app.ok(&app.admin(&tenant), CHECK, ask).await, &[domain]));
        let ask = json!({ "t": tenant, "a": address });
        discoveries.push(normalised(&app.ok(&app.admin(&tenant), DISCOVER, ask).await, &[domain]));
    }
    // Before the fix: SPF PASS and DMARC REJECT from the records, and a Google Workspace
    // candidate from the MX.
    assert!(checks[0].contains(r#""result":"MISSING""#), "{}", checks[0]);
    assert_eq!(checks[0], checks[1]);
    assert!(discoveries[0].contains(r#""candidates":[]"#), "{}", discoveries[0]);
    assert_eq!(discoveries[0], discoveries[1]);
    let asked: Vec<String> = dns.queries().into_iter().filter(|q| q.ends_with(".internal")).collect();
    assert!(asked.is_empty(), "{asked:?}");
    app.finish().await;
}
