//! The schema's two roots and building the schema once, with its limits and services.
//! Each root field is one line that hands over to its feature module (`tenants`,
//! `mail_settings`, `deliveries`); the order here is the order of the published schema.

use async_graphql::{Context, EmptySubscription, ID, Object, Schema};

use crate::assistant::{MailServerDiscovery, MailServerPreset, ProbeResult, SenderDomainCheck};
use crate::connections::{
    AppConnectionSetup, MailConnectionKind, MailConnectionView, MailProvider, MailboxSignIn, TokenUrlConnectionInput,
};
use crate::deliveries::{Delivery, NotificationInput};
use crate::mail_settings::{MailSettings, MailSettingsInput, MailboxConnected, TestMailResult};
use crate::tenants::{self, PlanInfo, Tenant, TenantConnection, Viewer};
use crate::values::Plan;
use crate::webhooks::{
    WebhookEndpoint, WebhookEndpointChanges, WebhookEndpointConnection, WebhookEndpointInput, WebhookEndpointSecret,
    WebhookEventType, WebhookMessage,
};
use crate::{assistant, connections, deliveries, mail_settings, webhooks};

pub type MailgateSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The caller: role and, for tenant admins, their tenant.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        tenants::viewer(ctx)
    }

    /// Null if the tenant does not exist or the caller may not see it.
    async fn tenant(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Tenant>> {
        tenants::tenant(ctx, id).await
    }

    /// Operators: tenants in creation order, optionally of one plan, optionally those
    /// whose name contains `nameContains` (case, full-width and half-width forms do not
    /// matter: `shop` finds 「ＳＨＯＰ」, `ｶﾌｪ` finds 「カフェ」).
    #[graphql(complexity = "crate::pagination::page_complexity(first, 20, child_complexity)")]
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        plan: Option<Plan>,
        name_contains: Option<String>,
    ) -> async_graphql::Result<TenantConnection> {
        tenants::tenants(ctx, first, after, plan, name_contains).await
    }

    /// A delivery; null if absent or not visible to the caller.
    async fn delivery(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Delivery>> {
        deliveries::delivery(ctx, id).await
    }

    /// All plans and whether each may replace the default sender.
    async fn plans(&self) -> Vec<PlanInfo> {
        tenants::plans()
    }

    /// The providers a mailbox can be connected with by signing in (those the operator
    /// set up); empty when the feature is off.
    async fn mail_sign_in_providers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MailProvider>> {
        connections::providers(ctx)
    }

    /// The app-only kinds the operator set up (`MICROSOFT_APP_SMTP`,
    /// `GOOGLE_DOMAIN_WIDE`): connections an organisation's admin sets up without a
    /// sign-in.
    async fn mail_app_connection_kinds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MailConnectionKind>> {
        connections::app_kinds(ctx)
    }

    /// What the organisation's admin does before `connectMailboxAsApp` works for
    /// `mailbox`: Microsoft's admin consent and the Exchange Online PowerShell, pre-filled;
    /// Google's domain-wide delegation client id and scope.
    async fn app_connection_setup(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        kind: MailConnectionKind,
        mailbox: String,
    ) -> async_graphql::Result<AppConnectionSetup> {
        connections::app_setup(ctx, tenant_id, kind, mailbox).await
    }

    /// The tenant's sign-ins with Microsoft or Google, oldest first.
    async fn mail_connections(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<Vec<MailConnectionView>> {
        connections::list(ctx, tenant_id).await
    }

    /// Presets for the server fields (GMAIL: smtp.gmail.com, 587, STARTTLS, auth), one per
    /// provider Mailgate knows, each with what the user name is, the published limit and
    /// the hints in the caller's language.
    async fn mail_server_presets(&self, ctx: &Context<'_>) -> Vec<MailServerPreset> {
        assistant::presets(ctx)
    }

    /// The setup assistant: settings for a sender address, from Mailgate's provider data
    /// (by domain), the domain's MX records (known providers), its SRV records (RFC 6186,
    /// 8314) and its autoconfig documents (HTTPS, under the address guard), each with
    /// where it came from and how sure it is. Cached per domain for 10 minutes; at most
    /// 60 lookups per tenant per minute.
    async fn discover_mail_server(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        from_address: String,
    ) -> async_graphql::Result<MailServerDiscovery> {
        assistant::discover(ctx, tenant_id, from_address).await
    }

    /// The setup assistant: what the From domain's SPF, DKIM and DMARC do with mail sent
    /// through `settings` (the form; absent: the saved settings), with the verdict, the
    /// issues explained and the records to publish where they are knowable.
    async fn check_sender_domain(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        from_address: String,
        settings: Option<MailSettingsInput>,
    ) -> async_graphql::Result<SenderDomainCheck> {
        assistant::check_domain(ctx, tenant_id, from_address, settings).await
    }

    /// Operators: the webhook endpoints, in creation order.
    #[graphql(complexity = "crate::pagination::page_complexity(first, 20, child_complexity)")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<WebhookEndpointConnection> {
        webhooks::endpoints(ctx, first, after).await
    }

    /// Operators: every event type an endpoint can subscribe to, in the order to offer
    /// them (the domain's list; a client need not keep its own).
    async fn webhook_event_types(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookEventType>> {
        webhooks::event_types(ctx)
    }

    /// Operators: one webhook endpoint with its recent messages; null if absent.
    async fn webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<WebhookEndpoint>> {
        webhooks::endpoint(ctx, id).await
    }
}

#[derive(Debug, Default)]
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Operators: a new tenant on a plan, optionally with the contact address notices
    /// about its settings (a suspension) are mailed to.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        name: String,
        plan: Plan,
        contact_email: Option<String>,
    ) -> async_graphql::Result<Tenant> {
        tenants::create(ctx, name, plan, contact_email).await
    }

    /// Operators: set the tenant's contact address (null or empty removes it), the only
    /// address notices about its settings are mailed to.
    async fn set_tenant_contact_email(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        contact_email: Option<String>,
    ) -> async_graphql::Result<Tenant> {
        tenants::set_contact_email(ctx, tenant_id, contact_email).await
    }

    /// Operators: move a tenant to another plan. On ECONOMY, BASIC or PRO its settings
    /// are kept but inactive.
    async fn change_tenant_plan(&self, ctx: &Context<'_>, tenant_id: ID, plan: Plan) -> async_graphql::Result<Tenant> {
        tenants::change_plan(ctx, tenant_id, plan).await
    }

    /// Save the tenant's own mail server. Null when the input cleared the settings.
    async fn update_mail_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        input: MailSettingsInput,
    ) -> async_graphql::Result<Option<MailSettings>> {
        mail_settings::update(ctx, tenant_id, input).await
    }

    /// Start "Connect with Microsoft / Google": the URL to open in the admin's browser.
    /// `VALIDATION_FAILED` on `kind` with `SIGN_IN_NOT_CONFIGURED` when the operator has
    /// not set up that provider; `returnUrl` must be on the operator's list (default: the
    /// console).
    async fn connect_mailbox(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        kind: MailConnectionKind,
        return_url: Option<String>,
    ) -> async_graphql::Result<MailboxSignIn> {
        connections::connect(ctx, tenant_id, kind, return_url).await
    }

    /// Finish a sign-in with the `state` and `code` the browser came back with, as the
    /// same caller who started it: stores the connection (replacing older ones of the same
    /// mailbox) and saves settings that send through it (sender, name and server kept, or
    /// `fromAddress` as the sender), pending until a test mail proves them.
    async fn complete_mailbox_connection(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        state: String,
        code: String,
        from_address: Option<String>,
    ) -> async_graphql::Result<MailboxConnected> {
        mail_settings::complete_connection(ctx, tenant_id, state, code, from_address).await
    }

    /// Connect `mailbox` without a sign-in, once the organisation's admin did what
    /// `appConnectionSetup` says: `MICROSOFT_APP_SMTP` (with `directoryId`, the
    /// organisation's tenant id or domain) or `GOOGLE_DOMAIN_WIDE`. A first token is asked
    /// for at once: `VALIDATION_FAILED` on `kind` with `CONSENT_REQUIRED` when the setup is
    /// not done, and nothing is stored. Then settings that send through it are saved,
    /// pending until a test mail proves them.
    async fn connect_mailbox_as_app(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        kind: MailConnectionKind,
        mailbox: String,
        directory_id: Option<String>,
    ) -> async_graphql::Result<MailboxConnected> {
        mail_settings::connect_app(ctx, tenant_id, kind, mailbox, directory_id).await
    }

    /// Generic XOAUTH2 for any other server that takes OAuth bearer tokens over SMTP:
    /// client credentials at the tenant's own token endpoint (checked like its mail
    /// servers: no internal address). A first token is asked for at once (refused:
    /// `SIGN_IN_REFUSED` on `clientSecret`; nothing stored); the secret is sealed; the
    /// saved settings (their server, with STARTTLS or SSL) then authenticate with XOAUTH2.
    async fn connect_mailbox_with_token_url(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        input: TokenUrlConnectionInput,
    ) -> async_graphql::Result<MailboxConnected> {
        mail_settings::connect_token_url(ctx, tenant_id, input).await
    }

    /// Remove a connection and its tokens (revoked at Google; for Microsoft, remove the
    /// app in the organisation's Enterprise applications too). Settings that use it are
    /// cleared first, so mail goes out from the platform default. False: no such one.
    async fn disconnect_mailbox(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        connection_id: ID,
    ) -> async_graphql::Result<bool> {
        connections::disconnect(ctx, tenant_id, connection_id).await
    }

    /// Remove all saved settings; mail goes out from the platform default again.
    async fn clear_mail_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        expected_version: Option<i32>,
    ) -> async_graphql::Result<Tenant> {
        tenants::clear_mail_settings(ctx, tenant_id, expected_version).await
    }

    /// Send a real test mail to `to` through the unsaved `settings` (or, without them, the
    /// saved ones). Finishes within 20 seconds; at most 10 per tenant per minute. A
    /// successful test of the saved settings puts them in force (`test` activation) or
    /// sends the code that does (`code` activation); a test of a draft activates nothing.
    async fn send_test_mail(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        to: String,
        settings: Option<MailSettingsInput>,
    ) -> async_graphql::Result<TestMailResult> {
        mail_settings::send_test(ctx, tenant_id, to, settings).await
    }

    /// The setup assistant's probe of the form's host (the preset's, or `host`): 587
    /// STARTTLS, 465 SSL, 25 STARTTLS, 2525 STARTTLS and the form's own pair, at once, each
    /// up to EHLO with no credentials; then, when the form has a password (or the stored
    /// one applies), ONE login on the best working pair. Answers the pairs ranked and a
    /// suggestion to save. Within 20 seconds; counts as a test mail for the limits;
    /// recorded in the audit trail.
    async fn probe_mail_server(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        settings: MailSettingsInput,
    ) -> async_graphql::Result<ProbeResult> {
        assistant::probe(ctx, tenant_id, settings).await
    }

    /// Put the saved settings in force with the code their test mail carried (valid 30
    /// minutes; `code` activation). Field errors on `code`: `ACTIVATION_CODE_INVALID`,
    /// `ACTIVATION_CODE_EXPIRED`, `ALREADY_LIVE`.
    async fn activate_mail_settings(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        code: String,
    ) -> async_graphql::Result<MailSettings> {
        mail_settings::activate(ctx, tenant_id, code).await
    }

    /// Platform services (and operators): hand in a notification. It is durable when this
    /// returns; the same idempotency key for the same tenant returns the same delivery (while it
    /// is kept: past the history horizon it is deleted, and the key is free again).
    async fn enqueue_notification(
        &self,
        ctx: &Context<'_>,
        input: NotificationInput,
    ) -> async_graphql::Result<Delivery> {
        deliveries::enqueue(ctx, input).await
    }

    /// Operators: override the platform's enqueue quota for one tenant (1 or more per
    /// minute / per day; null: the platform default). Enqueues beyond it answer
    /// `RATE_LIMITED` with `retryAfterSeconds`.
    async fn set_enqueue_quota(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        per_minute: Option<i32>,
        per_day: Option<i32>,
    ) -> async_graphql::Result<crate::deliveries::EnqueueQuota> {
        deliveries::set_quota(ctx, tenant_id, per_minute, per_day).await
    }

    /// Put a FAILED delivery back in the queue. Operators and the tenant's admins.
    async fn retry_delivery(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Delivery> {
        deliveries::retry(ctx, id).await
    }

    /// Operators: register an endpoint for events (Standard Webhooks: `webhook-id`,
    /// `webhook-timestamp`, `webhook-signature` HMAC-SHA256). Its host is checked against
    /// internal addresses. The secret is answered here once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointSecret> {
        webhooks::create(ctx, input).await
    }

    /// Operators: change an endpoint's URL, event types, tenant, description or whether
    /// it is enabled.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: WebhookEndpointChanges,
    ) -> async_graphql::Result<WebhookEndpoint> {
        webhooks::update(ctx, id, input).await
    }

    /// Operators: sign with a new secret (`secret`, or a generated one, answered once);
    /// the old one keeps signing beside it for `overlapMinutes` (default 1440, at most
    /// 10080; 0 stops it at once).
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        secret: Option<String>,
        overlap_minutes: Option<i32>,
    ) -> async_graphql::Result<WebhookEndpointSecret> {
        webhooks::rotate(ctx, id, secret, overlap_minutes).await
    }

    /// Operators: remove an endpoint and its messages. False if it did not exist.
    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        webhooks::delete(ctx, id).await
    }

    /// Operators: send a message again now, its retry schedule started over.
    async fn replay_webhook_message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<WebhookMessage> {
        webhooks::replay(ctx, id).await
    }
}

/// Limits against expensive queries the engine enforces (the HTTP layer holds every
/// document to its depth and size first: `crate::depth`).
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub max_complexity: usize,
    pub introspection: bool,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_complexity: 5000,
            introspection: false,
        }
    }
}

/// The SDL the frontend builds against (committed as `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish().sdl()
}
