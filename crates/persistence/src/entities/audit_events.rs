//! The `audit_events` table: the audit trail, one row per write, in id (time) order.

use sea_orm::entity::prelude::*;

/// An `audit_events` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// Hyphenated UUIDv7 string: text order is time order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub actor_subject: String,
    pub actor_role: String,
    pub action: String,
    /// JSON list of `{field, before, after}` or `{field, secret: true}`.
    pub changes: String,
    pub at: DateTimeUtc,
    /// When retention removed what the entry held of a person's data (a test mail's
    /// recipient, a server's reply).
    pub content_removed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
