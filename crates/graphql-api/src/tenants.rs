//! GraphQL for tenants and plans: `viewer`, `tenant`, `tenants`, `plans`,
//! `createTenant`, `changeTenantPlan`, `setTenantContactEmail` and `clearMailSettings`
//! (which answers with the tenant), and the `Tenant` type that gathers the other
//! features' fields.

use std::str::FromStr;

use async_graphql::{Context, Enum, ID, Object, SimpleObject};

use domain::TenantId;
use domain::sender::SenderReason;
use domain::services::{TenantService, TenantView};

use crate::audit::{AuditEventConnection, AuditOrder};
use crate::catalogue::{Text, say};
use crate::context::RequestContext;
use crate::deliveries::{DeliveryConnection, DeliveryStatus};
use crate::error::ResultExt as _;
use crate::mail_settings::MailSettings;
use crate::pagination::{self, PageInfo};
use crate::values::{Plan, Role, SenderSource, caller_and, locale, parse_tenant_id, rfc3339};

/// A plan and whether it may replace the platform's default sender.
#[derive(SimpleObject, Debug)]
pub struct PlanInfo {
    pub code: Plan,
    pub name: String,
    pub can_override_sender: bool,
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
        self.0.source.into()
    }
    /// A sentence a person can read, in the caller's language.
    async fn reason(&self, ctx: &Context<'_>) -> String {
        say(Text::SenderReason(self.0.reason), locale(ctx)).into_owned()
    }
    /// The reason as a stable code, for programs.
    async fn reason_code(&self) -> SenderReasonCode {
        match self.0.reason {
            SenderReason::CustomSettingsActive(_) => SenderReasonCode::CustomLive,
            SenderReason::NoSettingsSaved => SenderReasonCode::NoSettings,
            SenderReason::PlanForbids { .. } => SenderReasonCode::PlanForbids,
            SenderReason::PendingVerification => SenderReasonCode::PendingVerification,
            SenderReason::Suspended => SenderReasonCode::Suspended,
            SenderReason::SettingsUnreadable => SenderReasonCode::SettingsUnreadable,
        }
    }
    /// Where replies go when mail goes out from the platform default for the tenant
    /// (`fromName <fromAddress>` of its suspended settings); null otherwise.
    async fn reply_to(&self) -> Option<String> {
        self.0.reply_to.as_ref().map(|r| match &r.name {
            Some(name) => format!("{} <{}>", name.as_str(), r.address.as_str()),
            None => r.address.as_str().to_owned(),
        })
    }
}

/// Why the effective sender is what it is.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SenderReasonCode {
    /// A live version of the tenant's settings carries the mail.
    CustomLive,
    /// The plan allows the tenant's own server, but nothing is saved.
    NoSettings,
    /// The plan forbids a custom sender (saved settings are kept, inactive).
    PlanForbids,
    /// The saved settings wait for a successful test, and no earlier version is live.
    PendingVerification,
    /// The settings in force were suspended after configuration failures.
    Suspended,
    /// The saved settings cannot be read back: mail waits.
    SettingsUnreadable,
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
    /// The address an operator set for notices about the tenant's settings (a
    /// suspension); null when none is set, and for callers other than operators and the
    /// tenant's admins. Without one, such notices are not mailed.
    async fn contact_email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let rc = ctx.data::<RequestContext>()?;
        let caller = rc.caller().gql(rc.locale)?;
        Ok(self.0.contact_email(caller).map(|c| c.as_str().to_owned()))
    }
    /// Null when nothing is saved. `SETTINGS_UNREADABLE` (with `currentVersion`) when
    /// settings are saved but cannot be read back: save them anew or clear them.
    async fn mail_settings(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<MailSettings>> {
        let stored = self.0.readable_settings().gql(locale(ctx))?;
        Ok(stored.cloned().map(|stored| MailSettings {
            tenant: self.0.tenant().id,
            stored,
            active: self.0.settings_active(),
            save_warnings: Vec::new(),
        }))
    }
    async fn effective_sender(&self) -> EffectiveSender {
        EffectiveSender(self.0.effective_sender())
    }
    /// The platform's default sender, which this tenant's mail goes out from whenever its
    /// own server is not used (nothing saved, a plan that forbids it, suspended, cleared):
    /// what a "clear" or a downgrade would switch to.
    async fn platform_sender(&self) -> crate::mail_settings::SenderUsed {
        let platform = self.0.platform_sender();
        crate::mail_settings::SenderUsed {
            address: platform.address.to_string(),
            name: platform.name.as_ref().map(|n| n.as_str().to_owned()),
            source: crate::values::SenderSource::PlatformDefault,
        }
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.tenant().created_at)
    }
    async fn updated_at(&self) -> String {
        rfc3339(self.0.tenant().updated_at)
    }
    /// How many notifications may be handed in for this tenant per minute and per day.
    async fn enqueue_quota(&self, ctx: &Context<'_>) -> async_graphql::Result<crate::deliveries::EnqueueQuota> {
        crate::deliveries::quota(ctx, self.0.tenant().id).await
    }

    /// Notifications for this tenant, newest first, with counts per status.
    #[graphql(complexity = "crate::pagination::page_complexity(first, 20, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        status: Option<DeliveryStatus>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<DeliveryConnection> {
        crate::deliveries::tenant_deliveries(ctx, self.0.tenant().id, status, first, after).await
    }

    /// Who changed what, oldest first unless `order` says `NEWEST_FIRST` (then `after`
    /// continues towards older entries). Operators and this tenant's admins.
    #[graphql(complexity = "crate::pagination::page_complexity(first, 50, child_complexity)")]
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1–100 (default 50).")] first: Option<i32>,
        after: Option<String>,
        #[graphql(default)] order: AuditOrder,
    ) -> async_graphql::Result<AuditEventConnection> {
        crate::audit::trail(ctx, self.0.tenant().id, first, after, order).await
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
        let service = ctx.data::<TenantService>()?;
        Ok(service.tenant(&self.caller, id).await.gql(locale(ctx))?.map(Tenant))
    }
}

/// `Query.viewer`.
pub(crate) fn viewer(ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
    let rc = ctx.data::<RequestContext>()?;
    Ok(Viewer {
        caller: rc.caller().gql(rc.locale)?.clone(),
    })
}

/// `Query.tenant`: null for a malformed id too.
pub(crate) async fn tenant(ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Tenant>> {
    let Ok(id) = TenantId::from_str(&id) else {
        return Ok(None);
    };
    tenant_by_id(ctx, id).await
}

/// The tenant `id` as the caller may see it (null when absent or not visible), for the
/// fields of other features that name a tenant (a webhook endpoint, a message).
pub(crate) async fn tenant_by_id(ctx: &Context<'_>, id: TenantId) -> async_graphql::Result<Option<Tenant>> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    Ok(service.tenant(caller, id).await.gql(l)?.map(Tenant))
}

/// `Query.tenants`.
pub(crate) async fn tenants(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    plan: Option<Plan>,
    name_contains: Option<String>,
) -> async_graphql::Result<TenantConnection> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let first = pagination::page_size(first, 20, l)?;
    let after = pagination::after::<TenantId>(after, l)?;
    let page = service
        .tenants(caller, plan.map(Into::into), name_contains.as_deref(), after, first)
        .await
        .gql(l)?;
    let (edges, page_info) = pagination::edges(page, |v| v.tenant().id, Tenant);
    Ok(TenantConnection {
        edges: edges
            .into_iter()
            .map(|(cursor, node)| TenantEdge { cursor, node })
            .collect(),
        page_info,
    })
}

/// `Query.plans`.
pub(crate) fn plans() -> Vec<PlanInfo> {
    domain::Plan::ALL
        .into_iter()
        .map(|p| PlanInfo {
            code: p.into(),
            name: p.display_name().into(),
            can_override_sender: p.can_override_sender(),
        })
        .collect()
}

/// `Mutation.createTenant`.
pub(crate) async fn create(
    ctx: &Context<'_>,
    name: String,
    plan: Plan,
    contact_email: Option<String>,
) -> async_graphql::Result<Tenant> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    service
        .create_tenant_with_contact(caller, &name, plan.into(), contact_email.as_deref())
        .await
        .map(Tenant)
        .gql(l)
}

/// `Mutation.setTenantContactEmail`.
pub(crate) async fn set_contact_email(
    ctx: &Context<'_>,
    tenant_id: ID,
    contact_email: Option<String>,
) -> async_graphql::Result<Tenant> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    service
        .set_contact_email(caller, id, contact_email.as_deref())
        .await
        .map(Tenant)
        .gql(l)
}

/// `Mutation.changeTenantPlan`.
pub(crate) async fn change_plan(ctx: &Context<'_>, tenant_id: ID, plan: Plan) -> async_graphql::Result<Tenant> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    service.change_plan(caller, id, plan.into()).await.map(Tenant).gql(l)
}

/// `Mutation.clearMailSettings`.
pub(crate) async fn clear_mail_settings(
    ctx: &Context<'_>,
    tenant_id: ID,
    expected_version: Option<i32>,
) -> async_graphql::Result<Tenant> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    service
        .clear_mail_settings(caller, id, expected_version.map(i64::from))
        .await
        .map(Tenant)
        .gql(l)
}
