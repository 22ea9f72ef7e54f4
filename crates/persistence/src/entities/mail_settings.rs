//! The `mail_settings` table: a tenant's saved mail-server settings by version, each with
//! its health. A tenant has at most two rows: the newest saved version and, while that one
//! waits for its test, the older version that is still live. Passwords are stored only as
//! AES-GCM ciphertext with the id of their key.

use sea_orm::entity::prelude::*;

/// A `mail_settings` row. Its `Debug` shows ciphertext bytes only, never a password.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mail_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub server_kind: String,
    pub host: String,
    pub port: i32,
    pub from_address: String,
    pub from_name: Option<String>,
    pub smtp_auth: bool,
    pub username: Option<String>,
    /// nonce || ciphertext, bound to the tenant and the purpose `smtp`.
    pub password_ciphertext: Option<Vec<u8>>,
    pub password_key_id: Option<String>,
    pub encryption: String,
    pub pop_host: Option<String>,
    pub pop_port: Option<i32>,
    pub pop_username: Option<String>,
    /// nonce || ciphertext, bound to the tenant and the purpose `pop`.
    pub pop_password_ciphertext: Option<Vec<u8>>,
    pub pop_password_key_id: Option<String>,
    pub pop_tls: Option<bool>,
    pub local_hostname: Option<String>,
    pub send_interval_ms: i64,
    pub updated_at: DateTimeUtc,
    /// `PENDING_VERIFICATION`, `LIVE` or `SUSPENDED`.
    pub state: String,
    pub state_since: DateTimeUtc,
    /// Configuration failures of real deliveries in a row.
    pub consecutive_failures: i32,
    pub last_failure_at: Option<DateTimeUtc>,
    pub last_failure_stage: Option<String>,
    pub last_failure_smtp_code: Option<i32>,
    pub last_failure_enhanced_code: Option<String>,
    pub last_failure_message: Option<String>,
    pub last_failure_hint: Option<String>,
    /// SHA-256 (hex) of the activation code a test mail carried, while it is valid.
    pub activation_code_hash: Option<String>,
    pub activation_code_expires_at: Option<DateTimeUtc>,
    /// The OAuth connection (`mail_connections.id`) that authenticates instead of a
    /// password.
    pub connection_id: Option<String>,
    /// When a worker last found this version's server taking mail (written when it
    /// proves itself, not per delivery).
    pub server_reached_at: Option<DateTimeUtc>,
    /// When a worker last found it failing for every mail (a black hole, a refusal).
    pub server_unreachable_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::tenants::Entity",
        from = "Column::TenantId",
        to = "super::tenants::Column::Id",
        on_delete = "Cascade"
    )]
    Tenant,
}

impl Related<super::tenants::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tenant.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
