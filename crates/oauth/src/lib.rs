//! The OAuth 2.0 token client (issue 25): the requests Mailgate makes to a token endpoint
//! (RFC 6749 §4.1.3 code with PKCE, §6 refresh, §4.4 client credentials; RFC 7523 JWT
//! bearer) and what their answers mean. The rules (reading a token answer, keeping a
//! rotated refresh token, classifying a refusal) are `domain::oauth`'s; this crate only
//! speaks HTTP, through `mailer::http` (one capped request under our own deadline).
//!
//! Token endpoints are operator configuration, never tenant input, so internal and
//! loopback addresses are allowed. Nothing token-like is logged or put in an error:
//! secrets are `secrecy` types and a refusal is reduced to a [`GrantProblem`] code.

mod providers;
mod service_account;
mod tokens;

pub use providers::{DIRECTORY_PLACEHOLDER, ProviderConfig, Providers};
pub use service_account::{ServiceAccount, ServiceAccountError};
pub use tokens::TokenCache;

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use domain::oauth::{GrantProblem, MAX_TOKEN_RESPONSE, PkceVerifier, RefreshedTokens, TokenSet};
use mailer::guard::Guard;
use mailer::http::{BodyCap, HttpError, HttpRequest, HttpResponse, Method};
use mailer::resolver::Resolver;
use mailer::tls::TlsMaterial;

/// How long one token request may take, from resolving the host to the last byte read.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// RFC 7523 §2.1's `grant_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How Mailgate authenticates to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_post` (RFC 6749 §2.3.1): the id and secret in the form body.
    Secret(SecretString),
    /// A public client (or a grant that authenticates itself, as JWT bearer does): only
    /// `client_id` is sent.
    None,
}

/// Why a token endpoint's configuration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpoint {
    #[error("the token endpoint URL is not an http or https URL with a host")]
    Url,
    #[error("the token endpoint URL must not carry a user name, password or fragment")]
    Extras,
    #[error("the client id is empty")]
    ClientId,
}

/// A token endpoint and the client registered there, valid by construction.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    url: Url,
    client_id: String,
    client_auth: ClientAuth,
}

impl TokenEndpoint {
    /// `url` must be `http` or `https` with a host, and carry no credentials or fragment
    /// (they would be sent or logged where they do not belong).
    pub fn new(url: &str, client_id: &str, client_auth: ClientAuth) -> Result<Self, InvalidEndpoint> {
        let url = Url::parse(url).map_err(|_| InvalidEndpoint::Url)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(InvalidEndpoint::Url);
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(InvalidEndpoint::Extras);
        }
        if client_id.trim().is_empty() {
            return Err(InvalidEndpoint::ClientId);
        }
        Ok(Self {
            url,
            client_id: client_id.to_owned(),
            client_auth,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The same client at another URL (Microsoft's per-organisation token endpoint).
    pub fn at(&self, url: &str) -> Result<Self, InvalidEndpoint> {
        Self::new(url, &self.client_id, self.client_auth.clone())
    }

    /// Whether the client authenticates with a secret.
    pub fn has_secret(&self) -> bool {
        matches!(self.client_auth, ClientAuth::Secret(_))
    }
}

/// Why no tokens came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint answered with an error: what it means for the connection.
    #[error("the token endpoint refused the request")]
    Refused(GrantProblem),
    /// A success status whose body is not a bearer token answer, or an answer larger
    /// than [`MAX_TOKEN_RESPONSE`].
    #[error("the token endpoint's answer could not be read")]
    Unreadable,
    /// No answer: the host could not be reached, TLS failed, the answer was not HTTP,
    /// or [`DEADLINE`] passed.
    #[error("the token endpoint could not be reached")]
    Transport,
}

/// Makes token requests. Cheap to clone; build one per process.
#[derive(Debug, Clone)]
pub struct TokenClient {
    guard: Guard,
    tls: TlsMaterial,
    deadline: Duration,
}

impl TokenClient {
    /// `resolver` and `tls` are the mailer's (the same DNS and trusted roots); the address
    /// guard lets internal addresses through, since token endpoints are operator
    /// configuration.
    pub fn new(resolver: Resolver, tls: TlsMaterial) -> Self {
        Self {
            guard: Guard {
                allow_private: true,
                resolver,
            },
            tls,
            deadline: DEADLINE,
        }
    }

    /// A client for token endpoints tenants name (generic XOAUTH2): `guard` is the one
    /// tenants' mail servers go through, so an internal address reads as a name that
    /// does not exist.
    pub fn for_tenants(guard: Guard, tls: TlsMaterial) -> Self {
        Self {
            guard,
            tls,
            deadline: DEADLINE,
        }
    }

    /// Another deadline than [`DEADLINE`] for each request.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Exchanges the code the callback got for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        endpoint: &TokenEndpoint,
        code: &str,
        redirect_uri: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenSet, TokenError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ];
        self.request(endpoint, "authorization_code", &form).await
    }

    /// New tokens for `refresh_token` (RFC 6749 §6). The answer says which refresh token
    /// to keep and whether it must be saved ([`TokenSet::after_refresh`]).
    pub async fn refresh(
        &self,
        endpoint: &TokenEndpoint,
        refresh_token: &SecretString,
        scope: Option<&str>,
    ) -> Result<RefreshedTokens, TokenError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        form.extend(scope.map(|s| ("scope", s)));
        let tokens = self.request(endpoint, "refresh_token", &form).await?;
        Ok(tokens.after_refresh(refresh_token.clone()))
    }

    /// An app-only token (RFC 6749 §4.4), e.g. Microsoft's `SMTP.SendAsApp` with the scope
    /// `https://outlook.office365.com/.default`.
    pub async fn client_credentials(&self, endpoint: &TokenEndpoint, scope: &str) -> Result<TokenSet, TokenError> {
        let form = [("grant_type", "client_credentials"), ("scope", scope)];
        self.request_as(endpoint, "client_credentials", &form, GrantProblem::classify_app_only)
            .await
    }

    /// Client credentials with an optional scope: none is sent when there is none (some
    /// servers refuse an empty `scope`).
    pub async fn client_credentials_with(
        &self,
        endpoint: &TokenEndpoint,
        scope: Option<&str>,
    ) -> Result<TokenSet, TokenError> {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(scope.filter(|s| !s.is_empty()).map(|s| ("scope", s)));
        self.request_as(endpoint, "client_credentials", &form, GrantProblem::classify_app_only)
            .await
    }

    /// A token for a signed assertion (RFC 7523 §2.1), e.g. Google's domain-wide
    /// delegation, where the assertion's `sub` is the mailbox. Signing it is the
    /// caller's.
    pub async fn jwt_bearer(
        &self,
        endpoint: &TokenEndpoint,
        assertion: &str,
        scope: Option<&str>,
    ) -> Result<TokenSet, TokenError> {
        let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
        form.extend(scope.map(|s| ("scope", s)));
        self.request_as(endpoint, JWT_BEARER, &form, GrantProblem::classify_app_only)
            .await
    }

    /// Revokes `token` at `url` (RFC 7009) with the client's authentication: `true` when
    /// the server answered 200.
    pub async fn revoke(&self, url: &Url, endpoint: &TokenEndpoint, token: &SecretString) -> bool {
        let form = [("token", token.expose_secret())];
        match self.post_form(url, endpoint, &form, 4096).await {
            Ok(r) if r.status == 200 => true,
            answer => {
                tracing::info!(host = url.host_str().unwrap_or_default(), status = ?answer.map(|r| r.status), "revocation not confirmed");
                false
            }
        }
    }

    /// POSTs `form` (with the client's authentication) and reads the answer; a refusal
    /// as a sign-in's ([`GrantProblem::classify`]).
    async fn request(
        &self,
        endpoint: &TokenEndpoint,
        grant: &'static str,
        form: &[(&str, &str)],
    ) -> Result<TokenSet, TokenError> {
        self.request_as(endpoint, grant, form, GrantProblem::classify).await
    }

    /// [`TokenClient::request`] with the refusal read by `classify` (the grants no one
    /// signs in for: [`GrantProblem::classify_app_only`]).
    async fn request_as(
        &self,
        endpoint: &TokenEndpoint,
        grant: &'static str,
        form: &[(&str, &str)],
        classify: fn(u16, Option<&str>, &[u8], chrono::DateTime<Utc>) -> GrantProblem,
    ) -> Result<TokenSet, TokenError> {
        let answer = self.post_form(&endpoint.url, endpoint, form, MAX_TOKEN_RESPONSE).await;
        let result = read_answer(answer, classify);
        if let Err(error) = &result {
            // The host and a code only: never the form, the body or the server's text.
            tracing::info!(
                host = endpoint.url.host_str().unwrap_or_default(),
                grant,
                ?error,
                "token request failed"
            );
        }
        result
    }

    async fn post_form(
        &self,
        url: &Url,
        endpoint: &TokenEndpoint,
        form: &[(&str, &str)],
        cap: usize,
    ) -> Result<HttpResponse, HttpError> {
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(_) => url.host_str().unwrap_or_default().to_owned(),
            None => return Err(HttpError::Connect),
        };
        let port = url.port_or_known_default().ok_or(HttpError::Connect)?;
        let request = HttpRequest {
            method: Method::POST,
            https: url.scheme() == "https",
            host: &host,
            port,
            authority: url.authority(),
            target: &url[url::Position::BeforePath..url::Position::AfterQuery],
            headers: vec![
                ("content-type", "application/x-www-form-urlencoded".to_owned()),
                ("accept", "application/json".to_owned()),
            ],
            body: form_body(endpoint, form),
        };
        mailer::http::send(&self.guard, &self.tls, request, BodyCap::Refuse(cap), self.deadline).await
    }
}

/// The form body: the grant's fields, then the client's (RFC 6749 §2.3.1, §3.2.1).
fn form_body(endpoint: &TokenEndpoint, form: &[(&str, &str)]) -> Vec<u8> {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.extend_pairs(form.iter().copied());
    body.append_pair("client_id", &endpoint.client_id);
    if let ClientAuth::Secret(secret) = &endpoint.client_auth {
        body.append_pair("client_secret", secret.expose_secret());
    }
    body.finish().into_bytes()
}

/// What an answer (or its absence) means.
fn read_answer(
    answer: Result<HttpResponse, HttpError>,
    classify: fn(u16, Option<&str>, &[u8], chrono::DateTime<Utc>) -> GrantProblem,
) -> Result<TokenSet, TokenError> {
    let response = match answer {
        Ok(r) => r,
        Err(HttpError::TooLarge) => return Err(TokenError::Unreadable),
        Err(_) => return Err(TokenError::Transport),
    };
    let now = Utc::now();
    if (200..300).contains(&response.status) {
        TokenSet::parse(&response.body, now).map_err(|_| TokenError::Unreadable)
    } else {
        Err(TokenError::Refused(classify(
            response.status,
            response.retry_after.as_deref(),
            &response.body,
            now,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(auth: ClientAuth) -> TokenEndpoint {
        TokenEndpoint::new("https://login.example/tenant/oauth2/v2.0/token?x=1", "app", auth).unwrap()
    }

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn endpoints_must_be_plain_http_urls_without_credentials() {
        assert!(TokenEndpoint::new("http://127.0.0.1:8080/token", "app", ClientAuth::None).is_ok());
        for (url, why) in [
            ("ftp://host/token", InvalidEndpoint::Url),
            ("not a url", InvalidEndpoint::Url),
            ("https://user:pw@host/token", InvalidEndpoint::Extras),
            ("https://host/token#frag", InvalidEndpoint::Extras),
        ] {
            assert_eq!(
                TokenEndpoint::new(url, "app", ClientAuth::None).unwrap_err(),
                why,
                "{url}"
            );
        }
        assert_eq!(
            TokenEndpoint::new("https://host/token", " ", ClientAuth::None).unwrap_err(),
            InvalidEndpoint::ClientId
        );
    }

    #[test]
    fn the_form_carries_the_client_and_its_secret_only_when_it_has_one() {
        let with = endpoint(ClientAuth::Secret(SecretString::from("s&cret")));
        let body = String::from_utf8(form_body(
            &with,
            &[("grant_type", "client_credentials"), ("scope", "a b")],
        ))
        .unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=a+b&client_id=app&client_secret=s%26cret"
        );
        let public = String::from_utf8(form_body(&endpoint(ClientAuth::None), &[("grant_type", "x")])).unwrap();
        assert_eq!(public, "grant_type=x&client_id=app");
        assert!(!format!("{with:?}").contains("s&cret"));
    }

    #[test]
    fn answers_become_tokens_refusals_or_unreadable() {
        let ok = read_answer(
            answer(200, None, r#"{"access_token":"at","token_type":"Bearer"}"#),
            GrantProblem::classify,
        )
        .unwrap();
        assert_eq!(ok.access_token.expose_secret(), "at");
        assert_eq!(
            read_answer(answer(200, None, "<html>"), GrantProblem::classify).unwrap_err(),
            TokenError::Unreadable
        );
        assert_eq!(
            read_answer(
                answer(400, None, r#"{"error":"invalid_grant"}"#),
                GrantProblem::classify
            )
            .unwrap_err(),
            TokenError::Refused(GrantProblem::NeedsReconnect)
        );
        assert_eq!(
            read_answer(answer(429, Some("7"), ""), GrantProblem::classify).unwrap_err(),
            TokenError::Refused(GrantProblem::Throttled {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert_eq!(
            read_answer(Err(HttpError::TooLarge), GrantProblem::classify).unwrap_err(),
            TokenError::Unreadable
        );
        assert_eq!(
            read_answer(Err(HttpError::TimedOut), GrantProblem::classify).unwrap_err(),
            TokenError::Transport
        );
        assert_eq!(
            read_answer(Err(HttpError::Connect), GrantProblem::classify).unwrap_err(),
            TokenError::Transport
        );
    }
}
