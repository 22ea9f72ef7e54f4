//! What the OAuth sign-in needs from outside the domain: sealing the `state` (the crypto
//! lives in `persistence`, beside the secrets' AES-256-GCM), recording that a `state`
//! was used, and keeping a tenant's connections with one refresh at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::error::StoreError;
use crate::oauth::{
    AuthorizationState, ConnectionId, ConnectionKind, DirectoryId, GrantProblem, MailConnection, NewConnection,
    PkceVerifier, Provider, RefreshedTokens, ReturnUrlAllowList, SignInEndpoint, StateError, StateNonce, TokenSet,
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
    /// Records a new `ACTIVE` connection; its refresh token or client secret is sealed,
    /// bound to the new id.
    async fn create(
        &self,
        tenant: TenantId,
        new: NewConnection<'_>,
        now: DateTime<Utc>,
    ) -> Result<MailConnection, StoreError>;

    /// A generic XOAUTH2 connection's client secret; `None`: no such connection or none.
    async fn client_secret(&self, tenant: TenantId, id: ConnectionId) -> Result<Option<SecretString>, StoreError>;

    /// The tenant's connection `id`; `None` for another tenant's.
    async fn get(&self, tenant: TenantId, id: ConnectionId) -> Result<Option<MailConnection>, StoreError>;

    /// The tenant's connections, oldest first.
    async fn list(&self, tenant: TenantId) -> Result<Vec<MailConnection>, StoreError>;

    /// Connections (of any tenant) of `kinds` not refreshed since `before` and still
    /// `ACTIVE`, at most `limit`, longest idle first: the daily keep-alive's work.
    async fn idle_since(
        &self,
        before: DateTime<Utc>,
        kinds: &[ConnectionKind],
        limit: u64,
    ) -> Result<Vec<MailConnection>, StoreError>;

    /// A connection without a refresh token (the app-only kinds) got a token (`Ok`:
    /// `last_refreshed_at`) or was refused (the status the problem leads to). `false`:
    /// no such connection.
    async fn record_app_token(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        outcome: Result<(), GrantProblem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

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

    /// The connection's refresh token, whoever holds the refresh lease: only to revoke it
    /// at the provider right before [`MailConnections::delete`]. `None`: no such
    /// connection, or none stored.
    async fn refresh_token_for_revocation(
        &self,
        tenant: TenantId,
        id: ConnectionId,
    ) -> Result<Option<SecretString>, StoreError>;

    /// Deletes the connection and its tokens; `false` when the tenant has no such one.
    async fn delete(&self, tenant: TenantId, id: ConnectionId) -> Result<bool, StoreError>;
}

/// Why a provider gave no tokens for a code or a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFailure {
    /// The token endpoint refused: what it means for the grant.
    Refused(GrantProblem),
    /// No readable answer (unreachable, timed out, not a token answer): try again later.
    Unavailable,
    /// The operator has not configured this provider (any more).
    NotConfigured,
}

/// The providers the operator configured: where admins sign in, and the token requests
/// made with Mailgate's own client credentials. Implemented by the `oauth` crate.
#[async_trait::async_trait]
pub trait SignInProviders: Send + Sync + 'static {
    /// The provider's sign-in, or `None` when the operator has not configured it.
    fn endpoint(&self, provider: Provider) -> Option<&SignInEndpoint>;

    /// Tokens for the code a sign-in for `kind` came back with (with its PKCE verifier).
    async fn exchange_code(
        &self,
        kind: ConnectionKind,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenSet, ProviderFailure>;

    /// New tokens for a connection's refresh token.
    async fn refresh(
        &self,
        kind: ConnectionKind,
        refresh_token: &SecretString,
    ) -> Result<RefreshedTokens, ProviderFailure>;

    /// Whether tokens for the app-only `kind` can be had: Microsoft's app with a client
    /// secret, or Google's service account, configured by the operator.
    fn offers_app(&self, kind: ConnectionKind) -> bool;

    /// The client id an organisation authorizes for the app-only `kind` (Google's
    /// service account), when configured.
    fn app_client_id(&self, kind: ConnectionKind) -> Option<String>;

    /// A token for an app-only connection: Microsoft client credentials for the
    /// organisation `directory` (`SMTP.SendAsApp`), or Google's JWT bearer grant signed
    /// by the service account with `mailbox` as its subject (domain-wide delegation).
    async fn app_token(
        &self,
        kind: ConnectionKind,
        mailbox: &str,
        directory: Option<&DirectoryId>,
    ) -> Result<TokenSet, ProviderFailure>;

    /// A token from a token endpoint the tenant named (generic XOAUTH2, client
    /// credentials), under the same address guard as the tenant's mail servers.
    async fn tenant_token(
        &self,
        token_url: &str,
        client_id: &str,
        client_secret: &SecretString,
        scope: Option<&str>,
    ) -> Result<TokenSet, ProviderFailure>;

    /// Tells the provider the grant is no longer wanted, where it has a revocation
    /// endpoint (Google; Microsoft has none per app). Best effort: `false` when it did
    /// not answer yes.
    async fn revoke(&self, kind: ConnectionKind, refresh_token: &SecretString) -> bool;
}

/// A token to send with: in memory only, never stored or logged.
#[derive(Clone)]
pub struct AccessToken {
    pub kind: ConnectionKind,
    /// The signed-in mailbox (the XOAUTH2 `user`, the Graph and Gmail user).
    pub mailbox: String,
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("kind", &self.kind)
            .field("mailbox", &self.mailbox)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no token to send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUnavailable {
    /// The connection is gone (disconnected) or is not this tenant's.
    Gone,
    /// The connection needs an admin: reconnect (revoked, expired, no consent).
    NeedsReconnect,
    /// The operator's or the admin's setup is refused (client, scopes, provider off).
    Misconfigured,
    /// Throttled or unavailable for now: try later.
    Temporary { retry_after: Option<Duration> },
}

/// Access tokens for sending, refreshed ahead of expiry, one refresh at a time per
/// connection across processes, the rotated refresh token saved every time.
#[async_trait::async_trait]
pub trait AccessTokens: Send + Sync + 'static {
    /// A token for the tenant's connection `id` with at least a few minutes left.
    async fn access_token(&self, tenant: TenantId, id: ConnectionId) -> Result<AccessToken, TokenUnavailable>;

    /// A server refused the token: drop it, so the next call refreshes.
    async fn forget(&self, id: ConnectionId);

    /// Remembers a token just obtained (by a sign-in), so the first send needs no refresh.
    async fn remember(&self, tenant: TenantId, id: ConnectionId, token: AccessToken);
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
