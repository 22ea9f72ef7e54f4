//! Webhook endpoints and their messages in memory (the operators' side), and an address
//! check with set answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::error::StoreError;
use crate::ports::{EndpointCheck, HostCheck, WebhookStore};
use crate::webhook::{
    EndpointId, EndpointSecrets, EndpointUrl, MessageId, MessageStatus, WebhookEndpoint, WebhookMessage, WebhookSecret,
};

#[derive(Debug, Default)]
struct State {
    endpoints: BTreeMap<EndpointId, (WebhookEndpoint, EndpointSecrets)>,
    messages: BTreeMap<MessageId, WebhookMessage>,
}

/// `WebhookStore` in memory.
#[derive(Debug, Default)]
pub struct MemoryWebhooks {
    state: Mutex<State>,
}

impl MemoryWebhooks {
    /// Stores a message as it is (a fixture: the event a change wrote).
    pub fn add_message(&self, message: WebhookMessage) {
        lock(&self.state).messages.insert(message.id, message);
    }

    /// The secrets the endpoint signs with now.
    pub fn secrets(&self, id: EndpointId) -> Option<EndpointSecrets> {
        lock(&self.state).endpoints.get(&id).map(|(_, s)| s.clone())
    }

    /// The message as stored now.
    pub fn message(&self, id: MessageId) -> Option<WebhookMessage> {
        lock(&self.state).messages.get(&id).cloned()
    }
}

#[async_trait::async_trait]
impl WebhookStore for MemoryWebhooks {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint, secret: &WebhookSecret) -> Result<(), StoreError> {
        let secrets = EndpointSecrets {
            current: secret.clone(),
            previous: None,
        };
        lock(&self.state)
            .endpoints
            .insert(endpoint.id, (endpoint.clone(), secrets));
        Ok(())
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<bool, StoreError> {
        Ok(match lock(&self.state).endpoints.get_mut(&endpoint.id) {
            Some((stored, _)) => {
                *stored = endpoint.clone();
                true
            }
            None => false,
        })
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &WebhookSecret,
        previous_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let mut state = lock(&self.state);
        let Some((endpoint, secrets)) = state.endpoints.get_mut(&id) else {
            return Ok(None);
        };
        let old = std::mem::replace(&mut secrets.current, secret.clone());
        secrets.previous = previous_until.map(|until| (old, until));
        endpoint.previous_secret_expires_at = previous_until;
        endpoint.updated_at = at;
        Ok(Some(endpoint.clone()))
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        state.messages.retain(|_, m| m.endpoint_id != id);
        Ok(state.endpoints.remove(&id).is_some())
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        Ok(lock(&self.state).endpoints.get(&id).map(|(e, _)| e.clone()))
    }

    async fn endpoints(&self, after: Option<EndpointId>, limit: u64) -> Result<Vec<WebhookEndpoint>, StoreError> {
        Ok(lock(&self.state)
            .endpoints
            .values()
            .filter(|(e, _)| after.is_none_or(|a| e.id > a))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(e, _)| e.clone())
            .collect())
    }

    async fn messages(
        &self,
        endpoint: EndpointId,
        status: Option<MessageStatus>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        Ok(lock(&self.state)
            .messages
            .values()
            .rev()
            .filter(|m| m.endpoint_id == endpoint && status.is_none_or(|s| m.status == s))
            .filter(|m| after.is_none_or(|a| m.id < a))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn replay(&self, id: MessageId, at: DateTime<Utc>) -> Result<Option<WebhookMessage>, StoreError> {
        let mut state = lock(&self.state);
        let Some(message) = state.messages.get_mut(&id) else {
            return Ok(None);
        };
        if message.status != MessageStatus::Sending {
            message.status = MessageStatus::Pending;
            message.attempts = 0;
            message.next_attempt_at = at;
            message.delivered_at = None;
        }
        Ok(Some(message.clone()))
    }

    async fn message_counts(&self) -> Result<Vec<(MessageStatus, u64)>, StoreError> {
        let mut counts: HashMap<MessageStatus, u64> = HashMap::new();
        for m in lock(&self.state).messages.values() {
            *counts.entry(m.status).or_insert(0) += 1;
        }
        Ok(counts.into_iter().collect())
    }
}

/// `EndpointCheck` with set answers per host (default: reachable); it keeps the URLs it
/// was asked about.
#[derive(Debug, Default)]
pub struct FixedEndpointCheck {
    answers: Mutex<HashMap<String, HostCheck>>,
    asked: Mutex<Vec<String>>,
}

impl FixedEndpointCheck {
    /// What a check of `host` answers from now on.
    pub fn answer(&self, host: &str, check: HostCheck) {
        lock(&self.answers).insert(host.to_ascii_lowercase(), check);
    }

    /// The URLs checked, in order.
    pub fn asked(&self) -> Vec<String> {
        lock(&self.asked).clone()
    }
}

#[async_trait::async_trait]
impl EndpointCheck for FixedEndpointCheck {
    async fn check(&self, url: &EndpointUrl) -> HostCheck {
        lock(&self.asked).push(url.as_str().to_owned());
        lock(&self.answers)
            .get(&url.host().to_ascii_lowercase())
            .copied()
            .unwrap_or(HostCheck::Reachable)
    }
}
