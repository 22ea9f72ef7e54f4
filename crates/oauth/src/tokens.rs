//! Access tokens for sending (`domain::ports::AccessTokens`): kept in this process's
//! memory only, refreshed ahead of expiry with one refresh at a time per connection —
//! in this process by a lock per connection, across processes by the store's refresh
//! lease —, the rotated refresh token saved with the lease's end. Also the daily
//! keep-alive that refreshes idle connections before a provider's inactivity limit
//! (Microsoft 90 days, Google 6 months) ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use domain::oauth::{
    ConnectionId, ConnectionKind, ConnectionStatus, DirectoryId, GrantProblem, KEEP_ALIVE_EVERY, MailConnection,
    REFRESH_AHEAD,
};
use domain::ports::{
    AccessToken, AccessTokens, MailConnections, ProviderFailure, RefreshOutcome, RefreshTurn, SignInProviders,
    TokenUnavailable,
};
use domain::tenant::TenantId;

/// How long one refresh may hold a connection's lease (the token request has 10 s).
const LEASE: Duration = Duration::from_secs(30);
/// How often a caller whose connection another process is refreshing looks again.
const BUSY_POLL: Duration = Duration::from_millis(200);

/// The tokens of every connection this process sends through.
pub struct TokenCache {
    providers: Arc<dyn SignInProviders>,
    connections: Arc<dyn MailConnections>,
    /// This process's name as a lease holder.
    holder: String,
    cached: Mutex<HashMap<ConnectionId, Cached>>,
    /// One refresh at a time per connection in this process.
    flights: Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A token in memory, with the tenant it is for and when it was obtained.
struct Cached {
    tenant: TenantId,
    token: AccessToken,
    obtained_at: chrono::DateTime<Utc>,
}

impl Cached {
    fn new(tenant: TenantId, token: AccessToken) -> Self {
        Self {
            tenant,
            token,
            obtained_at: Utc::now(),
        }
    }

    /// Usable until [`REFRESH_AHEAD`] before expiry — or, for a token that lives less
    /// than twice that, until half its life is left (else every send would refresh).
    fn is_fresh(&self, now: chrono::DateTime<Utc>) -> bool {
        let ahead = REFRESH_AHEAD.min((self.token.expires_at - self.obtained_at) / 2);
        now < self.token.expires_at - ahead
    }
}

fn unavailable(problem: GrantProblem) -> TokenUnavailable {
    match problem {
        GrantProblem::NeedsReconnect | GrantProblem::ConsentRequired => TokenUnavailable::NeedsReconnect,
        GrantProblem::Misconfigured => TokenUnavailable::Misconfigured,
        GrantProblem::Throttled { retry_after } => TokenUnavailable::Temporary { retry_after },
        GrantProblem::Temporary => TokenUnavailable::Temporary { retry_after: None },
    }
}

impl TokenCache {
    pub fn new(providers: Arc<dyn SignInProviders>, connections: Arc<dyn MailConnections>) -> Self {
        Self {
            providers,
            connections,
            holder: format!("tokens-{}", uuid::Uuid::new_v4().simple()),
            cached: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, tenant: TenantId, id: ConnectionId) -> Option<AccessToken> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .get(&id)
            .filter(|c| c.tenant == tenant && c.is_fresh(Utc::now()))
            .map(|c| c.token.clone())
    }

    fn flight(&self, id: ConnectionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.entry(id).or_default().clone()
    }

    /// Refreshes `connection`'s tokens under the store's lease, waiting while another
    /// process holds it (it is about to save a rotated refresh token this refresh needs).
    /// The token, and whether the refresh was saved (the lease was still ours).
    async fn refresh(&self, connection: &MailConnection) -> Result<(AccessToken, bool), TokenUnavailable> {
        let (tenant, id) = (connection.tenant_id, connection.id);
        let store = |e: domain::StoreError| {
            tracing::warn!(connection = %id, error = %e, "reading the connection failed");
            TokenUnavailable::Temporary { retry_after: None }
        };
        let give_up = tokio::time::Instant::now() + LEASE + Duration::from_secs(5);
        let refresh_token = loop {
            match self
                .connections
                .begin_refresh(tenant, id, &self.holder, LEASE, Utc::now())
                .await
                .map_err(store)?
            {
                RefreshTurn::Yours(token) => break token,
                RefreshTurn::Gone => return Err(TokenUnavailable::Gone),
                // A signed-in connection always has one: without it, only a new sign-in helps.
                RefreshTurn::NoRefreshToken => return Err(TokenUnavailable::NeedsReconnect),
                RefreshTurn::Busy if tokio::time::Instant::now() < give_up => tokio::time::sleep(BUSY_POLL).await,
                RefreshTurn::Busy => return Err(TokenUnavailable::Temporary { retry_after: None }),
            }
        };
        let answer = self.providers.refresh(connection.kind, &refresh_token).await;
        let (outcome, result) = match answer {
            Ok(refreshed) => {
                let token = AccessToken {
                    kind: connection.kind,
                    mailbox: connection.mailbox.clone(),
                    token: refreshed.tokens.access_token.clone(),
                    expires_at: refreshed.tokens.expires_at,
                };
                (RefreshOutcome::Refreshed(refreshed), Ok(token))
            }
            Err(ProviderFailure::Refused(problem)) => (RefreshOutcome::Refused(problem), Err(unavailable(problem))),
            // Nothing is known of the grant: the lease ends with the status unchanged.
            Err(ProviderFailure::Unavailable) => (
                RefreshOutcome::Refused(GrantProblem::Temporary),
                Err(TokenUnavailable::Temporary { retry_after: None }),
            ),
            Err(ProviderFailure::NotConfigured) => (
                RefreshOutcome::Refused(GrantProblem::Temporary),
                Err(TokenUnavailable::Misconfigured),
            ),
        };
        if matches!(result, Err(TokenUnavailable::Misconfigured)) {
            // The operator's to fix (the grant is fine): say so where operators look.
            tracing::warn!(connection = %id, provider = connection.kind.provider().code(), "the provider refuses Mailgate's own client, or it is no longer configured: check MAILGATE_OAUTH_*; mail through sign-ins waits");
        }
        let saved = match self
            .connections
            .finish_refresh(tenant, id, &self.holder, outcome, Utc::now())
            .await
        {
            Ok(true) => true,
            // The lease ran out and someone else may have refreshed since: the tokens we
            // got may already be replaced. Use this access token (it is valid) but say so.
            Ok(false) => {
                tracing::warn!(connection = %id, "a refresh outlasted its lease; its refresh token was not saved");
                false
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "saving a refresh failed");
                false
            }
        };
        if let Ok(token) = &result {
            self.cached
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Cached::new(tenant, token.clone()));
            tracing::info!(tenant = %tenant, connection = %id, "connection tokens refreshed");
        } else if let Err(why) = &result {
            tracing::info!(tenant = %tenant, connection = %id, ?why, "connection tokens not refreshed");
        }
        result.map(|token| (token, saved))
    }

    /// A token for an app-only connection (no refresh token, nothing to rotate): asked
    /// for anew, the outcome recorded on the connection.
    async fn app_token(&self, connection: &MailConnection) -> Result<AccessToken, TokenUnavailable> {
        let (tenant, id) = (connection.tenant_id, connection.id);
        let answer = if connection.kind == ConnectionKind::Xoauth2ClientCredentials {
            self.tenant_token(connection).await
        } else {
            let directory = connection
                .directory_id
                .as_deref()
                .and_then(|d| DirectoryId::parse(d).ok());
            self.providers
                .app_token(connection.kind, &connection.mailbox, directory.as_ref())
                .await
        };
        // The tenant's own endpoint and client: a refusal is the tenant's setup (it is
        // suspended and told), not the operator's.
        let answer = match answer {
            Err(ProviderFailure::Refused(GrantProblem::Misconfigured))
                if connection.kind == ConnectionKind::Xoauth2ClientCredentials =>
            {
                Err(ProviderFailure::Refused(GrantProblem::NeedsReconnect))
            }
            other => other,
        };
        let (recorded, result) = match answer {
            Ok(tokens) => (
                Some(Ok(())),
                Ok(AccessToken {
                    kind: connection.kind,
                    mailbox: connection.mailbox.clone(),
                    token: tokens.access_token,
                    expires_at: tokens.expires_at,
                }),
            ),
            Err(ProviderFailure::Refused(problem)) => (Some(Err(problem)), Err(unavailable(problem))),
            Err(ProviderFailure::Unavailable) => (None, Err(TokenUnavailable::Temporary { retry_after: None })),
            Err(ProviderFailure::NotConfigured) => (None, Err(TokenUnavailable::Misconfigured)),
        };
        if let Some(outcome) = recorded
            && let Err(e) = self.connections.record_app_token(tenant, id, outcome, Utc::now()).await
        {
            tracing::warn!(connection = %id, error = %e, "recording an app token failed");
        }
        match &result {
            Ok(token) => {
                self.cached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Cached::new(tenant, token.clone()));
            }
            Err(why) => tracing::info!(tenant = %tenant, connection = %id, ?why, "no app token"),
        }
        result
    }

    /// A generic XOAUTH2 connection's token: client credentials at the tenant's endpoint.
    async fn tenant_token(&self, connection: &MailConnection) -> Result<domain::oauth::TokenSet, ProviderFailure> {
        let (Some(url), Some(client_id)) = (&connection.token_url, &connection.client_id) else {
            return Err(ProviderFailure::Refused(GrantProblem::NeedsReconnect));
        };
        let secret = match self
            .connections
            .client_secret(connection.tenant_id, connection.id)
            .await
        {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(ProviderFailure::Refused(GrantProblem::NeedsReconnect)),
            Err(e) => {
                tracing::warn!(connection = %connection.id, error = %e, "reading the client secret failed");
                return Err(ProviderFailure::Unavailable);
            }
        };
        let scope = (!connection.scopes.is_empty()).then(|| connection.scopes.join(" "));
        self.providers
            .tenant_token(url, client_id, &secret, scope.as_deref())
            .await
    }

    /// Refreshes up to `limit` active connections idle for [`KEEP_ALIVE_EVERY`], longest
    /// idle first; returns how many were refreshed.
    pub async fn keep_alive(&self, limit: u64) -> usize {
        let before = Utc::now() - KEEP_ALIVE_EVERY;
        // Only signed-in grants expire when idle; app-only tokens are asked for anew.
        let delegated: Vec<ConnectionKind> = ConnectionKind::ALL.into_iter().filter(|k| k.is_delegated()).collect();
        let idle = match self.connections.idle_since(before, &delegated, limit).await {
            Ok(idle) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "listing idle connections failed");
                return 0;
            }
        };
        let mut refreshed = 0;
        for connection in idle {
            let gate = self.flight(connection.id);
            let _turn = gate.lock().await;
            // Counted only when saved: a row whose refresh did not stick stays idle, and
            // the loop in `spawn_keep_alive` stops at the first pass short of a batch.
            if matches!(self.refresh(&connection).await, Ok((_, true))) {
                refreshed += 1;
            }
        }
        refreshed
    }

    /// Runs [`TokenCache::keep_alive`] every `every` until the process ends.
    pub fn spawn_keep_alive(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let tokens = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tokens) = tokens.upgrade() else { return };
                // A batch at a time until none is left idle.
                while tokens.keep_alive(100).await == 100 {}
            }
        })
    }
}

#[async_trait::async_trait]
impl AccessTokens for TokenCache {
    async fn access_token(&self, tenant: TenantId, id: ConnectionId) -> Result<AccessToken, TokenUnavailable> {
        if let Some(token) = self.fresh(tenant, id) {
            return Ok(token);
        }
        let gate = self.flight(id);
        let _turn = gate.lock().await;
        // Whoever held the turn before us may have refreshed already.
        if let Some(token) = self.fresh(tenant, id) {
            return Ok(token);
        }
        let connection = match self.connections.get(tenant, id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(TokenUnavailable::Gone),
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "reading the connection failed");
                return Err(TokenUnavailable::Temporary { retry_after: None });
            }
        };
        match connection.status {
            ConnectionStatus::Active if !connection.kind.is_delegated() => self.app_token(&connection).await,
            ConnectionStatus::Active => self.refresh(&connection).await.map(|(token, _)| token),
            ConnectionStatus::NeedsReconnect => Err(TokenUnavailable::NeedsReconnect),
            ConnectionStatus::Misconfigured => Err(TokenUnavailable::Misconfigured),
        }
    }

    async fn forget(&self, id: ConnectionId) {
        self.cached.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    async fn remember(&self, tenant: TenantId, id: ConnectionId, token: AccessToken) {
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Cached::new(tenant, token));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use domain::oauth::ConnectionKind;

    fn cached(lifetime: TimeDelta) -> Cached {
        let now = Utc::now();
        Cached {
            tenant: TenantId::generate(),
            token: AccessToken {
                kind: ConnectionKind::GoogleGmailApi,
                mailbox: "a@example.com".into(),
                token: "t".to_owned().into(),
                expires_at: now + lifetime,
            },
            obtained_at: now,
        }
    }

    #[test]
    fn oauth_a_token_is_used_until_five_minutes_before_expiry_or_half_its_short_life() {
        let now = Utc::now();
        let hour = cached(TimeDelta::hours(1));
        assert!(hour.is_fresh(now + TimeDelta::minutes(54)));
        assert!(!hour.is_fresh(now + TimeDelta::minutes(56)));
        let minute = cached(TimeDelta::seconds(60));
        assert!(minute.is_fresh(now + TimeDelta::seconds(29)));
        assert!(!minute.is_fresh(now + TimeDelta::seconds(31)));
    }
}
