//! The providers the operator configured (`MAILGATE_OAUTH_*`): where admins sign in, and
//! the token requests made with Mailgate's own client (`domain::ports::SignInProviders`).

use secrecy::SecretString;
use url::Url;

use domain::oauth::{ConnectionKind, DirectoryId, PkceVerifier, Provider, RefreshedTokens, SignInEndpoint, TokenSet};
use domain::ports::{ProviderFailure, SignInProviders};

use crate::{ServiceAccount, TokenClient, TokenEndpoint, TokenError};

/// The placeholder for the organisation in Microsoft's app-only token URL.
pub const DIRECTORY_PLACEHOLDER: &str = "{tenant}";

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
    /// Microsoft app-only: the token URL with `{tenant}` for the organisation.
    microsoft_app_token_url: Option<String>,
    /// Google Workspace domain-wide delegation.
    service_account: Option<std::sync::Arc<ServiceAccount>>,
    /// For token endpoints tenants name: under the tenants' address guard.
    tenant_client: Option<TokenClient>,
}

impl Providers {
    pub fn new(microsoft: Option<ProviderConfig>, google: Option<ProviderConfig>, client: TokenClient) -> Self {
        Self {
            microsoft,
            google,
            client,
            microsoft_app_token_url: None,
            service_account: None,
            tenant_client: None,
        }
    }

    /// Generic XOAUTH2: token endpoints tenants name, asked through `client` (built with
    /// [`TokenClient::for_tenants`]).
    pub fn with_tenant_client(mut self, client: TokenClient) -> Self {
        self.tenant_client = Some(client);
        self
    }

    /// Microsoft app-only tokens (`SMTP.SendAsApp`) from `url_template`, in which
    /// [`DIRECTORY_PLACEHOLDER`] stands for the organisation; needs Microsoft's client
    /// with a secret.
    pub fn with_microsoft_app(mut self, url_template: &str) -> Self {
        self.microsoft_app_token_url = Some(url_template.to_owned());
        self
    }

    /// Google Workspace domain-wide delegation through `account`.
    pub fn with_service_account(mut self, account: std::sync::Arc<ServiceAccount>) -> Self {
        self.service_account = Some(account);
        self
    }

    /// The service account's client id, for the Workspace admin's delegation.
    pub fn service_account_client_id(&self) -> Option<&str> {
        self.service_account.as_deref().map(ServiceAccount::client_id)
    }

    /// Microsoft's token endpoint for the organisation `directory`.
    fn microsoft_app_endpoint(&self, directory: &DirectoryId) -> Option<TokenEndpoint> {
        let template = self.microsoft_app_token_url.as_deref()?;
        let client = &self.microsoft.as_ref()?.token;
        if !client.has_secret() {
            return None;
        }
        client
            .at(&template.replace(DIRECTORY_PLACEHOLDER, directory.as_str()))
            .ok()
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

    fn offers_app(&self, kind: ConnectionKind) -> bool {
        match kind {
            ConnectionKind::MicrosoftAppSmtp => {
                self.microsoft_app_token_url.is_some() && self.microsoft.as_ref().is_some_and(|m| m.token.has_secret())
            }
            ConnectionKind::GoogleDomainWide => self.service_account.is_some(),
            _ => false,
        }
    }

    fn app_client_id(&self, kind: ConnectionKind) -> Option<String> {
        match kind {
            ConnectionKind::GoogleDomainWide => self.service_account_client_id().map(str::to_owned),
            ConnectionKind::MicrosoftAppSmtp => self.microsoft.as_ref().map(|m| m.token.client_id().to_owned()),
            _ => None,
        }
    }

    async fn app_token(
        &self,
        kind: ConnectionKind,
        mailbox: &str,
        directory: Option<&DirectoryId>,
    ) -> Result<TokenSet, ProviderFailure> {
        match kind {
            ConnectionKind::MicrosoftAppSmtp => {
                let endpoint = directory
                    .and_then(|d| self.microsoft_app_endpoint(d))
                    .ok_or(ProviderFailure::NotConfigured)?;
                self.client
                    .client_credentials(&endpoint, &kind.scope_parameter())
                    .await
                    .map_err(failure)
            }
            ConnectionKind::GoogleDomainWide => {
                let account = self.service_account.as_deref().ok_or(ProviderFailure::NotConfigured)?;
                let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
                let assertion = account
                    .assertion(mailbox, &kind.scope_parameter(), now)
                    .ok_or(ProviderFailure::NotConfigured)?;
                self.client
                    .jwt_bearer(account.token_endpoint(), &assertion, None)
                    .await
                    .map_err(failure)
            }
            _ => Err(ProviderFailure::NotConfigured),
        }
    }

    async fn tenant_token(
        &self,
        token_url: &str,
        client_id: &str,
        client_secret: &SecretString,
        scope: Option<&str>,
    ) -> Result<TokenSet, ProviderFailure> {
        let client = self.tenant_client.as_ref().ok_or(ProviderFailure::NotConfigured)?;
        let endpoint = TokenEndpoint::new(token_url, client_id, crate::ClientAuth::Secret(client_secret.clone()))
            .map_err(|_| ProviderFailure::Refused(domain::oauth::GrantProblem::Misconfigured))?;
        client.client_credentials_with(&endpoint, scope).await.map_err(failure)
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
