//! Mailgate's storage: the domain's [`domain::ports::TenantStore`] and
//! delivery ports (the durable delivery queue: outbox, queue, queries) implemented with
//! sea-orm on SQLite or PostgreSQL ([`SqlStore`]), with mail-server passwords sealed by
//! AES-256-GCM under a rotatable key ring ([`SecretKeyRing`]) and a tenant cache in
//! front ([`CachedStore`]). Table rows stay inside this crate; callers see domain types.
//!
//! Typical start-up:
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let keys = persistence::SecretKeyRing::from_base64(&"…".into(), &[])?;
//! let db = persistence::connect("sqlite://data/mailgate.db?mode=rwc", None, 4).await?;
//! persistence::migrate(&db).await?;
//! let store = persistence::CachedStore::new(persistence::SqlStore::new(db, Arc::new(keys)));
//! # let _ = store; Ok(()) }
//! ```

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "a test should stop at the first unexpected error"
    )
)]

pub mod cache;
pub mod changes;
mod convert;
pub mod coordination;
pub mod crypto;
mod db;
mod deliveries;
mod entities;
pub mod error;
pub mod group_commit;
mod leased_queue;
pub mod oauth;
pub mod quota;
mod rotation;
mod sql;
mod store;
mod webhook_outbox;
mod webhooks;

pub use cache::CachedStore;
pub use changes::{CHANGE_CHANNEL, listen_for_changes};
pub use crypto::{CryptoError, SecretKeyRing, SecretPurpose, generate_key_base64, parse_key};
pub use db::{PoolUse, connect, migrate, pool_use};
pub use error::{Error, Result};
pub use group_commit::GroupCommit;
pub use quota::QuotaGate;
pub use rotation::rotate_secret_key;
pub use sea_orm::DatabaseConnection;
pub use store::SqlStore;

#[cfg(test)]
mod tests;
