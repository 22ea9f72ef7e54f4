//! The token client (`oauth` crate) against the real Authlib authorization server on
//! loopback: the PKCE code flow, refresh with rotation, Entra's "expired" refusal,
//! client credentials (also over HTTPS), JWT bearer, and what happens when the endpoint
//! never answers or answers too much.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use domain::oauth::{GrantProblem, MAX_TOKEN_RESPONSE, PkceVerifier};
use mailer::resolver::Resolver;
use mailer::tls::TlsMaterial;
use oauth::{ClientAuth, TokenClient, TokenEndpoint, TokenError};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use testkit::servers::*;

const REDIRECT: &str = "http://127.0.0.1:41234/oauth/callback";
const SCOPE: &str = "https://outlook.office.com/SMTP.Send offline_access";
const SECRET: &str = "mailgate-secret";

fn client() -> TokenClient {
    let tls = TlsMaterial::load(Some(test_ca().ca_pem_text().as_bytes())).unwrap();
    TokenClient::new(Resolver::new(&[]), tls)
}

fn server(opts: OAuthOptions) -> OAuthServer {
    OAuthServer::start(OAuthOptions {
        clients: vec![OAuthClient::confidential("mailgate", SECRET, &[REDIRECT])],
        ..opts
    })
}

fn endpoint(oauth: &OAuthServer, secret: &str) -> TokenEndpoint {
    TokenEndpoint::new(
        &oauth.token_url(),
        "mailgate",
        ClientAuth::Secret(SecretString::from(secret)),
    )
    .unwrap()
}

/// A code from `/authorize` for the PKCE challenge of `verifier`, as the browser brings
/// it back to the callback.
async fn authorization_code(oauth: &OAuthServer, verifier: &PkceVerifier) -> String {
    let challenge = verifier.challenge();
    let query = [
        ("response_type", "code"),
        ("client_id", "mailgate"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPE),
        ("state", "state-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(oauth.authorize_url())
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code")
}

#[tokio::test]
async fn code_flow_exchanges_a_code_and_refuses_a_wrong_verifier() {
    let oauth = server(OAuthOptions::default());
    let client = client();
    let endpoint = endpoint(&oauth, SECRET);
    let verifier = PkceVerifier::parse(PKCE_VERIFIER).unwrap();
    assert_eq!(verifier.challenge(), PKCE_CHALLENGE);

    let code = authorization_code(&oauth, &verifier).await;
    let before = Utc::now();
    let tokens = client
        .exchange_code(&endpoint, &code, REDIRECT, &verifier)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    let hour = TimeDelta::seconds(3600);
    assert!(
        before + hour <= tokens.expires_at && tokens.expires_at <= Utc::now() + hour,
        "{}",
        tokens.expires_at
    );
    assert_eq!(
        tokens.scopes.as_deref(),
        Some(
            &[
                "https://outlook.office.com/SMTP.Send".to_owned(),
                "offline_access".to_owned()
            ][..]
        )
    );
    let info = oauth.tokens();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].access_token, tokens.access_token.expose_secret());
    assert_eq!(info[0].user.as_deref(), Some("alice@contoso.example"));

    // The same code again, and a fresh code with another verifier: the grant is refused.
    let again = client.exchange_code(&endpoint, &code, REDIRECT, &verifier).await;
    assert_eq!(again.unwrap_err(), TokenError::Refused(GrantProblem::NeedsReconnect));
    let code = authorization_code(&oauth, &verifier).await;
    let wrong = client
        .exchange_code(&endpoint, &code, REDIRECT, &PkceVerifier::generate())
        .await
        .unwrap_err();
    assert_eq!(wrong, TokenError::Refused(GrantProblem::NeedsReconnect));
    assert!(!format!("{wrong:?} {wrong}").contains(&code));
    assert_eq!(oauth.tokens_granted("authorization_code"), 1);
    assert_eq!(oauth.token_requests("authorization_code"), 3);
}

#[tokio::test]
async fn refresh_rotates_the_token_and_the_old_one_is_then_refused() {
    let oauth = server(OAuthOptions::default());
    let client = client();
    let endpoint = endpoint(&oauth, SECRET);
    let verifier = PkceVerifier::generate();
    let code = authorization_code(&oauth, &verifier).await;
    let first = client
        .exchange_code(&endpoint, &code, REDIRECT, &verifier)
        .await
        .unwrap();
    let old = first.refresh_token.unwrap();

    let refreshed = client.refresh(&endpoint, &old, None).await.unwrap();
    assert!(refreshed.rotated, "a rotated refresh token is flagged to be saved");
    assert_ne!(refreshed.refresh_token.expose_secret(), old.expose_secret());
    assert_ne!(
        refreshed.tokens.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert!(!format!("{refreshed:?}").contains(refreshed.refresh_token.expose_secret()));

    assert_eq!(
        client.refresh(&endpoint, &old, None).await.unwrap_err(),
        TokenError::Refused(GrantProblem::NeedsReconnect)
    );
    // The kept one still works, with a narrower scope asked for.
    let again = client
        .refresh(
            &endpoint,
            &refreshed.refresh_token,
            Some("https://outlook.office.com/SMTP.Send"),
        )
        .await
        .unwrap();
    assert!(again.rotated);
    assert_eq!(oauth.tokens_granted("refresh_token"), 2);
}

#[tokio::test]
async fn a_refresh_refused_as_expired_by_inactivity_needs_a_reconnect() {
    let oauth = server(OAuthOptions {
        refresh_fails: true,
        ..OAuthOptions::default()
    });
    let client = client();
    let endpoint = endpoint(&oauth, SECRET);
    let verifier = PkceVerifier::generate();
    let code = authorization_code(&oauth, &verifier).await;
    let tokens = client
        .exchange_code(&endpoint, &code, REDIRECT, &verifier)
        .await
        .unwrap();
    let refused = client
        .refresh(&endpoint, tokens.refresh_token.as_ref().unwrap(), None)
        .await
        .unwrap_err();
    assert_eq!(refused, TokenError::Refused(GrantProblem::NeedsReconnect));
    let log = oauth.requests();
    let last = log.last().unwrap();
    assert!(
        last.error_description
            .as_deref()
            .is_some_and(|d| d.starts_with("AADSTS700082")),
        "{last:?}"
    );
}

#[tokio::test]
async fn client_credentials_issue_an_app_token_and_a_wrong_secret_is_misconfigured() {
    let oauth = server(OAuthOptions::default());
    let client = client();
    let scope = "https://graph.microsoft.com/.default";
    let tokens = client
        .client_credentials(&endpoint(&oauth, SECRET), scope)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_none());
    assert_eq!(oauth.tokens()[0].user, None);

    let refused = client
        .client_credentials(&endpoint(&oauth, "wrong-secret"), scope)
        .await
        .unwrap_err();
    assert_eq!(refused, TokenError::Refused(GrantProblem::Misconfigured));
    assert_eq!(oauth.tokens_granted("client_credentials"), 1);
}

#[tokio::test]
async fn client_credentials_over_https_with_the_test_ca() {
    let oauth = server(OAuthOptions {
        tls: true,
        ..OAuthOptions::default()
    });
    assert!(oauth.token_url().starts_with("https://"));
    let tokens = client()
        .client_credentials(&endpoint(&oauth, SECRET), "https://graph.microsoft.com/.default")
        .await
        .unwrap();
    assert_eq!(oauth.tokens()[0].access_token, tokens.access_token.expose_secret());
}

#[tokio::test]
async fn jwt_bearer_trades_a_signed_assertion_for_a_token() {
    let issuer = "mailer@project.iam.gserviceaccount.example";
    let oauth = OAuthServer::start(OAuthOptions {
        clients: vec![OAuthClient::jwt_issuer(issuer)],
        ..OAuthOptions::default()
    });
    let key = std::fs::read(&jwt_test_key().private_pem).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": issuer,
        "sub": "bob@contoso.example",
        "scope": "https://mail.google.com/",
        "aud": oauth.token_url(),
        "iat": now,
        "exp": now + 600,
    });
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let assertion = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let endpoint = TokenEndpoint::new(&oauth.token_url(), issuer, ClientAuth::None).unwrap();
    let tokens = client().jwt_bearer(&endpoint, &assertion, None).await.unwrap();
    assert_eq!(
        tokens.scopes.as_deref(),
        Some(&["https://mail.google.com/".to_owned()][..])
    );
    assert_eq!(oauth.tokens()[0].user.as_deref(), Some("bob@contoso.example"));

    let refused = client().jwt_bearer(&endpoint, "not.a.jwt", None).await.unwrap_err();
    assert!(matches!(refused, TokenError::Refused(_)), "{refused:?}");
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_is_given_up_at_the_deadline() {
    let (port, listener) = silent_listener();
    let endpoint = TokenEndpoint::new(
        &format!("http://127.0.0.1:{port}/token"),
        "mailgate",
        ClientAuth::Secret(SecretString::from(SECRET)),
    )
    .unwrap();
    let started = Instant::now();
    let result = client()
        .with_deadline(Duration::from_secs(1))
        .client_credentials(&endpoint, "scope")
        .await;
    assert_eq!(result.unwrap_err(), TokenError::Transport);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(listener.accepted(), 1);
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_is_unreadable() {
    let size = (MAX_TOKEN_RESPONSE + 1).to_string();
    let web = HttpsServer::start(&[], &["--plain", "--big", &size]);
    let endpoint = TokenEndpoint::new(
        &format!("http://127.0.0.1:{}/token", web.port),
        "mailgate",
        ClientAuth::Secret(SecretString::from(SECRET)),
    )
    .unwrap();
    let result = client().client_credentials(&endpoint, "scope").await;
    assert_eq!(result.unwrap_err(), TokenError::Unreadable);
    assert_eq!(web.requests().len(), 1, "{:?}", web.requests());
    assert!(web.requests()[0].starts_with("POST /token "), "{:?}", web.requests());
}
