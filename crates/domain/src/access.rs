//! Who is calling and what they may see: operators see every tenant, a tenant admin
//! only its own, platform services read tenants and hand in notifications.

use crate::error::{Error, Result};
use crate::tenant::TenantId;

/// The caller's role, from the token's `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    TenantAdmin,
    Service,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant_admin",
            Role::Service => "service",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        [Role::Operator, Role::TenantAdmin, Role::Service]
            .into_iter()
            .find(|r| r.code() == s)
    }
}

/// An authenticated caller. A tenant admin always carries its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    subject: String,
    role: Role,
    tenant_id: Option<TenantId>,
}

/// The token's claims do not make a valid caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a tenant_admin must carry a tenant_id")]
pub struct MissingTenant;

impl Caller {
    pub fn new(subject: String, role: Role, tenant_id: Option<TenantId>) -> Result<Self, MissingTenant> {
        if role == Role::TenantAdmin && tenant_id.is_none() {
            return Err(MissingTenant);
        }
        Ok(Self {
            subject,
            role,
            tenant_id,
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant_id
    }

    /// Whether the tenant exists for this caller at all. A tenant admin asking about
    /// another tenant gets exactly what a nonexistent id gets.
    pub fn can_see(&self, tenant: TenantId) -> bool {
        match self.role {
            Role::Operator | Role::Service => true,
            Role::TenantAdmin => self.tenant_id == Some(tenant),
        }
    }

    /// Operators only (tenant management).
    pub fn require_operator(&self) -> Result<()> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// Who may change a tenant's mail settings: operators, and that tenant's admins.
    /// Others get NOT_FOUND for a tenant they cannot see, FORBIDDEN otherwise.
    pub fn require_settings_editor(&self, tenant: TenantId) -> Result<()> {
        if !self.can_see(tenant) {
            return Err(Error::NotFound);
        }
        match self.role {
            Role::Operator | Role::TenantAdmin => Ok(()),
            Role::Service => Err(Error::Forbidden),
        }
    }
}
