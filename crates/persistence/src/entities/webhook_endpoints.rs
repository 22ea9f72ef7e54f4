//! The `webhook_endpoints` table: where operators want events sent, with the signing
//! secrets sealed like passwords.

use sea_orm::entity::prelude::*;

/// A `webhook_endpoints` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    /// Hyphenated UUIDv7 string.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub url: String,
    pub description: String,
    /// Only this tenant's events; null: every tenant's.
    pub tenant_id: Option<String>,
    /// Event type codes separated by commas (`delivery.sent,tenant.plan_changed`).
    pub event_types: String,
    pub enabled: bool,
    pub secret_ciphertext: Vec<u8>,
    pub secret_key_id: String,
    pub previous_secret_ciphertext: Option<Vec<u8>>,
    pub previous_secret_key_id: Option<String>,
    pub previous_secret_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
