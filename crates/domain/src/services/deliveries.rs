//! Notification operations: enqueue (rendered and durable before the call returns,
//! idempotent per tenant and key), read, and retry. The worker that sends lives in the
//! `worker` crate; this is what the API and embedders call.

use std::sync::Arc;

use chrono::Utc;

use crate::access::{Caller, Role};
use crate::delivery::retention::payload_hash;
use crate::delivery::{Delivery, DeliveryStatus, DeliveryUpdate, NotificationRequest, render};
use crate::error::{Error, FieldError, Result};
use crate::ids::{DeliveryId, IdempotencyKey, MessageId};
use crate::ports::{DeliveryOutbox, DeliveryQueries, EnqueueOutcome, EnqueueQuota, StatusCounts, TenantStore};
use crate::quota::{EnqueueLimits, QuotaOverride};
use crate::sender::PlatformSender;
use crate::services::paging::{Page, page};
use crate::tenant::TenantId;
use crate::values::EmailAddress;

/// Called after a delivery of this tenant is stored or requeued, to wake a worker in this
/// process.
pub type QueueSignal = Arc<dyn Fn(TenantId) + Send + Sync>;

/// Enqueue, list, read and retry notifications.
#[derive(Clone)]
pub struct DeliveryService {
    tenants: Arc<dyn TenantStore>,
    outbox: Arc<dyn DeliveryOutbox>,
    queries: Arc<dyn DeliveryQueries>,
    message_id_domain: String,
    signal: Option<QueueSignal>,
    quota: Option<(Arc<dyn EnqueueQuota>, EnqueueLimits)>,
    views: Arc<dyn crate::ports::TenantViews>,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService")
            .field("message_id_domain", &self.message_id_domain)
            .finish_non_exhaustive()
    }
}

impl DeliveryService {
    /// `platform` names the domain of every delivery's `Message-ID` (the sender may change
    /// between attempts; the id does not). `views` is told of every change this service
    /// makes to a tenant (a quota override).
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        outbox: Arc<dyn DeliveryOutbox>,
        queries: Arc<dyn DeliveryQueries>,
        platform: &PlatformSender,
        views: Arc<dyn crate::ports::TenantViews>,
    ) -> Self {
        let ascii = platform.address.to_ascii();
        let domain = ascii
            .rsplit_once('@')
            .map_or("mailgate.invalid", |(_, d)| d)
            .trim_matches(['[', ']'])
            .to_owned();
        Self {
            tenants,
            outbox,
            queries,
            message_id_domain: domain,
            signal: None,
            quota: None,
            views,
        }
    }

    /// Applies enqueue quotas: `defaults` for every tenant, an operator's override per
    /// tenant, counted through `quota` (across processes).
    pub fn with_quota(mut self, quota: Arc<dyn EnqueueQuota>, defaults: EnqueueLimits) -> Self {
        self.quota = Some((quota, defaults));
        self
    }

    /// The tenant's enqueue limits in force and the operator's override. Operators and the
    /// tenant's admins.
    pub async fn quota(&self, caller: &Caller, tenant: TenantId) -> Result<(EnqueueLimits, QuotaOverride)> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        match &self.quota {
            Some((quota, defaults)) => {
                let o = quota.quota_override(tenant).await?;
                Ok((defaults.with(o), o))
            }
            None => Ok((EnqueueLimits::default(), QuotaOverride::default())),
        }
    }

    /// Sets (or removes, with both `None`) a tenant's quota override. Operators only.
    pub async fn set_quota(
        &self,
        caller: &Caller,
        tenant: TenantId,
        value: QuotaOverride,
    ) -> Result<(EnqueueLimits, QuotaOverride)> {
        caller.require_operator()?;
        let mut errors = Vec::new();
        for (field, v) in [("perMinute", value.per_minute), ("perDay", value.per_day)] {
            if v.is_some_and(|n| n > crate::quota::MAX_LIMIT) {
                errors.push(FieldError::new(field, crate::error::FieldCode::OutOfRange));
            }
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        if self.tenants.tenant(tenant).await?.is_none() {
            return Err(Error::NotFound);
        }
        let Some((quota, defaults)) = &self.quota else {
            return Ok((EnqueueLimits::default(), QuotaOverride::default()));
        };
        let text = |v: Option<u32>| Some(crate::audit_value::Limit(v).stored());
        let audit = crate::audit::AuditEntry::new(
            tenant,
            caller,
            crate::audit::AuditAction::EnqueueQuotaChanged,
            vec![
                crate::settings::FieldChange::Value {
                    field: "perMinute".into(),
                    before: None,
                    after: text(value.per_minute),
                },
                crate::settings::FieldChange::Value {
                    field: "perDay".into(),
                    before: None,
                    after: text(value.per_day),
                },
            ],
            Utc::now(),
        );
        quota
            .set_quota_override(tenant, value, &crate::change::ChangeRecord::of(audit))
            .await?;
        self.views.changed(tenant).await;
        Ok((defaults.with(value), value))
    }

    /// Wakes an in-process worker whenever something is enqueued.
    pub fn with_signal(mut self, signal: QueueSignal) -> Self {
        self.signal = Some(signal);
        self
    }

    /// The tenant-scoped queries, for other services built on the same storage.
    pub fn queries(&self) -> &Arc<dyn DeliveryQueries> {
        &self.queries
    }

    /// Hands in a notification. Services and operators only. The delivery is committed
    /// before this returns; the same idempotency key for the same tenant with the same
    /// payload (kind, recipient, locale, and the message its variables or content render
    /// to) returns the same delivery (and never a second mail); with another payload it is
    /// [`Error::IdempotencyKeyReused`], naming the delivery that has the key.
    pub async fn enqueue(&self, caller: &Caller, req: &NotificationRequest) -> Result<Delivery> {
        self.enqueue_traced(caller, req, None).await
    }

    /// [`DeliveryService::enqueue`] within a trace: its attempts continue `trace_parent`.
    pub async fn enqueue_traced(
        &self,
        caller: &Caller,
        req: &NotificationRequest,
        trace_parent: Option<crate::ids::TraceParent>,
    ) -> Result<Delivery> {
        match caller.role() {
            Role::Service | Role::Operator => {}
            Role::TenantAdmin => return Err(Error::Forbidden),
        }
        if self.tenants.tenant(req.tenant_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let mut errors: Vec<FieldError> = Vec::new();
        let to = EmailAddress::parse(&req.to)
            .map_err(|e| errors.push(FieldError::new("to", e)))
            .ok();
        let idempotency_key = match req.idempotency_key.as_deref().map(IdempotencyKey::parse) {
            None => Some(None),
            Some(Ok(key)) => Some(Some(key)),
            Some(Err(e)) => {
                errors.push(FieldError::new("idempotencyKey", e));
                None
            }
        };
        let message = render(req).map_err(|mut e| errors.append(&mut e)).ok();
        let (Some(to), Some(idempotency_key), Some(message), true) = (to, idempotency_key, message, errors.is_empty())
        else {
            return Err(Error::Validation(errors));
        };
        let now = Utc::now();
        if let Some((quota, defaults)) = &self.quota {
            let limits = defaults.with(quota.quota_override(req.tenant_id).await?);
            if let Some(retry_after_secs) = quota.try_take(req.tenant_id, limits, now).await? {
                return Err(Error::QuotaExceeded { retry_after_secs });
            }
        }
        let delivery = Delivery::queued(
            req.tenant_id,
            req.kind,
            to,
            req.locale,
            message,
            MessageId::generate(&self.message_id_domain),
            now,
        )
        .with_key(idempotency_key)
        .traced(trace_parent);
        match self.outbox.enqueue(&delivery).await? {
            EnqueueOutcome::Created(d) => {
                if let Some(signal) = &self.signal {
                    signal(d.tenant_id);
                }
                Ok(d)
            }
            // The key is a contract: the same key with another payload is a caller's bug
            // (or two notifications sharing a key), never silently the old delivery.
            // Retention removed what the key stood for: its hash stands in for it (a
            // delivery cleared before hashes were kept has nothing left to compare).
            EnqueueOutcome::Existing(d) if d.content_removed_at.is_some() => match &d.payload_hash {
                Some(kept)
                    if *kept != payload_hash(delivery.kind, &delivery.to, delivery.locale, &delivery.message) =>
                {
                    Err(Error::IdempotencyKeyReused { existing: d.id })
                }
                _ => Ok(d),
            },
            EnqueueOutcome::Existing(d)
                if d.kind != delivery.kind
                    || d.to != delivery.to
                    || d.locale != delivery.locale
                    || d.message != delivery.message =>
            {
                Err(Error::IdempotencyKeyReused { existing: d.id })
            }
            EnqueueOutcome::Existing(d) => Ok(d),
        }
    }

    /// One delivery, or `None` when absent or not visible to the caller.
    pub async fn delivery(&self, caller: &Caller, id: DeliveryId) -> Result<Option<Delivery>> {
        Ok(self.queries.delivery(caller.scope(), id).await?)
    }

    /// A tenant's deliveries, newest first.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        first: u64,
    ) -> Result<Page<Delivery>> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        page(first, |limit| self.queries.deliveries(tenant, status, after, limit)).await
    }

    /// Counts by status for a tenant.
    pub async fn counts(&self, caller: &Caller, tenant: TenantId) -> Result<StatusCounts> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        Ok(self
            .queries
            .status_counts(crate::access::TenantScope::One(tenant))
            .await?)
    }

    /// Puts a `FAILED` delivery back in the queue. Operators and the tenant's admins.
    pub async fn retry(&self, caller: &Caller, id: DeliveryId) -> Result<Delivery> {
        let d = self.delivery(caller, id).await?.ok_or(Error::NotFound)?;
        caller.require_settings_editor(d.tenant_id)?;
        let content_removed = || Error::validation("id", crate::error::FieldCode::ContentRemoved);
        if d.content_removed_at.is_some() {
            return Err(content_removed());
        }
        let not_failed = || Error::validation("id", crate::error::FieldCode::NotFailed);
        let update = DeliveryUpdate::requeued(&d, Utc::now()).map_err(|_| not_failed())?;
        if !self.queries.requeue(d.tenant_id, id, &update).await? {
            // Changed since it was read: retried by someone else, or its content removed.
            let now = self.delivery(caller, id).await?;
            return Err(match now {
                Some(d) if d.content_removed_at.is_some() => content_removed(),
                _ => not_failed(),
            });
        }
        if let Some(signal) = &self.signal {
            signal(d.tenant_id);
        }
        // The delivery as this call left it (a worker may pick it up at once).
        Ok(update.applied_to(d))
    }
}
