//! The sign-in `state`: who started the sign-in, for which tenant and kind, with which
//! PKCE verifier, and until when it is good. The domain encodes and checks the claims;
//! the `StateSeal` port encrypts them (`seal_state`, `open_state`), and
//! the `AuthorizationStateStore` port makes each `state` single use.
//!
//! The callback's order: `open_state` (refuses tampering),
//! [`AuthorizationState::check`] (tenant, caller, time), then
//! `mark_state_used(tenant, nonce, expires_at)` — `false` means a replay, refused —, and
//! only then the code exchange with [`AuthorizationState::pkce_verifier`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::kind::ConnectionKind;
use super::pkce::PkceVerifier;
use super::return_url::{ReturnUrl, ReturnUrlAllowList};
use crate::tenant::TenantId;

/// How long a sign-in may take (issue 25: "valid 10 minutes").
pub const STATE_LIFETIME: TimeDelta = TimeDelta::minutes(10);

/// The longest token subject a `state` carries.
const MAX_SUBJECT_LEN: usize = 255;

/// Why a `state` is refused at the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the sign-in took too long; start again")]
    Expired,
    #[error("the sign-in was started for another tenant")]
    OtherTenant,
    #[error("the sign-in was started by someone else")]
    OtherCaller,
    #[error("the sign-in state is not one we issued")]
    Malformed,
}

/// 32 random bytes, base64url: what makes one `state` unique, recorded when used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateNonce(String);

impl StateNonce {
    fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claims of one sign-in. Made by [`AuthorizationState::issue`] when the admin asks
/// for the authorization URL, read back by [`AuthorizationState::open`] at the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationState {
    kind: ConnectionKind,
    tenant: TenantId,
    subject: String,
    nonce: StateNonce,
    pkce_verifier: PkceVerifier,
    return_url: Option<ReturnUrl>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl AuthorizationState {
    /// A new sign-in for `tenant`, started by the caller whose token subject is
    /// `subject`, with a fresh nonce and PKCE verifier; good for [`STATE_LIFETIME`].
    pub fn issue(
        kind: ConnectionKind,
        tenant: TenantId,
        subject: &str,
        return_url: Option<ReturnUrl>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            tenant,
            subject: subject.to_owned(),
            nonce: StateNonce::generate(),
            pkce_verifier: PkceVerifier::generate(),
            return_url,
            issued_at: now,
            expires_at: now + STATE_LIFETIME,
        }
    }

    /// The claims as the bytes a seal encrypts (one spelling, written only here).
    pub fn to_claims(&self) -> Vec<u8> {
        self.encode().into_bytes()
    }

    /// The claims read back from opened bytes, or [`StateError::Malformed`] if they are
    /// not as [`AuthorizationState::to_claims`] writes them. The return URL is checked
    /// against today's allow-list again.
    pub fn from_claims(bytes: &[u8], allow_list: &ReturnUrlAllowList) -> Result<Self, StateError> {
        Self::decode(bytes, allow_list).ok_or(StateError::Malformed)
    }

    /// Whether the callback may go on: it is `now` before expiry, for `tenant`, and from
    /// the caller with token subject `subject`. Single use is checked after this, in the
    /// store.
    pub fn check(&self, now: DateTime<Utc>, tenant: TenantId, subject: &str) -> Result<(), StateError> {
        if self.tenant != tenant {
            return Err(StateError::OtherTenant);
        }
        if self.subject != subject {
            return Err(StateError::OtherCaller);
        }
        if now >= self.expires_at || now < self.issued_at - TimeDelta::minutes(1) {
            return Err(StateError::Expired);
        }
        Ok(())
    }

    pub fn kind(&self) -> ConnectionKind {
        self.kind
    }
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }
    pub fn nonce(&self) -> &StateNonce {
        &self.nonce
    }
    /// For the authorization URL's `code_challenge` and the token request's
    /// `code_verifier`.
    pub fn pkce_verifier(&self) -> &PkceVerifier {
        &self.pkce_verifier
    }
    pub fn return_url(&self) -> Option<&ReturnUrl> {
        self.return_url.as_ref()
    }
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    fn encode(&self) -> String {
        json!({
            "v": 1,
            "kind": self.kind.code(),
            "tenant": self.tenant.to_string(),
            "sub": self.subject,
            "nonce": self.nonce.as_str(),
            "pkce": self.pkce_verifier.expose(),
            "ret": self.return_url.as_ref().map(ReturnUrl::as_str),
            "iat": self.issued_at.timestamp(),
            "exp": self.expires_at.timestamp(),
        })
        .to_string()
    }

    fn decode(bytes: &[u8], allow_list: &ReturnUrlAllowList) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        if v.get("v")?.as_u64()? != 1 {
            return None;
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        let time = |k: &str| {
            v.get(k)
                .and_then(Value::as_i64)
                .and_then(|t| DateTime::from_timestamp(t, 0))
        };
        let subject = text("sub")?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN || subject.chars().any(char::is_control) {
            return None;
        }
        let return_url = match v.get("ret")? {
            Value::Null => None,
            Value::String(s) => Some(allow_list.check(s).ok()?),
            _ => return None,
        };
        let issued_at = time("iat")?;
        let expires_at = time("exp")?;
        if expires_at - issued_at != STATE_LIFETIME {
            return None;
        }
        Some(Self {
            kind: ConnectionKind::from_code(text("kind")?)?,
            tenant: text("tenant")?.parse().ok()?,
            subject: subject.to_owned(),
            nonce: StateNonce::parse(text("nonce")?)?,
            pkce_verifier: PkceVerifier::parse(text("pkce")?).ok()?,
            return_url,
            issued_at,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn allow() -> ReturnUrlAllowList {
        ReturnUrlAllowList::parse(["https://console.example.com/"]).unwrap()
    }

    fn issued(tenant: TenantId) -> AuthorizationState {
        let ret = allow().check("https://console.example.com/mail").unwrap();
        AuthorizationState::issue(
            ConnectionKind::MicrosoftDelegatedSmtp,
            tenant,
            "admin-1",
            Some(ret),
            now(),
        )
    }

    #[test]
    fn claims_read_back_the_same_and_pass_their_own_check() {
        let tenant = TenantId::generate();
        let state = issued(tenant);
        let back = AuthorizationState::from_claims(&state.to_claims(), &allow()).unwrap();
        assert_eq!(back.kind(), ConnectionKind::MicrosoftDelegatedSmtp);
        assert_eq!(back.tenant(), tenant);
        assert_eq!(back.nonce(), state.nonce());
        assert_eq!(back.pkce_verifier().expose(), state.pkce_verifier().expose());
        assert_eq!(
            back.return_url().map(ReturnUrl::as_str),
            Some("https://console.example.com/mail")
        );
        assert_eq!(back.expires_at(), now() + TimeDelta::minutes(10));
        assert_eq!(back.check(now() + TimeDelta::minutes(9), tenant, "admin-1"), Ok(()));
    }

    #[test]
    fn check_refuses_late_foreign_and_other_callers() {
        let tenant = TenantId::generate();
        let state = issued(tenant);
        assert_eq!(
            state.check(now() + STATE_LIFETIME, tenant, "admin-1"),
            Err(StateError::Expired)
        );
        assert_eq!(
            state.check(now() - TimeDelta::minutes(5), tenant, "admin-1"),
            Err(StateError::Expired)
        );
        assert_eq!(
            state.check(now(), TenantId::generate(), "admin-1"),
            Err(StateError::OtherTenant)
        );
        assert_eq!(state.check(now(), tenant, "admin-2"), Err(StateError::OtherCaller));
        assert_eq!(state.check(now(), tenant, "admin-1 "), Err(StateError::OtherCaller));
    }

    #[test]
    fn claims_we_would_not_write_are_malformed() {
        let state = issued(TenantId::generate());
        let json = String::from_utf8(state.to_claims()).unwrap();
        let read =
            |text: &str, list: &ReturnUrlAllowList| AuthorizationState::from_claims(text.as_bytes(), list).map(|_| ());
        assert_eq!(read(&json, &allow()), Ok(()));
        // The return URL is checked against today's list.
        assert_eq!(read(&json, &ReturnUrlAllowList::default()), Err(StateError::Malformed));
        let exp = format!("\"exp\":{}", state.expires_at().timestamp());
        for changed in [
            json.replace(&exp, "\"exp\":4000000000"),
            json.replace("MICROSOFT_DELEGATED_SMTP", "PASSWORD"),
            json.replace("\"v\":1", "\"v\":2"),
            json.replace("admin-1", ""),
            json.replace(state.nonce().as_str(), "short"),
            json.replace(state.pkce_verifier().expose(), "short"),
            "{}".to_owned(),
            "not json".to_owned(),
        ] {
            assert_ne!(changed, json);
            assert_eq!(read(&changed, &allow()), Err(StateError::Malformed), "{changed}");
        }
    }

    #[test]
    fn every_state_gets_its_own_nonce_and_verifier() {
        let tenant = TenantId::generate();
        let (a, b) = (issued(tenant), issued(tenant));
        assert_ne!(a.nonce(), b.nonce());
        assert_ne!(a.pkce_verifier().expose(), b.pkce_verifier().expose());
        assert_eq!(a.nonce().as_str().len(), 43);
    }
}
