//! The OAuth test servers themselves, used the way the OAuth mail-route tests will use them:
//! the Authlib authorization server (PKCE code flow, refresh rotation, client credentials,
//! JWT bearer, introspection, revocation, control endpoints), `AUTH XOAUTH2` on the aiosmtpd
//! server (Microsoft's and Gmail's refusals), and the Graph/Gmail sending fakes. No Mailgate
//! code runs here; if these fail, the OAuth tests of Mailgate cannot be trusted.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use testkit::servers::*;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const REDIRECT: &str = "http://127.0.0.1:0/oauth/callback";
const MAILBOX: &str = "alice@contoso.example";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn server(clients: Vec<OAuthClient>) -> OAuthServer {
    OAuthServer::start(OAuthOptions {
        clients,
        ..OAuthOptions::default()
    })
}

fn confidential() -> OAuthClient {
    OAuthClient::confidential("mailgate", "mailgate-secret", &[REDIRECT])
}

/// `/authorize` with PKCE; returns the redirect's query parameters.
async fn authorize(oauth: &OAuthServer, client_id: &str, challenge: Option<&str>) -> Vec<(String, String)> {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", "http://127.0.0.1:41234/oauth/callback"),
        ("scope", "https://outlook.office.com/SMTP.Send offline_access"),
        ("state", "state-123"),
    ];
    if let Some(challenge) = challenge {
        query.extend([("code_challenge", challenge), ("code_challenge_method", "S256")]);
    }
    let resp = http().get(oauth.authorize_url()).query(&query).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://127.0.0.1:41234/oauth/callback?"),
        "{location}"
    );
    let url = reqwest::Url::parse(&location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn token(oauth: &OAuthServer, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = http().post(oauth.token_url()).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn code_flow(oauth: &OAuthServer) -> Value {
    let params = authorize(oauth, "mailgate", Some(PKCE_CHALLENGE)).await;
    let code = param(&params, "code").expect("a code");
    let (status, body) = token(
        oauth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:41234/oauth/callback"),
            ("code_verifier", PKCE_VERIFIER),
        ],
        Some(("mailgate", "mailgate-secret")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn introspect(oauth: &OAuthServer, token: &str) -> Value {
    let (id, secret) = INTROSPECTION_CLIENT;
    http()
        .post(oauth.introspect_url())
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn pkce_code_flow_issues_tokens_and_refuses_a_wrong_verifier() {
    let oauth = server(vec![
        confidential(),
        OAuthClient::public("mailgate-public", &[REDIRECT]),
    ]);

    let tokens = code_flow(&oauth).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(
        introspect(&oauth, tokens["access_token"].as_str().unwrap()).await["username"],
        MAILBOX
    );

    // A public client (no secret) with the wrong verifier, then the right one.
    let params = authorize(&oauth, "mailgate-public", Some(PKCE_CHALLENGE)).await;
    assert_eq!(param(&params, "state"), Some("state-123"));
    let code = param(&params, "code").unwrap().to_owned();
    let form = |verifier| {
        [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:41234/oauth/callback"),
            ("client_id", "mailgate-public"),
            ("code_verifier", verifier),
        ]
    };
    let wrong = "a-wrong-verifier-that-is-long-enough-to-be-valid-0123456789";
    let (status, body) = token(&oauth, &form(wrong), None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = token(&oauth, &form(PKCE_VERIFIER), None).await;
    assert_eq!(status, 200, "{body}");

    // No PKCE, and refusals at the authorization step: back to the client with the state.
    let params = authorize(&oauth, "mailgate", None).await;
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    oauth.set(json!({ "deny": "consent_required" }));
    let params = authorize(&oauth, "mailgate", Some(PKCE_CHALLENGE)).await;
    assert_eq!(param(&params, "error"), Some("consent_required"));
    assert_eq!(param(&params, "state"), Some("state-123"));
    assert_eq!(param(&params, "code"), None);
    oauth.set(json!({ "deny": "access_denied" }));
    let params = authorize(&oauth, "mailgate", Some(PKCE_CHALLENGE)).await;
    assert_eq!(param(&params, "error"), Some("access_denied"));

    assert_eq!(oauth.tokens_granted("authorization_code"), 2);
    assert_eq!(oauth.token_requests("authorization_code"), 3);
    // The log names clients and grants but never carries secrets, codes or verifiers.
    let log = std::fs::read_to_string(oauth.dir().join("requests.jsonl")).unwrap();
    for secret in ["mailgate-secret", PKCE_VERIFIER, code.as_str()] {
        assert!(!log.contains(secret), "{secret} in the request log");
    }
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let oauth = server(vec![confidential()]);
    let first = code_flow(&oauth).await;
    let old = first["refresh_token"].as_str().unwrap();
    let basic = Some(("mailgate", "mailgate-secret"));

    let (status, second) = token(
        &oauth,
        &[("grant_type", "refresh_token"), ("refresh_token", old)],
        basic,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_ne!(second["access_token"], first["access_token"]);

    let (status, reused) = token(
        &oauth,
        &[("grant_type", "refresh_token"), ("refresh_token", old)],
        basic,
    )
    .await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{reused}"
    );

    // Client authentication in the body works as well.
    let (status, third) = token(
        &oauth,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", new),
            ("client_id", "mailgate"),
            ("client_secret", "mailgate-secret"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(oauth.token_requests("refresh_token"), 3);
    assert_eq!(oauth.tokens_granted("refresh_token"), 2);
    let issued = oauth.tokens();
    assert_eq!(issued.len(), 3);
    assert!(issued[0].refresh_revoked && issued[1].refresh_revoked && !issued[2].refresh_revoked);
    assert_eq!(issued[2].user.as_deref(), Some(MAILBOX));

    // "Revoked" scenarios: every refresh fails the way Entra ID says so.
    oauth.set(json!({ "refresh_fails": true }));
    let latest = third["refresh_token"].as_str().unwrap();
    let (status, body) = token(
        &oauth,
        &[("grant_type", "refresh_token"), ("refresh_token", latest)],
        basic,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"].as_str().unwrap().starts_with("AADSTS700082:"),
        "{body}"
    );
}

/// Two processes refreshing with the same token at once: exactly one gets new tokens (the
/// count a Mailgate test asserts on), the other `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_with_one_token_yield_one_winner() {
    let oauth = server(vec![confidential()]);
    let first = code_flow(&oauth).await;
    let old = first["refresh_token"].as_str().unwrap().to_owned();
    let attempt = |oauth: &OAuthServer| {
        let (url, old) = (oauth.token_url(), old.clone());
        tokio::spawn(async move {
            let resp = http()
                .post(url)
                .basic_auth("mailgate", Some("mailgate-secret"))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", old.as_str())])
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        })
    };
    let (a, b) = (attempt(&oauth), attempt(&oauth));
    let mut statuses = [a.await.unwrap(), b.await.unwrap()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400]);
    assert_eq!(oauth.token_requests("refresh_token"), 2);
    assert_eq!(oauth.tokens_granted("refresh_token"), 1);
}

#[tokio::test]
async fn client_credentials_and_jwt_bearer_issue_tokens() {
    let oauth = server(vec![
        confidential(),
        OAuthClient::jwt_issuer("mailer@project.iam.gserviceaccount.example"),
    ]);
    let (status, app) = token(
        &oauth,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
        Some(("mailgate", "mailgate-secret")),
    )
    .await;
    assert_eq!(status, 200, "{app}");
    assert!(app.get("refresh_token").is_none());
    let info = introspect(&oauth, app["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (info["active"].as_bool(), info.get("username")),
        (Some(true), None),
        "{info}"
    );

    let (status, body) = token(
        &oauth,
        &[("grant_type", "client_credentials")],
        Some(("mailgate", "wrong-secret")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );

    // Google's domain-wide delegation: the service account signs, `sub` is the mailbox.
    let key = std::fs::read(&jwt_test_key().private_pem).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let assertion = |aud: &str| {
        let claims = json!({
            "iss": "mailer@project.iam.gserviceaccount.example",
            "sub": "bob@contoso.example",
            "scope": "https://mail.google.com/",
            "aud": aud,
            "iat": now,
            "exp": now + 600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    };
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let good = assertion(&oauth.token_url());
    let (status, body) = token(&oauth, &[("grant_type", grant), ("assertion", &good)], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "https://mail.google.com/");
    let info = introspect(&oauth, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["username"], "bob@contoso.example", "{info}");

    let wrong_audience = assertion("https://oauth2.googleapis.com/token");
    let (status, body) = token(&oauth, &[("grant_type", grant), ("assertion", &wrong_audience)], None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(oauth.tokens_granted(grant), 1);
    assert_eq!(oauth.tokens_granted("client_credentials"), 1);
}

#[tokio::test]
async fn introspection_and_revocation() {
    let oauth = server(vec![confidential()]);
    let tokens = code_flow(&oauth).await;
    let access = tokens["access_token"].as_str().unwrap();
    let info = introspect(&oauth, access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "mailgate");
    assert_eq!(info["scope"], "https://outlook.office.com/SMTP.Send offline_access");
    assert_eq!(introspect(&oauth, "not-a-token").await, json!({ "active": false }));

    // RFC 7009 by the client: the access token (and its refresh token) stop working.
    let resp = http()
        .post(oauth.revoke_url())
        .basic_auth("mailgate", Some("mailgate-secret"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(introspect(&oauth, access).await, json!({ "active": false }));

    // An admin revokes everything of the user at the server.
    let tokens = code_flow(&oauth).await;
    assert_eq!(oauth.revoke_user(MAILBOX), 2);
    assert_eq!(
        introspect(&oauth, tokens["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let (status, body) = token(
        &oauth,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
        Some(("mailgate", "mailgate-secret")),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(oauth.tokens().iter().all(|t| !t.active));
}

/// One SMTP reply: (code, text of its last line).
async fn reply(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), reader.read_line(&mut line))
            .await
            .expect("the SMTP server answers")
            .unwrap();
        assert!(n > 0, "the SMTP server hung up");
        if line.as_bytes().get(3) != Some(&b'-') {
            return (line[..3].parse().unwrap(), line[4..].trim_end().to_owned());
        }
    }
}

async fn send(reader: &mut BufReader<TcpStream>, line: &str) -> (u16, String) {
    reader
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(reader).await
}

/// Connects, EHLOs and tries `AUTH XOAUTH2` as `user` with `token`: the reply (and the
/// connection, to go on with MAIL FROM).
async fn xoauth2(smtp: &SmtpServer, user: &str, token: &str) -> ((u16, String), BufReader<TcpStream>) {
    let mut conn = BufReader::new(TcpStream::connect(smtp.addr()).await.unwrap());
    assert_eq!(reply(&mut conn).await.0, 220);
    reader_ehlo(&mut conn).await;
    let blob = STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    let answer = send(&mut conn, &format!("AUTH XOAUTH2 {blob}")).await;
    (answer, conn)
}

async fn reader_ehlo(conn: &mut BufReader<TcpStream>) {
    conn.get_mut().write_all(b"EHLO client.test\r\n").await.unwrap();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            break;
        }
    }
    assert!(lines.iter().any(|l| l[4..].trim_end() == "AUTH XOAUTH2"), "{lines:?}");
}

#[tokio::test]
async fn smtp_xoauth2_accepts_a_live_token_and_refuses_a_revoked_one() {
    let oauth = server(vec![confidential()]);
    let smtp = SmtpServer::start(SmtpOptions::plain().with_xoauth2(&oauth));
    let tokens = code_flow(&oauth).await;
    let access = tokens["access_token"].as_str().unwrap();

    let ((code, text), mut conn) = xoauth2(&smtp, MAILBOX, access).await;
    assert_eq!(code, 235, "{text}");
    assert_eq!(send(&mut conn, &format!("MAIL FROM:<{MAILBOX}>")).await.0, 250);
    assert_eq!(send(&mut conn, "RCPT TO:<bob@example.test>").await.0, 250);
    assert_eq!(send(&mut conn, "DATA").await.0, 354);
    let (code, text) = send(&mut conn, "Subject: via XOAUTH2\r\n\r\nHello.\r\n.").await;
    assert_eq!(code, 250, "{text}");
    let _ = send(&mut conn, "QUIT").await;
    let got = smtp.wait_for_async(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].auth_user.as_deref(), Some(MAILBOX));
    assert_eq!(got[0].auth_mechanism.as_deref(), Some("XOAUTH2"));
    assert_eq!(got[0].header("Subject").as_deref(), Some("via XOAUTH2"));

    // Somebody else's mailbox with this token, then the token after revocation.
    let ((code, text), _) = xoauth2(&smtp, "mallory@contoso.example", access).await;
    assert_eq!((code, text.as_str()), (535, "5.7.3 Authentication unsuccessful"));
    oauth.revoke_user(MAILBOX);
    let ((code, text), mut conn) = xoauth2(&smtp, MAILBOX, access).await;
    assert_eq!((code, text.as_str()), (535, "5.7.3 Authentication unsuccessful"));
    let (code, _) = send(&mut conn, &format!("MAIL FROM:<{MAILBOX}>")).await;
    assert_eq!(code, 530, "MAIL FROM without AUTH");
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn smtp_xoauth2_refuses_like_gmail_when_asked() {
    let oauth = server(vec![confidential()]);
    let smtp = SmtpServer::start(SmtpOptions {
        xoauth2: Some(Xoauth2 {
            introspect_url: oauth.introspection_for_servers(),
            scope: Some("https://mail.google.com/".into()),
            google_style: true,
        }),
        ..SmtpOptions::plain()
    });
    // A live token, but without Gmail's scope.
    let tokens = code_flow(&oauth).await;
    let ((code, challenge), mut conn) = xoauth2(&smtp, MAILBOX, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(code, 334);
    let challenge: Value = serde_json::from_slice(&STANDARD.decode(challenge).unwrap()).unwrap();
    assert_eq!(challenge["status"], "401");
    assert_eq!(challenge["schemes"], "Bearer");
    let (code, text) = send(&mut conn, "").await;
    assert_eq!(code, 535);
    assert!(text.starts_with("5.7.8 Username and Password not accepted"), "{text}");
}

async fn graph_send(api: &MailApiServer, path: &str, token: &str, mime: &str) -> (u16, String) {
    let resp = http()
        .post(format!("{}{path}", api.base_url()))
        .bearer_auth(token)
        .header("Content-Type", "text/plain")
        .body(STANDARD.encode(mime))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn gmail_send(api: &MailApiServer, token: &str, mime: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/gmail/v1/users/me/messages/send", api.base_url()))
        .bearer_auth(token)
        .json(&json!({ "raw": URL_SAFE_NO_PAD.encode(mime) }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn graph_and_gmail_fakes_accept_a_valid_token_and_refuse_others() {
    let oauth = server(vec![confidential()]);
    let api = MailApiServer::start(
        &oauth,
        MailApiOptions {
            plain: true,
            ..MailApiOptions::default()
        },
    );
    let delegated = code_flow(&oauth).await["access_token"].as_str().unwrap().to_owned();
    let mime = format!("From: {MAILBOX}\r\nTo: bob@example.test\r\nSubject: Grüße\r\n\r\nHello.\r\n");

    assert_eq!(
        graph_send(&api, "/v1.0/me/sendMail", &delegated, &mime).await,
        (202, String::new())
    );
    let path = format!("/v1.0/users/{MAILBOX}/sendMail");
    assert_eq!(graph_send(&api, &path, &delegated, &mime).await.0, 202);
    let (status, body) = gmail_send(&api, &delegated, &mime).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));

    let (status, body) = graph_send(&api, "/v1.0/users/bob@contoso.example/sendMail", &delegated, &mime).await;
    assert_eq!(status, 401, "another mailbox: {body}");
    let (status, body) = graph_send(&api, "/v1.0/me/sendMail", "forged", &mime).await;
    assert_eq!(status, 401);
    assert!(body.contains("InvalidAuthenticationToken"), "{body}");
    let (status, body) = gmail_send(&api, "forged", &mime).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    oauth.revoke_user(MAILBOX);
    assert_eq!(graph_send(&api, "/v1.0/me/sendMail", &delegated, &mime).await.0, 401);
    assert_eq!(gmail_send(&api, &delegated, &mime).await.0, 401);

    let got = api.wait_for_async(3, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().map(|m| m.api.as_str()).collect::<Vec<_>>(),
        ["graph", "graph", "gmail"]
    );
    assert!(
        got.iter()
            .all(|m| m.data == mime && m.mailbox.as_deref() == Some(MAILBOX))
    );
}

#[tokio::test]
async fn graph_fake_throttles_with_retry_after_then_accepts() {
    let oauth = server(vec![confidential()]);
    let api = MailApiServer::start(
        &oauth,
        MailApiOptions {
            plain: true,
            fail: Some(429),
            fail_times: 1,
            retry_after: Some(7),
        },
    );
    let delegated = code_flow(&oauth).await["access_token"].as_str().unwrap().to_owned();
    let resp = http()
        .post(format!("{}/v1.0/me/sendMail", api.base_url()))
        .bearer_auth(&delegated)
        .header("Content-Type", "text/plain")
        .body(STANDARD.encode("Subject: x\r\n\r\ny\r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        graph_send(&api, "/v1.0/me/sendMail", &delegated, "Subject: x\r\n\r\ny\r\n")
            .await
            .0,
        202
    );
}

/// HTTPS with the test CA: the Rust test client has no TLS, so Python's `urllib` (which the
/// servers already need) makes the requests, trusting only the test CA.
#[test]
fn tls_endpoints_answer_with_the_test_ca() {
    let oauth = OAuthServer::start(OAuthOptions {
        tls: true,
        clients: vec![confidential()],
        ..OAuthOptions::default()
    });
    let api = MailApiServer::start(&oauth, MailApiOptions::default());
    assert!(oauth.token_url().starts_with("https://") && api.base_url().starts_with("https://"));
    let script = r#"
import base64, json, ssl, sys, urllib.request, urllib.parse
ctx = ssl.create_default_context(cafile=sys.argv[1])
req = urllib.request.Request(sys.argv[2], data=b"grant_type=client_credentials", method="POST")
req.add_header("Authorization", "Basic " + base64.b64encode(b"mailgate:mailgate-secret").decode())
token = json.load(urllib.request.urlopen(req, context=ctx))["access_token"]
req = urllib.request.Request(sys.argv[3], data=base64.b64encode(b"Subject: tls\r\n\r\nhi\r\n"), method="POST")
req.add_header("Authorization", "Bearer " + token)
req.add_header("Content-Type", "text/plain")
print(urllib.request.urlopen(req, context=ctx).status)
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(oauth.ca_pem().unwrap())
        .arg(oauth.token_url())
        .arg(format!("{}/v1.0/users/{MAILBOX}/sendMail", api.base_url()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "202");
    assert_eq!(api.received()[0].data, "Subject: tls\r\n\r\nhi\r\n");
    assert_eq!(api.received()[0].client_id.as_deref(), Some("mailgate"));
}
