//! Mailgate's domain: tenants and plans, mail-server settings that are valid by
//! construction, the plan gate that hands out a [`plan::SenderOverridePermit`], the
//! effective-sender rule, the audit trail, and the ports (traits) that the storage and
//! transport crates implement. No framework crate is used here.

pub mod access;
pub mod audit;
pub mod audit_value;
pub mod change;
pub mod codes;
pub mod delivery;
pub mod discovery;
pub mod error;
pub mod failure;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod finish;
pub mod health;
pub mod i18n;
pub mod ids;
pub mod mail;
pub mod oauth;
pub mod plan;
pub mod ports;
pub mod probe;
pub mod providers;
pub mod quota;
pub mod redact;
pub mod sender;
pub mod sender_domain;
pub mod server;
pub mod services;
pub mod settings;
pub mod suspension;
pub mod tenant;
pub mod values;
pub mod webhook;

pub use access::{Caller, Role, TenantScope};
pub use error::{Error, FieldError, Result, StoreError, WriteError};
pub use i18n::Locale;
pub use ids::{DeliveryId, IdempotencyKey, LeaseOwner, MessageId, TraceParent};
pub use plan::{Plan, SenderOverridePermit};
pub use sender::{EffectiveSender, PlatformSender, SenderReason, SenderSource};
pub use settings::{MailSettings, MailSettingsDraft, StoredMailSettings};
pub use tenant::{Tenant, TenantId, TenantName, TenantRecord};
