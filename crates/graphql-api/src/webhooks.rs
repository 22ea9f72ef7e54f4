//! GraphQL for webhooks (operators): endpoints with their recent messages and attempts,
//! and registering, changing, rotating the secret of, removing an endpoint and replaying
//! a message. A secret is answered only by the mutation that made it.

use std::str::FromStr;
use std::time::Duration;

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use domain::services::webhooks::{EndpointWithSecret, WebhookService};
use domain::webhook::{self as model, EndpointDraft, EndpointId, MessageId};

use crate::error::ResultExt as _;
use crate::pagination::{self, PageInfo};
use crate::tenants::Tenant;
use crate::values::{caller_and, int, rfc3339};

/// What happened, as an event's `type` names it (`DELIVERY_SENT` is `delivery.sent`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::webhook::EventType")]
pub enum WebhookEventType {
    DeliverySent,
    DeliveryFailed,
    /// A delivery will be tried again: its first retry only.
    DeliveryRetrying,
    /// A time-critical delivery goes through the platform default after its tenant's
    /// server kept failing.
    DeliveryFellBack,
    MailSettingsSaved,
    MailSettingsCleared,
    MailSettingsLive,
    MailSettingsSuspended,
    TenantCreated,
    TenantPlanChanged,
}

/// Where a message to one endpoint stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::webhook::MessageStatus")]
pub enum WebhookMessageStatus {
    Pending,
    Sending,
    Delivered,
    /// Every retry failed (about three and a half days): replay it to try again.
    Failed,
}

/// Why an attempt got no 2xx answer.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::webhook::AttemptError")]
pub enum WebhookAttemptError {
    /// The endpoint answered with another status (see `statusCode`); redirects are not
    /// followed.
    HttpStatus,
    HostNotFound,
    ForbiddenAddress,
    ConnectFailed,
    TlsFailed,
    TimedOut,
    ProtocolError,
}

/// A new endpoint.
#[derive(InputObject, Debug)]
pub struct WebhookEndpointInput {
    /// `https://…` (or `http://`); no user name, no fragment; at most 2000 characters.
    pub url: String,
    pub event_types: Vec<WebhookEventType>,
    /// Only this tenant's events; absent: every tenant's.
    pub tenant_id: Option<ID>,
    /// At most 200 characters.
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// `whsec_` and the base64 of 24–64 bytes; absent: one is generated (and answered once).
    pub secret: Option<String>,
}

/// Changes to an endpoint: absent fields stay as they are.
#[derive(InputObject, Debug)]
pub struct WebhookEndpointChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<WebhookEventType>>,
    /// Null: every tenant's events from now on.
    pub tenant_id: MaybeUndefined<ID>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// One POST of a message.
#[derive(SimpleObject, Debug)]
pub struct WebhookAttempt {
    pub at: String,
    pub status_code: Option<i32>,
    pub error: Option<WebhookAttemptError>,
    pub duration_ms: i32,
    /// The start of the endpoint's answer (at most 200 characters).
    pub response_excerpt: Option<String>,
}

/// One event on its way to one endpoint.
#[derive(Debug)]
pub struct WebhookMessage(model::WebhookMessage);

#[Object]
impl WebhookMessage {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The `webhook-id` header: the same for every endpoint and every attempt.
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    async fn event_type(&self) -> WebhookEventType {
        self.0.event_type.into()
    }
    /// The event's `type` as sent (`delivery.sent`).
    async fn event_type_code(&self) -> &str {
        self.0.event_type.code()
    }
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.to_string())
    }
    /// The tenant the event is about (its name for people); null once it is gone.
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        crate::tenants::tenant_by_id(ctx, self.0.tenant_id).await
    }
    async fn status(&self) -> WebhookMessageStatus {
        self.0.status.into()
    }
    async fn attempts(&self) -> i32 {
        int(self.0.attempts)
    }
    /// When it is tried next; null unless it waits.
    async fn next_attempt_at(&self) -> Option<String> {
        (self.0.status == model::MessageStatus::Pending).then(|| rfc3339(self.0.next_attempt_at))
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }
    async fn delivered_at(&self) -> Option<String> {
        self.0.delivered_at.map(rfc3339)
    }
    /// The JSON body as sent (`type`, `timestamp`, `data`).
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The most recent attempts, newest first (at most 5).
    async fn recent_attempts(&self) -> Vec<WebhookAttempt> {
        self.0
            .recent_attempts
            .iter()
            .map(|a| WebhookAttempt {
                at: rfc3339(a.at),
                status_code: a.status_code.map(i32::from),
                error: a.error.map(Into::into),
                duration_ms: int(a.duration_ms),
                response_excerpt: a.response_excerpt.clone(),
            })
            .collect()
    }
}

#[derive(SimpleObject, Debug)]
pub struct WebhookMessageEdge {
    pub cursor: String,
    pub node: WebhookMessage,
}

#[derive(SimpleObject, Debug)]
pub struct WebhookMessageConnection {
    pub edges: Vec<WebhookMessageEdge>,
    pub page_info: PageInfo,
}

/// Where events are sent.
#[derive(Debug)]
pub struct WebhookEndpoint(model::WebhookEndpoint);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        self.0.url.as_str()
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Only this tenant's events; null: every tenant's.
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant_id.map(|t| ID(t.to_string()))
    }
    /// The tenant of `tenantId` (its name for people); null for every tenant's, or once
    /// it is gone.
    async fn tenant(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Tenant>> {
        match self.0.tenant_id {
            Some(id) => crate::tenants::tenant_by_id(ctx, id).await,
            None => Ok(None),
        }
    }
    async fn event_types(&self) -> Vec<WebhookEventType> {
        self.0.event_types.iter().map(|t| (*t).into()).collect()
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }
    async fn updated_at(&self) -> String {
        rfc3339(self.0.updated_at)
    }
    /// Until when the secret replaced by the last rotation still signs (a second
    /// signature in `webhook-signature`); null when only one secret signs.
    async fn previous_secret_expires_at(&self) -> Option<String> {
        self.0
            .previous_secret_expires_at
            .filter(|until| *until > chrono::Utc::now())
            .map(rfc3339)
    }
    /// Messages to this endpoint, newest first, optionally of one status.
    #[graphql(complexity = "crate::pagination::page_complexity(first, 20, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        status: Option<WebhookMessageStatus>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<WebhookMessageConnection> {
        let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
        let first = pagination::page_size(first, 20, l)?;
        let after = pagination::after::<MessageId>(after, l)?;
        let page = service
            .messages(caller, self.0.id, status.map(Into::into), after, first)
            .await
            .gql(l)?;
        let (edges, page_info) = pagination::edges(page, |m| m.id, WebhookMessage);
        Ok(WebhookMessageConnection {
            edges: edges
                .into_iter()
                .map(|(cursor, node)| WebhookMessageEdge { cursor, node })
                .collect(),
            page_info,
        })
    }
}

#[derive(SimpleObject, Debug)]
pub struct WebhookEndpointEdge {
    pub cursor: String,
    pub node: WebhookEndpoint,
}

#[derive(SimpleObject, Debug)]
pub struct WebhookEndpointConnection {
    pub edges: Vec<WebhookEndpointEdge>,
    pub page_info: PageInfo,
}

/// An endpoint and the secret it signs with: answered once, never again.
#[derive(SimpleObject, Debug)]
pub struct WebhookEndpointSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: give it to the receiver, which verifies `webhook-signature` with it.
    pub secret: String,
}

impl From<EndpointWithSecret> for WebhookEndpointSecret {
    fn from(e: EndpointWithSecret) -> Self {
        Self {
            secret: e.secret.expose().to_owned(),
            endpoint: WebhookEndpoint(e.endpoint),
        }
    }
}

/// A malformed id names nothing.
fn endpoint_id(id: &ID) -> domain::Result<EndpointId> {
    EndpointId::from_str(id).map_err(|_| domain::Error::NotFound)
}

/// `Query.webhookEndpoints`.
pub(crate) async fn endpoints(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<WebhookEndpointConnection> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let first = pagination::page_size(first, 20, l)?;
    let after = pagination::after::<EndpointId>(after, l)?;
    let page = service.endpoints(caller, after, first).await.gql(l)?;
    let (edges, page_info) = pagination::edges(page, |e| e.id, WebhookEndpoint);
    Ok(WebhookEndpointConnection {
        edges: edges
            .into_iter()
            .map(|(cursor, node)| WebhookEndpointEdge { cursor, node })
            .collect(),
        page_info,
    })
}

/// `Query.webhookEventTypes`: the domain's list, for operators.
pub(crate) fn event_types(ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookEventType>> {
    let (caller, _, l) = caller_and::<WebhookService>(ctx)?;
    caller.require_operator().gql(l)?;
    Ok(model::EventType::ALL.into_iter().map(WebhookEventType::from).collect())
}

/// `Query.webhookEndpoint`: null for a malformed or unknown id.
pub(crate) async fn endpoint(ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<WebhookEndpoint>> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let Ok(id) = EndpointId::from_str(&id) else {
        caller.require_operator().gql(l)?;
        return Ok(None);
    };
    Ok(service.endpoint(caller, id).await.gql(l)?.map(WebhookEndpoint))
}

/// `Mutation.createWebhookEndpoint`.
pub(crate) async fn create(
    ctx: &Context<'_>,
    input: WebhookEndpointInput,
) -> async_graphql::Result<WebhookEndpointSecret> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let draft = EndpointDraft {
        url: Some(input.url),
        description: input.description,
        tenant_id: input.tenant_id.map(|t| t.0),
        event_types: Some(input.event_types.into_iter().map(Into::into).collect()),
        enabled: input.enabled,
        secret: input.secret,
    };
    service.create(caller, &draft).await.map(Into::into).gql(l)
}

/// `Mutation.updateWebhookEndpoint`.
pub(crate) async fn update(
    ctx: &Context<'_>,
    id: ID,
    input: WebhookEndpointChanges,
) -> async_graphql::Result<WebhookEndpoint> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let id = endpoint_id(&id).gql(l)?;
    let draft = EndpointDraft {
        url: input.url,
        description: input.description,
        tenant_id: match input.tenant_id {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(String::new()),
            MaybeUndefined::Value(t) => Some(t.0),
        },
        event_types: input.event_types.map(|t| t.into_iter().map(Into::into).collect()),
        enabled: input.enabled,
        secret: None,
    };
    service.update(caller, id, &draft).await.map(WebhookEndpoint).gql(l)
}

/// `Mutation.rotateWebhookSecret`.
pub(crate) async fn rotate(
    ctx: &Context<'_>,
    id: ID,
    secret: Option<String>,
    overlap_minutes: Option<i32>,
) -> async_graphql::Result<WebhookEndpointSecret> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let id = endpoint_id(&id).gql(l)?;
    let overlap = match overlap_minutes {
        Some(m) if m < 0 => {
            return Err(crate::error::to_graphql(
                domain::Error::Validation(vec![domain::FieldError::new(
                    "overlapMinutes",
                    domain::error::FieldCode::OutOfRange,
                )]),
                l,
            ));
        }
        Some(m) => Some(Duration::from_secs(u64::try_from(m).unwrap_or(0) * 60)),
        None => None,
    };
    service
        .rotate_secret(caller, id, secret.as_deref(), overlap)
        .await
        .map(Into::into)
        .gql(l)
}

/// `Mutation.deleteWebhookEndpoint`.
pub(crate) async fn delete(ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let id = endpoint_id(&id).gql(l)?;
    service.delete(caller, id).await.gql(l)
}

/// `Mutation.replayWebhookMessage`.
pub(crate) async fn replay(ctx: &Context<'_>, id: ID) -> async_graphql::Result<WebhookMessage> {
    let (caller, service, l) = caller_and::<WebhookService>(ctx)?;
    let id = MessageId::from_str(&id).map_err(|_| domain::Error::NotFound).gql(l)?;
    service.replay(caller, id).await.map(WebhookMessage).gql(l)
}
