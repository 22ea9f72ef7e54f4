//! Notification operations: enqueue (rendered and durable before the call returns,
//! idempotent per tenant and key), read, and retry. The worker that sends lives in the
//! `worker` crate; this is what the API and embedders call.

use std::sync::Arc;

use chrono::Utc;

use crate::access::{Caller, Role};
use crate::delivery::{Delivery, DeliveryStatus, NotificationRequest, render};
use crate::error::{Error, FieldError, Result};
use crate::ports::{DeliveryStore, EnqueueOutcome, StatusCounts, TenantStore};
use crate::sender::PlatformSender;
use crate::service::Page;
use crate::tenant::TenantId;
use crate::values::{EmailAddress, ValueError, has_control_chars};

/// Called after a delivery of this tenant is stored or requeued, to wake a worker in this
/// process.
pub type QueueSignal = Arc<dyn Fn(TenantId) + Send + Sync>;

/// Enqueue, list, read and retry notifications.
#[derive(Clone)]
pub struct DeliveryService {
    tenants: Arc<dyn TenantStore>,
    store: Arc<dyn DeliveryStore>,
    message_id_domain: String,
    signal: Option<QueueSignal>,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService")
            .field("message_id_domain", &self.message_id_domain)
            .finish_non_exhaustive()
    }
}

/// The largest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

impl DeliveryService {
    /// `platform` names the domain of every delivery's `Message-ID` (the sender may change
    /// between attempts; the id does not).
    pub fn new(tenants: Arc<dyn TenantStore>, store: Arc<dyn DeliveryStore>, platform: &PlatformSender) -> Self {
        let ascii = platform.address.to_ascii();
        let domain = ascii
            .rsplit_once('@')
            .map_or("mailgate.invalid", |(_, d)| d)
            .trim_matches(['[', ']'])
            .to_owned();
        Self {
            tenants,
            store,
            message_id_domain: domain,
            signal: None,
        }
    }

    /// Wakes an in-process worker whenever something is enqueued.
    pub fn with_signal(mut self, signal: QueueSignal) -> Self {
        self.signal = Some(signal);
        self
    }

    pub fn store(&self) -> &Arc<dyn DeliveryStore> {
        &self.store
    }

    /// Hands in a notification. Services and operators only. The delivery is committed
    /// before this returns; the same idempotency key for the same tenant returns the same
    /// delivery (and never a second mail).
    pub async fn enqueue(&self, caller: &Caller, req: &NotificationRequest) -> Result<Delivery> {
        match caller.role() {
            Role::Service | Role::Operator => {}
            Role::TenantAdmin => return Err(Error::Forbidden),
        }
        if self.tenants.tenant(req.tenant_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let mut errors: Vec<FieldError> = Vec::new();
        let to = EmailAddress::parse(&req.to)
            .map_err(|e| errors.push(FieldError::new("to", e.code())))
            .ok();
        if let Some(key) = &req.idempotency_key {
            if key.is_empty() {
                errors.push(FieldError::new("idempotencyKey", ValueError::Required.code()));
            } else if key.chars().count() > MAX_IDEMPOTENCY_KEY {
                errors.push(FieldError::new("idempotencyKey", ValueError::TooLong.code()));
            } else if has_control_chars(key) {
                errors.push(FieldError::new("idempotencyKey", ValueError::ControlCharacters.code()));
            }
        }
        let message = render(req).map_err(|mut e| errors.append(&mut e)).ok();
        let (Some(to), Some(message), true) = (to, message, errors.is_empty()) else {
            return Err(Error::Validation(errors));
        };
        let now = Utc::now();
        let delivery = Delivery {
            id: uuid::Uuid::now_v7(),
            tenant_id: req.tenant_id,
            kind: req.kind,
            to,
            locale: req.locale,
            message,
            message_id: format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.message_id_domain),
            idempotency_key: req.idempotency_key.clone(),
            status: DeliveryStatus::Queued,
            retries: 0,
            next_attempt_at: now,
            created_at: now,
            sent_at: None,
            failure_reason: None,
            attempts: Vec::new(),
        };
        match self.store.enqueue(&delivery).await? {
            EnqueueOutcome::Created(d) => {
                if let Some(signal) = &self.signal {
                    signal(d.tenant_id);
                }
                Ok(d)
            }
            EnqueueOutcome::Existing(d) => Ok(d),
        }
    }

    /// One delivery, or `None` when absent or not visible to the caller.
    pub async fn delivery(&self, caller: &Caller, id: uuid::Uuid) -> Result<Option<Delivery>> {
        let d = self.store.delivery(id).await?;
        Ok(d.filter(|d| caller.can_see(d.tenant_id)))
    }

    /// A tenant's deliveries, newest first.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<uuid::Uuid>,
        first: u64,
    ) -> Result<Page<Delivery>> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        let first = first.min(crate::service::MAX_PAGE);
        let mut rows = self.store.deliveries(tenant, status, after, first + 1).await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Ok(Page {
            items: rows,
            has_next_page,
        })
    }

    /// Counts by status for a tenant.
    pub async fn counts(&self, caller: &Caller, tenant: TenantId) -> Result<StatusCounts> {
        if !caller.can_see(tenant) {
            return Err(Error::NotFound);
        }
        Ok(self.store.status_counts(Some(tenant)).await?)
    }

    /// Puts a `FAILED` delivery back in the queue. Operators and the tenant's admins.
    pub async fn retry(&self, caller: &Caller, id: uuid::Uuid) -> Result<Delivery> {
        let d = self.delivery(caller, id).await?.ok_or(Error::NotFound)?;
        caller.require_settings_editor(d.tenant_id)?;
        if d.status != DeliveryStatus::Failed {
            return Err(Error::validation("id", "NOT_FAILED"));
        }
        let now = Utc::now();
        if !self.store.requeue_failed(id, now).await? {
            return Err(Error::validation("id", "NOT_FAILED"));
        }
        if let Some(signal) = &self.signal {
            signal(d.tenant_id);
        }
        // The delivery as this call left it (a worker may pick it up at once).
        Ok(Delivery {
            status: DeliveryStatus::Queued,
            retries: 0,
            failure_reason: None,
            next_attempt_at: now,
            ..d
        })
    }
}
