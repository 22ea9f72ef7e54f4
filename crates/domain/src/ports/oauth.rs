//! What the OAuth sign-in needs from outside the domain: sealing the `state` (the crypto
//! lives in `persistence`, beside the secrets' AES-256-GCM), recording that a `state`
//! was used, and keeping a tenant's connections with one refresh at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::error::StoreError;
use crate::oauth::{
    AuthorizationState, ConnectionId, ConnectionKind, GrantProblem, MailConnection, RefreshedTokens,
    ReturnUrlAllowList, StateError, StateNonce,
};
use crate::tenant::TenantId;

/// Seals the encoded `state` claims ([`AuthorizationState::to_claims`]) into a
/// URL-safe token and opens it again. Must encrypt *and* authenticate (an AEAD): the
/// claims carry the PKCE verifier, which the browser must not read, and a changed byte
/// must not open.
pub trait StateSeal: Send + Sync + 'static {
    /// The sealed token: URL-safe characters only (it travels as the `state` parameter).
    fn seal(&self, claims: &[u8]) -> String;

    /// The claims, or `None` for anything this seal did not make (tampered, truncated,
    /// another key, not a token at all). Keys that are rotated out still open.
    fn open(&self, token: &str) -> Option<Vec<u8>>;

    /// The `state` parameter for the authorization URL.
    fn seal_state(&self, state: &AuthorizationState) -> String {
        self.seal(&state.to_claims())
    }

    /// The claims of a `state` that came back; [`StateError::Malformed`] when the seal
    /// does not open or the claims are not ours. Then [`AuthorizationState::check`].
    fn open_state(&self, token: &str, allow_list: &ReturnUrlAllowList) -> Result<AuthorizationState, StateError> {
        let bytes = self.open(token).ok_or(StateError::Malformed)?;
        AuthorizationState::from_claims(&bytes, allow_list)
    }
}

/// Single use of a `state`.
#[async_trait::async_trait]
pub trait AuthorizationStateStore: Send + Sync + 'static {
    /// Records the nonce as used, atomically: `true` the first time, `false` if it was
    /// already recorded (a replayed callback, refused). The record may be deleted once
    /// `expires_at` has passed, since an expired `state` is refused anyway.
    async fn mark_state_used(
        &self,
        tenant: TenantId,
        nonce: &StateNonce,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Whose turn it is to refresh a connection's tokens.
#[derive(Debug)]
pub enum RefreshTurn {
    /// The caller holds the refresh lease: here is the current refresh token. It must
    /// call [`MailConnections::finish_refresh`] (or let the lease run out).
    Yours(SecretString),
    /// Another holder's lease is live: wait for its result rather than refresh again
    /// (a second refresh could spend a rotated token the first one is about to save).
    Busy,
    /// No such connection for this tenant.
    Gone,
    /// The connection has no refresh token (the app-only kinds get new tokens with
    /// their own credentials).
    NoRefreshToken,
}

/// How a refresh under a lease ended.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// New tokens; the refresh token is saved when the server sent one.
    Refreshed(RefreshedTokens),
    /// The token endpoint refused; the status follows
    /// [`crate::oauth::ConnectionStatus::after_refusal`].
    Refused(GrantProblem),
}

/// Where a tenant's OAuth grants live: the connection, its sealed refresh token, and the
/// refresh lease that lets one holder across all processes refresh at a time.
#[async_trait::async_trait]
pub trait MailConnections: Send + Sync + 'static {
    /// Records a new `ACTIVE` connection; `refresh_token` is sealed, bound to the new id.
    async fn create(
        &self,
        tenant: TenantId,
        kind: ConnectionKind,
        mailbox: &str,
        scopes: &[String],
        refresh_token: Option<&SecretString>,
        now: DateTime<Utc>,
    ) -> Result<MailConnection, StoreError>;

    /// The tenant's connection `id`; `None` for another tenant's.
    async fn get(&self, tenant: TenantId, id: ConnectionId) -> Result<Option<MailConnection>, StoreError>;

    /// Takes the refresh lease for `lease` from `now` unless another holder's lease is
    /// still live (the same holder may take it again).
    async fn begin_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        holder: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<RefreshTurn, StoreError>;

    /// Ends `holder`'s lease with its outcome, in one write: on `Refreshed` the refresh
    /// token (when `rotated`) and `last_refreshed_at`; on `Refused` the status the
    /// problem leads to. `false` when `holder` no longer holds the lease: nothing is
    /// written.
    async fn finish_refresh(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        holder: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes the connection and its tokens; `false` when the tenant has no such one.
    async fn delete(&self, tenant: TenantId, id: ConnectionId) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::oauth::ConnectionKind;

    /// A stand-in seal: base64url behind a tag (authenticates nothing; the real one is
    /// an AEAD in persistence).
    #[derive(Debug)]
    struct PlainSeal;

    impl StateSeal for PlainSeal {
        fn seal(&self, claims: &[u8]) -> String {
            format!("t1.{}", URL_SAFE_NO_PAD.encode(claims))
        }
        fn open(&self, token: &str) -> Option<Vec<u8>> {
            URL_SAFE_NO_PAD.decode(token.strip_prefix("t1.")?).ok()
        }
    }

    #[test]
    fn oauth_state_round_trips_through_a_seal_and_refuses_what_does_not_open() {
        let now = Utc::now();
        let tenant = TenantId::generate();
        let list = ReturnUrlAllowList::default();
        let state = AuthorizationState::issue(ConnectionKind::GoogleGmailApi, tenant, "admin", None, now);
        let token = PlainSeal.seal_state(&state);
        let back = PlainSeal.open_state(&token, &list).unwrap();
        assert_eq!(back.nonce(), state.nonce());
        assert_eq!(back.check(now, tenant, "admin"), Ok(()));
        for bad in ["", "garbage", "t1.!!", &token[..token.len() - 6]] {
            assert_eq!(
                PlainSeal.open_state(bad, &list).map(|_| ()),
                Err(StateError::Malformed),
                "{bad}"
            );
        }
    }
}
