//! Tenants and plans: create, move between plans, the contact address, read and page;
//! the service every tenant operation hangs on ([`TenantService`]).

use std::sync::Arc;

use chrono::Utc;

use super::paging::{ConflictRetry, Page, page};
use super::test_mail::{TestMailCount, TestMailCounter};
use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry, TrailOrder};
use crate::change::ChangeRecord;
use crate::error::{Error, Result};
use crate::error::{FieldError, WriteError};
use crate::health::ActivationMode;
use crate::plan::Plan;
use crate::ports::{Coordination, MailTransport, SetupLookups, TenantRecord, TenantStore, TenantViews};
use crate::sender::{EffectiveSender, PlatformSender, effective_sender_of};
use crate::settings::PortPolicy;
use crate::settings::{FieldChange, StoredMailSettings};
use crate::tenant::{NameSearch, Tenant, TenantFilter, TenantId, TenantName};
use crate::values::EmailAddress;

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

/// The name tenants see when the operator has not named the service.
pub const DEFAULT_PRODUCT_NAME: &str = "Mailgate";

/// Tenant, plan and mail-settings operations.
#[derive(Clone)]
pub struct TenantService {
    pub(super) store: Arc<dyn TenantStore>,
    pub(super) platform: Arc<PlatformSender>,
    pub(super) mailer: Arc<dyn MailTransport>,
    pub(super) ports: Arc<PortPolicy>,
    pub(super) coordination: Arc<dyn Coordination>,
    pub(super) activation: ActivationMode,
    /// The name tenants know the service by (the operator's; test mails' subject).
    pub(super) product: Arc<str>,
    /// The sender-domain check a save runs (none: no such warning).
    pub(super) lookups: Option<Arc<dyn SetupLookups>>,
    /// Told of every test mail (for `/metrics`).
    pub(super) test_mails: Option<TestMailCounter>,
    /// The tenants' sign-ins (OAuth connections) settings may name.
    pub(super) connections: Option<Arc<dyn crate::ports::MailConnections>>,
    /// Told of every change this service makes to a tenant, once it is stored.
    pub(super) views: Arc<dyn TenantViews>,
}

impl std::fmt::Debug for TenantService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl TenantService {
    /// `coordination` keeps the test-mail limit across processes; `views` drops what
    /// this process keeps of a tenant after each change.
    pub fn new(
        store: Arc<dyn TenantStore>,
        platform: PlatformSender,
        mailer: Arc<dyn MailTransport>,
        ports: PortPolicy,
        coordination: Arc<dyn Coordination>,
        views: Arc<dyn TenantViews>,
    ) -> Self {
        Self {
            store,
            platform: Arc::new(platform),
            mailer,
            ports: Arc::new(ports),
            coordination,
            activation: ActivationMode::default(),
            product: Arc::from(DEFAULT_PRODUCT_NAME),
            lookups: None,
            test_mails: None,
            connections: None,
            views,
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

    pub(super) fn count_test_mail(&self, count: TestMailCount) {
        if let Some(counter) = &self.test_mails {
            counter(count);
        }
    }

    /// What makes a saved version live (default: a successful test mail).
    pub fn with_activation(mut self, activation: ActivationMode) -> Self {
        self.activation = activation;
        self
    }

    /// The name tenants know the service by, in the test mails' subject (default
    /// [`DEFAULT_PRODUCT_NAME`]).
    pub fn with_product_name(mut self, name: &str) -> Self {
        self.product = Arc::from(name);
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

    pub(super) fn view(&self, record: TenantRecord) -> TenantView {
        TenantView {
            record,
            platform: self.platform.clone(),
        }
    }

    pub(super) async fn load(&self, id: TenantId) -> Result<TenantRecord> {
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
        self.store.insert_tenant(&tenant, &ChangeRecord::of(audit)).await?;
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
            let written = self
                .store
                .change_plan(id, from, plan, now, &ChangeRecord::of(audit))
                .await;
            // Moved, or refused because what this process kept was stale: the retry reads
            // the store.
            if !matches!(written, Err(WriteError::Store(_))) {
                self.views.changed(id).await;
            }
            let written = match written {
                Ok(tenant) => {
                    record.tenant = tenant;
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
        match self
            .store
            .set_contact_email(id, contact.as_ref(), now, &ChangeRecord::of(audit))
            .await
        {
            Ok(tenant) => {
                record.tenant = tenant;
                self.views.changed(id).await;
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

    /// Operators page through tenants, optionally of one plan, optionally those whose
    /// name contains `name` (A–Z in either case).
    pub async fn tenants(
        &self,
        caller: &Caller,
        plan: Option<Plan>,
        name: Option<&str>,
        after: Option<TenantId>,
        first: u64,
    ) -> Result<Page<TenantView>> {
        caller.require_operator()?;
        let name = NameSearch::parse(name.unwrap_or_default()).map_err(|e| Error::validation("nameContains", e))?;
        let filter = TenantFilter { plan, name };
        let rows = page(first, |limit| self.store.tenants(&filter, after, limit)).await?;
        Ok(Page {
            items: rows.items.into_iter().map(|r| self.view(r)).collect(),
            has_next_page: rows.has_next_page,
        })
    }

    /// A tenant's audit trail, for operators and that tenant's admins.
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        id: TenantId,
        after: Option<uuid::Uuid>,
        first: u64,
        order: TrailOrder,
    ) -> Result<Page<AuditEntry>> {
        caller.require_settings_editor(id)?;
        page(first, |limit| self.store.audit_trail(id, after, limit, order)).await
    }

    /// Whether storage answers.
    pub async fn ready(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }
}
