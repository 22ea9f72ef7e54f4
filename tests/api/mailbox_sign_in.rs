//! Sending from a Microsoft 365 or Google mailbox without a password (issue 25), end to
//! end against real servers on loopback: the Authlib authorization server standing in for
//! Entra ID and Google, the Graph and Gmail API fakes, and aiosmtpd with `AUTH XOAUTH2`
//! checked by introspection. Connect → test → live → mail arrives through each route; a
//! token the server refuses is refreshed once and the rotated refresh token kept; a
//! revoked grant suspends the settings, mail falls back with the tenant's Reply-To, and a
//! reconnect brings it back; a sign-in completes only for its own tenant and caller.

use std::time::Duration;

use domain::Role;
use domain::ports::AccessTokens as _;
use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, delivery_config, enqueue, wait_status};
use crate::support::*;

testkit::each_backend!(
    microsoft_graph_connects_sends_and_recovers_from_a_revoked_grant,
    smtp_xoauth2_refreshes_a_refused_token_once_and_keeps_the_rotated_one,
    gmail_api_connects_and_disconnect_revokes_at_google,
    a_sign_in_completes_only_for_its_tenant_and_caller_once,
    a_password_microsoft_refuses_is_offered_the_sign_in,
    idle_connections_are_kept_alive_and_a_lost_grant_is_found_before_mail_needs_it,
    app_only_microsoft_and_google_domain_wide_delegation_send_without_a_sign_in,
    generic_xoauth2_uses_the_tenants_own_token_endpoint,
    a_throttled_or_refusing_api_waits_or_fails_the_mail_never_the_settings,
);

const CLIENT: &str = "mailgate-app";
const SECRET: &str = "mailgate-app-secret";
const MAILBOX: &str = "info@contoso.example";

const CONNECT: &str = "mutation($t:ID!,$k:MailConnectionKind!,$r:String){ connectMailbox(tenantId:$t, kind:$k, returnUrl:$r){ authorizationUrl adminConsentUrl expiresAt } }";
const COMPLETE: &str = "mutation($t:ID!,$s:String!,$c:String!){ completeMailboxConnection(tenantId:$t, state:$s, code:$c){ connection { id kind provider mailbox status scopes directoryId } settings { version fromAddress username hasPassword connectionId sendIntervalMs health { state } connection { mailbox status } } } }";
const CONNECTIONS: &str = "query($t:ID!){ mailConnections(tenantId:$t){ id mailbox status lastRefreshedAt } }";
const DISCONNECT: &str = "mutation($t:ID!,$c:ID!){ disconnectMailbox(tenantId:$t, connectionId:$c) }";
const TEST: &str = "mutation($t:ID!){ sendTestMail(tenantId:$t, to:\"member@example.net\"){ ok activated stage hintCode field signInOffer serverMessage } }";
const HEALTH: &str = "query($t:ID!){ tenant(id:$t){ effectiveSender { address source reasonCode replyTo } mailSettings { version connectionId signInOffer health { state hintCode lastFailure { stage } } } } }";
const ATTEMPTS: &str = "query($id:ID!){ delivery(id:$id){ status attempts { outcome stage route } } }";

/// The authorization server with Mailgate's confidential client registered for any
/// loopback port's callbacks.
fn authorization_server(ttl: Option<u64>) -> OAuthServer {
    OAuthServer::start(OAuthOptions {
        user: MAILBOX.into(),
        token_ttl: ttl,
        clients: vec![OAuthClient::confidential(
            CLIENT,
            SECRET,
            &[
                "http://127.0.0.1:0/oauth/microsoft/callback",
                "http://127.0.0.1:0/oauth/google/callback",
            ],
        )],
        ..OAuthOptions::default()
    })
}

/// Points both providers at `oauth` and the mail APIs at `api`.
fn sign_in_config(c: &mut mailgate::config::Config, oauth: &OAuthServer, api: Option<&MailApiServer>) {
    c.oauth_microsoft_client_id = Some(CLIENT.into());
    c.oauth_microsoft_client_secret = Some(secrecy::SecretString::from(SECRET));
    c.oauth_microsoft_authorize_url = oauth.authorize_url();
    c.oauth_microsoft_token_url = oauth.token_url();
    c.oauth_google_client_id = Some(CLIENT.into());
    c.oauth_google_client_secret = Some(secrecy::SecretString::from(SECRET));
    c.oauth_google_authorize_url = oauth.authorize_url();
    c.oauth_google_token_url = oauth.token_url();
    c.oauth_google_revoke_url = oauth.revoke_url();
    if let Some(api) = api {
        c.oauth_microsoft_graph_url = api.base_url();
        c.oauth_google_gmail_url = api.base_url();
    }
    c.oauth_return_urls = Some("https://panel.example.com/mail".into());
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The pairs of a URL's fragment.
fn fragment_pairs(url: &str) -> Vec<(String, String)> {
    let fragment = url.split_once('#').map(|(_, f)| f).unwrap_or_default();
    url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect()
}

fn pair<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What the admin's browser does: opens the authorization URL (the server signs in as
/// its user at once), follows the redirect to Mailgate's callback, and lands on the
/// console with `state` and `code` in the fragment. Returns (state, code) and where it
/// landed.
async fn browser_sign_in(app: &TestApp, authorization_url: &str) -> (String, String, String) {
    let http = no_redirects();
    let at_provider = http.get(authorization_url).send().await.unwrap();
    assert_eq!(at_provider.status(), 302, "{:?}", at_provider.text().await);
    let callback = reqwest::Url::parse(at_provider.headers()["location"].to_str().unwrap()).unwrap();
    // The provider sends the browser to the registered callback; here it is this app.
    assert!(callback.path().starts_with("/oauth/"), "{callback}");
    let ours = format!(
        "http://{}{}?{}",
        app.addr,
        callback.path(),
        callback.query().unwrap_or_default()
    );
    let at_mailgate = http.get(&ours).send().await.unwrap();
    assert_eq!(at_mailgate.status(), 303);
    assert_eq!(at_mailgate.headers()["cache-control"], "no-store");
    let landed = at_mailgate.headers()["location"].to_str().unwrap().to_owned();
    let pairs = fragment_pairs(&landed);
    let state = pair(&pairs, "state").expect("state").to_owned();
    let code = pair(&pairs, "code")
        .unwrap_or_else(|| panic!("a code in {landed}"))
        .to_owned();
    (state, code, landed)
}

/// connectMailbox → browser → completeMailboxConnection, as `token`; returns the answer.
async fn connect(app: &TestApp, token: &str, tenant: &str, kind: &str) -> Value {
    let start = app.ok(token, CONNECT, json!({ "t": tenant, "k": kind })).await;
    let url = start["connectMailbox"]["authorizationUrl"].as_str().unwrap().to_owned();
    let (state, code, _) = browser_sign_in(app, &url).await;
    app.ok(token, COMPLETE, json!({ "t": tenant, "s": state, "c": code }))
        .await["completeMailboxConnection"]
        .clone()
}

fn reset(tenant: &str) -> Value {
    json!({
        "tenantId": tenant, "kind": "PASSWORD_RESET", "to": "member@example.net", "locale": "en",
        "variables": { "name": "Ada", "siteName": "Contoso", "resetUrl": "https://contoso.example/reset?t=1", "expiresInMinutes": 30 },
    })
}

async fn health(app: &TestApp, tenant: &str) -> Value {
    app.ok(&app.operator(), HEALTH, json!({ "t": tenant })).await["tenant"].clone()
}

async fn microsoft_graph_connects_sends_and_recovers_from_a_revoked_grant(backend: Backend) {
    let oauth = authorization_server(None);
    let api = MailApiServer::start(&oauth, MailApiOptions::default());
    let relay = SmtpServer::start(SmtpOptions::plain());
    let relay_url = format!("smtp://127.0.0.1:{}", relay.port);
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![587]);
        sign_in_config(c, &oauth, Some(&api));
        c.settings_activation = mailgate::config::SettingsActivation::Test;
        c.default_smtp_url = Some(secrecy::SecretString::from(relay_url));
    })
    .await;
    let providers = app.ok(&app.operator(), "{ mailSignInProviders }", json!({})).await;
    assert_eq!(providers["mailSignInProviders"], json!(["MICROSOFT", "GOOGLE"]));
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    app.ok(
        &app.operator(),
        "mutation($t:ID!,$c:String){ setTenantContactEmail(tenantId:$t, contactEmail:$c){ id } }",
        json!({ "t": tenant, "c": "it@contoso.example" }),
    )
    .await;

    // The authorization request: PKCE S256, our callback, Graph's scope, a sealed state.
    let start = app
        .ok(
            &admin,
            CONNECT,
            json!({ "t": tenant, "k": "MICROSOFT_DELEGATED_GRAPH" }),
        )
        .await["connectMailbox"]
        .clone();
    let url = reqwest::Url::parse(start["authorizationUrl"].as_str().unwrap()).unwrap();
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pair(&q, "code_challenge_method"), Some("S256"));
    assert_eq!(pair(&q, "client_id"), Some(CLIENT));
    assert_eq!(
        pair(&q, "scope"),
        Some("https://graph.microsoft.com/Mail.Send offline_access openid email")
    );
    assert!(pair(&q, "redirect_uri").unwrap().ends_with("/oauth/microsoft/callback"));
    assert!(pair(&q, "state").unwrap().len() > 100, "a sealed state");
    assert!(start["adminConsentUrl"].as_str().unwrap().contains("adminconsent"));

    // The browser comes back to the console (the default return) with state and code.
    let (state, code, landed) = browser_sign_in(&app, url.as_str()).await;
    assert!(landed.contains("/console/#mailgate-sign-in=microsoft"), "{landed}");
    let done = app
        .ok(&admin, COMPLETE, json!({ "t": tenant, "s": state, "c": code }))
        .await["completeMailboxConnection"]
        .clone();
    let connection = &done["connection"];
    assert_eq!(connection["mailbox"], MAILBOX, "{done}");
    assert_eq!(connection["status"], "ACTIVE");
    assert_eq!(connection["kind"], "MICROSOFT_DELEGATED_GRAPH");
    let settings = &done["settings"];
    assert_eq!(settings["fromAddress"], MAILBOX);
    assert_eq!(settings["username"], MAILBOX);
    assert_eq!(settings["hasPassword"], false);
    assert_eq!(settings["connectionId"], connection["id"]);
    assert_eq!(settings["connection"]["mailbox"], MAILBOX);
    assert_eq!(settings["sendIntervalMs"], 2000, "Microsoft's 30 a minute");
    assert_eq!(settings["health"]["state"], "PENDING_VERIFICATION");
    // Nothing token-like in the answer.
    let text = done.to_string();
    for t in oauth.tokens() {
        assert!(!text.contains(&t.access_token), "{text}");
    }

    // The same state again is a replay: refused, nothing more stored.
    let replay = app
        .gql(&admin, COMPLETE, json!({ "t": tenant, "s": state, "c": code }))
        .await;
    assert_eq!(code_of(&replay), "VALIDATION_FAILED", "{replay}");
    assert_eq!(
        fields(&replay),
        vec![("state".to_owned(), "SIGN_IN_INVALID".to_owned())]
    );
    let all = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(all["mailConnections"].as_array().unwrap().len(), 1, "{all}");

    // The test mail goes through Graph as the mailbox and puts the settings in force.
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["activated"], true);
    let got = api.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].api, "graph");
    assert_eq!(got[0].mailbox.as_deref(), Some(MAILBOX));
    assert!(got[0].data.contains(&format!("From: {MAILBOX}")) || got[0].data.contains(MAILBOX));

    // Real mail goes the same way, paced at Microsoft's rate.
    let worker = RunningWorker::start(&app);
    let id = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "SENT", Duration::from_secs(30)).await;
    let got = api.wait_for_async(2, Duration::from_secs(10)).await;
    assert!(got[1].data.contains("member@example.net"));
    assert_eq!(relay.count(), 0);

    // The organisation revokes Mailgate's access: the cached token is refused (401),
    // the refresh says invalid_grant — the settings are suspended at once, the mail goes
    // through the platform with the tenant's Reply-To, and nothing fails.
    assert!(oauth.revoke_user(MAILBOX) > 0);
    let id = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "SENT", Duration::from_secs(60)).await;
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": id })).await["delivery"]["attempts"].clone();
    let last = attempts.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["route"], "PLATFORM_DEFAULT", "{attempts}");
    // The reset mail, with the tenant's Reply-To, and the notice to the contact address.
    let at_relay = relay.wait_for_async(2, Duration::from_secs(10)).await;
    let reset_mail = at_relay
        .iter()
        .find(|m| m.rcpt_tos == ["member@example.net"])
        .expect("the reset mail at the relay");
    assert_eq!(reset_mail.header("Reply-To").as_deref(), Some(MAILBOX));
    assert!(
        at_relay.iter().any(|m| m.rcpt_tos == ["it@contoso.example"]),
        "the tenant is told: {at_relay:?}"
    );
    let h = health(&app, &tenant).await;
    assert_eq!(h["mailSettings"]["health"]["state"], "SUSPENDED", "{h}");
    assert_eq!(h["mailSettings"]["health"]["hintCode"], "RECONNECT_MAILBOX");
    assert_eq!(h["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    let all = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(all["mailConnections"][0]["status"], "NEEDS_RECONNECT", "{all}");

    // Reconnect: a new sign-in, a test, and the tenant's own mailbox sends again.
    let again = connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_GRAPH").await;
    assert_eq!(again["connection"]["status"], "ACTIVE");
    let all = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(
        all["mailConnections"].as_array().unwrap().len(),
        1,
        "the reconnect replaced it: {all}"
    );
    assert_eq!(all["mailConnections"][0]["id"], again["connection"]["id"]);
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["activated"], true, "{r}");
    let id = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "SENT", Duration::from_secs(30)).await;
    assert_eq!(api.wait_for_async(4, Duration::from_secs(10)).await.len(), 4);
    let h = health(&app, &tenant).await;
    assert_eq!(h["effectiveSender"]["source"], "CUSTOM", "{h}");
    // No token in any log line.
    let logs = logs();
    for t in oauth.tokens() {
        assert!(!logs.contains(&t.access_token));
        if let Some(r) = &t.refresh_token {
            assert!(!logs.contains(r.as_str()));
        }
    }
    worker.stop().await;
    app.finish().await;
}

async fn smtp_xoauth2_refreshes_a_refused_token_once_and_keeps_the_rotated_one(backend: Backend) {
    let oauth = authorization_server(None);
    let mut opts = SmtpOptions::starttls().with_xoauth2(&oauth);
    opts.log_commands = true;
    let smtp = SmtpServer::start(opts);
    let port = smtp.port;
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![port]);
        sign_in_config(c, &oauth, None);
    })
    .await;
    let tenant = app.create_tenant("Contoso", "SHARE").await;
    let admin = app.admin(&tenant);
    // A tenant with its own server first; the sign-in keeps host, port and sender.
    app.ok(
        &admin,
        "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
        json!({ "t": tenant, "i": SettingsInput::plain(port).starttls().from(MAILBOX).from_name("Contoso")
            .with_auth("old", "old-password").json() }),
    )
    .await;
    let done = connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_SMTP").await;
    assert_eq!(done["settings"]["hasPassword"], false, "{done}");
    // The token never crosses the network in plain text: such settings are refused.
    let plain = app
        .gql(
            &admin,
            "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
            json!({ "t": tenant, "i": {
                "host": "localhost", "port": port, "encryption": "NONE", "fromAddress": MAILBOX,
                "username": MAILBOX, "connectionId": done["connection"]["id"] } }),
        )
        .await;
    assert_eq!(
        fields(&plain),
        vec![("encryption".to_owned(), "ENCRYPTION_REQUIRED".to_owned())],
        "{plain}"
    );
    let id: domain::oauth::ConnectionId = done["connection"]["id"].as_str().unwrap().parse().unwrap();
    let tenant_id: domain::TenantId = tenant.parse().unwrap();

    let worker = RunningWorker::start(&app);
    let first = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    wait_status(&app, &first, "SENT", Duration::from_secs(30)).await;
    let got = smtp.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert_eq!(got[0].auth_user.as_deref(), Some(MAILBOX));
    assert_eq!(
        oauth.token_requests("refresh_token"),
        0,
        "the sign-in's token is used first"
    );

    // The access token is revoked at the server (as when it expired): the server says
    // `535 5.7.3`, Mailgate drops it, refreshes once, and the same send goes through.
    let access = oauth.tokens().last().unwrap().access_token.clone();
    let revoked = no_redirects()
        .post(oauth.revoke_url())
        .form(&[
            ("token", access.as_str()),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // The pooled session is still authenticated: a new one must authenticate.
    app.app.mailer.forget_all_but(tenant_id, None).await;
    let second = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &second, "SENT", Duration::from_secs(30)).await;
    assert_eq!(oauth.token_requests("refresh_token"), 1, "one refresh");
    assert_eq!(oauth.tokens_granted("refresh_token"), 1);
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": d["id"] })).await;
    assert_eq!(
        attempts["delivery"]["attempts"].as_array().unwrap().len(),
        1,
        "refreshed within the same attempt: {attempts}"
    );
    // The refused AUTH ended its session politely; the next one authenticated anew.
    let commands = smtp.commands();
    let auths = commands.iter().filter(|c| c.contains("AUTH XOAUTH2")).count();
    assert_eq!(auths, 3, "{commands:?}");
    assert!(commands.iter().any(|c| c.contains("QUIT")), "{commands:?}");

    // Concurrent sends while no token is in memory: one refresh between them.
    app.app.tokens.forget(id).await;
    app.app.mailer.forget_all_but(tenant_id, None).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_status(&app, id, "SENT", Duration::from_secs(60)).await;
    }
    assert_eq!(
        oauth.token_requests("refresh_token"),
        2,
        "one more refresh for five sends"
    );
    // Each refresh rotated the refresh token (the old one is refused from then on), and
    // the newest was saved: a further refresh works.
    app.app.tokens.forget(id).await;
    let token = app.app.tokens.access_token(tenant_id, id).await.expect("a token");
    assert_eq!(token.mailbox, MAILBOX);
    assert_eq!(oauth.tokens_granted("refresh_token"), 3);
    assert!(
        oauth.requests().iter().all(|r| r.error.is_none()),
        "no refresh token reused"
    );
    let c = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert!(c["mailConnections"][0]["lastRefreshedAt"].is_string(), "{c}");
    worker.stop().await;
    app.finish().await;
}

async fn gmail_api_connects_and_disconnect_revokes_at_google(backend: Backend) {
    let oauth = authorization_server(None);
    let api = MailApiServer::start(&oauth, MailApiOptions::default());
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![587]);
        sign_in_config(c, &oauth, Some(&api));
    })
    .await;
    let tenant = app.create_tenant("Contoso", "SHARE").await;
    let admin = app.admin(&tenant);
    let done = connect(&app, &admin, &tenant, "GOOGLE_GMAIL_API").await;
    assert_eq!(done["connection"]["provider"], "GOOGLE", "{done}");
    let scopes = done["connection"]["scopes"].to_string();
    assert!(
        scopes.contains("gmail.send") && !scopes.contains("mail.google.com"),
        "{scopes}"
    );
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], true, "{r}");
    let got = api.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].api, "gmail");
    assert_eq!(got[0].mailbox.as_deref(), Some(MAILBOX));

    // A sender other than the signed-in mailbox is saved with a warning (the test mail
    // proves whether the account may send as it).
    let saved = app
        .ok(
            &admin,
            "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ warnings { code field } } }",
            json!({ "t": tenant, "i": {
                "serverKind": "GOOGLE_WORKSPACE", "fromAddress": "news@contoso.example",
                "username": MAILBOX, "connectionId": done["connection"]["id"] } }),
        )
        .await;
    assert_eq!(
        saved["updateMailSettings"]["warnings"],
        json!([{ "code": "SENDER_NOT_SIGNED_IN_MAILBOX", "field": "fromAddress" }]),
        "{saved}"
    );

    // Disconnect: the settings that used it are cleared, the grant revoked at Google.
    let id = done["connection"]["id"].as_str().unwrap().to_owned();
    let other = app.create_tenant("Other", "SHARE").await;
    let not_theirs = app
        .ok(&app.admin(&other), DISCONNECT, json!({ "t": other, "c": id }))
        .await;
    assert_eq!(not_theirs["disconnectMailbox"], false, "another tenant's connection");
    let gone = app.ok(&admin, DISCONNECT, json!({ "t": tenant, "c": id })).await;
    assert_eq!(gone["disconnectMailbox"], true);
    let c = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(c["mailConnections"], json!([]));
    let h = health(&app, &tenant).await;
    assert!(h["mailSettings"].is_null(), "{h}");
    assert_eq!(h["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    assert!(
        oauth.requests().iter().any(|r| r.path == "/revoke" && r.status == 200),
        "revoked at the provider"
    );
    assert!(oauth.tokens().iter().all(|t| t.refresh_revoked), "{:?}", oauth.tokens());
    app.finish().await;
}

async fn a_sign_in_completes_only_for_its_tenant_and_caller_once(backend: Backend) {
    let oauth = authorization_server(None);
    let app = spawn_app_with(backend, |c| sign_in_config(c, &oauth, None)).await;
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let other = app.create_tenant("Fabrikam", "BIZ").await;
    let admin = app.admin(&tenant);
    let tenant_id: domain::TenantId = tenant.parse().unwrap();
    let claims = app
        .app
        .verifier
        .claims("someone-else", Role::TenantAdmin, Some(tenant_id), 3600);
    let colleague = app.app.verifier.mint(&claims, None).unwrap();

    let start = |kind: &'static str| {
        let (app, admin, tenant) = (&app, admin.clone(), tenant.clone());
        async move {
            let s = app.ok(&admin, CONNECT, json!({ "t": tenant, "k": kind })).await;
            s["connectMailbox"]["authorizationUrl"].as_str().unwrap().to_owned()
        }
    };
    let url = start("MICROSOFT_DELEGATED_SMTP").await;
    let (state, code, _) = browser_sign_in(&app, &url).await;
    let refused = |body: &Value, field: &str, why: &str| {
        assert_eq!(code_of(body), "VALIDATION_FAILED", "{body}");
        assert_eq!(fields(body), vec![(field.to_owned(), why.to_owned())], "{body}");
    };
    // Tampered: one character changed in the sealed state.
    let mut tampered = state.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    refused(
        &app.gql(&admin, COMPLETE, json!({ "t": tenant, "s": tampered, "c": code }))
            .await,
        "state",
        "SIGN_IN_INVALID",
    );
    // Another tenant's admin, or another admin of the same tenant, with this state.
    refused(
        &app.gql(
            &app.admin(&other),
            COMPLETE,
            json!({ "t": other, "s": state, "c": code }),
        )
        .await,
        "state",
        "SIGN_IN_INVALID",
    );
    refused(
        &app.gql(&colleague, COMPLETE, json!({ "t": tenant, "s": state, "c": code }))
            .await,
        "state",
        "SIGN_IN_INVALID",
    );
    // A code from another sign-in: its PKCE challenge is not this state's verifier.
    let url2 = start("MICROSOFT_DELEGATED_SMTP").await;
    let (_, code2, _) = browser_sign_in(&app, &url2).await;
    refused(
        &app.gql(&admin, COMPLETE, json!({ "t": tenant, "s": state, "c": code2 }))
            .await,
        "code",
        "SIGN_IN_REFUSED",
    );
    // That state is spent now (single use, even when the exchange failed).
    refused(
        &app.gql(&admin, COMPLETE, json!({ "t": tenant, "s": state, "c": code }))
            .await,
        "state",
        "SIGN_IN_INVALID",
    );
    // Nothing was stored for either tenant.
    for (t, token) in [(&tenant, &admin), (&other, &app.admin(&other))] {
        let c = app.ok(token, CONNECTIONS, json!({ "t": t })).await;
        assert_eq!(c["mailConnections"], json!([]), "{c}");
        assert!(health(&app, t).await["mailSettings"].is_null());
    }
    // A return URL not on the operator's list is refused; one on it is carried through.
    let bad = app
        .gql(
            &admin,
            CONNECT,
            json!({ "t": tenant, "k": "MICROSOFT_DELEGATED_GRAPH", "r": "https://evil.example/x" }),
        )
        .await;
    refused(&bad, "returnUrl", "RETURN_URL_NOT_ALLOWED");
    let s = app
        .ok(
            &admin,
            CONNECT,
            json!({ "t": tenant, "k": "GOOGLE_GMAIL_API", "r": "https://panel.example.com/mail/done" }),
        )
        .await;
    let (_, _, landed) = browser_sign_in(&app, s["connectMailbox"]["authorizationUrl"].as_str().unwrap()).await;
    assert!(
        landed.starts_with("https://panel.example.com/mail/done#mailgate-sign-in=google"),
        "{landed}"
    );
    // The provider refused the sign-in (consent blocked): the console gets the error.
    oauth.set(json!({ "deny": "consent_required" }));
    let url3 = start("MICROSOFT_DELEGATED_GRAPH").await;
    let at_provider = no_redirects().get(&url3).send().await.unwrap();
    let callback = reqwest::Url::parse(at_provider.headers()["location"].to_str().unwrap()).unwrap();
    let back = no_redirects()
        .get(format!(
            "http://{}{}?{}",
            app.addr,
            callback.path(),
            callback.query().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let landed = back.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        pair(&fragment_pairs(&landed), "error"),
        Some("consent_required"),
        "{landed}"
    );
    assert_eq!(pair(&fragment_pairs(&landed), "code"), None);
    // Plans without a custom sender cannot connect; with no provider configured the API
    // says so.
    let economy = app.create_tenant("Small", "ECONOMY").await;
    let e = app
        .gql(
            &app.admin(&economy),
            CONNECT,
            json!({ "t": economy, "k": "GOOGLE_GMAIL_API" }),
        )
        .await;
    assert_eq!(code_of(&e), "PLAN_FORBIDS_CUSTOM_SENDER", "{e}");
    app.finish().await;

    let off = spawn_app(backend).await;
    let t = off.create_tenant("Contoso", "BIZ").await;
    let e = off
        .gql(
            &off.admin(&t),
            CONNECT,
            json!({ "t": t, "k": "MICROSOFT_DELEGATED_GRAPH" }),
        )
        .await;
    refused(&e, "kind", "SIGN_IN_NOT_CONFIGURED");
    assert_eq!(
        off.ok(&off.operator(), "{ mailSignInProviders }", json!({})).await["mailSignInProviders"],
        json!([])
    );
    off.finish().await;
}

async fn a_password_microsoft_refuses_is_offered_the_sign_in(backend: Backend) {
    let m365 = SmtpServer::start(SmtpOptions {
        auth_reply: Some("550 5.7.30 Basic authentication is not supported for Client Submission.".into()),
        ..SmtpOptions::plain().with_auth("info", "password")
    });
    let port = m365.port;
    let oauth = authorization_server(None);
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![port]);
        sign_in_config(c, &oauth, None);
    })
    .await;
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    app.ok(
        &admin,
        "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
        json!({ "t": tenant, "i": SettingsInput::plain(port).from(MAILBOX).without_from_name()
            .with_auth("info", "password").json() }),
    )
    .await;
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["hintCode"], "M365_SMTP_AUTH_DISABLED");
    assert_eq!(r["signInOffer"], "MICROSOFT", "{r}");
    // The move keeps host, port and sender: a sign-in replaces only the password.
    let done = connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_GRAPH").await;
    let s = &done["settings"];
    assert_eq!(s["fromAddress"], MAILBOX, "{done}");
    assert_eq!(s["hasPassword"], false);
    // A sender typed before the sign-in (the console carries it) is the one saved.
    let start = app
        .ok(
            &admin,
            CONNECT,
            json!({ "t": tenant, "k": "MICROSOFT_DELEGATED_GRAPH" }),
        )
        .await;
    let (state, code, _) = browser_sign_in(&app, start["connectMailbox"]["authorizationUrl"].as_str().unwrap()).await;
    let typed = app
        .ok(
            &admin,
            "mutation($t:ID!,$s:String!,$c:String!,$f:String){ completeMailboxConnection(tenantId:$t, state:$s, code:$c, fromAddress:$f){ settings { fromAddress warnings { code } } } }",
            json!({ "t": tenant, "s": state, "c": code, "f": "news@contoso.example" }),
        )
        .await;
    let settings = &typed["completeMailboxConnection"]["settings"];
    assert_eq!(settings["fromAddress"], "news@contoso.example", "{typed}");
    let h = health(&app, &tenant).await;
    assert!(h["mailSettings"]["signInOffer"].is_null(), "{h}");
    app.finish().await;
}

/// The error code of a GraphQL answer with one error.
fn code_of(body: &Value) -> &str {
    code(body)
}

const SERVICE_ACCOUNT: &str = "mailer@project.iam.gserviceaccount.example";
/// The directory (`tid`) the authorization server's ID tokens name.
const ORGANISATION: &str = "00000000-0000-0000-0000-00000000c0de";

/// A Google service account key file (as Google hands it out) whose key the
/// authorization server trusts for the JWT bearer grant, with `token_uri` on it.
fn service_account_file(oauth: &OAuthServer) -> std::path::PathBuf {
    let key = std::fs::read_to_string(&jwt_test_key().private_pem).expect("test key");
    let json = json!({
        "type": "service_account", "project_id": "mailgate-test", "private_key_id": "k1",
        "private_key": key, "client_email": SERVICE_ACCOUNT, "client_id": "109876543210",
        "token_uri": oauth.token_url(),
    });
    let path = std::env::temp_dir().join(format!("mailgate-sa-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, json.to_string()).expect("write");
    path
}

async fn app_only_microsoft_and_google_domain_wide_delegation_send_without_a_sign_in(backend: Backend) {
    let oauth = authorization_server(None);
    oauth.register_client(&OAuthClient::jwt_issuer(SERVICE_ACCOUNT));
    let api = MailApiServer::start(&oauth, MailApiOptions::default());
    let smtp = SmtpServer::start(SmtpOptions::starttls().with_xoauth2(&oauth));
    let port = smtp.port;
    let sa = service_account_file(&oauth);
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![port, 587]);
        sign_in_config(c, &oauth, Some(&api));
        c.oauth_microsoft_app_token_url = format!("{}/token?tenant={{tenant}}", oauth.base_url());
        c.oauth_google_service_account_file = Some(sa.clone());
    })
    .await;
    let kinds = app.ok(&app.operator(), "{ mailAppConnectionKinds }", json!({})).await;
    assert_eq!(
        kinds["mailAppConnectionKinds"],
        json!(["MICROSOFT_APP_SMTP", "GOOGLE_DOMAIN_WIDE"])
    );
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    const SETUP: &str = "query($t:ID!,$k:MailConnectionKind!,$m:String!){ appConnectionSetup(tenantId:$t, kind:$k, mailbox:$m){ adminConsentUrl clientId scopes commands } }";
    const AS_APP: &str = "mutation($t:ID!,$k:MailConnectionKind!,$m:String!,$d:String){ connectMailboxAsApp(tenantId:$t, kind:$k, mailbox:$m, directoryId:$d){ connection { id kind mailbox status directoryId } settings { connectionId hasPassword health { state } } } }";

    // Microsoft app-only: the admin's steps, pre-filled for the mailbox.
    let setup = app
        .ok(
            &admin,
            SETUP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX }),
        )
        .await["appConnectionSetup"]
        .clone();
    assert_eq!(setup["clientId"], CLIENT, "{setup}");
    assert!(
        setup["adminConsentUrl"]
            .as_str()
            .unwrap()
            .contains("outlook.office365.com%2F.default"),
        "{setup}"
    );
    let commands = setup["commands"].to_string();
    assert!(
        commands.contains(&format!("New-ServicePrincipal -AppId {CLIENT}")),
        "{commands}"
    );
    assert!(
        commands.contains(&format!("Add-MailboxPermission -Identity '{MAILBOX}'")),
        "{commands}"
    );
    assert!(
        commands.contains("-SmtpClientAuthenticationDisabled $false"),
        "{commands}"
    );

    // The tenant's own server (STARTTLS) is kept; the organisation is required and checked.
    app.ok(
        &admin,
        "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
        json!({ "t": tenant, "i": SettingsInput::plain(port).starttls().from(MAILBOX).without_from_name()
            .with_auth("info", "old-password").json() }),
    )
    .await;
    // App-only access only for an organisation an admin of this tenant signed in with:
    // before that, even a well-formed directory is refused (else any tenant could send as
    // another organisation's mailboxes), and nothing is asked of Microsoft.
    let unproven = app
        .gql(
            &admin,
            AS_APP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX, "d": ORGANISATION }),
        )
        .await;
    assert_eq!(
        fields(&unproven),
        vec![("directoryId".to_owned(), "ORGANISATION_NOT_PROVEN".to_owned())],
        "{unproven}"
    );
    assert_eq!(oauth.token_requests("client_credentials"), 0);
    let signed_in = connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_SMTP").await;
    assert_eq!(signed_in["connection"]["directoryId"], ORGANISATION, "{signed_in}");
    let elsewhere = app
        .gql(
            &admin,
            AS_APP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX, "d": "fabrikam.onmicrosoft.com" }),
        )
        .await;
    assert_eq!(
        fields(&elsewhere),
        vec![("directoryId".to_owned(), "ORGANISATION_NOT_PROVEN".to_owned())]
    );
    let missing = app
        .gql(
            &admin,
            AS_APP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX }),
        )
        .await;
    assert_eq!(
        fields(&missing),
        vec![("directoryId".to_owned(), "REQUIRED".to_owned())],
        "{missing}"
    );
    let bent = app
        .gql(
            &admin,
            AS_APP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX, "d": "x/../common" }),
        )
        .await;
    assert_eq!(
        fields(&bent),
        vec![("directoryId".to_owned(), "INVALID_FORMAT".to_owned())],
        "{bent}"
    );
    let done = app
        .ok(
            &admin,
            AS_APP,
            json!({ "t": tenant, "k": "MICROSOFT_APP_SMTP", "m": MAILBOX, "d": ORGANISATION }),
        )
        .await["connectMailboxAsApp"]
        .clone();
    assert_eq!(done["connection"]["kind"], "MICROSOFT_APP_SMTP", "{done}");
    assert_eq!(done["connection"]["directoryId"], ORGANISATION);
    assert_eq!(done["settings"]["hasPassword"], false);
    assert_eq!(
        oauth.tokens_granted("client_credentials"),
        1,
        "a first token proves the setup"
    );
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], true, "{r}");
    let got = smtp.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert_eq!(got[0].auth_user.as_deref(), Some(MAILBOX));
    assert!(
        oauth
            .requests()
            .iter()
            .any(|r| r.grant_type.as_deref() == Some("client_credentials")
                && r.scope.as_deref() == Some("https://outlook.office365.com/.default")),
        "{:#?}",
        oauth.requests()
    );

    // Google Workspace domain-wide delegation: the service account's client id to
    // authorize, then mail through the Gmail API as the mailbox.
    let other = app.create_tenant("Fabrikam", "SHARE").await;
    let admin2 = app.admin(&other);
    // A mailbox of a domain none of its admins signed in with is refused; a Google
    // sign-in of fabrikam.example proves that one.
    let unproven = app
        .gql(
            &admin2,
            AS_APP,
            json!({ "t": other, "k": "GOOGLE_DOMAIN_WIDE", "m": "ceo@contoso.example" }),
        )
        .await;
    assert_eq!(
        fields(&unproven),
        vec![("mailbox".to_owned(), "ORGANISATION_NOT_PROVEN".to_owned())],
        "{unproven}"
    );
    oauth.set(json!({ "user": "admin@fabrikam.example" }));
    connect(&app, &admin2, &other, "GOOGLE_GMAIL_API").await;
    let setup = app
        .ok(
            &admin2,
            SETUP,
            json!({ "t": other, "k": "GOOGLE_DOMAIN_WIDE", "m": "bob@fabrikam.example" }),
        )
        .await["appConnectionSetup"]
        .clone();
    assert_eq!(setup["clientId"], "109876543210", "{setup}");
    assert_eq!(setup["scopes"], json!(["https://www.googleapis.com/auth/gmail.send"]));
    let done = app
        .ok(
            &admin2,
            AS_APP,
            json!({ "t": other, "k": "GOOGLE_DOMAIN_WIDE", "m": "bob@fabrikam.example" }),
        )
        .await["connectMailboxAsApp"]
        .clone();
    assert_eq!(done["connection"]["mailbox"], "bob@fabrikam.example", "{done}");
    let r = app.ok(&admin2, TEST, json!({ "t": other })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], true, "{r}");
    let got = api.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].api, "gmail");
    assert_eq!(got[0].mailbox.as_deref(), Some("bob@fabrikam.example"));
    assert_eq!(oauth.tokens_granted("urn:ietf:params:oauth:grant-type:jwt-bearer"), 1);
    // Delegated kinds are not app kinds, and the reverse.
    let wrong = app
        .gql(
            &admin2,
            AS_APP,
            json!({ "t": other, "k": "GOOGLE_GMAIL_API", "m": "bob@fabrikam.example" }),
        )
        .await;
    assert_eq!(
        fields(&wrong),
        vec![("kind".to_owned(), "INVALID_FORMAT".to_owned())],
        "{wrong}"
    );
    let wrong = app
        .gql(&admin2, CONNECT, json!({ "t": other, "k": "GOOGLE_DOMAIN_WIDE" }))
        .await;
    assert_eq!(
        fields(&wrong),
        vec![("kind".to_owned(), "INVALID_FORMAT".to_owned())],
        "{wrong}"
    );
    let _ = std::fs::remove_file(&sa);
    app.finish().await;
}

async fn generic_xoauth2_uses_the_tenants_own_token_endpoint(backend: Backend) {
    // The tenant's identity provider (as Keycloak 26.2 offers for SMTP): a client of its
    // own, client credentials; its SMTP server takes the bearer tokens.
    let idp = OAuthServer::start(OAuthOptions {
        clients: vec![OAuthClient::confidential("smtp-relay", "relay-secret", &[])],
        ..OAuthOptions::default()
    });
    let smtp = SmtpServer::start(SmtpOptions::starttls().with_xoauth2(&idp));
    let port = smtp.port;
    let app = spawn_app_with(backend, |c| delivery_config(c, vec![port])).await;
    let tenant = app.create_tenant("Contoso", "SHARE").await;
    let admin = app.admin(&tenant);
    app.ok(
        &admin,
        "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
        json!({ "t": tenant, "i": SettingsInput::plain(port).starttls().from("app@contoso.example")
            .without_from_name().with_auth("app", "old-password").json() }),
    )
    .await;
    const WITH_URL: &str = "mutation($t:ID!,$i:TokenUrlConnectionInput!){ connectMailboxWithTokenUrl(tenantId:$t, input:$i){ connection { id kind mailbox tokenUrl clientId scopes } settings { hasPassword connectionId host } } }";
    let input = |secret: &str| {
        json!({ "t": tenant, "i": {
            "tokenUrl": idp.token_url(), "clientId": "smtp-relay", "clientSecret": secret,
            "scope": "smtp", "mailbox": "app@contoso.example" } })
    };
    // A wrong secret: refused at once, nothing stored.
    let refused = app.gql(&admin, WITH_URL, input("wrong")).await;
    assert_eq!(
        fields(&refused),
        vec![("clientSecret".to_owned(), "SIGN_IN_REFUSED".to_owned())],
        "{refused}"
    );
    let c = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(c["mailConnections"], json!([]));
    // Malformed input: every field at once.
    let bad = app
        .gql(
            &admin,
            WITH_URL,
            json!({ "t": tenant, "i": {
            "tokenUrl": "http://sso.example.com/token", "clientId": "", "clientSecret": "x\u{0}",
            "mailbox": "not-an-address" } }),
        )
        .await;
    let mut got = fields(&bad);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("clientId".to_owned(), "REQUIRED".to_owned()),
            ("clientSecret".to_owned(), "CONTROL_CHARACTERS".to_owned()),
            ("mailbox".to_owned(), "INVALID_FORMAT".to_owned()),
            ("tokenUrl".to_owned(), "INVALID_FORMAT".to_owned()),
        ],
        "{bad}"
    );

    let done = app.ok(&admin, WITH_URL, input("relay-secret")).await["connectMailboxWithTokenUrl"].clone();
    assert_eq!(done["connection"]["kind"], "XOAUTH2_CLIENT_CREDENTIALS", "{done}");
    assert_eq!(done["connection"]["clientId"], "smtp-relay");
    assert_eq!(done["settings"]["host"], "localhost", "the tenant's server is kept");
    assert_eq!(done["settings"]["hasPassword"], false);
    assert!(!done.to_string().contains("relay-secret"));
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["ok"], true, "{r}");
    let got = smtp.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert_eq!(got[0].auth_user.as_deref(), Some("app@contoso.example"));
    // A fresh token later is asked for with the sealed secret.
    let id: domain::oauth::ConnectionId = done["connection"]["id"].as_str().unwrap().parse().unwrap();
    app.app.tokens.forget(id).await;
    let token = app
        .app
        .tokens
        .access_token(tenant.parse().unwrap(), id)
        .await
        .expect("a token from the tenant's endpoint");
    assert_eq!(token.mailbox, "app@contoso.example");
    assert_eq!(idp.tokens_granted("client_credentials"), 2);
    assert!(!logs().contains("relay-secret"));

    // A tenant without its own (encrypted) server saved is told so before anything is
    // asked of its endpoint.
    let bare = app.create_tenant("Bare", "SHARE").await;
    let e = app
        .gql(
            &app.admin(&bare),
            WITH_URL,
            json!({ "t": bare, "i": {
            "tokenUrl": idp.token_url(), "clientId": "smtp-relay", "clientSecret": "relay-secret",
            "mailbox": "app@contoso.example" } }),
        )
        .await;
    assert_eq!(
        fields(&e),
        vec![("tokenUrl".to_owned(), "OWN_SERVER_REQUIRED".to_owned())],
        "{e}"
    );
    assert_eq!(idp.tokens_granted("client_credentials"), 2, "nothing asked");

    // Without private hosts allowed, an internal token endpoint is refused like an
    // internal mail server.
    let strict = spawn_app_with(backend, |c| c.allow_private_smtp_hosts = false).await;
    let t = strict.create_tenant("Contoso", "SHARE").await;
    strict
        .ok(
            &strict.admin(&t),
            "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
            json!({ "t": t, "i": SettingsInput::plain(587).host("smtp.contoso.example").starttls()
                .from("app@contoso.example").without_from_name().with_auth("app", "pw").json() }),
        )
        .await;
    let e = strict
        .gql(
            &strict.admin(&t),
            WITH_URL,
            json!({ "t": t, "i": {
            "tokenUrl": idp.token_url(), "clientId": "smtp-relay", "clientSecret": "relay-secret",
            "mailbox": "app@contoso.example" } }),
        )
        .await;
    assert_eq!(
        fields(&e),
        vec![("tokenUrl".to_owned(), "FORBIDDEN_ADDRESS".to_owned())],
        "{e}"
    );
    strict.finish().await;
    app.finish().await;
}

async fn a_throttled_or_refusing_api_waits_or_fails_the_mail_never_the_settings(backend: Backend) {
    let oauth = authorization_server(None);
    // Graph answers 429 (Retry-After 1) twice, then takes the mail.
    let throttled = MailApiServer::start(
        &oauth,
        MailApiOptions {
            fail: Some(429),
            fail_times: 2,
            retry_after: Some(1),
            ..MailApiOptions::default()
        },
    );
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![587]);
        sign_in_config(c, &oauth, Some(&throttled));
    })
    .await;
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_GRAPH").await;
    let worker = RunningWorker::start(&app);
    let id = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &id, "SENT", Duration::from_secs(60)).await;
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": d["id"] })).await["delivery"]["attempts"].clone();
    let outcomes: Vec<&str> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"SENT"), "{attempts}");
    assert!(outcomes.len() >= 2, "throttled first: {attempts}");
    assert!(
        attempts.as_array().unwrap().iter().all(|a| a["route"] == "CUSTOM"),
        "{attempts}"
    );
    let h = health(&app, &tenant).await;
    assert_eq!(
        h["mailSettings"]["health"]["state"], "LIVE",
        "a slow-down is not the settings' fault: {h}"
    );
    worker.stop().await;
    app.finish().await;

    // A message Graph finds too large fails for good, and only that mail.
    let too_large = MailApiServer::start(
        &oauth,
        MailApiOptions {
            fail: Some(413),
            ..MailApiOptions::default()
        },
    );
    let app = spawn_app_with(backend, |c| {
        delivery_config(c, vec![587]);
        sign_in_config(c, &oauth, Some(&too_large));
    })
    .await;
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_GRAPH").await;
    let worker = RunningWorker::start(&app);
    let id = enqueue(&app, reset(&tenant)).await["id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &id, "FAILED", Duration::from_secs(30)).await;
    let attempts = app.ok(&app.operator(), ATTEMPTS, json!({ "id": d["id"] })).await["delivery"]["attempts"].clone();
    assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
    let h = health(&app, &tenant).await;
    assert_eq!(h["mailSettings"]["health"]["state"], "LIVE", "{h}");
    worker.stop().await;
    app.finish().await;
}

/// Sets when a connection was created and last refreshed, in milliseconds since the epoch.
async fn age(app: &TestApp, id: &str, millis_ago: i64) {
    let at = chrono::Utc::now().timestamp_millis() - millis_ago;
    let sql =
        format!("UPDATE mail_connections SET created_at_ms = {at}, last_refreshed_at_ms = {at} WHERE id = '{id}'");
    sea_orm::ConnectionTrait::execute_unprepared(&app.app.db, &sql)
        .await
        .expect("update");
}

async fn idle_connections_are_kept_alive_and_a_lost_grant_is_found_before_mail_needs_it(backend: Backend) {
    let oauth = authorization_server(None);
    let app = spawn_app_with(backend, |c| {
        sign_in_config(c, &oauth, None);
        c.oauth_keep_alive_secs = 1;
    })
    .await;
    let tenant = app.create_tenant("Contoso", "BIZ").await;
    let admin = app.admin(&tenant);
    let done = connect(&app, &admin, &tenant, "MICROSOFT_DELEGATED_SMTP").await;
    let id = done["connection"]["id"].as_str().unwrap().to_owned();
    let day = 24 * 3600 * 1000;

    // Signed in just now: nothing to keep alive.
    assert_eq!(app.app.tokens.keep_alive(100).await, 0);
    // Idle for two days: refreshed once (rotation saved), then left alone again.
    age(&app, &id, 2 * day).await;
    assert_eq!(app.app.tokens.keep_alive(100).await, 1);
    assert_eq!(oauth.tokens_granted("refresh_token"), 1);
    assert_eq!(app.app.tokens.keep_alive(100).await, 0);
    // The process's own timer does the same by itself (every second here).
    let timer = app.app.keep_connections_alive().expect("a provider is set up");
    age(&app, &id, 3 * day).await;
    let started = std::time::Instant::now();
    while oauth.tokens_granted("refresh_token") < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "the keep-alive never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    timer.abort();
    let c = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(c["mailConnections"][0]["status"], "ACTIVE", "{c}");
    let refreshed =
        chrono::DateTime::parse_from_rfc3339(c["mailConnections"][0]["lastRefreshedAt"].as_str().unwrap()).unwrap();
    assert!(chrono::Utc::now().signed_duration_since(refreshed) < chrono::TimeDelta::minutes(1));

    // A grant revoked while idle is found by the keep-alive: the connection reads
    // NEEDS_RECONNECT (and the console says "reconnect") before any mail depends on it.
    oauth.revoke_user(MAILBOX);
    age(&app, &id, 2 * day).await;
    assert_eq!(app.app.tokens.keep_alive(100).await, 0);
    let c = app.ok(&admin, CONNECTIONS, json!({ "t": tenant })).await;
    assert_eq!(c["mailConnections"][0]["status"], "NEEDS_RECONNECT", "{c}");
    // And it is not tried again every hour: only active connections are kept alive.
    let asked = oauth.token_requests("refresh_token");
    assert_eq!(app.app.tokens.keep_alive(100).await, 0);
    assert_eq!(oauth.token_requests("refresh_token"), asked);
    app.finish().await;
}

/// Two processes that need a token for the same connection at once take turns through
/// the store's refresh lease: each refresh spends the refresh token the previous one
/// saved, so the rotation never makes one of them fail; and within a process concurrent
/// callers share one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_at_once_take_turns() {
    let oauth = authorization_server(None);
    let a = spawn_app_with(Backend::Postgres, |c| sign_in_config(c, &oauth, None)).await;
    let schema = a.schema_name().expect("a PostgreSQL schema").to_owned();
    let key = a.app.config.secret_key.clone();
    let b = spawn_app_with(Backend::Postgres, |c| {
        sign_in_config(c, &oauth, None);
        c.database_schema = Some(schema.clone());
        c.secret_key = key;
    })
    .await;
    let tenant = a.create_tenant("Contoso", "BIZ").await;
    let done = connect(&a, &a.admin(&tenant), &tenant, "MICROSOFT_DELEGATED_GRAPH").await;
    let id: domain::oauth::ConnectionId = done["connection"]["id"].as_str().unwrap().parse().unwrap();
    let tenant_id: domain::TenantId = tenant.parse().unwrap();
    a.app.tokens.forget(id).await;

    let calls: Vec<_> = (0..4)
        .map(|i| {
            let tokens = if i % 2 == 0 {
                a.app.tokens.clone()
            } else {
                b.app.tokens.clone()
            };
            tokio::spawn(async move { tokens.access_token(tenant_id, id).await })
        })
        .collect();
    for call in calls {
        let token = call.await.unwrap().expect("every caller gets a token");
        assert_eq!(token.mailbox, MAILBOX);
    }
    // One refresh per process, one after the other, none with a spent refresh token.
    assert_eq!(oauth.token_requests("refresh_token"), 2, "{:#?}", oauth.requests());
    assert_eq!(oauth.tokens_granted("refresh_token"), 2);
    a.finish().await;
    b.finish().await;
}
