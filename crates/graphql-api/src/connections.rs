//! Sending from a Microsoft 365 or Google mailbox with a sign-in instead of a password
//! (issue 25): start a sign-in, complete it with what the callback handed back, list and
//! disconnect a tenant's connections. Each resolver parses, calls
//! `domain::services::connections::ConnectionService`, and converts.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};

use domain::oauth::{ConnectionId, ConnectionKind, MailConnection, Provider};
use domain::services::connections::ConnectionService;

use crate::error::ResultExt as _;
use crate::values::{caller_and, parse_tenant_id, rfc3339};

/// How a connection signs in and where its mail goes.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::oauth::ConnectionKind")]
pub(crate) enum MailConnectionKind {
    /// Microsoft 365 or Outlook.com, signed in as the mailbox; mail goes through Microsoft
    /// Graph `sendMail` (works with SMTP AUTH off, the default for new organisations).
    MicrosoftDelegatedGraph,
    /// Microsoft 365, signed in as the mailbox; mail goes over SMTP `AUTH XOAUTH2` to the
    /// settings' server (`smtp.office365.com:587`).
    MicrosoftDelegatedSmtp,
    /// Google (Gmail or Workspace), signed in as the mailbox; mail goes through the Gmail
    /// API with the `gmail.send` permission only.
    GoogleGmailApi,
    /// Microsoft 365 without a sign-in: the organisation's admin consents to the app's
    /// `SMTP.SendAsApp` and gives it the mailbox (`appConnectionSetup`); SMTP XOAUTH2.
    MicrosoftAppSmtp,
    /// Google Workspace domain-wide delegation: the Workspace admin authorizes the
    /// platform's service account for `gmail.send`; the Gmail API as the mailbox.
    GoogleDomainWide,
    /// Any other server that takes OAuth bearer tokens over SMTP: client credentials at
    /// the tenant's own token endpoint (`connectMailboxWithTokenUrl`, as Keycloak 26.2
    /// offers), SMTP XOAUTH2 to the tenant's server.
    #[graphql(name = "XOAUTH2_CLIENT_CREDENTIALS")]
    Xoauth2ClientCredentials,
}

/// Who issues a connection's tokens.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::oauth::Provider")]
pub enum MailProvider {
    Microsoft,
    Google,
    /// Another server that takes bearer tokens over SMTP.
    Generic,
}

/// Whether a connection can send.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::oauth::ConnectionStatus")]
pub(crate) enum MailConnectionStatus {
    /// Tokens can be obtained.
    Active,
    /// The grant is gone (revoked, expired, password changed) or lacks consent: sign in
    /// again (`connectMailbox`).
    NeedsReconnect,
    /// The provider refuses the app or the permissions: the operator's or organisation's
    /// setup must be fixed, then reconnect.
    Misconfigured,
}

/// A tenant's sign-in with Microsoft or Google. Its tokens never leave Mailgate.
pub(crate) struct MailConnectionView(pub(crate) MailConnection);

#[Object(name = "MailConnection")]
impl MailConnectionView {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// How it signs in and sends; null for a kind this API version does not name.
    async fn kind(&self) -> Option<MailConnectionKind> {
        match self.0.kind {
            ConnectionKind::MicrosoftDelegatedGraph => Some(MailConnectionKind::MicrosoftDelegatedGraph),
            ConnectionKind::MicrosoftDelegatedSmtp => Some(MailConnectionKind::MicrosoftDelegatedSmtp),
            ConnectionKind::GoogleGmailApi => Some(MailConnectionKind::GoogleGmailApi),
            ConnectionKind::MicrosoftAppSmtp => Some(MailConnectionKind::MicrosoftAppSmtp),
            ConnectionKind::GoogleDomainWide => Some(MailConnectionKind::GoogleDomainWide),
            ConnectionKind::Xoauth2ClientCredentials => Some(MailConnectionKind::Xoauth2ClientCredentials),
        }
    }
    async fn provider(&self) -> MailProvider {
        self.0.kind.provider().into()
    }
    /// The mailbox that signed in.
    async fn mailbox(&self) -> &str {
        &self.0.mailbox
    }
    async fn status(&self) -> MailConnectionStatus {
        self.0.status.into()
    }
    /// The permissions granted.
    async fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    /// The last time its tokens were renewed (null: not since the sign-in).
    async fn last_refreshed_at(&self) -> Option<String> {
        self.0.last_refreshed_at.map(rfc3339)
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }
    /// Microsoft app-only: the organisation's directory (tenant) id or domain.
    async fn directory_id(&self) -> Option<&str> {
        self.0.directory_id.as_deref()
    }
    /// Generic XOAUTH2: the tenant's token endpoint (its client secret is never shown).
    async fn token_url(&self) -> Option<&str> {
        self.0.token_url.as_deref()
    }
    async fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
}

/// The tenant's own token endpoint and client, for generic XOAUTH2.
#[derive(async_graphql::InputObject)]
pub(crate) struct TokenUrlConnectionInput {
    /// `https://…` (the client secret travels to it).
    pub(crate) token_url: String,
    pub(crate) client_id: String,
    /// Write-only: sealed, never shown again.
    pub(crate) client_secret: String,
    /// Space-separated, as the endpoint wants it; absent: none.
    pub(crate) scope: Option<String>,
    /// The mailbox the tokens send as (the XOAUTH2 user).
    pub(crate) mailbox: String,
}

impl std::fmt::Debug for TokenUrlConnectionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenUrlConnectionInput")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the organisation's admin does before an app-only connection works.
#[derive(SimpleObject, Debug)]
pub(crate) struct AppConnectionSetup {
    /// Microsoft: where an admin of the organisation consents to the app's
    /// `SMTP.SendAsApp`.
    admin_consent_url: Option<String>,
    /// The client id the organisation authorizes (Microsoft's app id; for Google's
    /// domain-wide delegation, the service account's client id).
    client_id: Option<String>,
    /// The scopes to grant (Google: enter them with the client id).
    scopes: Vec<String>,
    /// Microsoft: Exchange Online PowerShell to run, one command per line, pre-filled;
    /// `<…>` is what only the organisation's admin can read.
    commands: Vec<String>,
}

/// `Query.mailAppConnectionKinds`: the app-only kinds the operator set up.
pub(crate) fn app_kinds(ctx: &Context<'_>) -> async_graphql::Result<Vec<MailConnectionKind>> {
    let service = ctx.data::<ConnectionService>()?;
    Ok(domain::services::connections::APP_KINDS
        .into_iter()
        .filter(|k| service.offers_app(*k))
        .filter_map(|k| match k {
            ConnectionKind::MicrosoftAppSmtp => Some(MailConnectionKind::MicrosoftAppSmtp),
            ConnectionKind::GoogleDomainWide => Some(MailConnectionKind::GoogleDomainWide),
            _ => None,
        })
        .collect())
}

/// `Query.appConnectionSetup`.
pub(crate) async fn app_setup(
    ctx: &Context<'_>,
    tenant_id: ID,
    kind: MailConnectionKind,
    mailbox: String,
) -> async_graphql::Result<AppConnectionSetup> {
    let (caller, service, l) = caller_and::<ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let setup = service.app_setup(caller, id, kind.into(), &mailbox).await.gql(l)?;
    Ok(AppConnectionSetup {
        admin_consent_url: setup.admin_consent_url,
        client_id: setup.client_id,
        scopes: setup.scopes,
        commands: setup.commands,
    })
}

/// Where to send the admin's browser to sign in.
#[derive(SimpleObject, Debug)]
pub(crate) struct MailboxSignIn {
    /// Open this in the browser. After the sign-in the browser comes back to the console
    /// (or the return URL) with `state` and `code`, for `completeMailboxConnection`.
    authorization_url: String,
    /// Microsoft: if the organisation lets only administrators consent, forward this link
    /// to one; after their approval, sign in again.
    admin_consent_url: Option<String>,
    /// The sign-in must be completed before this time (10 minutes).
    expires_at: String,
}

/// `Query.mailSignInProviders`: the providers the operator set up.
pub(crate) fn providers(ctx: &Context<'_>) -> async_graphql::Result<Vec<MailProvider>> {
    let service = ctx.data::<ConnectionService>()?;
    Ok([Provider::Microsoft, Provider::Google]
        .into_iter()
        .filter(|p| service.is_configured(*p))
        .map(Into::into)
        .collect())
}

/// `Query.mailConnections`.
pub(crate) async fn list(ctx: &Context<'_>, tenant_id: ID) -> async_graphql::Result<Vec<MailConnectionView>> {
    let (caller, service, l) = caller_and::<ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let all = service.list(caller, id).await.gql(l)?;
    Ok(all.into_iter().map(MailConnectionView).collect())
}

/// `MailSettings.connection`.
pub(crate) async fn of_settings(
    ctx: &Context<'_>,
    tenant: domain::TenantId,
    id: ConnectionId,
) -> async_graphql::Result<Option<MailConnectionView>> {
    let (caller, service, l) = caller_and::<ConnectionService>(ctx)?;
    Ok(service.get(caller, tenant, id).await.gql(l)?.map(MailConnectionView))
}

/// `Mutation.connectMailbox`.
pub(crate) async fn connect(
    ctx: &Context<'_>,
    tenant_id: ID,
    kind: MailConnectionKind,
    return_url: Option<String>,
) -> async_graphql::Result<MailboxSignIn> {
    let (caller, service, l) = caller_and::<ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let start = service
        .start(caller, id, kind.into(), return_url.as_deref())
        .await
        .gql(l)?;
    Ok(MailboxSignIn {
        authorization_url: start.authorization_url,
        admin_consent_url: start.admin_consent_url,
        expires_at: rfc3339(start.expires_at),
    })
}

/// `Mutation.disconnectMailbox`: false when the tenant has no such connection.
pub(crate) async fn disconnect(ctx: &Context<'_>, tenant_id: ID, connection_id: ID) -> async_graphql::Result<bool> {
    let (caller, service, l) = caller_and::<ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let Ok(connection) = connection_id.parse::<ConnectionId>() else {
        return Ok(false);
    };
    service.disconnect(caller, id, connection).await.gql(l)
}
