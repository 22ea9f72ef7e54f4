//! The `webhook_attempts` table: one row per POST of a message.

use sea_orm::entity::prelude::*;

/// A `webhook_attempts` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    /// Hyphenated UUIDv7 string.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub message_id: String,
    pub at: DateTimeUtc,
    pub status_code: Option<i32>,
    /// An attempt error code (`HTTP_STATUS`, `TIMED_OUT`, …); null when it got a 2xx.
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
