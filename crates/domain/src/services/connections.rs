//! Sending from a Microsoft 365 or Google mailbox without a password (issue 25): the
//! operations an admin runs — start a sign-in, complete it, list and disconnect the
//! tenant's connections. A completed sign-in saves settings that use the connection, as
//! any save does (plan gate, audit, pending until a test mail proves them).
//!
//! Who completes a sign-in: the provider sends the browser back to Mailgate's callback,
//! which hands `state` and `code` to the page the sign-in started from (the console or an
//! allow-listed return URL); that page calls [`ConnectionService::complete`] with the
//! admin's own token. So a sign-in completes only for the tenant *and the caller* that
//! started it: a link to someone else's sign-in (a victim completing an attacker's
//! request, which would give the attacker's tenant the victim's mailbox) is refused.

use std::sync::Arc;

use chrono::Utc;

use crate::access::Caller;
use crate::error::{Error, FieldCode, FieldError, Result};
use crate::oauth::{
    AuthorizationState, ConnectionId, ConnectionKind, MailConnection, NewConnection, Provider, ReturnUrlAllowList,
    StateError, TokenSet,
};
use crate::plan::sender_override_permit;
use crate::ports::{
    AccessToken, AccessTokens, AuthorizationStateStore, MailConnections, ProviderFailure, SignInProviders, StateSeal,
};
use crate::server::ServerKind;
use crate::services::{SavedSettings, TenantService};
use crate::settings::MailSettingsDraft;
use crate::tenant::TenantId;

/// What the admin's browser opens to sign in.
#[derive(Debug, Clone)]
pub struct SignInStart {
    pub authorization_url: String,
    /// Microsoft: the admin-consent URL to forward when the organisation blocks user
    /// consent.
    pub admin_consent_url: Option<String>,
    pub expires_at: chrono::DateTime<Utc>,
}

/// A completed sign-in: the connection, and the settings saved to use it.
#[derive(Debug, Clone)]
pub struct CompletedSignIn {
    pub connection: MailConnection,
    pub saved: Option<SavedSettings>,
}

/// What an admin of the organisation does before an app-only connection works: Microsoft's
/// admin consent and the Exchange Online PowerShell lines, pre-filled; Google's
/// domain-wide delegation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSetup {
    /// Microsoft: the admin-consent URL for the app's `SMTP.SendAsApp`.
    pub admin_consent_url: Option<String>,
    /// The client id the organisation authorizes (Microsoft's app id, or the service
    /// account's client id for Google's domain-wide delegation).
    pub client_id: Option<String>,
    /// The scopes to grant.
    pub scopes: Vec<String>,
    /// Exchange Online PowerShell, one command per line (Microsoft), with the mailbox
    /// filled in; `<…>` marks what only the organisation's admin can read (the enterprise
    /// application's object id).
    pub commands: Vec<String>,
}

/// A generic XOAUTH2 connection as the form sends it: the tenant's token endpoint and
/// client (as Keycloak 26.2 offers for SMTP), unchecked.
#[derive(Debug, Clone)]
pub struct TokenUrlDraft {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: secrecy::SecretString,
    pub scope: Option<String>,
    pub mailbox: String,
}

/// The longest client id, secret and scope taken.
const MAX_CLIENT_ID: usize = 255;
const MAX_CLIENT_SECRET: usize = 4096;
const MAX_SCOPE: usize = 1024;

/// The app-only kinds an admin of the organisation sets up (no one signs in).
pub const APP_KINDS: [ConnectionKind; 2] = [ConnectionKind::MicrosoftAppSmtp, ConnectionKind::GoogleDomainWide];

/// The kinds a tenant admin can connect by signing in today.
pub const SIGN_IN_KINDS: [ConnectionKind; 3] = [
    ConnectionKind::MicrosoftDelegatedGraph,
    ConnectionKind::MicrosoftDelegatedSmtp,
    ConnectionKind::GoogleGmailApi,
];

/// Microsoft's sending limit, 30 messages a minute per mailbox, as a send interval.
const MICROSOFT_INTERVAL_MS: i64 = 2000;

/// The sign-in operations, on the tenant service's storage.
#[derive(Clone)]
pub struct ConnectionService {
    tenants: Arc<TenantService>,
    providers: Arc<dyn SignInProviders>,
    seal: Arc<dyn StateSeal>,
    states: Arc<dyn AuthorizationStateStore>,
    connections: Arc<dyn MailConnections>,
    tokens: Arc<dyn AccessTokens>,
    return_urls: ReturnUrlAllowList,
}

impl std::fmt::Debug for ConnectionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionService").finish_non_exhaustive()
    }
}

fn field(name: &'static str, code: FieldCode) -> Error {
    Error::Validation(vec![FieldError::new(name, code)])
}

impl ConnectionService {
    pub fn new(
        tenants: Arc<TenantService>,
        providers: Arc<dyn SignInProviders>,
        seal: Arc<dyn StateSeal>,
        states: Arc<dyn AuthorizationStateStore>,
        connections: Arc<dyn MailConnections>,
        tokens: Arc<dyn AccessTokens>,
        return_urls: ReturnUrlAllowList,
    ) -> Self {
        Self {
            tenants,
            providers,
            seal,
            states,
            connections,
            tokens,
            return_urls,
        }
    }

    /// Whether the operator set up the app-only `kind`.
    pub fn offers_app(&self, kind: ConnectionKind) -> bool {
        self.providers.offers_app(kind)
    }

    /// Whether the operator set up sign-in with `provider`.
    pub fn is_configured(&self, provider: Provider) -> bool {
        self.providers.endpoint(provider).is_some()
    }

    /// Starts a sign-in for `kind`: the authorization URL with a sealed, single-use
    /// `state` bound to this tenant and caller, good for 10 minutes.
    pub async fn start(
        &self,
        caller: &Caller,
        tenant: TenantId,
        kind: ConnectionKind,
        return_url: Option<&str>,
    ) -> Result<SignInStart> {
        caller.require_settings_editor(tenant)?;
        let record = self.tenants.store().tenant(tenant).await?.ok_or(Error::NotFound)?;
        sender_override_permit(record.tenant.plan)?;
        if !SIGN_IN_KINDS.contains(&kind) {
            return Err(field("kind", FieldCode::InvalidFormat));
        }
        let return_url = match return_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(raw) => Some(
                self.return_urls
                    .check(raw)
                    .map_err(|_| field("returnUrl", FieldCode::ReturnUrlNotAllowed))?,
            ),
            None => None,
        };
        let endpoint = self
            .providers
            .endpoint(kind.provider())
            .ok_or_else(|| field("kind", FieldCode::SignInNotConfigured))?;
        let state = AuthorizationState::issue(kind, tenant, caller.subject(), return_url, Utc::now());
        let login_hint = record
            .settings
            .as_ref()
            .map(|s| s.settings.from_address().as_str().to_owned());
        let sealed = self.seal.seal_state(&state);
        Ok(SignInStart {
            authorization_url: endpoint.authorization_url(
                kind,
                &sealed,
                &state.pkce_verifier().challenge(),
                login_hint.as_deref(),
            ),
            admin_consent_url: endpoint.admin_consent_url(kind),
            expires_at: state.expires_at(),
        })
    }

    /// Completes a sign-in with what the callback received: checks the `state` (sealed by
    /// us, not expired, this tenant, this caller, never used), exchanges the code, stores
    /// the connection and saves settings that send through it — keeping the current
    /// sender, name and server where there are settings. If the save is refused, the
    /// connection is removed again: nothing partial stays.
    pub async fn complete(
        &self,
        caller: &Caller,
        tenant: TenantId,
        state: &str,
        code: &str,
        from_address: Option<&str>,
    ) -> Result<CompletedSignIn> {
        caller.require_settings_editor(tenant)?;
        let now = Utc::now();
        let signed = self
            .seal
            .open_state(state.trim(), &self.return_urls)
            .map_err(|_| field("state", FieldCode::SignInInvalid))?;
        signed.check(now, tenant, caller.subject()).map_err(|e| match e {
            StateError::Expired => field("state", FieldCode::SignInExpired),
            _ => field("state", FieldCode::SignInInvalid),
        })?;
        let code = code.trim();
        if code.is_empty() || code.len() > 4096 || code.chars().any(char::is_control) {
            return Err(field("code", FieldCode::InvalidFormat));
        }
        if !self
            .states
            .mark_state_used(tenant, signed.nonce(), signed.expires_at())
            .await?
        {
            return Err(field("state", FieldCode::SignInInvalid));
        }
        let kind = signed.kind();
        let tokens = self
            .providers
            .exchange_code(kind, code, signed.pkce_verifier())
            .await
            .map_err(|f| match f {
                ProviderFailure::Refused(crate::oauth::GrantProblem::ConsentRequired) => {
                    field("code", FieldCode::ConsentRequired)
                }
                ProviderFailure::Refused(_) => field("code", FieldCode::SignInRefused),
                ProviderFailure::NotConfigured => field("kind", FieldCode::SignInNotConfigured),
                ProviderFailure::Unavailable => Error::TimedOut,
            })?;
        let mailbox = signed_in_mailbox(&tokens).ok_or_else(|| field("code", FieldCode::MailboxUnknown))?;
        // The organisation the account belongs to (Microsoft's `tid`, from the ID token the
        // token endpoint sent): what later proves this tenant may set up app-only access
        // for that organisation.
        let organisation = tokens
            .identity
            .as_ref()
            .and_then(|i| i.directory_id.as_deref())
            .and_then(|d| crate::oauth::DirectoryId::parse(d).ok());
        let scopes = tokens
            .scopes
            .clone()
            .unwrap_or_else(|| kind.scopes().iter().map(|s| (*s).to_owned()).collect());
        let connection = self
            .connections
            .create(
                tenant,
                NewConnection {
                    kind,
                    mailbox: &mailbox,
                    scopes: &scopes,
                    directory: organisation.as_ref(),
                    refresh_token: tokens.refresh_token.as_ref(),
                    client: None,
                },
                now,
            )
            .await?;
        let record = self.tenants.store().tenant(tenant).await?.ok_or(Error::NotFound)?;
        let current = record.settings.as_ref().map(|s| &s.settings);
        self.put_to_use(caller, tenant, connection, &tokens, current, from_address)
            .await
    }

    /// What the organisation's admin must do before an app-only connection of `kind` for
    /// `mailbox` works (shown before [`ConnectionService::connect_app`]).
    pub async fn app_setup(
        &self,
        caller: &Caller,
        tenant: TenantId,
        kind: ConnectionKind,
        mailbox: &str,
    ) -> Result<AppSetup> {
        caller.require_settings_editor(tenant)?;
        if !APP_KINDS.contains(&kind) {
            return Err(field("kind", FieldCode::InvalidFormat));
        }
        if !self.providers.offers_app(kind) {
            return Err(field("kind", FieldCode::SignInNotConfigured));
        }
        let mailbox = crate::values::EmailAddress::parse(mailbox.trim())
            .map_err(|e| Error::Validation(vec![FieldError::new("mailbox", e)]))?;
        let scopes: Vec<String> = kind.scopes().iter().map(|s| (*s).to_owned()).collect();
        Ok(match kind.provider() {
            Provider::Microsoft => {
                let endpoint = self.providers.endpoint(Provider::Microsoft);
                let app_id = endpoint.map(|e| e.client_id().to_owned());
                let id = app_id.clone().unwrap_or_default();
                let m = mailbox.as_str().replace('\'', "''");
                // Source: office-developer-exchange-docs, "Authenticate an IMAP, POP or
                // SMTP connection using OAuth", app-only steps (facts §1).
                AppSetup {
                    admin_consent_url: endpoint.and_then(|e| e.admin_consent_url(kind)),
                    client_id: app_id,
                    scopes,
                    commands: vec![
                        "Install-Module -Name ExchangeOnlineManagement".to_owned(),
                        "Connect-ExchangeOnline".to_owned(),
                        format!(
                            "New-ServicePrincipal -AppId {id} -ObjectId <enterprise application object ID> -DisplayName \"Mailgate\""
                        ),
                        // Single quotes: PowerShell expands nothing inside them (an address
                        // may hold `$` or a backtick); a quote is doubled.
                        format!(
                            "Add-MailboxPermission -Identity '{m}' -User <enterprise application object ID> -AccessRights FullAccess"
                        ),
                        format!("Set-CASMailbox -Identity '{m}' -SmtpClientAuthenticationDisabled $false"),
                    ],
                }
            }
            Provider::Google | Provider::Generic => AppSetup {
                admin_consent_url: None,
                client_id: self.providers.app_client_id(kind),
                scopes,
                commands: Vec::new(),
            },
        })
    }

    /// Connects `mailbox` with an app-only grant the organisation's admin set up
    /// ([`ConnectionService::app_setup`]): a first token is asked for at once — so a
    /// missing consent, service principal or delegation is said now, and nothing is
    /// stored —, then the connection is stored and settings that send through it are saved
    /// as [`ConnectionService::complete`] does.
    pub async fn connect_app(
        &self,
        caller: &Caller,
        tenant: TenantId,
        kind: ConnectionKind,
        mailbox: &str,
        directory: Option<&str>,
    ) -> Result<CompletedSignIn> {
        caller.require_settings_editor(tenant)?;
        let record = self.tenants.store().tenant(tenant).await?.ok_or(Error::NotFound)?;
        sender_override_permit(record.tenant.plan)?;
        if !APP_KINDS.contains(&kind) {
            return Err(field("kind", FieldCode::InvalidFormat));
        }
        let mut errors = Vec::new();
        let mailbox = crate::values::EmailAddress::parse(mailbox.trim())
            .map_err(|e| errors.push(FieldError::new("mailbox", e)))
            .ok();
        let directory = match (kind, directory.map(str::trim).filter(|d| !d.is_empty())) {
            (ConnectionKind::MicrosoftAppSmtp, Some(raw)) => crate::oauth::DirectoryId::parse(raw)
                .map_err(|e| errors.push(FieldError::new("directoryId", e)))
                .ok(),
            (ConnectionKind::MicrosoftAppSmtp, None) => {
                errors.push(FieldError::new("directoryId", FieldCode::Required));
                None
            }
            _ => None,
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let Some(mailbox) = mailbox else {
            return Err(field("mailbox", FieldCode::Required));
        };
        if !self.providers.offers_app(kind) {
            return Err(field("kind", FieldCode::SignInNotConfigured));
        }
        // App-only access reaches every mailbox the organisation granted to Mailgate's one
        // app (or service account): a tenant may use it only for an organisation one of
        // its admins proved to belong to, by signing in with an account of it. Otherwise
        // any tenant could send as another organisation's mailboxes.
        self.require_own_organisation(tenant, kind, &mailbox, directory.as_ref())
            .await?;
        let tokens = self
            .providers
            .app_token(kind, mailbox.as_str(), directory.as_ref())
            .await
            .map_err(|f| match f {
                // Not consented, no service principal, no delegation for this client.
                ProviderFailure::Refused(
                    crate::oauth::GrantProblem::Throttled { .. } | crate::oauth::GrantProblem::Temporary,
                )
                | ProviderFailure::Unavailable => Error::TimedOut,
                // The platform's own client or key is refused: nothing the tenant can fix.
                ProviderFailure::Refused(crate::oauth::GrantProblem::Misconfigured)
                | ProviderFailure::NotConfigured => field("kind", FieldCode::SignInNotConfigured),
                ProviderFailure::Refused(_) => field("kind", FieldCode::ConsentRequired),
            })?;
        let now = Utc::now();
        let scopes = tokens
            .scopes
            .clone()
            .unwrap_or_else(|| kind.scopes().iter().map(|s| (*s).to_owned()).collect());
        let connection = self
            .connections
            .create(
                tenant,
                NewConnection {
                    kind,
                    mailbox: mailbox.as_str(),
                    scopes: &scopes,
                    directory: directory.as_ref(),
                    refresh_token: None,
                    client: None,
                },
                now,
            )
            .await?;
        self.put_to_use(
            caller,
            tenant,
            connection,
            &tokens,
            record.settings.as_ref().map(|s| &s.settings),
            None,
        )
        .await
    }

    /// Whether `tenant` proved it belongs to the organisation an app-only connection
    /// would send for: Microsoft — one of its signed-in Microsoft connections is of the
    /// directory `directory` (the ID token's `tid`); Google — one of its signed-in Google
    /// connections is a mailbox of `mailbox`'s domain (Google verified that address).
    async fn require_own_organisation(
        &self,
        tenant: TenantId,
        kind: ConnectionKind,
        mailbox: &crate::values::EmailAddress,
        directory: Option<&crate::oauth::DirectoryId>,
    ) -> Result<()> {
        let signed_in: Vec<MailConnection> = self
            .connections
            .list(tenant)
            .await?
            .into_iter()
            .filter(|c| c.kind.is_delegated() && c.kind.provider() == kind.provider())
            .collect();
        let domain_of = |address: &str| address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        let proven = match kind {
            ConnectionKind::MicrosoftAppSmtp => {
                directory.is_some_and(|d| signed_in.iter().any(|c| c.directory_id.as_deref() == Some(d.as_str())))
            }
            ConnectionKind::GoogleDomainWide => {
                let wanted = domain_of(mailbox.as_str());
                signed_in
                    .iter()
                    .any(|c| wanted.is_some() && domain_of(&c.mailbox) == wanted)
            }
            _ => false,
        };
        if proven {
            Ok(())
        } else {
            let at = if kind == ConnectionKind::MicrosoftAppSmtp {
                "directoryId"
            } else {
                "mailbox"
            };
            Err(field(at, FieldCode::OrganisationNotProven))
        }
    }

    /// Connects the tenant's own token endpoint (generic XOAUTH2, client credentials) for
    /// `mailbox` on the server its settings already name: the URL is checked like the
    /// tenant's mail servers (no internal address), a first token is asked for at once
    /// (refused: `SIGN_IN_REFUSED` on `clientSecret`, nothing stored), the client secret
    /// is sealed, and the settings are saved to authenticate with XOAUTH2.
    pub async fn connect_token_url(
        &self,
        caller: &Caller,
        tenant: TenantId,
        draft: &TokenUrlDraft,
    ) -> Result<CompletedSignIn> {
        use secrecy::ExposeSecret as _;
        caller.require_settings_editor(tenant)?;
        let record = self.tenants.store().tenant(tenant).await?.ok_or(Error::NotFound)?;
        sender_override_permit(record.tenant.plan)?;
        let mut errors = Vec::new();
        let url = token_url(&draft.token_url)
            .map_err(|code| errors.push(FieldError::new("tokenUrl", code)))
            .ok();
        let text = |raw: &str, max: usize| -> std::result::Result<String, FieldCode> {
            let raw = raw.trim();
            if raw.is_empty() {
                Err(FieldCode::Required)
            } else if raw.chars().count() > max {
                Err(FieldCode::TooLong)
            } else if raw.chars().any(char::is_control) {
                Err(FieldCode::ControlCharacters)
            } else {
                Ok(raw.to_owned())
            }
        };
        let client_id = text(&draft.client_id, MAX_CLIENT_ID)
            .map_err(|c| errors.push(FieldError::new("clientId", c)))
            .ok();
        let secret = text(draft.client_secret.expose_secret(), MAX_CLIENT_SECRET)
            .map_err(|c| errors.push(FieldError::new("clientSecret", c)))
            .ok()
            .map(secrecy::SecretString::from);
        let scope = match draft.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => text(raw, MAX_SCOPE)
                .map_err(|c| errors.push(FieldError::new("scope", c)))
                .ok(),
            None => None,
        };
        let mailbox = crate::values::EmailAddress::parse(draft.mailbox.trim())
            .map_err(|e| errors.push(FieldError::new("mailbox", e)))
            .ok();
        let (Some(url), Some(client_id), Some(secret), Some(mailbox), true) =
            (url, client_id, secret, mailbox, errors.is_empty())
        else {
            return Err(Error::Validation(errors));
        };
        // The tokens go to the tenant's own server: it must be saved first (a custom one,
        // encrypted), before the tenant's endpoint is asked for anything.
        let own_server = record.settings.as_ref().is_some_and(|s| {
            s.settings.server_kind() == ServerKind::Custom
                && s.settings.encryption() != crate::settings::Encryption::None
        });
        if !own_server {
            return Err(field("tokenUrl", FieldCode::OwnServerRequired));
        }
        if let Some(host) = url
            .host_str()
            .and_then(|h| crate::values::Host::parse(h.trim_matches(['[', ']'])).ok())
            && self
                .tenants
                .mailer()
                .check_host(&host, url.port_or_known_default().unwrap_or(443))
                .await
                == crate::ports::HostCheck::Forbidden
        {
            return Err(field("tokenUrl", FieldCode::ForbiddenAddress));
        }
        let tokens = self
            .providers
            .tenant_token(url.as_str(), &client_id, &secret, scope.as_deref())
            .await
            .map_err(|f| match f {
                ProviderFailure::Refused(
                    crate::oauth::GrantProblem::Throttled { .. } | crate::oauth::GrantProblem::Temporary,
                )
                | ProviderFailure::Unavailable => Error::TimedOut,
                ProviderFailure::Refused(_) => field("clientSecret", FieldCode::SignInRefused),
                ProviderFailure::NotConfigured => field("tokenUrl", FieldCode::SignInNotConfigured),
            })?;
        let kind = ConnectionKind::Xoauth2ClientCredentials;
        let scopes: Vec<String> = scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let connection = self
            .connections
            .create(
                tenant,
                NewConnection {
                    kind,
                    mailbox: mailbox.as_str(),
                    scopes: &scopes,
                    directory: None,
                    refresh_token: None,
                    client: Some(crate::oauth::ClientCredentials {
                        token_url: url.as_str(),
                        client_id: &client_id,
                        client_secret: &secret,
                    }),
                },
                Utc::now(),
            )
            .await?;
        self.put_to_use(
            caller,
            tenant,
            connection,
            &tokens,
            record.settings.as_ref().map(|s| &s.settings),
            None,
        )
        .await
    }

    /// Puts a connection just stored to use: its first token kept in memory, then
    /// settings that send through it saved as any save (`from_address` as the sender when
    /// given); a reconnect replaces the mailbox's older connections. If the save is
    /// refused, the connection is removed again: nothing partial stays.
    async fn put_to_use(
        &self,
        caller: &Caller,
        tenant: TenantId,
        connection: MailConnection,
        tokens: &TokenSet,
        current: Option<&crate::settings::MailSettings>,
        from_address: Option<&str>,
    ) -> Result<CompletedSignIn> {
        self.tokens
            .remember(
                tenant,
                connection.id,
                AccessToken {
                    kind: connection.kind,
                    mailbox: connection.mailbox.clone(),
                    token: tokens.access_token.clone(),
                    expires_at: tokens.expires_at,
                },
            )
            .await;
        let mut draft = draft_for(&connection, current);
        if let Some(from) = from_address.map(str::trim).filter(|f| !f.is_empty()) {
            draft.from_address = Some(from.to_owned());
        }
        match self.tenants.update_mail_settings(caller, tenant, &draft, None).await {
            Ok(saved) => {
                self.drop_replaced(tenant, &connection).await?;
                Ok(CompletedSignIn { connection, saved })
            }
            Err(e) => {
                let _ = self.connections.delete(tenant, connection.id).await;
                self.tokens.forget(connection.id).await;
                Err(e)
            }
        }
    }

    /// A new sign-in of a mailbox replaces the tenant's older connections of that mailbox
    /// with the same provider (a reconnect): they are deleted, not revoked — at Google a
    /// revocation would end the new grant too.
    async fn drop_replaced(&self, tenant: TenantId, new: &MailConnection) -> Result<()> {
        for old in self.connections.list(tenant).await? {
            if old.id != new.id
                && old.kind.provider() == new.kind.provider()
                && old.mailbox.eq_ignore_ascii_case(&new.mailbox)
            {
                self.connections.delete(tenant, old.id).await?;
                self.tokens.forget(old.id).await;
            }
        }
        Ok(())
    }

    /// The tenant's connections.
    pub async fn list(&self, caller: &Caller, tenant: TenantId) -> Result<Vec<MailConnection>> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        Ok(self.connections.list(tenant).await?)
    }

    /// One of the tenant's connections.
    pub async fn get(&self, caller: &Caller, tenant: TenantId, id: ConnectionId) -> Result<Option<MailConnection>> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        Ok(self.connections.get(tenant, id).await?)
    }

    /// Removes a connection and its tokens (revoked at the provider where it can be).
    /// Settings that send through it are cleared first, so the tenant's mail goes
    /// through the platform default rather than failing. `false`: no such connection.
    pub async fn disconnect(&self, caller: &Caller, tenant: TenantId, id: ConnectionId) -> Result<bool> {
        caller.require_settings_editor(tenant)?;
        let Some(connection) = self.connections.get(tenant, id).await? else {
            return Ok(false);
        };
        let record = self.tenants.store().tenant(tenant).await?.ok_or(Error::NotFound)?;
        if record
            .settings
            .as_ref()
            .is_some_and(|s| s.settings.connection() == Some(id))
        {
            self.tenants.clear_mail_settings(caller, tenant, None).await?;
        }
        // Read whoever holds the refresh lease (a send or the keep-alive may): the grant is
        // revoked at the provider even then.
        let refresh_token = self.connections.refresh_token_for_revocation(tenant, id).await?;
        let deleted = self.connections.delete(tenant, id).await?;
        self.tokens.forget(id).await;
        // Best effort: the tokens are deleted here whatever the provider answers (the
        // `oauth` crate logs a revocation that did not go through).
        if let Some(token) = refresh_token {
            self.providers.revoke(connection.kind, &token).await;
        }
        Ok(deleted)
    }
}

/// A token endpoint a tenant names: https (http only on loopback, for development and
/// tests — the guard refuses loopback unless the operator allows private hosts), with a
/// host, and no user name, password or fragment.
fn token_url(raw: &str) -> std::result::Result<url::Url, FieldCode> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(FieldCode::Required);
    }
    if raw.len() > 2048 {
        return Err(FieldCode::TooLong);
    }
    let url = url::Url::parse(raw).map_err(|_| FieldCode::InvalidFormat)?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(FieldCode::InvalidFormat);
    }
    Ok(url)
}

/// The mailbox the sign-in was for: the ID token's e-mail, else its preferred user name
/// when that is an address (Microsoft's UPN).
fn signed_in_mailbox(tokens: &TokenSet) -> Option<String> {
    let identity = tokens.identity.as_ref()?;
    [&identity.email, &identity.preferred_username]
        .into_iter()
        .flatten()
        .find(|a| crate::values::EmailAddress::parse(a).is_ok())
        .cloned()
}

/// Settings that send through `connection`: the current sender, name, interval and EHLO
/// name kept, and the server too when the tenant already names one for this provider's
/// SMTP; otherwise the provider's preset. The signed-in mailbox is the user name (the
/// XOAUTH2 `user`) and, without settings, the sender.
fn draft_for(connection: &MailConnection, current: Option<&crate::settings::MailSettings>) -> MailSettingsDraft {
    let preset = match connection.kind.provider() {
        Provider::Google => ServerKind::GoogleWorkspace,
        Provider::Microsoft => ServerKind::Microsoft365,
        // The tenant's own server: only the one it already saved.
        Provider::Generic => ServerKind::Custom,
    };
    let mut draft = match current {
        Some(s) => {
            let mut d = s.to_draft();
            d.password = None;
            d.pop_before_smtp = None;
            d
        }
        None => MailSettingsDraft {
            server_kind: Some(preset),
            from_address: Some(connection.mailbox.clone()),
            ..MailSettingsDraft::default()
        },
    };
    // A preset of another provider (or a password preset) gives way to this provider's.
    if preset != ServerKind::Custom
        && current.is_some_and(|s| s.server_kind() != ServerKind::Custom && s.server_kind() != preset)
    {
        draft.server_kind = Some(preset);
    }
    // Microsoft takes about 30 messages a minute per mailbox (facts §1): pace at most that.
    if connection.kind.provider() == Provider::Microsoft {
        draft.send_interval_ms = Some(draft.send_interval_ms.unwrap_or(0).max(MICROSOFT_INTERVAL_MS));
    }
    draft.smtp_auth = Some(true);
    draft.username = Some(connection.mailbox.clone());
    draft.connection_id = Some(connection.id.to_string());
    draft
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::MailSettings;

    fn connection(kind: ConnectionKind) -> MailConnection {
        MailConnection {
            id: ConnectionId::generate(),
            tenant_id: TenantId::generate(),
            kind,
            mailbox: "info@contoso.example".into(),
            status: crate::oauth::ConnectionStatus::Active,
            scopes: vec![],
            directory_id: None,
            token_url: None,
            client_id: None,
            last_refreshed_at: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn oauth_a_first_sign_in_sends_as_the_mailbox_through_the_providers_preset() {
        let c = connection(ConnectionKind::MicrosoftDelegatedSmtp);
        let s = MailSettings::validate(&draft_for(&c, None), None).unwrap();
        assert_eq!(s.server_kind(), ServerKind::Microsoft365);
        assert_eq!(s.host().as_str(), "smtp.office365.com");
        assert_eq!(s.from_address().as_str(), "info@contoso.example");
        assert_eq!(s.username().map(|u| u.as_str()), Some("info@contoso.example"));
        assert_eq!(s.connection(), Some(c.id));
        assert!(s.password().is_none());
        assert_eq!(s.send_interval().as_millis(), 2000, "30 a minute");
    }

    #[test]
    fn oauth_a_sign_in_keeps_the_senders_and_a_custom_server_and_drops_the_password() {
        use secrecy::SecretString;
        let current = MailSettings::validate(
            &MailSettingsDraft {
                host: Some("smtp.contoso.example".into()),
                port: Some(2587),
                from_address: Some("news@contoso.example".into()),
                from_name: Some("Contoso".into()),
                username: Some("old".into()),
                password: Some(SecretString::from("old-password")),
                send_interval_ms: Some(2000),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let c = connection(ConnectionKind::MicrosoftDelegatedGraph);
        let s = MailSettings::validate(&draft_for(&c, Some(&current)), Some(&current)).unwrap();
        assert_eq!(s.host().as_str(), "smtp.contoso.example");
        assert_eq!(s.port().get(), 2587);
        assert_eq!(s.from_address().as_str(), "news@contoso.example");
        assert_eq!(s.from_name().map(|n| n.as_str()), Some("Contoso"));
        assert_eq!(s.send_interval().as_millis(), 2000);
        assert!(s.password().is_none());
        assert_eq!(s.connection(), Some(c.id));

        // Gmail's password preset becomes Google Workspace's for a Google sign-in.
        let gmail = MailSettings::validate(
            &MailSettingsDraft {
                server_kind: Some(ServerKind::Gmail),
                from_address: Some("me@gmail.com".into()),
                username: Some("me@gmail.com".into()),
                password: Some(SecretString::from("app-password")),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let g = connection(ConnectionKind::GoogleGmailApi);
        let s = MailSettings::validate(&draft_for(&g, Some(&gmail)), Some(&gmail)).unwrap();
        assert_eq!(s.server_kind(), ServerKind::GoogleWorkspace);
        assert_eq!(s.from_address().as_str(), "me@gmail.com");
    }

    #[test]
    fn oauth_tenant_token_urls_are_https_without_credentials() {
        assert!(token_url("https://sso.example.com/realms/x/protocol/openid-connect/token").is_ok());
        assert!(token_url("http://127.0.0.1:8080/token").is_ok());
        for bad in [
            "http://sso.example.com/token",
            "https://user:pw@sso.example.com/token",
            "https://sso.example.com/token#x",
            "ftp://sso.example.com/token",
            "not a url",
        ] {
            assert_eq!(token_url(bad), Err(FieldCode::InvalidFormat), "{bad}");
        }
        assert_eq!(token_url(" "), Err(FieldCode::Required));
    }

    #[test]
    fn oauth_settings_refuse_a_password_beside_a_connection() {
        let c = connection(ConnectionKind::MicrosoftDelegatedSmtp);
        let mut d = draft_for(&c, None);
        d.password = Some(secrecy::SecretString::from("secret"));
        let errs = MailSettings::validate(&d, None).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "password");
        assert_eq!(errs[0].code, FieldCode::NotWithConnection);
        d.password = None;
        d.connection_id = Some("not-an-id".into());
        let errs = MailSettings::validate(&d, None).unwrap_err();
        assert_eq!(errs[0].field, "connectionId");
        assert_eq!(errs[0].code, FieldCode::InvalidFormat);
    }
}
