//! GraphQL output types. Each wraps a domain value and converts field by field; no
//! database entity is ever exposed.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use base64::Engine as _;
use chrono::SecondsFormat;

use domain::audit::AuditEntry;
use domain::service::TenantView;
use domain::settings::{self as ds, FieldChange, StoredMailSettings};
use domain::{Locale, Role as DomainRole};

use crate::context::RequestContext;
use crate::error::ResultExt as _;

pub(crate) fn locale(ctx: &Context<'_>) -> Locale {
    ctx.data_opt::<RequestContext>().map_or(Locale::En, |r| r.locale)
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn int(v: impl TryInto<i32>) -> i32 {
    v.try_into().unwrap_or(i32::MAX)
}

/// Opaque pagination cursor.
pub(crate) fn encode_cursor(raw: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Plan {
    Economy,
    Basic,
    Pro,
    Share,
    Biz,
}

impl From<domain::Plan> for Plan {
    fn from(p: domain::Plan) -> Self {
        match p {
            domain::Plan::Economy => Plan::Economy,
            domain::Plan::Basic => Plan::Basic,
            domain::Plan::Pro => Plan::Pro,
            domain::Plan::Share => Plan::Share,
            domain::Plan::Biz => Plan::Biz,
        }
    }
}

impl From<Plan> for domain::Plan {
    fn from(p: Plan) -> Self {
        match p {
            Plan::Economy => domain::Plan::Economy,
            Plan::Basic => domain::Plan::Basic,
            Plan::Pro => domain::Plan::Pro,
            Plan::Share => domain::Plan::Share,
            Plan::Biz => domain::Plan::Biz,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MailServerKind {
    Custom,
    Gmail,
}

impl From<ds::ServerKind> for MailServerKind {
    fn from(k: ds::ServerKind) -> Self {
        match k {
            ds::ServerKind::Custom => Self::Custom,
            ds::ServerKind::Gmail => Self::Gmail,
        }
    }
}

impl From<MailServerKind> for ds::ServerKind {
    fn from(k: MailServerKind) -> Self {
        match k {
            MailServerKind::Custom => Self::Custom,
            MailServerKind::Gmail => Self::Gmail,
        }
    }
}

/// `SSL` is implicit TLS (the seed's "ssl"); `STARTTLS` is the seed's "tls".
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MailEncryption {
    None,
    Ssl,
    #[graphql(name = "STARTTLS")]
    StartTls,
}

impl From<ds::Encryption> for MailEncryption {
    fn from(e: ds::Encryption) -> Self {
        match e {
            ds::Encryption::None => Self::None,
            ds::Encryption::Ssl => Self::Ssl,
            ds::Encryption::StartTls => Self::StartTls,
        }
    }
}

impl From<MailEncryption> for ds::Encryption {
    fn from(e: MailEncryption) -> Self {
        match e {
            MailEncryption::None => Self::None,
            MailEncryption::Ssl => Self::Ssl,
            MailEncryption::StartTls => Self::StartTls,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SenderSource {
    Custom,
    PlatformDefault,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    Operator,
    TenantAdmin,
    Service,
}

impl From<DomainRole> for Role {
    fn from(r: DomainRole) -> Self {
        match r {
            DomainRole::Operator => Role::Operator,
            DomainRole::TenantAdmin => Role::TenantAdmin,
            DomainRole::Service => Role::Service,
        }
    }
}

/// A plan and whether it may replace the platform's default sender.
#[derive(SimpleObject, Debug)]
pub struct PlanInfo {
    pub code: Plan,
    pub name: String,
    pub can_override_sender: bool,
}

/// A preset that fills the server fields of the settings form.
#[derive(SimpleObject, Debug)]
pub struct MailServerPreset {
    pub kind: MailServerKind,
    pub host: String,
    pub port: i32,
    pub encryption: MailEncryption,
    pub smtp_auth: bool,
}

/// The sender mail really goes out from now, and why.
#[derive(Debug)]
pub struct EffectiveSender(pub domain::EffectiveSender);

#[Object]
impl EffectiveSender {
    async fn address(&self) -> &str {
        self.0.address.as_str()
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_ref().map(|n| n.as_str())
    }
    async fn source(&self) -> SenderSource {
        match self.0.source {
            domain::SenderSource::Custom => SenderSource::Custom,
            domain::SenderSource::PlatformDefault => SenderSource::PlatformDefault,
        }
    }
    /// A sentence a person can read, in the caller's language.
    async fn reason(&self, ctx: &Context<'_>) -> String {
        self.0.reason.message(locale(ctx))
    }
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

/// A tenant's saved mail-server settings. The password is write-only.
#[derive(Debug)]
pub struct MailSettings {
    pub stored: StoredMailSettings,
    pub active: bool,
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
    /// Combinations that are allowed but usually a mistake (e.g. 465 with STARTTLS).
    async fn warnings(&self, ctx: &Context<'_>) -> Vec<SettingsWarning> {
        let l = locale(ctx);
        self.stored
            .settings
            .warnings()
            .into_iter()
            .map(|w| SettingsWarning {
                code: w.code().into(),
                field: w.field().into(),
                message: w.message(l).into(),
            })
            .collect()
    }
}

/// One changed field. Secrets show only that they changed: `secret` is true and no values.
#[derive(SimpleObject, Debug)]
pub struct AuditFieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub secret: bool,
}

/// One entry of a tenant's audit trail.
#[derive(Debug)]
pub struct AuditEvent {
    pub entry: AuditEntry,
}

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.entry.id.to_string())
    }
    /// `TENANT_CREATED`, `PLAN_CHANGED`, `MAIL_SETTINGS_SAVED`, `MAIL_SETTINGS_CLEARED`.
    async fn action(&self) -> &str {
        self.entry.action.code()
    }
    async fn actor_subject(&self) -> &str {
        &self.entry.actor_subject
    }
    async fn actor_role(&self) -> Role {
        self.entry.actor_role.into()
    }
    async fn at(&self) -> String {
        rfc3339(self.entry.at)
    }
    async fn changes(&self) -> Vec<AuditFieldChange> {
        self.entry
            .changes
            .iter()
            .map(|c| match c {
                FieldChange::Value { field, before, after } => AuditFieldChange {
                    field: field.clone(),
                    before: before.clone(),
                    after: after.clone(),
                    secret: false,
                },
                FieldChange::Secret { field } => AuditFieldChange {
                    field: field.clone(),
                    before: None,
                    after: None,
                    secret: true,
                },
            })
            .collect()
    }
}

#[derive(SimpleObject, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Debug)]
pub struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}

#[derive(SimpleObject, Debug)]
pub struct AuditEventConnection {
    pub edges: Vec<AuditEventEdge>,
    pub page_info: PageInfo,
}

/// A site on the platform.
#[derive(Debug)]
pub struct Tenant(pub TenantView);

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.0.tenant().id.to_string())
    }
    async fn name(&self) -> &str {
        self.0.tenant().name.as_str()
    }
    async fn plan(&self) -> Plan {
        self.0.tenant().plan.into()
    }
    /// Whether the plan allows the tenant's own mail server and sender address.
    async fn can_override_sender(&self) -> bool {
        self.0.tenant().plan.can_override_sender()
    }
    /// Null when nothing is saved.
    async fn mail_settings(&self) -> Option<MailSettings> {
        self.0.settings().cloned().map(|stored| MailSettings {
            stored,
            active: self.0.settings_active(),
        })
    }
    async fn effective_sender(&self) -> EffectiveSender {
        EffectiveSender(self.0.effective_sender())
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.tenant().created_at)
    }
    async fn updated_at(&self) -> String {
        rfc3339(self.0.tenant().updated_at)
    }
    /// Notifications for this tenant, newest first, with counts per status.
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        status: Option<crate::deliveries::DeliveryStatus>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<crate::deliveries::DeliveryConnection> {
        crate::deliveries::tenant_deliveries(ctx, self.0.tenant().id, status, first, after).await
    }

    /// Who changed what, oldest first. Operators and this tenant's admins.
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1–100 (default 50).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let l = locale(ctx);
        let rc = ctx.data::<RequestContext>()?;
        let caller = rc.caller().gql(l)?;
        let first = crate::query::page_size(first.unwrap_or(50), l)?;
        let after = match after {
            None => None,
            Some(c) => Some(
                decode_cursor(&c)
                    .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                    .ok_or_else(|| crate::query::bad_cursor(l))?,
            ),
        };
        let service = ctx.data::<domain::service::TenantService>()?;
        let page = service
            .audit_trail(caller, self.0.tenant().id, after, first)
            .await
            .gql(l)?;
        let edges: Vec<AuditEventEdge> = page
            .items
            .into_iter()
            .map(|entry| AuditEventEdge {
                cursor: encode_cursor(&entry.id.to_string()),
                node: AuditEvent { entry },
            })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(AuditEventConnection {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        })
    }
}

#[derive(SimpleObject, Debug)]
pub struct TenantEdge {
    pub cursor: String,
    pub node: Tenant,
}

#[derive(SimpleObject, Debug)]
pub struct TenantConnection {
    pub edges: Vec<TenantEdge>,
    pub page_info: PageInfo,
}

/// The caller, as the token says.
#[derive(Debug)]
pub struct Viewer {
    pub caller: domain::Caller,
}

#[Object]
impl Viewer {
    async fn subject(&self) -> &str {
        self.caller.subject()
    }
    async fn role(&self) -> Role {
        self.caller.role().into()
    }
    /// The tenant a tenant admin belongs to; null for other roles.
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        let Some(id) = self.caller.tenant_id() else {
            return Ok(None);
        };
        let service = ctx.data::<domain::service::TenantService>()?;
        Ok(service.tenant(&self.caller, id).await.gql(locale(ctx))?.map(Tenant))
    }
}

/// Where a test mail stopped.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
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

impl From<domain::mail::SendStage> for TestMailStage {
    fn from(s: domain::mail::SendStage) -> Self {
        use domain::mail::SendStage as S;
        match s {
            S::Resolve => Self::Resolve,
            S::Connect => Self::Connect,
            S::Greeting => Self::Greeting,
            S::Tls => Self::Tls,
            S::Ehlo => Self::Ehlo,
            S::PopLogin => Self::PopLogin,
            S::Auth => Self::Auth,
            S::MailFrom => Self::MailFrom,
            S::RcptTo => Self::RcptTo,
            S::Data => Self::Data,
            S::Timeout => Self::Timeout,
        }
    }
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
            source: match s.source {
                domain::SenderSource::Custom => SenderSource::Custom,
                domain::SenderSource::PlatformDefault => SenderSource::PlatformDefault,
            },
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
}

impl TestMailResult {
    pub fn from_outcome(o: &domain::service::TestMailOutcome, l: Locale) -> Self {
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
            },
            Err(f) => Self {
                ok: false,
                stage: Some(f.stage.into()),
                smtp_code: f.smtp_code.map(i32::from),
                enhanced_code: f.enhanced_code.clone(),
                server_message: f.server_message.clone(),
                hint: o.diagnosis.map(|d| d.hint.message(l).to_owned()),
                hint_code: o.diagnosis.map(|d| d.hint.code().to_owned()),
                field: o.diagnosis.and_then(|d| d.field).map(str::to_owned),
                elapsed_ms: int(f.elapsed.as_millis()),
                message_id: None,
                sender: f.sender.as_ref().map(Into::into),
            },
        }
    }
}
