//! sea-orm entities for Mailgate's tables. They mirror the migrations column for column
//! and stay inside this crate: the rest of the workspace sees only domain types, which
//! the store converts to and from (parsing every value again on the way in).

pub mod audit_events;
pub mod deliveries;
pub mod delivery_attempts;
pub mod mail_settings;
pub mod tenants;
pub mod webhook_attempts;
pub mod webhook_endpoints;
pub mod webhook_messages;
