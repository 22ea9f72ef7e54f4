//! The providers the operator configured (`MAILGATE_OAUTH_*`): where admins sign in, and
//! the token requests made with Mailgate's own client (`domain::ports::SignInProviders`).

use secrecy::SecretString;
use url::Url;

use domain::oauth::{ConnectionKind, PkceVerifier, Provider, RefreshedTokens, SignInEndpoint, TokenSet};
use domain::ports::{ProviderFailure, SignInProviders};

use crate::{TokenClient, TokenEndpoint, TokenError};

/// One provider: its sign-in, its token endpoint with Mailgate's client, and its
/// revocation endpoint if it has one.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub sign_in: SignInEndpoint,
    pub token: TokenEndpoint,
    pub revoke_url: Option<Url>,
}

/// Microsoft's and Google's configuration (either may be absent: that provider is off).
#[derive(Debug, Clone)]
pub struct Providers {
    microsoft: Option<ProviderConfig>,
    google: Option<ProviderConfig>,
    client: TokenClient,
}

impl Providers {
    pub fn new(microsoft: Option<ProviderConfig>, google: Option<ProviderConfig>, client: TokenClient) -> Self {
        Self {
            microsoft,
            google,
            client,
        }
    }

    fn config(&self, provider: Provider) -> Option<&ProviderConfig> {
        match provider {
            Provider::Microsoft => self.microsoft.as_ref(),
            Provider::Google => self.google.as_ref(),
            Provider::Generic => None,
        }
    }

    /// Whether any provider is configured.
    pub fn any(&self) -> bool {
        self.microsoft.is_some() || self.google.is_some()
    }
}

fn failure(e: TokenError) -> ProviderFailure {
    match e {
        TokenError::Refused(problem) => ProviderFailure::Refused(problem),
        TokenError::Unreadable | TokenError::Transport => ProviderFailure::Unavailable,
    }
}

#[async_trait::async_trait]
impl SignInProviders for Providers {
    fn endpoint(&self, provider: Provider) -> Option<&SignInEndpoint> {
        self.config(provider).map(|c| &c.sign_in)
    }

    async fn exchange_code(
        &self,
        kind: ConnectionKind,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenSet, ProviderFailure> {
        let config = self.config(kind.provider()).ok_or(ProviderFailure::NotConfigured)?;
        self.client
            .exchange_code(&config.token, code, config.sign_in.redirect_uri(), verifier)
            .await
            .map_err(failure)
    }

    async fn refresh(
        &self,
        kind: ConnectionKind,
        refresh_token: &SecretString,
    ) -> Result<RefreshedTokens, ProviderFailure> {
        let config = self.config(kind.provider()).ok_or(ProviderFailure::NotConfigured)?;
        // Microsoft issues a token for one resource at a time: name the kind's scopes
        // again (Google ignores a scope on refresh; Authlib checks it is granted).
        let scope = kind.scope_parameter();
        self.client
            .refresh(&config.token, refresh_token, Some(&scope))
            .await
            .map_err(failure)
    }

    async fn revoke(&self, kind: ConnectionKind, refresh_token: &SecretString) -> bool {
        let Some(config) = self.config(kind.provider()) else {
            return false;
        };
        match &config.revoke_url {
            Some(url) => self.client.revoke(url, &config.token, refresh_token).await,
            None => false,
        }
    }
}
