//! Who is calling and what they may see: operators see every tenant, a tenant admin
//! only its own, platform services read tenants and hand in notifications.

use crate::error::{Error, Result};
use crate::tenant::TenantId;

crate::coded_enum! {
    /// The caller's role, from the token's `role` claim.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Role {
        Operator = "operator",
        TenantAdmin = "tenant_admin",
        Service = "service",
    }
}

/// An authenticated caller. A tenant admin always carries its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    subject: String,
    role: Role,
    tenant_id: Option<TenantId>,
}

/// The tenants a read may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantScope {
    One(TenantId),
    All(AllTenants),
}

/// Permission to read every tenant's data. Only [`Caller::scope`] (for operators and
/// services) and [`AllTenants::for_operations`] make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllTenants(());

impl AllTenants {
    /// For the process's own operations (queue gauges, benchmarks), never on behalf of a
    /// caller.
    pub fn for_operations() -> Self {
        Self(())
    }
}

impl TenantScope {
    /// The one tenant, or `None` for all.
    pub fn tenant(self) -> Option<TenantId> {
        match self {
            TenantScope::One(t) => Some(t),
            TenantScope::All(_) => None,
        }
    }
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

    /// Which tenants' data this caller may read: its own tenant for a tenant admin, every
    /// tenant for operators and services. Store calls that read across tenants take the
    /// [`TenantScope::All`] that only this hands out.
    pub fn scope(&self) -> TenantScope {
        match (self.role, self.tenant_id) {
            (Role::TenantAdmin, Some(tenant)) => TenantScope::One(tenant),
            // A tenant admin always has its tenant (see `Caller::new`); without one it
            // sees nothing rather than everything.
            (Role::TenantAdmin, None) => TenantScope::One(TenantId::nil()),
            (Role::Operator | Role::Service, _) => TenantScope::All(AllTenants(())),
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
