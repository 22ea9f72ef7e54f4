//! GraphQL for a tenant's own mail server: the settings type and form, the presets,
//! `updateMailSettings` and `sendTestMail` with its diagnosis. (`clearMailSettings`
//! answers with the tenant, so it lives with the tenants.)

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use secrecy::SecretString;

use domain::Locale;
use domain::services::TenantService;
use domain::settings::{self as ds, MailSettingsDraft, PopBeforeSmtpDraft, StoredMailSettings};

use domain::health::SettingsHealth;

use crate::catalogue::{Text, say};
use crate::deliveries::DeliveryAttempt;
use crate::error::ResultExt as _;
use crate::values::{SenderSource, caller_and, int, locale, parse_tenant_id, rfc3339};

/// The server type of the form: custom, or one of the presets (`mailServerPresets`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::settings::ServerKind")]
pub enum MailServerKind {
    #[graphql(name = "CUSTOM")]
    Custom,
    #[graphql(name = "GMAIL")]
    Gmail,
    #[graphql(name = "GOOGLE_WORKSPACE")]
    GoogleWorkspace,
    #[graphql(name = "MICROSOFT_365")]
    Microsoft365,
    #[graphql(name = "OUTLOOK_COM")]
    OutlookCom,
    #[graphql(name = "YAHOO_JAPAN")]
    YahooJapan,
    #[graphql(name = "ICLOUD")]
    ICloud,
    #[graphql(name = "AMAZON_SES")]
    AmazonSes,
    #[graphql(name = "SENDGRID")]
    SendGrid,
    #[graphql(name = "XSERVER")]
    Xserver,
    #[graphql(name = "SAKURA")]
    Sakura,
    #[graphql(name = "LOLIPOP")]
    Lolipop,
    #[graphql(name = "CONOHA_WING")]
    ConohaWing,
    #[graphql(name = "OCN")]
    Ocn,
    #[graphql(name = "BIGLOBE")]
    Biglobe,
    #[graphql(name = "SO_NET")]
    SoNet,
}

/// `SSL` is implicit TLS (the seed's "ssl"); `STARTTLS` is the seed's "tls".
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::settings::Encryption")]
pub enum MailEncryption {
    None,
    Ssl,
    #[graphql(name = "STARTTLS")]
    StartTls,
}

/// A combination that is allowed but usually a mistake.
#[derive(SimpleObject, Debug)]
pub struct SettingsWarning {
    pub code: String,
    pub field: String,
    pub message: String,
}

/// POP-before-SMTP settings. The password is never returned.
#[derive(Debug)]
pub struct PopBeforeSmtp(ds::PopBeforeSmtp);

#[Object]
impl PopBeforeSmtp {
    async fn host(&self) -> &str {
        self.0.host().as_str()
    }
    async fn port(&self) -> i32 {
        i32::from(self.0.port().get())
    }
    async fn username(&self) -> &str {
        self.0.username().as_str()
    }
    async fn has_password(&self) -> bool {
        true
    }
    async fn tls(&self) -> bool {
        self.0.tls()
    }
}

/// Where a saved settings version stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::health::SettingsState")]
pub enum MailSettingsState {
    /// Saved, waiting for a successful test mail (or its code): mail goes out as it did
    /// before the save.
    PendingVerification,
    /// Proven: the tenant's mail goes out through it.
    Live,
    /// Real deliveries kept failing for a configuration fault: mail goes out from the
    /// platform default with the tenant's Reply-To, and no AUTH is tried with it.
    Suspended,
}

/// Whether the saved settings carry the tenant's mail, and what broke them if they stopped.
#[derive(Debug)]
pub struct MailSettingsHealth(SettingsHealth);

#[Object]
impl MailSettingsHealth {
    async fn state(&self) -> MailSettingsState {
        self.0.state.into()
    }
    /// When it entered this state.
    async fn since(&self) -> String {
        rfc3339(self.0.since)
    }
    /// Configuration failures of real deliveries in a row (a sent mail resets it).
    async fn consecutive_failures(&self) -> i32 {
        int(self.0.consecutive_failures)
    }
    /// The last configuration failure: stage, codes and the server's reply.
    async fn last_failure(&self) -> Option<DeliveryAttempt> {
        self.0.last_failure.as_ref().map(|f| {
            (&domain::delivery::Attempt {
                at: f.at,
                outcome: domain::delivery::AttemptOutcome::Deferred,
                stage: Some(f.stage.code().to_owned()),
                smtp_code: f.smtp_code,
                enhanced_code: f.enhanced_code.clone(),
                server_message: f.server_message.clone(),
                sender_address: None,
                sender_source: Some(domain::SenderSource::Custom),
            })
                .into()
        })
    }
    /// What to fix, in the caller's language (after a failure).
    async fn hint(&self, ctx: &Context<'_>) -> Option<String> {
        let l = locale(ctx);
        self.0
            .last_failure
            .as_ref()
            .map(|f| say(Text::Hint(f.hint), l).into_owned())
    }
    /// A stable code for the hint, e.g. `WRONG_CREDENTIALS`.
    async fn hint_code(&self) -> Option<&str> {
        self.0.last_failure.as_ref().map(|f| f.hint.code())
    }
    /// When the activation code the last test mail of this version carried stops working
    /// (`code` activation); null when no code is waiting or it has expired.
    async fn activation_code_expires_at(&self) -> Option<String> {
        self.0
            .activation_code
            .as_ref()
            .filter(|c| c.expires_at > chrono::Utc::now())
            .map(|c| rfc3339(c.expires_at))
    }
}

/// A tenant's saved mail-server settings. The password is write-only.
#[derive(Debug)]
pub struct MailSettings {
    /// Whose settings these are.
    pub tenant: domain::TenantId,
    pub stored: StoredMailSettings,
    pub active: bool,
    /// Warnings only the save could give (a host that did not resolve then).
    pub save_warnings: Vec<ds::SettingsWarning>,
}

#[Object]
impl MailSettings {
    async fn server_kind(&self) -> MailServerKind {
        self.stored.settings.server_kind().into()
    }
    async fn host(&self) -> &str {
        self.stored.settings.host().as_str()
    }
    async fn port(&self) -> i32 {
        i32::from(self.stored.settings.port().get())
    }
    async fn from_address(&self) -> &str {
        self.stored.settings.from_address().as_str()
    }
    #[graphql(name = "fromName")]
    async fn sender_name(&self) -> Option<&str> {
        self.stored.settings.from_name().map(|n| n.as_str())
    }
    async fn smtp_auth(&self) -> bool {
        self.stored.settings.smtp_auth()
    }
    async fn username(&self) -> Option<&str> {
        self.stored.settings.username().map(|u| u.as_str())
    }
    async fn has_password(&self) -> bool {
        self.stored.settings.password().is_some()
    }
    async fn encryption(&self) -> MailEncryption {
        self.stored.settings.encryption().into()
    }
    /// Null when POP-before-SMTP is off.
    async fn pop_before_smtp(&self) -> Option<PopBeforeSmtp> {
        self.stored.settings.pop_before_smtp().cloned().map(PopBeforeSmtp)
    }
    async fn local_hostname(&self) -> Option<&str> {
        self.stored.settings.local_hostname().map(|h| h.as_str())
    }
    async fn send_interval_ms(&self) -> i32 {
        int(self.stored.settings.send_interval().as_millis())
    }
    /// The sign-in these settings authenticate with instead of a password (null: none).
    async fn connection_id(&self) -> Option<ID> {
        self.stored.settings.connection().map(|c| ID(c.to_string()))
    }
    /// `MICROSOFT` when the last failure of these password settings was Microsoft
    /// refusing passwords (550 5.7.30, 535 5.7.139): offer "Connect with Microsoft".
    async fn sign_in_offer(&self) -> Option<crate::connections::MailProvider> {
        let refused = self
            .stored
            .health
            .last_failure
            .as_ref()
            .is_some_and(|f| f.hint == domain::failure::Hint::Microsoft365SmtpAuthDisabled);
        (refused && self.stored.settings.connection().is_none()).then_some(crate::connections::MailProvider::Microsoft)
    }
    /// That sign-in (null: none, or it was disconnected).
    async fn connection(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::connections::MailConnectionView>> {
        match self.stored.settings.connection() {
            Some(id) => crate::connections::of_settings(ctx, self.tenant, id).await,
            None => Ok(None),
        }
    }
    /// False while the tenant's plan forbids a custom sender; the settings are kept.
    async fn active(&self) -> bool {
        self.active
    }
    async fn version(&self) -> i32 {
        int(self.stored.version)
    }
    async fn updated_at(&self) -> String {
        rfc3339(self.stored.updated_at)
    }
    /// Whether this version is in force yet, and whether it still works.
    async fn health(&self) -> MailSettingsHealth {
        MailSettingsHealth(self.stored.health.clone())
    }
    /// Combinations that are allowed but usually a mistake (e.g. 465 with STARTTLS).
    async fn warnings(&self, ctx: &Context<'_>) -> Vec<SettingsWarning> {
        let l = locale(ctx);
        self.stored
            .settings
            .warnings()
            .into_iter()
            .chain(self.save_warnings.iter().copied())
            .map(|w| SettingsWarning {
                code: w.code().into(),
                field: w.field().into(),
                message: say(Text::Warning(w), l).into_owned(),
            })
            .collect()
    }
}

/// Where a test mail stopped.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::mail::SendStage")]
pub enum TestMailStage {
    Resolve,
    Connect,
    Greeting,
    Tls,
    Ehlo,
    PopLogin,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Timeout,
}

/// The sender a mail went (or tried to go) out from.
#[derive(SimpleObject, Debug)]
pub struct SenderUsed {
    pub address: String,
    pub name: Option<String>,
    pub source: SenderSource,
}

impl From<&domain::mail::SenderUsed> for SenderUsed {
    fn from(s: &domain::mail::SenderUsed) -> Self {
        Self {
            address: s.address.to_string(),
            name: s.name.as_ref().map(|n| n.as_str().to_owned()),
            source: s.source.into(),
        }
    }
}

/// What happened to a test mail, and what to fix when it failed.
#[derive(SimpleObject, Debug)]
pub struct TestMailResult {
    pub ok: bool,
    /// Where it stopped; null when it was sent.
    pub stage: Option<TestMailStage>,
    pub smtp_code: Option<i32>,
    /// e.g. `5.7.8`.
    pub enhanced_code: Option<String>,
    /// The server's reply, with anything secret removed.
    pub server_message: Option<String>,
    /// A plain-language fix, in the caller's language.
    pub hint: Option<String>,
    /// A stable code for the hint, e.g. `WRONG_CREDENTIALS`.
    pub hint_code: Option<String>,
    /// The form field to look at, e.g. `password` or `popBeforeSmtp.host`.
    pub field: Option<String>,
    pub elapsed_ms: i32,
    pub message_id: Option<String>,
    pub sender: Option<SenderUsed>,
    /// This test (of the saved settings, without `settings`) put them in force.
    pub activated: bool,
    /// The mail carries an activation code for the saved settings (`code` activation):
    /// give it to `activateMailSettings`.
    pub activation_code_sent: bool,
    /// Allowed but probably not meant: `RECIPIENT_IN_SENDER_DOMAIN` (field `to`).
    pub warnings: Vec<SettingsWarning>,
    /// `MICROSOFT` when Microsoft refused the password (550 5.7.30, 535 5.7.139): offer
    /// "Connect with Microsoft" (`connectMailbox`), which keeps the sender and server.
    pub sign_in_offer: Option<crate::connections::MailProvider>,
}

impl TestMailResult {
    pub fn from_outcome(o: &domain::services::TestMailOutcome, l: Locale) -> Self {
        let warnings = o
            .warnings
            .iter()
            .map(|w| SettingsWarning {
                code: w.code().into(),
                field: w.field().into(),
                message: say(Text::Warning(*w), l).into_owned(),
            })
            .collect();
        match &o.result {
            Ok(r) => Self {
                ok: true,
                stage: None,
                smtp_code: r.smtp_code.map(i32::from),
                enhanced_code: None,
                server_message: r.server_message.clone(),
                hint: None,
                hint_code: None,
                field: None,
                elapsed_ms: int(r.elapsed.as_millis()),
                message_id: Some(r.message_id.clone()),
                sender: Some((&r.sender).into()),
                activated: o.activated,
                activation_code_sent: o.activation_code_sent,
                warnings,
                sign_in_offer: None,
            },
            Err(f) => Self {
                ok: false,
                stage: Some(f.stage.into()),
                smtp_code: f.smtp_code.map(i32::from),
                enhanced_code: f.enhanced_code.clone(),
                server_message: f.server_message.clone(),
                hint: o.diagnosis.map(|d| say(Text::Hint(d.hint), l).into_owned()),
                hint_code: o.diagnosis.map(|d| d.hint.code().to_owned()),
                field: o.diagnosis.and_then(|d| d.field).map(str::to_owned),
                elapsed_ms: int(f.elapsed.as_millis()),
                message_id: None,
                sender: f.sender.as_ref().map(Into::into),
                activated: false,
                activation_code_sent: false,
                warnings,
                sign_in_offer: o.sign_in_offer.map(Into::into),
            },
        }
    }
}

/// The settings form. A save replaces the stored settings; an absent (or empty)
/// password keeps the stored one only if host, port, username and encryption are
/// unchanged. Every text field empty clears, like `clearMailSettings`.
#[derive(InputObject)]
pub(crate) struct MailSettingsInput {
    /// Default CUSTOM; GMAIL fills host, port, encryption and authentication.
    server_kind: Option<MailServerKind>,
    host: Option<String>,
    port: Option<i32>,
    from_address: Option<String>,
    from_name: Option<String>,
    /// Default: on when a username is given.
    smtp_auth: Option<bool>,
    username: Option<String>,
    /// Write-only. Absent = keep the stored one.
    password: Option<String>,
    /// Default: SSL for 465, NONE for 25, STARTTLS otherwise.
    encryption: Option<MailEncryption>,
    /// Null or absent: POP-before-SMTP off.
    pop_before_smtp: Option<PopBeforeSmtpInput>,
    local_hostname: Option<String>,
    /// 0–3,600,000 ms between the starts of two sends; default 0.
    send_interval_ms: Option<i32>,
    /// A connection of this tenant (`completeMailboxConnection`) that signs in instead
    /// of a password; leave `password` empty. Absent or empty: none.
    connection_id: Option<ID>,
    /// Optimistic concurrency: the `version` you loaded (0 when nothing was saved).
    expected_version: Option<i32>,
}

impl std::fmt::Debug for MailSettingsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettingsInput")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// POP-before-SMTP login. Default port 110, or 995 with TLS.
#[derive(InputObject)]
pub(crate) struct PopBeforeSmtpInput {
    host: Option<String>,
    port: Option<i32>,
    username: Option<String>,
    /// Write-only. Absent = keep the stored one.
    password: Option<String>,
    tls: Option<bool>,
}

impl std::fmt::Debug for PopBeforeSmtpInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PopBeforeSmtpInput")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl MailSettingsInput {
    pub(crate) fn expected_version(&self) -> Option<i64> {
        self.expected_version.map(i64::from)
    }

    pub(crate) fn into_draft(self) -> MailSettingsDraft {
        MailSettingsDraft {
            server_kind: self.server_kind.map(Into::into),
            host: self.host,
            port: self.port.map(i64::from),
            from_address: self.from_address,
            from_name: self.from_name,
            smtp_auth: self.smtp_auth,
            username: self.username,
            password: self.password.map(SecretString::from),
            encryption: self.encryption.map(Into::into),
            pop_before_smtp: self.pop_before_smtp.map(|p| PopBeforeSmtpDraft {
                host: p.host,
                port: p.port.map(i64::from),
                username: p.username,
                password: p.password.map(SecretString::from),
                tls: p.tls,
            }),
            local_hostname: self.local_hostname,
            send_interval_ms: self.send_interval_ms.map(i64::from),
            connection_id: self.connection_id.map(|id| id.0),
        }
    }
}

/// `Mutation.updateMailSettings`: null when the input cleared the settings.
pub(crate) async fn update(
    ctx: &Context<'_>,
    tenant_id: ID,
    input: MailSettingsInput,
) -> async_graphql::Result<Option<MailSettings>> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let expected = input.expected_version();
    let draft = input.into_draft();
    let saved = service
        .update_mail_settings(caller, id, &draft, expected)
        .await
        .gql(l)?;
    Ok(saved.map(|saved| MailSettings {
        tenant: id,
        stored: saved.stored,
        active: true,
        save_warnings: saved.warnings,
    }))
}

/// `Mutation.sendTestMail`.
pub(crate) async fn send_test(
    ctx: &Context<'_>,
    tenant_id: ID,
    to: String,
    settings: Option<MailSettingsInput>,
) -> async_graphql::Result<TestMailResult> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let draft = settings.map(MailSettingsInput::into_draft);
    let outcome = service
        .send_test_mail(caller, id, &to, draft.as_ref(), l)
        .await
        .gql(l)?;
    Ok(TestMailResult::from_outcome(&outcome, l))
}

/// `Mutation.activateMailSettings`.
pub(crate) async fn activate(ctx: &Context<'_>, tenant_id: ID, code: String) -> async_graphql::Result<MailSettings> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let stored = service.activate_mail_settings(caller, id, &code).await.gql(l)?;
    Ok(MailSettings {
        tenant: id,
        stored,
        active: true,
        save_warnings: Vec::new(),
    })
}

/// A completed sign-in.
#[derive(SimpleObject)]
pub(crate) struct MailboxConnected {
    connection: crate::connections::MailConnectionView,
    /// The settings saved to send through it (pending until a test mail proves them,
    /// as any save).
    settings: Option<MailSettings>,
}

/// `Mutation.completeMailboxConnection`.
pub(crate) async fn complete_connection(
    ctx: &Context<'_>,
    tenant_id: ID,
    state: String,
    code: String,
    from_address: Option<String>,
) -> async_graphql::Result<MailboxConnected> {
    let (caller, service, l) = caller_and::<domain::services::connections::ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let done = service
        .complete(caller, id, &state, &code, from_address.as_deref())
        .await
        .gql(l)?;
    Ok(MailboxConnected {
        connection: crate::connections::MailConnectionView(done.connection),
        settings: done.saved.map(|saved| MailSettings {
            tenant: id,
            stored: saved.stored,
            active: true,
            save_warnings: saved.warnings,
        }),
    })
}

/// `Mutation.connectMailboxAsApp`.
pub(crate) async fn connect_app(
    ctx: &Context<'_>,
    tenant_id: ID,
    kind: crate::connections::MailConnectionKind,
    mailbox: String,
    directory_id: Option<String>,
) -> async_graphql::Result<MailboxConnected> {
    let (caller, service, l) = caller_and::<domain::services::connections::ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let done = service
        .connect_app(caller, id, kind.into(), &mailbox, directory_id.as_deref())
        .await
        .gql(l)?;
    Ok(MailboxConnected {
        connection: crate::connections::MailConnectionView(done.connection),
        settings: done.saved.map(|saved| MailSettings {
            tenant: id,
            stored: saved.stored,
            active: true,
            save_warnings: saved.warnings,
        }),
    })
}

/// `Mutation.connectMailboxWithTokenUrl`.
pub(crate) async fn connect_token_url(
    ctx: &Context<'_>,
    tenant_id: ID,
    input: crate::connections::TokenUrlConnectionInput,
) -> async_graphql::Result<MailboxConnected> {
    let (caller, service, l) = caller_and::<domain::services::connections::ConnectionService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let draft = domain::services::connections::TokenUrlDraft {
        token_url: input.token_url,
        client_id: input.client_id,
        client_secret: SecretString::from(input.client_secret),
        scope: input.scope,
        mailbox: input.mailbox,
    };
    let done = service.connect_token_url(caller, id, &draft).await.gql(l)?;
    Ok(MailboxConnected {
        connection: crate::connections::MailConnectionView(done.connection),
        settings: done.saved.map(|saved| MailSettings {
            tenant: id,
            stored: saved.stored,
            active: true,
            save_warnings: saved.warnings,
        }),
    })
}
