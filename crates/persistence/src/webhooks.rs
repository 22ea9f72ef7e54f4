//! Webhooks on sea-orm: the endpoints (secrets sealed by the key ring), the operators'
//! reads of their messages, and the dispatcher's claim and finish under a lease, like the
//! delivery queue's. The messages themselves are written by `webhook_outbox`, in the
//! transaction of the change that caused their event.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::StoreError;
use domain::error::FieldCode;
use domain::ids::LeaseOwner;
use domain::ports::{WebhookQueue, WebhookStore};
use domain::tenant::TenantId;
use domain::webhook::retry::MessageUpdate;
use domain::webhook::{
    AttemptError, ClaimedMessage, EndpointId, EndpointSecrets, EndpointUrl, EventType, MessageId, MessageStatus,
    WebhookAttempt, WebhookEndpoint, WebhookMessage, WebhookSecret,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect};
use secrecy::SecretString;

use crate::convert::{corrupt, db_err};
use crate::crypto::{SecretKeyRing, SecretPurpose};
use crate::entities::{webhook_attempts, webhook_endpoints, webhook_messages};
use crate::leased_queue::{ClaimLimits, LeasedQueue};
use crate::store::SqlStore;
use crate::webhook_outbox::{event_types, event_types_text};

/// Attempts loaded with each message of a page.
const RECENT_ATTEMPTS: usize = 5;

fn endpoint_from_row(row: &webhook_endpoints::Model) -> Result<WebhookEndpoint, StoreError> {
    let subject = format!("webhook endpoint {}", row.id);
    let field = |name: &str, code: FieldCode| corrupt(&subject, name, code);
    Ok(WebhookEndpoint {
        id: EndpointId::from_str(&row.id).map_err(|e| field("id", e.into()))?,
        url: EndpointUrl::parse(&row.url).map_err(|c| field("url", c))?,
        description: row.description.clone(),
        tenant_id: row
            .tenant_id
            .as_deref()
            .map(TenantId::from_str)
            .transpose()
            .map_err(|e| field("tenantId", e.into()))?,
        event_types: event_types(&row.event_types),
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
        previous_secret_expires_at: row.previous_secret_expires_at,
    })
}

fn message_from_row(
    row: &webhook_messages::Model,
    attempts: Vec<WebhookAttempt>,
) -> Result<WebhookMessage, StoreError> {
    let subject = format!("webhook message {}", row.id);
    let field = |name: &str, code: FieldCode| corrupt(&subject, name, code);
    Ok(WebhookMessage {
        id: MessageId::from_str(&row.id).map_err(|e| field("id", e.into()))?,
        event_id: row.event_id.clone(),
        endpoint_id: EndpointId::from_str(&row.endpoint_id).map_err(|e| field("endpointId", e.into()))?,
        event_type: EventType::from_code(&row.event_type)
            .ok_or_else(|| field("eventType", FieldCode::InvalidFormat))?,
        tenant_id: TenantId::from_str(&row.tenant_id).map_err(|e| field("tenantId", e.into()))?,
        status: MessageStatus::from_code(&row.status).ok_or_else(|| field("status", FieldCode::InvalidFormat))?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: DateTime::from_timestamp_millis(row.next_attempt_at_ms)
            .ok_or_else(|| field("nextAttemptAt", FieldCode::InvalidFormat))?,
        created_at: row.created_at,
        delivered_at: row.delivered_at,
        body: row.body.clone(),
        recent_attempts: attempts,
    })
}

fn attempt_from_row(row: &webhook_attempts::Model) -> WebhookAttempt {
    WebhookAttempt {
        at: row.at,
        status_code: row.status_code.and_then(|c| u16::try_from(c).ok()),
        error: row.error.as_deref().and_then(AttemptError::from_code),
        duration_ms: u32::try_from(row.duration_ms).unwrap_or(0),
        response_excerpt: row.response_excerpt.clone(),
    }
}

fn seal(keys: &SecretKeyRing, id: &str, secret: &WebhookSecret) -> Result<(Vec<u8>, String), StoreError> {
    keys.encrypt_for(
        &SecretString::from(secret.expose().to_owned()),
        id,
        SecretPurpose::Webhook,
    )
    .map_err(|e| StoreError::Crypto(format!("webhook endpoint {id}: secret: {e}")))
}

fn open(keys: &SecretKeyRing, id: &str, sealed: &[u8], key_id: &str) -> Result<WebhookSecret, StoreError> {
    use secrecy::ExposeSecret as _;
    let plain = keys
        .decrypt_for(sealed, key_id, id, SecretPurpose::Webhook)
        .map_err(|e| StoreError::Crypto(format!("webhook endpoint {id}: secret: {e}")))?;
    WebhookSecret::parse(plain.expose_secret()).map_err(|c| corrupt(&format!("webhook endpoint {id}"), "secret", c))
}

fn secrets_of(keys: &SecretKeyRing, row: &webhook_endpoints::Model) -> Result<EndpointSecrets, StoreError> {
    let current = open(keys, &row.id, &row.secret_ciphertext, &row.secret_key_id)?;
    let previous = match (
        &row.previous_secret_ciphertext,
        &row.previous_secret_key_id,
        row.previous_secret_expires_at,
    ) {
        (Some(sealed), Some(key_id), Some(until)) => Some((open(keys, &row.id, sealed, key_id)?, until)),
        _ => None,
    };
    Ok(EndpointSecrets { current, previous })
}

impl SqlStore {
    /// The most recent attempts of these messages, newest first, keyed by message id.
    async fn recent_attempts(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<WebhookAttempt>>, StoreError> {
        let rows = webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::MessageId.is_in(ids.iter().map(String::as_str)))
            .order_by_desc(webhook_attempts::Column::Id)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        let mut by_message: std::collections::HashMap<String, Vec<WebhookAttempt>> = Default::default();
        for row in &rows {
            let list = by_message.entry(row.message_id.clone()).or_default();
            if list.len() < RECENT_ATTEMPTS {
                list.push(attempt_from_row(row));
            }
        }
        Ok(by_message)
    }

    async fn message_of(&self, id: &str) -> Result<Option<WebhookMessage>, StoreError> {
        let Some(row) = webhook_messages::Entity::find_by_id(id)
            .one(self.connection())
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let attempts = self
            .recent_attempts(std::slice::from_ref(&row.id))
            .await?
            .remove(&row.id);
        message_from_row(&row, attempts.unwrap_or_default()).map(Some)
    }
}

#[async_trait::async_trait]
impl WebhookStore for SqlStore {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint, secret: &WebhookSecret) -> Result<(), StoreError> {
        let id = endpoint.id.to_string();
        let (sealed, key_id) = seal(&self.keys, &id, secret)?;
        webhook_endpoints::Entity::insert(webhook_endpoints::ActiveModel {
            id: Set(id),
            url: Set(endpoint.url.as_str().to_owned()),
            description: Set(endpoint.description.clone()),
            tenant_id: Set(endpoint.tenant_id.map(|t| t.to_string())),
            event_types: Set(event_types_text(&endpoint.event_types)),
            enabled: Set(endpoint.enabled),
            secret_ciphertext: Set(sealed),
            secret_key_id: Set(key_id),
            previous_secret_ciphertext: Set(None),
            previous_secret_key_id: Set(None),
            previous_secret_expires_at: Set(None),
            created_at: Set(endpoint.created_at),
            updated_at: Set(endpoint.updated_at),
        })
        .exec_without_returning(self.connection())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<bool, StoreError> {
        let done = webhook_endpoints::Entity::update_many()
            .col_expr(webhook_endpoints::Column::Url, Expr::value(endpoint.url.as_str()))
            .col_expr(
                webhook_endpoints::Column::Description,
                Expr::value(endpoint.description.clone()),
            )
            .col_expr(
                webhook_endpoints::Column::TenantId,
                Expr::value(endpoint.tenant_id.map(|t| t.to_string())),
            )
            .col_expr(
                webhook_endpoints::Column::EventTypes,
                Expr::value(event_types_text(&endpoint.event_types)),
            )
            .col_expr(webhook_endpoints::Column::Enabled, Expr::value(endpoint.enabled))
            .col_expr(webhook_endpoints::Column::UpdatedAt, Expr::value(endpoint.updated_at))
            .filter(webhook_endpoints::Column::Id.eq(endpoint.id.to_string()))
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        secret: &WebhookSecret,
        previous_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        let Some(row) = webhook_endpoints::Entity::find_by_id(key.as_str())
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            txn.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let (sealed, key_id) = seal(&self.keys, &key, secret)?;
        let mut update = webhook_endpoints::ActiveModel {
            id: Set(key.clone()),
            secret_ciphertext: Set(sealed),
            secret_key_id: Set(key_id),
            updated_at: Set(at),
            ..Default::default()
        };
        // The secret replaced keeps signing during the overlap.
        match previous_until {
            Some(until) => {
                update.previous_secret_ciphertext = Set(Some(row.secret_ciphertext.clone()));
                update.previous_secret_key_id = Set(Some(row.secret_key_id.clone()));
                update.previous_secret_expires_at = Set(Some(until));
            }
            None => {
                update.previous_secret_ciphertext = Set(None);
                update.previous_secret_key_id = Set(None);
                update.previous_secret_expires_at = Set(None);
            }
        }
        let updated = webhook_endpoints::Entity::update(update)
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        endpoint_from_row(&updated).map(Some)
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let done = webhook_endpoints::Entity::delete_by_id(id.to_string())
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        webhook_endpoints::Entity::find_by_id(id.to_string())
            .one(self.connection())
            .await
            .map_err(db_err)?
            .as_ref()
            .map(endpoint_from_row)
            .transpose()
    }

    async fn endpoints(&self, after: Option<EndpointId>, limit: u64) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut query = webhook_endpoints::Entity::find();
        if let Some(after) = after {
            query = query.filter(webhook_endpoints::Column::Id.gt(after.to_string()));
        }
        query
            .order_by_asc(webhook_endpoints::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(db_err)?
            .iter()
            .map(endpoint_from_row)
            .collect()
    }

    async fn messages(
        &self,
        endpoint: EndpointId,
        status: Option<MessageStatus>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        let mut query =
            webhook_messages::Entity::find().filter(webhook_messages::Column::EndpointId.eq(endpoint.to_string()));
        if let Some(status) = status {
            query = query.filter(webhook_messages::Column::Status.eq(status.code()));
        }
        if let Some(after) = after {
            query = query.filter(webhook_messages::Column::Id.lt(after.to_string()));
        }
        let rows = query
            .order_by_desc(webhook_messages::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut attempts = if ids.is_empty() {
            Default::default()
        } else {
            self.recent_attempts(&ids).await?
        };
        rows.iter()
            .map(|row| message_from_row(row, attempts.remove(&row.id).unwrap_or_default()))
            .collect()
    }

    async fn replay(&self, id: MessageId, at: DateTime<Utc>) -> Result<Option<WebhookMessage>, StoreError> {
        let key = id.to_string();
        webhook_messages::Entity::update_many()
            .col_expr(
                webhook_messages::Column::Status,
                Expr::value(MessageStatus::Pending.code()),
            )
            .col_expr(webhook_messages::Column::Attempts, Expr::value(0))
            .col_expr(
                webhook_messages::Column::NextAttemptAtMs,
                Expr::value(at.timestamp_millis()),
            )
            .col_expr(webhook_messages::Column::UpdatedAt, Expr::value(at))
            .filter(webhook_messages::Column::Id.eq(key.as_str()))
            .filter(webhook_messages::Column::Status.ne(MessageStatus::Sending.code()))
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        self.message_of(&key).await
    }

    async fn message_counts(&self) -> Result<Vec<(MessageStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = webhook_messages::Entity::find()
            .select_only()
            .column(webhook_messages::Column::Status)
            .column_as(Expr::col(webhook_messages::Column::Id).count(), "n")
            .group_by(webhook_messages::Column::Status)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((MessageStatus::from_code(&s)?, u64::try_from(n).unwrap_or(0))))
            .collect())
    }
}

#[async_trait::async_trait]
impl WebhookQueue for SqlStore {
    #[tracing::instrument(name = "webhooks.claim", skip_all, fields(limit))]
    async fn claim(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
        exclude: &[EndpointId],
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        if limit == 0 || per_endpoint == 0 {
            return Ok(Vec::new());
        }
        let db = self.connection();
        let exclude: Vec<String> = exclude.iter().map(ToString::to_string).collect();
        let stmt = WEBHOOK_QUEUE.claim_statement(
            db.get_database_backend(),
            owner,
            now,
            lease_until,
            ClaimLimits::with_window(limit, per_endpoint, CLAIM_WINDOW_PER_MESSAGE),
            &exclude,
        );
        let rows = WEBHOOK_QUEUE.claim(self, stmt).await?;
        let messages: Vec<webhook_messages::Model> = rows
            .iter()
            .filter_map(|row| webhook_messages::Model::from_query_result(row, "").ok())
            .collect();
        let endpoint_ids: Vec<&str> = messages.iter().map(|m| m.endpoint_id.as_str()).collect();
        let endpoints: std::collections::HashMap<String, webhook_endpoints::Model> = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::Id.is_in(endpoint_ids))
            .all(db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|row| (row.id.clone(), row))
            .collect();
        let mut claimed = Vec::with_capacity(messages.len());
        for row in &messages {
            let parsed = endpoints
                .get(&row.endpoint_id)
                .ok_or_else(|| StoreError::Corrupt(format!("webhook message {}: its endpoint is gone", row.id)))
                .and_then(|endpoint| {
                    Ok(ClaimedMessage {
                        message: message_from_row(row, Vec::new())?,
                        url: EndpointUrl::parse(&endpoint.url)
                            .map_err(|c| corrupt(&format!("webhook endpoint {}", endpoint.id), "url", c))?,
                        secrets: secrets_of(&self.keys, endpoint)?,
                    })
                });
            match parsed {
                Ok(message) => claimed.push(message),
                // Left under its lease: tried again when it runs out, after the log says why.
                Err(error) => tracing::error!(message_id = row.id, %error, "claimed webhook message cannot be sent"),
            }
        }
        claimed.sort_by_key(|c| (c.message.next_attempt_at, c.message.id));
        Ok(claimed)
    }

    #[tracing::instrument(name = "webhooks.finish", skip_all)]
    async fn finish(&self, owner: &LeaseOwner, id: MessageId, update: &MessageUpdate) -> Result<bool, StoreError> {
        let key = id.to_string();
        let now = Utc::now();
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        let stmt = WEBHOOK_QUEUE.finish_statement(txn.get_database_backend(), owner, &key, now, |q| {
            q.sql("status = ")
                .bind(update.status.code())
                .sql(", attempts = ")
                .bind(i32::try_from(update.attempts).unwrap_or(i32::MAX))
                .sql(", next_attempt_at_ms = ")
                .bind(update.next_attempt_at.timestamp_millis())
                .sql(", delivered_at = ")
                .bind(update.delivered_at);
        });
        let done = txn.execute_raw(stmt).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            txn.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let a = &update.attempt;
        webhook_attempts::Entity::insert(webhook_attempts::ActiveModel {
            id: Set(uuid::Uuid::now_v7().hyphenated().to_string()),
            message_id: Set(key),
            at: Set(a.at),
            status_code: Set(a.status_code.map(i32::from)),
            error: Set(a.error.map(|e| e.code().to_owned())),
            duration_ms: Set(i32::try_from(a.duration_ms).unwrap_or(i32::MAX)),
            response_excerpt: Set(a.response_excerpt.clone()),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn remove_finished(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        WEBHOOK_QUEUE.remove_finished(self, before, limit).await
    }
}

/// Webhook messages as a leased queue: waiting `PENDING`, `SENDING` under a lease, done
/// `DELIVERED` or `FAILED`; fair across endpoints; only an enabled endpoint's messages
/// are claimed.
const WEBHOOK_QUEUE: LeasedQueue = LeasedQueue {
    table: "webhook_messages",
    group: "endpoint_id",
    waiting: &["PENDING"],
    in_flight: "SENDING",
    finished: &["DELIVERED", "FAILED"],
    claimable: Some("endpoint_id IN (SELECT id FROM webhook_endpoints WHERE enabled)"),
    on_claim: "",
};

/// Candidates a claim reads per message it may take.
const CLAIM_WINDOW_PER_MESSAGE: u32 = 4;

#[cfg(test)]
mod tests {
    use domain::webhook::MessageStatus;

    use super::WEBHOOK_QUEUE;

    #[test]
    fn the_queue_speaks_the_domains_status_codes() {
        assert_eq!(WEBHOOK_QUEUE.waiting, [MessageStatus::Pending.code()]);
        assert_eq!(WEBHOOK_QUEUE.in_flight, MessageStatus::Sending.code());
        assert_eq!(
            WEBHOOK_QUEUE.finished,
            [MessageStatus::Delivered.code(), MessageStatus::Failed.code()]
        );
    }
}
