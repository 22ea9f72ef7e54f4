//! The `webhook_messages` table: one event on its way to one endpoint, with where it
//! stands and the lease of the dispatcher sending it.

use sea_orm::entity::prelude::*;

/// A `webhook_messages` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_messages")]
pub struct Model {
    /// Hyphenated UUIDv7 string.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The `webhook-id` header (`msg_…`), the same for every endpoint of the event.
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub tenant_id: String,
    pub body: String,
    /// `PENDING`, `SENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    pub attempts: i32,
    /// Epoch milliseconds.
    pub next_attempt_at_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
