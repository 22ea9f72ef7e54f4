//! The operators' webhook operations: register, change, rotate the secret of and remove
//! endpoints, read their recent messages, replay one. Every call needs the operator role;
//! every input is checked field by field before anything is stored, and an endpoint's host
//! is checked against the address guard when it is saved (and again, by the dispatcher,
//! on every send).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::access::Caller;
use crate::error::{Error, FieldCode, FieldError, Result};
use crate::ports::{EndpointCheck, HostCheck, TenantStore, WebhookStore};
use crate::services::paging::{Page, page};
use crate::tenant::TenantId;
use crate::webhook::{
    EndpointDraft, EndpointFields, EndpointId, MessageId, MessageStatus, WebhookEndpoint, WebhookMessage, WebhookSecret,
};

/// How long the replaced secret keeps signing after a rotation unless told otherwise.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap a rotation accepts.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);

/// An endpoint with the secret it signs with, handed out once (on creation or rotation).
#[derive(Debug, Clone)]
pub struct EndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: WebhookSecret,
}

#[derive(Clone)]
pub struct WebhookService {
    store: Arc<dyn WebhookStore>,
    tenants: Arc<dyn TenantStore>,
    check: Arc<dyn EndpointCheck>,
}

impl std::fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService").finish_non_exhaustive()
    }
}

impl WebhookService {
    pub fn new(store: Arc<dyn WebhookStore>, tenants: Arc<dyn TenantStore>, check: Arc<dyn EndpointCheck>) -> Self {
        Self { store, tenants, check }
    }

    pub async fn create(&self, caller: &Caller, draft: &EndpointDraft) -> Result<EndpointWithSecret> {
        caller.require_operator()?;
        let fields = self.validated(draft, None).await?;
        let secret = match &draft.secret {
            Some(text) => {
                WebhookSecret::parse(text).map_err(|c| Error::Validation(vec![FieldError::new("secret", c)]))?
            }
            None => WebhookSecret::generate(),
        };
        let now = Utc::now();
        let endpoint = WebhookEndpoint {
            id: EndpointId::generate(),
            url: fields.url,
            description: fields.description,
            tenant_id: fields.tenant_id,
            event_types: fields.event_types,
            enabled: fields.enabled,
            created_at: now,
            updated_at: now,
            previous_secret_expires_at: None,
        };
        self.store.create_endpoint(&endpoint, &secret).await?;
        Ok(EndpointWithSecret { endpoint, secret })
    }

    /// Changes the fields the draft names; its secret is not read (a secret is changed
    /// only by [`WebhookService::rotate_secret`]).
    pub async fn update(&self, caller: &Caller, id: EndpointId, draft: &EndpointDraft) -> Result<WebhookEndpoint> {
        caller.require_operator()?;
        let current = self.store.endpoint(id).await?.ok_or(Error::NotFound)?;
        let fields = self.validated(draft, Some(&current)).await?;
        let endpoint = WebhookEndpoint {
            url: fields.url,
            description: fields.description,
            tenant_id: fields.tenant_id,
            event_types: fields.event_types,
            enabled: fields.enabled,
            updated_at: Utc::now(),
            ..current
        };
        if !self.store.update_endpoint(&endpoint).await? {
            return Err(Error::NotFound);
        }
        Ok(endpoint)
    }

    /// Signs with a new secret (`secret`, or a generated one) from now on; the old one
    /// keeps signing beside it for `overlap` (default a day, at most a week; zero stops
    /// it at once), so receivers can move to the new one without losing a message.
    pub async fn rotate_secret(
        &self,
        caller: &Caller,
        id: EndpointId,
        secret: Option<&str>,
        overlap: Option<Duration>,
    ) -> Result<EndpointWithSecret> {
        caller.require_operator()?;
        let mut errors = Vec::new();
        let secret = match secret {
            Some(text) => WebhookSecret::parse(text)
                .map_err(|c| errors.push(FieldError::new("secret", c)))
                .ok(),
            None => Some(WebhookSecret::generate()),
        };
        let overlap = overlap.unwrap_or(DEFAULT_ROTATION_OVERLAP);
        if overlap > MAX_ROTATION_OVERLAP {
            errors.push(FieldError::new("overlapMinutes", FieldCode::OutOfRange));
        }
        let Some(secret) = secret.filter(|_| errors.is_empty()) else {
            return Err(Error::Validation(errors));
        };
        let now = Utc::now();
        let until = (!overlap.is_zero()).then(|| now + chrono::Duration::from_std(overlap).unwrap_or_default());
        let endpoint = self
            .store
            .rotate_secret(id, &secret, until, now)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(EndpointWithSecret { endpoint, secret })
    }

    pub async fn delete(&self, caller: &Caller, id: EndpointId) -> Result<bool> {
        caller.require_operator()?;
        Ok(self.store.delete_endpoint(id).await?)
    }

    pub async fn endpoint(&self, caller: &Caller, id: EndpointId) -> Result<Option<WebhookEndpoint>> {
        caller.require_operator()?;
        Ok(self.store.endpoint(id).await?)
    }

    pub async fn endpoints(
        &self,
        caller: &Caller,
        after: Option<EndpointId>,
        first: u64,
    ) -> Result<Page<WebhookEndpoint>> {
        caller.require_operator()?;
        page(first, |limit| self.store.endpoints(after, limit)).await
    }

    pub async fn messages(
        &self,
        caller: &Caller,
        endpoint: EndpointId,
        status: Option<MessageStatus>,
        after: Option<MessageId>,
        first: u64,
    ) -> Result<Page<WebhookMessage>> {
        caller.require_operator()?;
        page(first, |limit| self.store.messages(endpoint, status, after, limit)).await
    }

    /// Sends a message again now, its schedule started over.
    pub async fn replay(&self, caller: &Caller, id: MessageId) -> Result<WebhookMessage> {
        caller.require_operator()?;
        self.store.replay(id, Utc::now()).await?.ok_or(Error::NotFound)
    }

    /// The draft's fields, checked: each field's own rule, then the tenant exists, then
    /// the host may be reached.
    async fn validated(&self, draft: &EndpointDraft, current: Option<&WebhookEndpoint>) -> Result<EndpointFields> {
        let fields = draft.validate(current).map_err(Error::Validation)?;
        if let Some(tenant) = fields.tenant_id
            && fields.tenant_id != current.and_then(|c| c.tenant_id)
            && self.tenant_missing(tenant).await?
        {
            return Err(Error::Validation(vec![FieldError::new(
                "tenantId",
                FieldCode::UnknownTenant,
            )]));
        }
        if current.is_none_or(|c| c.url != fields.url) && self.check.check(&fields.url).await == HostCheck::Forbidden {
            return Err(Error::Validation(vec![FieldError::new(
                "url",
                FieldCode::ForbiddenAddress,
            )]));
        }
        Ok(fields)
    }

    async fn tenant_missing(&self, tenant: TenantId) -> Result<bool> {
        Ok(self.tenants.tenant(tenant).await?.is_none())
    }
}
