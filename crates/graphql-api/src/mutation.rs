//! Write operations. Each parses its input, calls one domain service, converts.

use std::str::FromStr;

use async_graphql::{Context, ID, Object};

use domain::service::TenantService;
use domain::{Error, TenantId};

use crate::context::RequestContext;
use crate::error::ResultExt as _;
use crate::inputs::MailSettingsInput;
use crate::types::{MailSettings, Plan, Tenant, TestMailResult};

/// A malformed id names no tenant.
fn parse_tenant_id(id: &ID) -> domain::Result<TenantId> {
    TenantId::from_str(id).map_err(|_| Error::NotFound)
}

fn parts<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a RequestContext, &'a TenantService)> {
    Ok((ctx.data::<RequestContext>()?, ctx.data::<TenantService>()?))
}

#[derive(Debug, Default)]
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Operators: a new tenant on a plan.
    async fn create_tenant(&self, ctx: &Context<'_>, name: String, plan: Plan) -> async_graphql::Result<Tenant> {
        let (rc, service) = parts(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        service
            .create_tenant(caller, &name, plan.into())
            .await
            .map(Tenant)
            .gql(rc.locale)
    }

    /// Operators: move a tenant to another plan. On ECONOMY, BASIC or PRO its settings
    /// are kept but inactive.
    async fn change_tenant_plan(&self, ctx: &Context<'_>, tenant_id: ID, plan: Plan) -> async_graphql::Result<Tenant> {
        let (rc, service) = parts(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let id = parse_tenant_id(&tenant_id).gql(rc.locale)?;
        service
            .change_plan(caller, id, plan.into())
            .await
            .map(Tenant)
            .gql(rc.locale)
    }

    /// Save the tenant's own mail server. Null when the input cleared the settings.
    async fn update_mail_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        input: MailSettingsInput,
    ) -> async_graphql::Result<Option<MailSettings>> {
        let (rc, service) = parts(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let id = parse_tenant_id(&tenant_id).gql(rc.locale)?;
        let expected = input.expected_version();
        let draft = input.into_draft();
        let saved = service
            .update_mail_settings(caller, id, &draft, expected)
            .await
            .gql(rc.locale)?;
        Ok(saved.map(|stored| MailSettings { stored, active: true }))
    }

    /// Remove all saved settings; mail goes out from the platform default again.
    async fn clear_mail_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        expected_version: Option<i32>,
    ) -> async_graphql::Result<Tenant> {
        let (rc, service) = parts(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let id = parse_tenant_id(&tenant_id).gql(rc.locale)?;
        service
            .clear_mail_settings(caller, id, expected_version.map(i64::from))
            .await
            .map(Tenant)
            .gql(rc.locale)
    }

    /// Send a real test mail to `to` through the unsaved `settings` (or, without them, the
    /// saved ones). Finishes within 20 seconds; at most 10 per tenant per minute.
    async fn send_test_mail(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        to: String,
        settings: Option<MailSettingsInput>,
    ) -> async_graphql::Result<TestMailResult> {
        let (rc, service) = parts(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let id = parse_tenant_id(&tenant_id).gql(rc.locale)?;
        let draft = settings.map(MailSettingsInput::into_draft);
        let outcome = service
            .send_test_mail(caller, id, &to, draft.as_ref(), rc.locale)
            .await
            .gql(rc.locale)?;
        Ok(TestMailResult::from_outcome(&outcome, rc.locale))
    }

    /// Platform services (and operators): hand in a notification. It is durable when this
    /// returns; the same idempotency key for the same tenant returns the same delivery.
    async fn enqueue_notification(
        &self,
        ctx: &Context<'_>,
        input: crate::deliveries::NotificationInput,
    ) -> async_graphql::Result<crate::deliveries::Delivery> {
        crate::deliveries::enqueue(ctx, input).await
    }

    /// Put a FAILED delivery back in the queue. Operators and the tenant's admins.
    async fn retry_delivery(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<crate::deliveries::Delivery> {
        crate::deliveries::retry(ctx, id).await
    }
}
