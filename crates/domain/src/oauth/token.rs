//! What a token endpoint answers (RFC 6749 §5.1), the rule for keeping refresh tokens,
//! and when to refresh.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::Value;

/// The largest token answer read (the reader caps the body before this).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Assumed when a server leaves out `expires_in` (RFC 6749 §5.1: only RECOMMENDED).
pub const DEFAULT_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// The longest lifetime believed, so a wild `expires_in` cannot keep a token forever.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::hours(24);
/// Refresh when less than this is left (issue 25; FluentSMTP refreshes under 300 s).
pub const REFRESH_AHEAD: TimeDelta = TimeDelta::minutes(5);
/// An idle connection is refreshed once this long after its last refresh, so Microsoft's
/// 90-day and Google's 6-month inactivity limits never apply (facts §1, §2; issue 25).
pub const KEEP_ALIVE_EVERY: TimeDelta = TimeDelta::days(1);

/// Why a token answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenResponseError {
    #[error("the token answer is too large")]
    TooLarge,
    #[error("the token answer is not a JSON object")]
    NotJson,
    #[error("the token answer has no access token")]
    NoAccessToken,
    #[error("the token type is not Bearer")]
    NotBearer,
    #[error("the token lifetime is not a number of seconds")]
    BadExpiresIn,
}

/// Who signed in, from the ID token (OpenID Connect Core §2; Microsoft's `tid`, `oid`).
/// The ID token came straight from the token endpoint over TLS, which OpenID Connect
/// Core §3.1.3.7 (6) accepts in place of checking its signature; its `aud` is not
/// checked here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedInIdentity {
    /// Microsoft: the directory (tenant) id.
    pub directory_id: Option<String>,
    /// Microsoft: the user's object id.
    pub object_id: Option<String>,
    pub subject: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
}

impl SignedInIdentity {
    /// The claims of interest from a JWT's payload, if it is one.
    fn from_id_token(jwt: &str) -> Option<Self> {
        let payload = jwt.split('.').nth(1)?;
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()?;
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| s.len() <= 320 && !s.chars().any(char::is_control))
                .map(str::to_owned)
        };
        Some(Self {
            directory_id: text("tid"),
            object_id: text("oid"),
            subject: text("sub"),
            preferred_username: text("preferred_username"),
            email: text("email"),
        })
    }

    /// Whether the signed-in account is `address` (compared without case). A sender that
    /// is not needs the admin to state send-as rights (issue 25).
    pub fn is_mailbox(&self, address: &str) -> bool {
        [&self.email, &self.preferred_username]
            .into_iter()
            .flatten()
            .any(|a| a.eq_ignore_ascii_case(address))
    }
}

/// A successful token answer.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    pub refresh_token: Option<SecretString>,
    /// The scopes granted; `None` when the server did not say, which means the ones
    /// asked for (RFC 6749 §5.1).
    pub scopes: Option<Vec<String>>,
    pub identity: Option<SignedInIdentity>,
}

impl TokenSet {
    /// Reads a token endpoint's JSON body, received at `now`.
    pub fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Self, TokenResponseError> {
        if body.len() > MAX_TOKEN_RESPONSE {
            return Err(TokenResponseError::TooLarge);
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| TokenResponseError::NotJson)?;
        let v = v.as_object().ok_or(TokenResponseError::NotJson)?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let access = text("access_token").ok_or(TokenResponseError::NoAccessToken)?;
        // RFC 6749 §7.1 / RFC 6750: case-insensitive "Bearer".
        if !text("token_type").is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
            return Err(TokenResponseError::NotBearer);
        }
        let lifetime = match v.get("expires_in") {
            None | Some(Value::Null) => DEFAULT_LIFETIME,
            Some(Value::Number(n)) => seconds(n.as_u64())?,
            // Some servers send it as a string.
            Some(Value::String(s)) => seconds(s.trim().parse().ok())?,
            Some(_) => return Err(TokenResponseError::BadExpiresIn),
        };
        Ok(Self {
            access_token: SecretString::from(access.to_owned()),
            expires_at: now + lifetime,
            refresh_token: text("refresh_token").map(|r| SecretString::from(r.to_owned())),
            scopes: text("scope").map(|s| s.split_ascii_whitespace().map(str::to_owned).collect()),
            identity: text("id_token").and_then(SignedInIdentity::from_id_token),
        })
    }

    /// The answer to a refresh with `used`: a server that sends no refresh token keeps
    /// the old one valid (RFC 6749 §6), so it is kept; one that sends one has rotated it
    /// (Microsoft always does, facts §1), and that one must be saved.
    pub fn after_refresh(self, used: SecretString) -> RefreshedTokens {
        match self.refresh_token.clone() {
            Some(new) => RefreshedTokens {
                refresh_token: new,
                rotated: true,
                tokens: self,
            },
            None => RefreshedTokens {
                refresh_token: used,
                rotated: false,
                tokens: self,
            },
        }
    }
}

fn seconds(n: Option<u64>) -> Result<TimeDelta, TokenResponseError> {
    let n = n.ok_or(TokenResponseError::BadExpiresIn)?;
    let n = i64::try_from(n).unwrap_or(i64::MAX).min(MAX_LIFETIME.num_seconds());
    Ok(TimeDelta::seconds(n))
}

/// The tokens after a refresh, with the refresh token to keep from now on.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    pub tokens: TokenSet,
    /// The refresh token for the next refresh.
    pub refresh_token: SecretString,
    /// The server sent a refresh token. It is **saved every time**, in the same unit of
    /// work that records the refresh, even when it looks unchanged: a peer that did not
    /// save it lost every connection (Nextcloud Mail, facts §3).
    pub rotated: bool,
}

/// Why refresh now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// No access token in memory (a new process, or it was dropped after a refusal).
    NoAccessToken,
    /// Less than [`REFRESH_AHEAD`] left.
    ExpiresSoon,
    /// Idle for [`KEEP_ALIVE_EVERY`].
    KeepAlive,
}

/// Whether to refresh a connection's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPlan {
    Now(RefreshReason),
    /// Nothing to do before this time.
    NotBefore(DateTime<Utc>),
}

impl RefreshPlan {
    /// Before a send: `cached_expires_at` is the expiry of the access token this process
    /// holds, if any.
    pub fn before_send(now: DateTime<Utc>, cached_expires_at: Option<DateTime<Utc>>) -> Self {
        match cached_expires_at {
            None => Self::Now(RefreshReason::NoAccessToken),
            Some(exp) if exp - now < REFRESH_AHEAD => Self::Now(RefreshReason::ExpiresSoon),
            Some(exp) => Self::NotBefore(exp - REFRESH_AHEAD),
        }
    }

    /// For the daily keep-alive job: refresh once [`KEEP_ALIVE_EVERY`] has passed since
    /// the last refresh (or if there never was one).
    pub fn keep_alive(now: DateTime<Utc>, last_refreshed_at: Option<DateTime<Utc>>) -> Self {
        match last_refreshed_at {
            Some(last) if now - last < KEEP_ALIVE_EVERY => Self::NotBefore(last + KEEP_ALIVE_EVERY),
            _ => Self::Now(RefreshReason::KeepAlive),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn jwt(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn parses_a_microsoft_answer_with_identity() {
        let id = jwt(r#"{"tid":"9188040d","oid":"00000000-1","sub":"s","preferred_username":"NoReply@Contoso.com"}"#);
        let body = format!(
            r#"{{"token_type":"Bearer","scope":"https://outlook.office.com/SMTP.Send openid","expires_in":3599,"access_token":"at","refresh_token":"rt","id_token":"{id}"}}"#
        );
        let t = TokenSet::parse(body.as_bytes(), now()).unwrap();
        assert_eq!(t.access_token.expose_secret(), "at");
        assert_eq!(t.refresh_token.as_ref().map(|r| r.expose_secret()), Some("rt"));
        assert_eq!(t.expires_at, now() + TimeDelta::seconds(3599));
        assert_eq!(
            t.scopes.as_deref(),
            Some(&["https://outlook.office.com/SMTP.Send".to_owned(), "openid".to_owned()][..])
        );
        let who = t.identity.unwrap();
        assert_eq!(who.directory_id.as_deref(), Some("9188040d"));
        assert_eq!(who.object_id.as_deref(), Some("00000000-1"));
        assert!(who.is_mailbox("noreply@contoso.com"));
        assert!(!who.is_mailbox("other@contoso.com"));
        assert!(!format!("{:?}", TokenSet::parse(body.as_bytes(), now()).unwrap()).contains("\"at\""));
    }

    #[test]
    fn expires_in_may_be_a_string_missing_or_huge() {
        let at = |e: &str| {
            TokenSet::parse(
                format!(r#"{{"access_token":"a","token_type":"bearer"{e}}}"#).as_bytes(),
                now(),
            )
            .map(|t| t.expires_at - now())
        };
        assert_eq!(at(r#","expires_in":"3600""#), Ok(TimeDelta::seconds(3600)));
        assert_eq!(at(""), Ok(DEFAULT_LIFETIME));
        assert_eq!(at(r#","expires_in":99999999999999"#), Ok(MAX_LIFETIME));
        assert_eq!(at(r#","expires_in":-5"#), Err(TokenResponseError::BadExpiresIn));
        assert_eq!(at(r#","expires_in":"soon""#), Err(TokenResponseError::BadExpiresIn));
        assert_eq!(at(r#","expires_in":true"#), Err(TokenResponseError::BadExpiresIn));
    }

    #[test]
    fn refuses_answers_that_are_not_bearer_tokens() {
        use TokenResponseError::*;
        for (body, why) in [
            (r#"{"token_type":"Bearer"}"#, NoAccessToken),
            (r#"{"access_token":"","token_type":"Bearer"}"#, NoAccessToken),
            (r#"{"access_token":"a","token_type":"mac"}"#, NotBearer),
            (r#"{"access_token":"a"}"#, NotBearer),
            ("[]", NotJson),
            ("<html>", NotJson),
        ] {
            assert_eq!(
                TokenSet::parse(body.as_bytes(), now()).map(|_| ()).unwrap_err(),
                why,
                "{body}"
            );
        }
        let big = format!(
            r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
            "a".repeat(MAX_TOKEN_RESPONSE)
        );
        assert_eq!(
            TokenSet::parse(big.as_bytes(), now()).map(|_| ()).unwrap_err(),
            TooLarge
        );
        // A broken ID token loses the identity, not the tokens.
        let t = TokenSet::parse(br#"{"access_token":"a","token_type":"Bearer","id_token":"x"}"#, now()).unwrap();
        assert!(t.identity.is_none());
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_and_a_rotated_one_is_saved() {
        let kept = TokenSet::parse(br#"{"access_token":"a2","token_type":"Bearer"}"#, now())
            .unwrap()
            .after_refresh(SecretString::from("old"));
        assert!(!kept.rotated);
        assert_eq!(kept.refresh_token.expose_secret(), "old");

        let rotated = TokenSet::parse(
            br#"{"access_token":"a2","token_type":"Bearer","refresh_token":"new"}"#,
            now(),
        )
        .unwrap()
        .after_refresh(SecretString::from("old"));
        assert!(rotated.rotated);
        assert_eq!(rotated.refresh_token.expose_secret(), "new");

        // The same value sent back still counts as sent: saved again, harmless.
        let same = TokenSet::parse(
            br#"{"access_token":"a2","token_type":"Bearer","refresh_token":"old"}"#,
            now(),
        )
        .unwrap()
        .after_refresh(SecretString::from("old"));
        assert!(same.rotated);
    }

    #[test]
    fn refreshes_five_minutes_ahead_and_keeps_idle_connections_alive_daily() {
        use RefreshPlan::*;
        assert_eq!(RefreshPlan::before_send(now(), None), Now(RefreshReason::NoAccessToken));
        let soon = now() + TimeDelta::minutes(4) + TimeDelta::seconds(59);
        assert_eq!(
            RefreshPlan::before_send(now(), Some(soon)),
            Now(RefreshReason::ExpiresSoon)
        );
        assert_eq!(
            RefreshPlan::before_send(now(), Some(now() - TimeDelta::seconds(1))),
            Now(RefreshReason::ExpiresSoon)
        );
        let later = now() + TimeDelta::minutes(60);
        assert_eq!(
            RefreshPlan::before_send(now(), Some(later)),
            NotBefore(now() + TimeDelta::minutes(55))
        );
        assert_eq!(
            RefreshPlan::before_send(now(), Some(now() + TimeDelta::minutes(5))),
            NotBefore(now())
        );

        assert_eq!(RefreshPlan::keep_alive(now(), None), Now(RefreshReason::KeepAlive));
        assert_eq!(
            RefreshPlan::keep_alive(now(), Some(now() - TimeDelta::days(1))),
            Now(RefreshReason::KeepAlive)
        );
        let recent = now() - TimeDelta::hours(3);
        assert_eq!(
            RefreshPlan::keep_alive(now(), Some(recent)),
            NotBefore(recent + TimeDelta::days(1))
        );
    }
}
