//! Storage of webhook endpoints and their messages: the operators' side (endpoints,
//! recent messages, replay) and the dispatcher's (claim due messages under a lease,
//! record each attempt). Messages are written by storage itself, in the transaction of
//! the change that caused their event (see [`crate::webhook::event`]).

use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::ids::LeaseOwner;
use crate::ports::HostCheck;
use crate::webhook::retry::MessageUpdate;
use crate::webhook::{
    ClaimedMessage, EndpointId, EndpointUrl, MessageId, MessageStatus, WebhookEndpoint, WebhookMessage, WebhookSecret,
};

/// Endpoints and what was sent to them.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint, secret: &WebhookSecret) -> Result<(), StoreError>;

    /// Replaces the endpoint's fields (not its secret); false when it is gone.
    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<bool, StoreError>;

    /// Signs with `secret` from now on; the secret it replaces keeps signing too until
    /// `previous_until` (none: it stops at once). `None` when the endpoint is gone.
    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &WebhookSecret,
        previous_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;

    /// Removes the endpoint and its messages; false when it was gone.
    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError>;

    async fn endpoint(&self, id: EndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;

    /// Endpoints in id (creation) order after `after`.
    async fn endpoints(&self, after: Option<EndpointId>, limit: u64) -> Result<Vec<WebhookEndpoint>, StoreError>;

    /// The endpoint's messages, newest first, before `after`, optionally of one status,
    /// each with its most recent attempts.
    async fn messages(
        &self,
        endpoint: EndpointId,
        status: Option<MessageStatus>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<WebhookMessage>, StoreError>;

    /// Makes a message due again at `at` with the schedule started over (its attempts
    /// stay in its history); one that is being sent right now is left alone. `None` when
    /// it does not exist.
    async fn replay(&self, id: MessageId, at: DateTime<Utc>) -> Result<Option<WebhookMessage>, StoreError>;

    /// Messages by status, over every endpoint (for `/metrics`).
    async fn message_counts(&self) -> Result<Vec<(MessageStatus, u64)>, StoreError>;
}

/// The dispatcher's side.
#[async_trait::async_trait]
pub trait WebhookQueue: Send + Sync + 'static {
    /// Claims up to `limit` due messages (`PENDING` whose time has come, `SENDING` whose
    /// lease ran out), earliest first, at most `per_endpoint` of any one endpoint, none of
    /// the endpoints in `exclude`; each is `SENDING` under `owner` until `lease_until`.
    async fn claim(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        exclude: &[EndpointId],
    ) -> Result<Vec<ClaimedMessage>, StoreError>;

    /// Records the attempt and applies the update where the message is still `SENDING`
    /// under `owner`'s lease; false otherwise.
    async fn finish(&self, owner: &LeaseOwner, id: MessageId, update: &MessageUpdate) -> Result<bool, StoreError>;

    /// Removes up to `limit` messages (with their attempts) that were `DELIVERED` or
    /// `FAILED` before `before`; how many.
    async fn remove_finished(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError>;
}

/// Checks an endpoint's host against the address guard when it is saved.
#[async_trait::async_trait]
pub trait EndpointCheck: Send + Sync + 'static {
    async fn check(&self, url: &EndpointUrl) -> HostCheck;
}
