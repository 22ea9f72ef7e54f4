//! The `deliveries` table: the durable queue, one row per notification with its rendered
//! message, where it stands, and the lease of the worker that holds it.

use sea_orm::entity::prelude::*;

/// A `deliveries` row. Its `Debug` shows the address and the message: never log it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    /// Hyphenated UUIDv7 string: text order is time order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// A notification kind code (`REGISTRATION_COMPLETED`, `PASSWORD_RESET`, `CUSTOM`).
    pub kind: String,
    pub to_address: String,
    /// `en` or `ja`.
    pub locale: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub message_id: String,
    pub idempotency_key: Option<String>,
    /// A delivery status code (`QUEUED`, `SENDING`, `SENT`, `RETRYING`, `FAILED`).
    pub status: String,
    pub retries: i32,
    /// An attempt of it was a retry or a deferral (`domain::delivery::Delivery::retried_before`):
    /// set by the finish that records such an attempt, never cleared.
    pub retried_before: bool,
    /// Epoch milliseconds.
    pub next_attempt_at_ms: i64,
    pub lease_owner: Option<String>,
    /// Epoch milliseconds; set while `SENDING`.
    pub lease_until_ms: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    /// Why it failed for good (`domain::delivery::FailureCode`).
    pub failure_code: Option<String>,
    /// A refusal's stage, reply code and reply.
    pub failure_detail: Option<String>,
    /// The reason as text, as releases before `failure_code` wrote it: read only where a
    /// row has no code (a delivery such a release finished during a rolling upgrade),
    /// cleared by every write of a reason. A later release drops the column.
    pub failure_reason: Option<String>,
    /// Claims in a row that ended without an outcome (this one included while
    /// `SENDING`); see the migration that added it.
    pub claims: i32,
    /// Sent through the platform default whatever the tenant's route (a time-critical
    /// fallback, or a notice to the tenant).
    pub via_platform: bool,
    /// When retention removed its recipient, subject, bodies and reply texts.
    pub content_removed_at: Option<DateTimeUtc>,
    /// SHA-256 (hex) of the recipient address, kept once the address is removed.
    pub recipient_hash: Option<String>,
    /// The W3C `traceparent` of the request that handed it in.
    pub trace_parent: Option<String>,
    /// SHA-256 (hex) of what an idempotency key stood for (kind, recipient, language,
    /// message), kept once the content is removed.
    pub payload_hash: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::delivery_attempts::Entity")]
    Attempts,
}

impl Related<super::delivery_attempts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attempts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
