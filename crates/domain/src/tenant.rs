//! Tenants: the sites of the hosting platform.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::plan::Plan;
use crate::values::{ValueError, has_control_chars};

/// A tenant's id: a UUID (version 7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(uuid::Uuid);

impl TenantId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// The all-zero id, which no tenant has.
    pub fn nil() -> Self {
        Self(uuid::Uuid::nil())
    }
}

impl FromStr for TenantId {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical hyphenated form, so one tenant has one spelling.
        if s.len() != 36 {
            return Err(ValueError::InvalidFormat);
        }
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ValueError::InvalidFormat)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
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
