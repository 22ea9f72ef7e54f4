//! Tenants: the sites of the hosting platform.

use chrono::{DateTime, Utc};

use crate::plan::Plan;
use crate::values::{ValueError, has_control_chars};

crate::ids::uuid_id! {
    /// A tenant's id.
    TenantId
}

impl TenantId {
    /// The all-zero id, which no tenant has.
    pub fn nil() -> Self {
        Self(uuid::Uuid::nil())
    }
}

/// A tenant's display name: 1–200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ValueError::Required);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        if has_control_chars(name) {
            return Err(ValueError::ControlCharacters);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A site on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: TenantName,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tenant with its saved settings, if any.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub settings: Option<crate::settings::StoredMailSettings>,
}
