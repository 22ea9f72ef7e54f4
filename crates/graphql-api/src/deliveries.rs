//! GraphQL for notifications: `enqueueNotification`, `Delivery`, `Tenant.deliveries`,
//! `delivery(id)`, `retryDelivery`.

use std::collections::BTreeMap;
use std::str::FromStr;

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};

use domain::delivery::{self as dd, NotificationRequest, VariableValue};
use domain::error::FieldCode;
use domain::services::deliveries::DeliveryService;
use domain::{DeliveryId, Error, Locale, TenantId};

use crate::catalogue::{Text, say};
use crate::context::RequestContext;
use crate::error::{ResultExt as _, validation_error};
use crate::pagination::{self, PageInfo};
use crate::values::{SenderSource, caller_and, rfc3339};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::delivery::NotificationKind")]
pub enum NotificationKind {
    RegistrationCompleted,
    PasswordReset,
    Custom,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::delivery::DeliveryStatus")]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
}

/// Why a delivery failed for good.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::delivery::FailureCode")]
pub enum DeliveryFailureCode {
    /// It still failed when its retry time ran out.
    Expired,
    /// Its tenant no longer exists.
    TenantMissing,
    /// Its stored data could not be read.
    InvalidStoredData,
    /// Every process that tried to send it stopped before recording an outcome.
    Abandoned,
    /// The receiving server (or the network) refused it for good: see `failureDetail`.
    Refused,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AttemptOutcome {
    Sent,
    Retry,
    Deferred,
    Failed,
}

/// A notification from a platform service.
#[derive(InputObject, Debug)]
pub(crate) struct NotificationInput {
    tenant_id: ID,
    kind: NotificationKind,
    to: String,
    /// `ja` or `en` (default `en`).
    locale: Option<String>,
    /// Template variables. REGISTRATION_COMPLETED: name, siteName, loginUrl.
    /// PASSWORD_RESET: name, siteName, resetUrl, expiresInMinutes (integer).
    variables: Option<Json<serde_json::Value>>,
    /// CUSTOM only.
    subject: Option<String>,
    /// CUSTOM only.
    text: Option<String>,
    /// CUSTOM only.
    html: Option<String>,
    /// The same key for the same tenant returns the same delivery and never sends twice
    /// (while the delivery is kept: see `MAILGATE_DELIVERY_HISTORY_DAYS`).
    idempotency_key: Option<String>,
}

fn variable(v: &serde_json::Value) -> VariableValue {
    match v {
        serde_json::Value::String(s) => VariableValue::Text(s.clone()),
        serde_json::Value::Number(n) => n.as_i64().map_or_else(
            || VariableValue::Number(n.as_f64().unwrap_or(0.0)),
            VariableValue::Integer,
        ),
        serde_json::Value::Bool(b) => VariableValue::Bool(*b),
        serde_json::Value::Null => VariableValue::Null,
        _ => VariableValue::Structured,
    }
}

impl NotificationInput {
    fn into_request(self, l: Locale) -> async_graphql::Result<NotificationRequest> {
        let tenant_id =
            TenantId::from_str(&self.tenant_id).map_err(|_| crate::error::to_graphql(Error::NotFound, l))?;
        let locale = match self.locale.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("en") => Locale::En,
            Some("ja") => Locale::Ja,
            Some(_) => {
                return Err(validation_error(
                    "locale",
                    FieldCode::InvalidFormat,
                    Text::LocaleInvalid,
                    l,
                ));
            }
        };
        let variables: BTreeMap<String, VariableValue> = match self.variables.map(|j| j.0) {
            None | Some(serde_json::Value::Null) => BTreeMap::new(),
            Some(serde_json::Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), variable(v))).collect(),
            Some(_) => {
                return Err(validation_error(
                    "variables",
                    FieldCode::InvalidType,
                    Text::VariablesNotObject,
                    l,
                ));
            }
        };
        Ok(NotificationRequest {
            tenant_id,
            kind: self.kind.into(),
            to: self.to,
            locale,
            variables,
            subject: self.subject,
            text: self.text,
            html: self.html,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// One try at sending.
#[derive(SimpleObject, Debug)]
pub struct DeliveryAttempt {
    pub at: String,
    pub outcome: AttemptOutcome,
    /// Where it stopped, when it failed.
    pub stage: Option<String>,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    pub server_message: Option<String>,
    /// Which sender was used.
    pub sender_address: Option<String>,
    pub sender_source: Option<SenderSource>,
    /// Which route this attempt took: the tenant's own server (`CUSTOM`) or the platform
    /// default. An attempt that reached no server shows the route it was on (`CUSTOM`
    /// for one that waited on unreadable settings, else `PLATFORM_DEFAULT`).
    pub route: SenderSource,
}

impl From<&dd::Attempt> for DeliveryAttempt {
    fn from(a: &dd::Attempt) -> Self {
        let route = match (a.sender_source, a.stage.as_deref()) {
            (Some(source), _) => source.into(),
            (None, Some(domain::delivery::update::SETTINGS_STAGE)) => SenderSource::Custom,
            (None, _) => SenderSource::PlatformDefault,
        };
        Self {
            at: rfc3339(a.at),
            outcome: match a.outcome {
                dd::AttemptOutcome::Sent => AttemptOutcome::Sent,
                dd::AttemptOutcome::Retry => AttemptOutcome::Retry,
                dd::AttemptOutcome::Deferred => AttemptOutcome::Deferred,
                dd::AttemptOutcome::Failed => AttemptOutcome::Failed,
            },
            stage: a.stage.clone(),
            smtp_code: a.smtp_code.map(i32::from),
            enhanced_code: a.enhanced_code.clone(),
            server_message: a.server_message.clone(),
            sender_address: a.sender_address.clone(),
            sender_source: a.sender_source.map(Into::into),
            route,
        }
    }
}

/// A notification on its way.
#[derive(Debug)]
pub struct Delivery(pub dd::Delivery);

#[Object]
impl Delivery {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.to_string())
    }
    async fn kind(&self) -> NotificationKind {
        self.0.kind.into()
    }
    /// Empty once retention removed the content (see `contentRemovedAt`).
    async fn to(&self) -> &str {
        if self.0.content_removed_at.is_some() {
            ""
        } else {
            self.0.to.as_str()
        }
    }
    /// Empty once retention removed the content.
    async fn subject(&self) -> &str {
        if self.0.content_removed_at.is_some() {
            ""
        } else {
            self.0.message.subject.as_str()
        }
    }
    /// When the recipient, subject, bodies and servers' reply texts were removed
    /// (`MAILGATE_RETENTION_DAYS` after it was done); status, times and codes stay.
    async fn content_removed_at(&self) -> Option<String> {
        self.0.content_removed_at.map(rfc3339)
    }
    /// SHA-256 (hex) of the recipient address in lower case, once the address itself is
    /// removed: support can hash an address and compare.
    async fn recipient_hash(&self) -> Option<&str> {
        self.0.recipient_hash.as_deref()
    }
    async fn status(&self) -> DeliveryStatus {
        self.0.status.into()
    }
    /// Error retries used so far (rate-limit deferrals do not count).
    async fn retries(&self) -> i32 {
        i32::try_from(self.0.retries).unwrap_or(i32::MAX)
    }
    async fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.0.attempts.iter().map(Into::into).collect()
    }
    /// When it is tried next (while QUEUED or RETRYING).
    async fn next_attempt_at(&self) -> Option<String> {
        matches!(self.0.status, dd::DeliveryStatus::Queued | dd::DeliveryStatus::Retrying)
            .then(|| rfc3339(self.0.next_attempt_at))
    }
    /// Kept across all attempts.
    async fn message_id(&self) -> &str {
        self.0.message_id.as_str()
    }
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }
    async fn sent_at(&self) -> Option<String> {
        self.0.sent_at.map(rfc3339)
    }
    /// Why it failed for good (`expired`, or the stage, code and reply).
    #[graphql(deprecation = "Use failureCode and failureDetail (for programs) or failureMessage (for people).")]
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_ref().map(dd::FailureReason::legacy_text)
    }
    /// Why it failed for good, in the caller's language; a refusal's stage, reply code
    /// and reply follow (`failureCode` and `failureDetail` say the same for programs).
    async fn failure_message(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let Some(reason) = &self.0.failure_reason else {
            return Ok(None);
        };
        let l = ctx.data::<RequestContext>()?.locale;
        let sentence = say(Text::Failure(reason.code()), l);
        Ok(Some(match reason.detail() {
            Some(detail) if !detail.is_empty() => format!("{sentence}: {detail}"),
            _ => sentence.into_owned(),
        }))
    }
    /// Why it failed for good, as a code.
    async fn failure_code(&self) -> Option<DeliveryFailureCode> {
        self.0.failure_reason.as_ref().map(|r| r.code().into())
    }
    /// A refusal's stage, reply code and (redacted) reply, e.g. `RCPT_TO 550 5.1.1 …`;
    /// null for the other codes.
    async fn failure_detail(&self) -> Option<&str> {
        self.0.failure_reason.as_ref().and_then(dd::FailureReason::detail)
    }
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_ref().map(domain::IdempotencyKey::as_str)
    }
}

#[derive(SimpleObject, Debug)]
pub struct DeliveryEdge {
    pub cursor: String,
    pub node: Delivery,
}

#[derive(SimpleObject, Debug)]
pub struct DeliveryStatusCount {
    pub status: DeliveryStatus,
    pub count: i32,
}

#[derive(SimpleObject, Debug)]
pub struct DeliveryConnection {
    pub edges: Vec<DeliveryEdge>,
    pub page_info: PageInfo,
    /// All of the tenant's deliveries by status (not only this page).
    pub counts: Vec<DeliveryStatusCount>,
}

/// `Tenant.deliveries`.
pub(crate) async fn tenant_deliveries(
    ctx: &Context<'_>,
    tenant: TenantId,
    status: Option<DeliveryStatus>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<DeliveryConnection> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let first = pagination::page_size(first, 20, l)?;
    let after = pagination::after::<DeliveryId>(after, l)?;
    let page = service
        .deliveries(caller, tenant, status.map(Into::into), after, first)
        .await
        .gql(l)?;
    // The per-status counts read the tenant's whole queue: only when they are asked for.
    // Aliases of this field (and the requests of a batch) share one read.
    let counts = if ctx.look_ahead().field("counts").exists() {
        let memo = &ctx.data::<RequestContext>()?.counts;
        memo.get_or_read(tenant, service.counts(caller, tenant)).await.gql(l)?
    } else {
        Vec::new()
    };
    let (edges, page_info) = pagination::edges(page, |d| d.id, Delivery);
    Ok(DeliveryConnection {
        edges: edges
            .into_iter()
            .map(|(cursor, node)| DeliveryEdge { cursor, node })
            .collect(),
        page_info,
        counts: counts
            .into_iter()
            .map(|(s, n)| DeliveryStatusCount {
                status: s.into(),
                count: i32::try_from(n).unwrap_or(i32::MAX),
            })
            .collect(),
    })
}

/// `Query.delivery`: null for a malformed id too.
pub(crate) async fn delivery(ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Delivery>> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let Ok(id) = DeliveryId::from_str(&id) else {
        return Ok(None);
    };
    Ok(service.delivery(caller, id).await.gql(l)?.map(Delivery))
}

/// `Mutation.enqueueNotification`.
pub(crate) async fn enqueue(ctx: &Context<'_>, input: NotificationInput) -> async_graphql::Result<Delivery> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let req = input.into_request(l)?;
    let trace = ctx.data::<RequestContext>().ok().and_then(|rc| rc.trace_parent.clone());
    service.enqueue_traced(caller, &req, trace).await.map(Delivery).gql(l)
}

/// `Mutation.retryDelivery`: a malformed id names no delivery.
pub(crate) async fn retry(ctx: &Context<'_>, id: ID) -> async_graphql::Result<Delivery> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let id = DeliveryId::from_str(&id).map_err(|_| crate::error::to_graphql(Error::NotFound, l))?;
    service.retry(caller, id).await.map(Delivery).gql(l)
}

/// A tenant's enqueue quota: the limits in force and the operator's override.
#[derive(SimpleObject, Debug)]
pub struct EnqueueQuota {
    /// Notifications per UTC minute in force (0: no limit).
    pub per_minute: i32,
    /// Notifications per UTC day in force (0: no limit).
    pub per_day: i32,
    /// The operator's override of the platform default, if any.
    pub override_per_minute: Option<i32>,
    pub override_per_day: Option<i32>,
}

fn quota_view(limits: domain::quota::EnqueueLimits, o: domain::quota::QuotaOverride) -> EnqueueQuota {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    EnqueueQuota {
        per_minute: int(limits.per_minute),
        per_day: int(limits.per_day),
        override_per_minute: o.per_minute.map(int),
        override_per_day: o.per_day.map(int),
    }
}

/// `Tenant.enqueueQuota`.
pub(crate) async fn quota(ctx: &Context<'_>, tenant: TenantId) -> async_graphql::Result<EnqueueQuota> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let (limits, o) = service.quota(caller, tenant).await.gql(l)?;
    Ok(quota_view(limits, o))
}

/// `Mutation.setEnqueueQuota`.
pub(crate) async fn set_quota(
    ctx: &Context<'_>,
    tenant_id: ID,
    per_minute: Option<i32>,
    per_day: Option<i32>,
) -> async_graphql::Result<EnqueueQuota> {
    let (caller, service, l) = caller_and::<DeliveryService>(ctx)?;
    let tenant = TenantId::from_str(&tenant_id).map_err(|_| crate::error::to_graphql(Error::NotFound, l))?;
    let mut errors = Vec::new();
    let mut limit = |field: &'static str, v: Option<i32>| match v {
        None => None,
        Some(n) if n >= 1 => u32::try_from(n).ok(),
        Some(_) => {
            errors.push(domain::FieldError::new(field, FieldCode::OutOfRange));
            None
        }
    };
    let value = domain::quota::QuotaOverride {
        per_minute: limit("perMinute", per_minute),
        per_day: limit("perDay", per_day),
    };
    if !errors.is_empty() {
        return Err(crate::error::to_graphql(Error::Validation(errors), l));
    }
    let (limits, o) = service.set_quota(caller, tenant, value).await.gql(l)?;
    Ok(quota_view(limits, o))
}
