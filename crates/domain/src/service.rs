//! The operations the API offers, each one call: authorise the caller, apply the rules,
//! store. Resolvers parse, call one of these, and convert the result.

use std::sync::Arc;

use chrono::Utc;

use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry};
use crate::error::{Error, Result};
use crate::error::{FieldCode, FieldError, WriteError};
use crate::health::{ActivationCode, ActivationMode, CodeRefusal, SettingsState};
use crate::i18n::Locale;
use crate::mail::{Diagnosis, OutgoingMail, SendFailure, SendReceipt, Subject, diagnose};
use crate::plan::{Plan, sender_override_permit};
use crate::ports::{
    CheckedServer, Coordination, HostCheck, MailTransport, SetupLookups, TenantRecord, TenantStore, TestMailLimit,
};
use crate::sender::{EffectiveSender, PlatformSender, effective_sender_of};
use crate::sender_domain::{DomainCheck, Verdict};
use crate::settings::PortPolicy;
use crate::settings::{
    FieldChange, MailSettings, MailSettingsDraft, SettingsWarning, StoredMailSettings, settings_diff,
};
use crate::tenant::{Tenant, TenantId, TenantName};
use crate::values::EmailAddress;

/// The audit entry of a version going live, and what proved it (`test`, `code`).
fn live_audit(id: TenantId, caller: &Caller, version: i64, proof: &str) -> AuditEntry {
    AuditEntry::new(
        id,
        caller,
        AuditAction::MailSettingsLive,
        vec![
            FieldChange::Value {
                field: "version".into(),
                before: None,
                after: Some(version.to_string()),
            },
            FieldChange::Value {
                field: "provenBy".into(),
                before: None,
                after: Some(proof.to_owned()),
            },
        ],
        Utc::now(),
    )
}

/// How often a write is retried when someone else wrote first and the caller did not
/// ask for a version check.
const WRITE_ATTEMPTS: usize = 5;

/// Largest page of tenants or audit entries.
pub const MAX_PAGE: u64 = 100;

/// A tenant as a caller sees it, with what the platform default is.
#[derive(Debug, Clone)]
pub struct TenantView {
    pub record: TenantRecord,
    platform: Arc<PlatformSender>,
}

impl TenantView {
    pub fn tenant(&self) -> &Tenant {
        &self.record.tenant
    }

    pub fn settings(&self) -> Option<&StoredMailSettings> {
        self.record.settings.as_ref()
    }

    /// The saved settings, or [`Error::SettingsUnreadable`] when they are saved but
    /// cannot be read back.
    pub fn readable_settings(&self) -> Result<Option<&StoredMailSettings>> {
        match self.record.unreadable_settings {
            Some(u) => Err(Error::SettingsUnreadable { version: u.version }),
            None => Ok(self.record.settings.as_ref()),
        }
    }

    /// Whether the saved settings are in force (the plan allows them).
    pub fn settings_active(&self) -> bool {
        self.record.tenant.plan.can_override_sender()
    }

    pub fn effective_sender(&self) -> EffectiveSender {
        effective_sender_of(self.record.route(), &self.platform)
    }

    /// The platform's default sender: where this tenant's mail goes out from whenever its
    /// own server is not used (nothing saved, plan, suspension, cleared).
    pub fn platform_sender(&self) -> &PlatformSender {
        &self.platform
    }

    /// The tenant's contact address as `caller` may see it: operators and the tenant's
    /// own admins see it; a service (which sees every tenant to hand in mail) does not.
    pub fn contact_email(&self, caller: &Caller) -> Option<&EmailAddress> {
        let tenant = &self.record.tenant;
        let may_see = match caller.role() {
            crate::access::Role::Operator => true,
            crate::access::Role::TenantAdmin => caller.tenant_id() == Some(tenant.id),
            crate::access::Role::Service => false,
        };
        tenant.contact_email.as_ref().filter(|_| may_see)
    }
}

/// A contact address as an operator gives it: blank or absent is none.
fn contact_email(raw: Option<&str>) -> Result<Option<EmailAddress>> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => EmailAddress::parse(r)
            .map(Some)
            .map_err(|e| Error::validation("contactEmail", e)),
    }
}

/// Settings just saved, with the warnings that only the save could give (a host that did
/// not resolve then).
#[derive(Debug, Clone)]
pub struct SavedSettings {
    pub stored: StoredMailSettings,
    pub warnings: Vec<SettingsWarning>,
}

/// A page of results and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

/// Fetches a page of at most `first` (capped at [`MAX_PAGE`]) by asking `fetch` for one
/// more row than that, which says whether another page follows.
pub(crate) async fn page<T, E>(first: u64, fetch: impl AsyncFnOnce(u64) -> Result<Vec<T>, E>) -> Result<Page<T>>
where
    Error: From<E>,
{
    let first = first.min(MAX_PAGE);
    let mut items = fetch(first + 1).await?;
    let has_next_page = items.len() as u64 > first;
    items.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    Ok(Page { items, has_next_page })
}

/// Settles the rounds of a conditional write that a concurrent writer may refuse: at
/// most [`WRITE_ATTEMPTS`] rounds, each reading what is stored now. A version conflict
/// ends it at once when the caller asked for a version (`strict`); a plan changed by
/// someone else is simply tried again. If others keep winning, the last version seen is
/// reported as a conflict.
struct ConflictRetry {
    strict: bool,
    rounds: usize,
    last_current: i64,
}

impl ConflictRetry {
    fn new(strict: bool) -> Self {
        Self {
            strict,
            rounds: 0,
            last_current: 0,
        }
    }

    /// The write's result: `Some` when done, `None` to try another round, or the error
    /// that ends it.
    fn settle<T>(&mut self, written: Result<T, WriteError>) -> Result<Option<T>> {
        self.rounds += 1;
        match written {
            Ok(done) => Ok(Some(done)),
            Err(WriteError::VersionConflict { current }) if self.strict => Err(Error::VersionConflict { current }),
            Err(WriteError::VersionConflict { current }) => {
                self.last_current = current;
                self.again()
            }
            Err(WriteError::PlanChanged) => self.again(),
            Err(WriteError::NotFound) => Err(Error::NotFound),
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }

    fn again<T>(&self) -> Result<Option<T>> {
        if self.rounds >= WRITE_ATTEMPTS {
            Err(Error::VersionConflict {
                current: self.last_current,
            })
        } else {
            Ok(None)
        }
    }
}

/// A test mail must finish (or give up) within this.
pub const TEST_MAIL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Test mails per tenant per minute.
pub const TEST_MAILS_PER_MINUTE: u32 = 10;

/// Test mails one caller (token `sub`) may send per minute across all tenants: an operator
/// or service token cannot use every tenant's server for test mails at once.
pub const TEST_MAILS_PER_CALLER_PER_MINUTE: u32 = 30;

/// The outcome of a test mail, with a diagnosis when it failed.
#[derive(Debug, Clone)]
pub struct TestMailOutcome {
    pub result: Result<SendReceipt, SendFailure>,
    pub diagnosis: Option<Diagnosis>,
    /// This test made the saved settings live (`test` activation).
    pub activated: bool,
    /// The mail carried an activation code for the saved settings (`code` activation).
    pub activation_code_sent: bool,
    /// Allowed but probably not what was meant (the recipient is in the sender's domain).
    pub warnings: Vec<SettingsWarning>,
    /// Microsoft refused the password these settings use (`550 5.7.30`, `535 5.7.139`):
    /// offer to connect the mailbox with a Microsoft sign-in instead.
    pub sign_in_offer: Option<crate::oauth::Provider>,
}

/// Test mails (and probes, which count as test mails) per tenant and per caller.
pub const TEST_MAIL_LIMIT: TestMailLimit = TestMailLimit {
    per_tenant: TEST_MAILS_PER_MINUTE,
    per_caller: TEST_MAILS_PER_CALLER_PER_MINUTE,
    window: std::time::Duration::from_secs(60),
};

/// How long a save waits for the sender-domain check before it saves without its warning.
pub const SENDER_DOMAIN_DEADLINE_ON_SAVE: std::time::Duration = std::time::Duration::from_secs(5);

/// Tenant, plan and mail-settings operations.
#[derive(Clone)]
pub struct TenantService {
    store: Arc<dyn TenantStore>,
    platform: Arc<PlatformSender>,
    mailer: Arc<dyn MailTransport>,
    ports: Arc<PortPolicy>,
    coordination: Arc<dyn Coordination>,
    activation: ActivationMode,
    /// The sender-domain check a save runs (none: no such warning).
    lookups: Option<Arc<dyn SetupLookups>>,
    /// Told of every test mail (for `/metrics`).
    test_mails: Option<TestMailCounter>,
    /// The tenants' sign-ins (OAuth connections) settings may name.
    connections: Option<Arc<dyn crate::ports::MailConnections>>,
}

/// What became of a test mail, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMailCount {
    Sent,
    /// It failed at this stage.
    Failed(crate::mail::SendStage),
    /// The tenant's or caller's test-mail limit refused it; nothing was sent.
    RateLimited,
}

/// Counts test mails (a metrics series).
pub type TestMailCounter = Arc<dyn Fn(TestMailCount) + Send + Sync>;

impl std::fmt::Debug for TenantService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl TenantService {
    /// `coordination` keeps the test-mail limit across processes.
    pub fn new(
        store: Arc<dyn TenantStore>,
        platform: PlatformSender,
        mailer: Arc<dyn MailTransport>,
        ports: PortPolicy,
        coordination: Arc<dyn Coordination>,
    ) -> Self {
        Self {
            store,
            platform: Arc::new(platform),
            mailer,
            ports: Arc::new(ports),
            coordination,
            activation: ActivationMode::default(),
            lookups: None,
            test_mails: None,
            connections: None,
        }
    }

    /// Settings may name a connection (a sign-in) of the tenant's in these.
    pub fn with_connections(mut self, connections: Arc<dyn crate::ports::MailConnections>) -> Self {
        self.connections = Some(connections);
        self
    }

    /// Saves also check the sender domain's SPF, DKIM and DMARC (a warning, never a refusal).
    pub fn with_lookups(mut self, lookups: Arc<dyn SetupLookups>) -> Self {
        self.lookups = Some(lookups);
        self
    }

    /// Tells `counter` what became of every test mail.
    pub fn with_test_mail_counter(mut self, counter: TestMailCounter) -> Self {
        self.test_mails = Some(counter);
        self
    }

    fn count_test_mail(&self, count: TestMailCount) {
        if let Some(counter) = &self.test_mails {
            counter(count);
        }
    }

    /// What makes a saved version live (default: a successful test mail).
    pub fn with_activation(mut self, activation: ActivationMode) -> Self {
        self.activation = activation;
        self
    }

    /// The store, for other services built on the same storage.
    pub fn store(&self) -> &Arc<dyn TenantStore> {
        &self.store
    }

    /// The mail transport, for other services that send.
    pub fn mailer(&self) -> &Arc<dyn MailTransport> {
        &self.mailer
    }

    pub fn platform_sender(&self) -> &PlatformSender {
        &self.platform
    }

    fn view(&self, record: TenantRecord) -> TenantView {
        TenantView {
            record,
            platform: self.platform.clone(),
        }
    }

    async fn load(&self, id: TenantId) -> Result<TenantRecord> {
        self.store.tenant(id).await?.ok_or(Error::NotFound)
    }

    /// Operators create tenants.
    pub async fn create_tenant(&self, caller: &Caller, name: &str, plan: Plan) -> Result<TenantView> {
        self.create_tenant_with_contact(caller, name, plan, None).await
    }

    /// Operators create tenants, optionally with the contact address notices about the
    /// tenant's settings go to (blank: none).
    pub async fn create_tenant_with_contact(
        &self,
        caller: &Caller,
        name: &str,
        plan: Plan,
        contact: Option<&str>,
    ) -> Result<TenantView> {
        caller.require_operator()?;
        let parsed_name = TenantName::parse(name).map_err(|e| FieldError::new("name", e));
        let parsed_contact = contact_email(contact);
        let (name, contact_email) = match (parsed_name, parsed_contact) {
            (Ok(name), Ok(contact)) => (name, contact),
            (name, contact) => {
                let mut errors: Vec<FieldError> = name.err().into_iter().collect();
                if let Err(Error::Validation(mut more)) = contact {
                    errors.append(&mut more);
                }
                return Err(Error::Validation(errors));
            }
        };
        let now = Utc::now();
        let tenant = Tenant {
            id: TenantId::generate(),
            name,
            plan,
            contact_email,
            created_at: now,
            updated_at: now,
        };
        let mut changes = vec![
            FieldChange::Value {
                field: "name".into(),
                before: None,
                after: Some(tenant.name.as_str().to_owned()),
            },
            FieldChange::Value {
                field: "plan".into(),
                before: None,
                after: Some(plan.code().to_owned()),
            },
        ];
        if let Some(contact) = &tenant.contact_email {
            changes.push(FieldChange::Value {
                field: "contactEmail".into(),
                before: None,
                after: Some(contact.as_str().to_owned()),
            });
        }
        let audit = AuditEntry::new(tenant.id, caller, AuditAction::TenantCreated, changes, now);
        self.store.insert_tenant(&tenant, &audit).await?;
        Ok(self.view(TenantRecord::new(tenant, None)))
    }

    /// Operators move tenants between plans. Settings are kept; on a plan that forbids a
    /// custom sender they are inactive until the tenant moves back.
    pub async fn change_plan(&self, caller: &Caller, id: TenantId, plan: Plan) -> Result<TenantView> {
        caller.require_operator()?;
        let mut writes = ConflictRetry::new(false);
        loop {
            let mut record = self.load(id).await?;
            let current_version = record.settings_version();
            let from = record.tenant.plan;
            if from == plan {
                return Ok(self.view(record));
            }
            let now = Utc::now();
            let audit = AuditEntry::new(
                id,
                caller,
                AuditAction::PlanChanged,
                vec![FieldChange::Value {
                    field: "plan".into(),
                    before: Some(from.code().into()),
                    after: Some(plan.code().into()),
                }],
                now,
            );
            let written = match self.store.change_plan(id, from, plan, now, &audit).await {
                Ok(tenant) => {
                    record.tenant = tenant;
                    self.mailer.forget(id).await;
                    Ok(self.view(record))
                }
                // Someone else moved the tenant first: try again from what is stored now.
                Err(WriteError::PlanChanged | WriteError::VersionConflict { .. }) => Err(WriteError::VersionConflict {
                    current: current_version,
                }),
                Err(e) => Err(e),
            };
            if let Some(done) = writes.settle(written)? {
                return Ok(done);
            }
        }
    }

    /// Operators set the tenant's contact address (`None` or blank: remove it): the only
    /// address notices about the tenant's settings are mailed to.
    pub async fn set_contact_email(&self, caller: &Caller, id: TenantId, contact: Option<&str>) -> Result<TenantView> {
        caller.require_operator()?;
        let contact = contact_email(contact)?;
        let mut record = self.load(id).await?;
        if record.tenant.contact_email == contact {
            return Ok(self.view(record));
        }
        let now = Utc::now();
        let audit = AuditEntry::new(
            id,
            caller,
            AuditAction::TenantContactChanged,
            vec![FieldChange::Value {
                field: "contactEmail".into(),
                before: record.tenant.contact_email.as_ref().map(|c| c.as_str().to_owned()),
                after: contact.as_ref().map(|c| c.as_str().to_owned()),
            }],
            now,
        );
        match self.store.set_contact_email(id, contact.as_ref(), now, &audit).await {
            Ok(tenant) => {
                record.tenant = tenant;
                Ok(self.view(record))
            }
            Err(WriteError::NotFound) => Err(Error::NotFound),
            // Not conditional on a version or plan: these do not arise.
            Err(WriteError::VersionConflict { current }) => Err(Error::VersionConflict { current }),
            Err(WriteError::PlanChanged) => Err(Error::NotFound),
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }

    /// A tenant, or `None` when it does not exist or the caller may not see it.
    pub async fn tenant(&self, caller: &Caller, id: TenantId) -> Result<Option<TenantView>> {
        if !caller.can_see(id) {
            return Ok(None);
        }
        Ok(self.store.tenant(id).await?.map(|r| self.view(r)))
    }

    /// Operators page through tenants, optionally of one plan.
    pub async fn tenants(
        &self,
        caller: &Caller,
        plan: Option<Plan>,
        after: Option<TenantId>,
        first: u64,
    ) -> Result<Page<TenantView>> {
        caller.require_operator()?;
        let rows = page(first, |limit| self.store.tenants(plan, after, limit)).await?;
        Ok(Page {
            items: rows.items.into_iter().map(|r| self.view(r)).collect(),
            has_next_page: rows.has_next_page,
        })
    }

    /// Saves a tenant's settings from a form. An input whose every text field is empty
    /// clears instead, and the result is `None`.
    pub async fn update_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        draft: &MailSettingsDraft,
        expected_version: Option<i64>,
    ) -> Result<Option<SavedSettings>> {
        caller.require_settings_editor(id)?;
        if draft.is_clear_request() {
            self.clear_mail_settings(caller, id, expected_version).await?;
            return Ok(None);
        }
        let mut writes = ConflictRetry::new(expected_version.is_some());
        loop {
            let record = self.load(id).await?;
            let permit = sender_override_permit(record.tenant.plan)?;
            let stored = record.settings.as_ref();
            // Unreadable settings are replaced as a whole: the form must carry every
            // field (and the password) again.
            let current = record.settings_version();
            if let Some(expected) = expected_version
                && expected != current
            {
                return Err(Error::VersionConflict { current });
            }
            let settings = MailSettings::validate(draft, stored.map(|s| &s.settings)).map_err(Error::Validation)?;
            self.ports.check(&settings).map_err(Error::Validation)?;
            let connection = self.check_connection(id, &settings).await?;
            // Through a mail API the settings' server is not used: nothing to look up.
            let by_api = connection.as_ref().is_some_and(|c| {
                matches!(
                    c.kind.transport(),
                    crate::oauth::Transport::GraphSendMail | crate::oauth::Transport::GmailApi
                )
            });
            let mut warnings = if by_api {
                Vec::new()
            } else {
                self.check_hosts(&settings).await?
            };
            if connection
                .as_ref()
                .is_some_and(|c| !c.mailbox.eq_ignore_ascii_case(settings.from_address().as_str()))
            {
                warnings.push(SettingsWarning::SenderNotSignedInMailbox);
            }
            let now = Utc::now();
            let changes = settings_diff(stored.map(|s| &s.settings), Some(&settings));
            let audit = AuditEntry::new(id, caller, AuditAction::MailSettingsSaved, changes, now);
            let saved = self
                .store
                .save_mail_settings(
                    id,
                    permit,
                    &settings,
                    self.activation.initial_state(),
                    current,
                    now,
                    &audit,
                )
                .await;
            if saved.is_ok() {
                self.mailer.forget(id).await;
            }
            if let Some(stored) = writes.settle(saved)? {
                return Ok(Some(SavedSettings { stored, warnings }));
            }
        }
    }

    /// The connection settings name must be one of the tenant's, and able to send.
    async fn check_connection(
        &self,
        id: TenantId,
        settings: &MailSettings,
    ) -> Result<Option<crate::oauth::MailConnection>> {
        let Some(connection) = settings.connection() else {
            return Ok(None);
        };
        let found = match &self.connections {
            Some(store) => store.get(id, connection).await?,
            None => None,
        };
        match found {
            None => Err(Error::Validation(vec![crate::error::FieldError::new(
                "connectionId",
                FieldCode::UnknownConnection,
            )])),
            Some(c) if c.status != crate::oauth::ConnectionStatus::Active => {
                Err(Error::Validation(vec![crate::error::FieldError::new(
                    "connectionId",
                    FieldCode::ConnectionNotActive,
                )]))
            }
            // XOAUTH2 sends the bearer token itself: never over a plain connection.
            Some(c)
                if matches!(
                    c.kind.transport(),
                    crate::oauth::Transport::Office365Smtp | crate::oauth::Transport::TenantSmtp
                ) && settings.encryption() == crate::settings::Encryption::None =>
            {
                Err(Error::Validation(vec![crate::error::FieldError::new(
                    "encryption",
                    FieldCode::EncryptionRequired,
                )]))
            }
            Some(c) => Ok(Some(c)),
        }
    }

    /// Looks up the SMTP and POP hosts under the sending guard: an internal address or
    /// `localhost` refuses the save (every such field at once); a host that does not
    /// resolve to a reachable address is saved with a warning.
    async fn check_hosts(&self, settings: &MailSettings) -> Result<Vec<SettingsWarning>> {
        let smtp = self.mailer.check_host(settings.host(), settings.port().get()).await;
        let pop = match settings.pop_before_smtp() {
            Some(p) => Some(self.mailer.check_host(p.host(), p.port().get()).await),
            None => None,
        };
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        match smtp {
            HostCheck::Forbidden => refused.push(crate::error::FieldError::new("host", FieldCode::ForbiddenAddress)),
            HostCheck::Unresolved => warnings.push(SettingsWarning::HostNotResolved),
            HostCheck::Reachable => {}
        }
        match pop {
            Some(HostCheck::Forbidden) => refused.push(crate::error::FieldError::new(
                "popBeforeSmtp.host",
                FieldCode::ForbiddenAddress,
            )),
            Some(HostCheck::Unresolved) => warnings.push(SettingsWarning::PopHostNotResolved),
            _ => {}
        }
        if !refused.is_empty() {
            return Err(Error::Validation(refused));
        }
        if let Some(verdict) = self.sender_domain_verdict(settings).await {
            match verdict {
                Verdict::Pass => {}
                Verdict::AtRisk => warnings.push(SettingsWarning::SenderDomainAtRisk),
                Verdict::WillFail => warnings.push(SettingsWarning::SenderDomainWillFail),
            }
        }
        Ok(warnings)
    }

    /// The sender-domain verdict for `settings`, if the check answers within its
    /// deadline (DNS that is slow or down gives no warning rather than a slow save).
    async fn sender_domain_verdict(&self, settings: &MailSettings) -> Option<Verdict> {
        let lookups = self.lookups.as_ref()?;
        let server = CheckedServer {
            kind: settings.server_kind(),
            host: settings.host().clone(),
        };
        let findings = lookups
            .sender_domain(settings.from_address(), &server, SENDER_DOMAIN_DEADLINE_ON_SAVE)
            .await?;
        Some(DomainCheck::judge(findings).verdict)
    }

    /// Removes all of a tenant's settings; mail goes out from the platform default again.
    /// Clearing when nothing is saved changes nothing.
    pub async fn clear_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        expected_version: Option<i64>,
    ) -> Result<TenantView> {
        caller.require_settings_editor(id)?;
        let mut writes = ConflictRetry::new(expected_version.is_some());
        loop {
            let mut record = self.load(id).await?;
            let current = record.settings_version();
            if let Some(expected) = expected_version
                && expected != current
            {
                return Err(Error::VersionConflict { current });
            }
            if current == 0 {
                return Ok(self.view(record));
            }
            let now = Utc::now();
            // Unreadable settings are cleared without reading them: nothing to list.
            let changes = settings_diff(record.settings.as_ref().map(|s| &s.settings), None);
            let audit = AuditEntry::new(id, caller, AuditAction::MailSettingsCleared, changes, now);
            let cleared = self.store.clear_mail_settings(id, current, now, &audit).await;
            if writes.settle(cleared)?.is_some() {
                record.settings = None;
                record.unreadable_settings = None;
                self.mailer.forget(id).await;
                return Ok(self.view(record));
            }
        }
    }

    /// A tenant's audit trail, for operators and that tenant's admins.
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        id: TenantId,
        after: Option<uuid::Uuid>,
        first: u64,
    ) -> Result<Page<AuditEntry>> {
        caller.require_settings_editor(id)?;
        page(first, |limit| self.store.audit_trail(id, after, limit)).await
    }

    /// Sends a real test mail to `to`, through the unsaved `draft` when given (the stored
    /// password is reused only for the same server) or the stored settings. The plan gate
    /// applies; at most ten a minute per tenant (refused before any connection); every
    /// test is written to the audit trail (recipient and result, no secrets).
    pub async fn send_test_mail(
        &self,
        caller: &Caller,
        id: TenantId,
        to: &str,
        draft: Option<&MailSettingsDraft>,
        locale: Locale,
    ) -> Result<TestMailOutcome> {
        caller.require_settings_editor(id)?;
        let record = self.load(id).await?;
        let permit = sender_override_permit(record.tenant.plan)?;
        let to = EmailAddress::parse(to).map_err(|e| Error::validation("to", e))?;
        let stored = record.settings.as_ref().map(|s| &s.settings);
        if draft.is_none()
            && let Some(u) = record.unreadable_settings
        {
            return Err(Error::SettingsUnreadable { version: u.version });
        }
        let settings = match draft {
            Some(d) => MailSettings::validate(d, stored).map_err(Error::Validation)?,
            None => stored
                .cloned()
                .ok_or_else(|| Error::validation("settings", crate::error::FieldCode::Required))?,
        };
        self.ports.check(&settings).map_err(Error::Validation)?;
        // A test of the saved version proves it (a draft proves nothing about what is saved).
        let proving = match (draft, &record.settings) {
            (None, Some(saved)) if saved.health.state != SettingsState::Live => Some(saved.version),
            _ => None,
        };
        let code = match (proving, self.activation) {
            (Some(_), ActivationMode::Code) => Some(ActivationCode::issue(Utc::now())),
            _ => None,
        };
        if !self
            .coordination
            .try_record_test_mail(id, caller.subject(), TEST_MAIL_LIMIT)
            .await?
        {
            self.count_test_mail(TestMailCount::RateLimited);
            return Err(Error::RateLimited);
        }
        let (subject, text) = match locale {
            Locale::En => (
                "Mailgate test mail",
                "This is a test mail from your site's mail server settings.\r\nIf you can read it, sending works and the sender is the one you set.\r\n",
            ),
            Locale::Ja => (
                "Mailgate テストメール",
                "メールサーバー設定からのテストメールです。\r\nこのメールが届いていれば、送信と送信元の設定は正しく動作しています。\r\n",
            ),
        };
        let mut text = text.to_owned();
        if let Some((code, _)) = &code {
            text.push_str(&match locale {
                Locale::En => format!(
                    "\r\nActivation code: {code}\r\nEnter it in the mail server settings within 30 minutes to put them in force.\r\n"
                ),
                Locale::Ja => format!(
                    "\r\n有効化コード: {code}\r\n30 分以内にメールサーバー設定の画面で入力すると、この設定が有効になります。\r\n"
                ),
            });
        }
        let mail = OutgoingMail {
            to: to.clone(),
            subject: Subject::parse(subject).map_err(|e| Error::validation("subject", e))?,
            text,
            html: None,
            message_id: None,
            via_platform: false,
        };
        let result = self
            .mailer
            .send_test(permit, id, &settings, &mail, TEST_MAIL_DEADLINE)
            .await;
        self.count_test_mail(match &result {
            Ok(_) => TestMailCount::Sent,
            Err(f) => TestMailCount::Failed(f.stage),
        });
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(f) => match f.smtp_code {
                Some(code) => format!("failed at {} ({code})", f.stage.code()),
                None => format!("failed at {}", f.stage.code()),
            },
        };
        let audit = AuditEntry::new(
            id,
            caller,
            AuditAction::TestMailSent,
            vec![
                FieldChange::Value {
                    field: "to".into(),
                    before: None,
                    after: Some(to.to_string()),
                },
                FieldChange::Value {
                    field: "result".into(),
                    before: None,
                    after: Some(outcome),
                },
                FieldChange::Value {
                    field: "host".into(),
                    before: None,
                    after: Some(settings.host().to_string()),
                },
            ],
            Utc::now(),
        );
        self.store.record_audit(&audit).await?;
        let (mut activated, mut activation_code_sent) = (false, false);
        if let (Ok(_), Some(version)) = (&result, proving) {
            let written = match &code {
                Some((_, stored)) => self.store.set_activation_code(id, version, stored).await,
                None => {
                    let audit = live_audit(id, caller, version, "test");
                    self.store.activate_mail_settings(id, version, audit.at, &audit).await
                }
            };
            match written {
                Ok(()) => {
                    activated = code.is_none();
                    activation_code_sent = code.is_some();
                    if activated {
                        self.mailer.forget(id).await;
                    }
                }
                // Saved anew or cleared meanwhile: this test proved a version that is gone.
                Err(WriteError::VersionConflict { .. } | WriteError::NotFound | WriteError::PlanChanged) => {}
                Err(WriteError::Store(e)) => return Err(e.into()),
            }
        }
        let diagnosis = result.as_ref().err().map(|f| diagnose(f, Some(&settings)));
        let sign_in_offer = result
            .as_ref()
            .err()
            .filter(|f| crate::mail::offers_microsoft_sign_in(f, Some(&settings)))
            .map(|_| crate::oauth::Provider::Microsoft);
        // A server often delivers mail for its own domain locally: a test to it proves
        // little about mail to the outside (the seed page asks for an external address).
        let warnings = if to.ascii_domain() == settings.from_address().ascii_domain() {
            vec![SettingsWarning::RecipientInSenderDomain]
        } else {
            Vec::new()
        };
        Ok(TestMailOutcome {
            result,
            diagnosis,
            activated,
            activation_code_sent,
            warnings,
            sign_in_offer,
        })
    }

    /// Activates the saved settings with the code their test mail carried (`code`
    /// activation; the code also brings a suspended version back). Answers the settings
    /// as they are now.
    pub async fn activate_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        code: &str,
    ) -> Result<StoredMailSettings> {
        caller.require_settings_editor(id)?;
        let record = self.load(id).await?;
        if let Some(u) = record.unreadable_settings {
            return Err(Error::SettingsUnreadable { version: u.version });
        }
        let saved = record
            .settings
            .as_ref()
            .ok_or_else(|| Error::validation("code", FieldCode::ActivationCodeInvalid))?;
        if saved.health.state == SettingsState::Live {
            return Err(Error::validation("code", FieldCode::AlreadyLive));
        }
        let now = Utc::now();
        let waiting = saved
            .health
            .activation_code
            .as_ref()
            .ok_or_else(|| Error::validation("code", FieldCode::ActivationCodeInvalid))?;
        waiting.check(code, now).map_err(|refusal| {
            Error::validation(
                "code",
                match refusal {
                    CodeRefusal::Invalid => FieldCode::ActivationCodeInvalid,
                    CodeRefusal::Expired => FieldCode::ActivationCodeExpired,
                },
            )
        })?;
        let audit = live_audit(id, caller, saved.version, "code");
        match self.store.activate_mail_settings(id, saved.version, now, &audit).await {
            Ok(()) => {}
            Err(WriteError::VersionConflict { current }) => return Err(Error::VersionConflict { current }),
            Err(WriteError::NotFound) => return Err(Error::NotFound),
            Err(WriteError::PlanChanged) => return Err(Error::VersionConflict { current: saved.version }),
            Err(WriteError::Store(e)) => return Err(e.into()),
        }
        self.mailer.forget(id).await;
        let record = self.load(id).await?;
        record.settings.ok_or(Error::VersionConflict { current: 0 })
    }

    /// Whether storage answers.
    pub async fn ready(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;

    #[test]
    fn a_conflict_is_retried_unless_the_caller_named_a_version() {
        // Without a version: conflicts and plan races are tried again, the last version
        // seen is reported once the rounds are used up.
        let mut writes = ConflictRetry::new(false);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 3 })),
            Ok(None)
        ));
        assert!(matches!(writes.settle::<()>(Err(WriteError::PlanChanged)), Ok(None)));
        assert!(matches!(writes.settle(Ok(7)), Ok(Some(7))));
        let mut writes = ConflictRetry::new(false);
        for round in 1..WRITE_ATTEMPTS {
            let again = writes.settle::<()>(Err(WriteError::VersionConflict { current: 9 }));
            assert!(matches!(again, Ok(None)), "round {round}");
        }
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 10 })),
            Err(Error::VersionConflict { current: 10 })
        ));

        // With a version: the first conflict is the caller's answer.
        let mut writes = ConflictRetry::new(true);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::VersionConflict { current: 4 })),
            Err(Error::VersionConflict { current: 4 })
        ));
        // Other refusals end it at once, whatever the mode.
        let mut writes = ConflictRetry::new(false);
        assert!(matches!(
            writes.settle::<()>(Err(WriteError::NotFound)),
            Err(Error::NotFound)
        ));
        let store = WriteError::Store(StoreError::Corrupt("x".into()));
        assert!(matches!(writes.settle::<()>(Err(store)), Err(Error::Internal(_))));
    }
}
