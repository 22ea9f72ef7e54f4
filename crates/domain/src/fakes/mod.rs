//! In-memory fakes of the ports, for tests (the `fakes` feature; this crate's own tests
//! turn it on). Each keeps the promise its port documents — versions and the plan
//! re-check of a settings write, leases and expected states of a delivery update,
//! idempotency keys, limits over a window — so a service's rules are checked in
//! milliseconds with no database or socket. The real stores keep the same promises
//! against real databases in `persistence`'s and the API's tests.
//!
//! [`Fakes`] wires one of each; a test changes what it needs (a scripted server, a
//! failing lookup) and builds the services from it.

pub mod coordination;
pub mod deliveries;
pub mod lookups;
pub mod mailer;
pub mod tenants;
pub mod views;
pub mod webhooks;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use coordination::{MemoryCoordination, MemoryQuota};
pub use deliveries::MemoryDeliveries;
pub use lookups::FixedLookups;
pub use mailer::{ScriptedMailer, Server};
pub use tenants::MemoryTenants;
pub use views::RecordingViews;
pub use webhooks::{FixedEndpointCheck, MemoryWebhooks};

use crate::access::{Caller, Role};
use crate::sender::PlatformSender;
use crate::services::TenantService;
use crate::services::assistant::AssistantService;
use crate::services::deliveries::DeliveryService;
use crate::services::webhooks::WebhookService;
use crate::settings::PortPolicy;
use crate::tenant::TenantId;

/// Locks a fake's state; a panic in another test thread does not poison the rest.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The platform default sender every fake service uses.
pub const PLATFORM_SENDER: &str = "Platform <noreply@platform.example>";

/// One fake of each port, shared by the services a test builds from them.
#[derive(Debug, Clone)]
pub struct Fakes {
    pub tenants: Arc<MemoryTenants>,
    pub deliveries: Arc<MemoryDeliveries>,
    pub coordination: Arc<MemoryCoordination>,
    pub quota: Arc<MemoryQuota>,
    pub mailer: Arc<ScriptedMailer>,
    pub lookups: Arc<FixedLookups>,
    pub webhooks: Arc<MemoryWebhooks>,
    pub endpoint_check: Arc<FixedEndpointCheck>,
    pub views: Arc<RecordingViews>,
}

impl Default for Fakes {
    fn default() -> Self {
        Self::new()
    }
}

impl Fakes {
    pub fn new() -> Self {
        let tenants = Arc::new(MemoryTenants::default());
        Self {
            deliveries: Arc::new(MemoryDeliveries::default()),
            coordination: Arc::new(MemoryCoordination::default()),
            quota: Arc::new(MemoryQuota::auditing_to(tenants.clone())),
            mailer: Arc::new(ScriptedMailer::default()),
            lookups: Arc::new(FixedLookups::default()),
            webhooks: Arc::new(MemoryWebhooks::default()),
            endpoint_check: Arc::new(FixedEndpointCheck::default()),
            views: Arc::new(RecordingViews::default()),
            tenants,
        }
    }

    pub fn platform_sender() -> PlatformSender {
        PlatformSender::parse(PLATFORM_SENDER).unwrap_or_else(|e| panic!("the fake platform sender: {e}"))
    }

    /// The tenant service on these fakes (the port policy a production profile uses,
    /// activation by a test mail, the sender-domain check on save).
    pub fn tenant_service(&self) -> TenantService {
        TenantService::new(
            self.tenants.clone(),
            Self::platform_sender(),
            self.mailer.clone(),
            PortPolicy::default(),
            self.coordination.clone(),
            self.views.clone(),
        )
        .with_lookups(self.lookups.clone())
    }

    /// The delivery service on these fakes, without quotas.
    pub fn delivery_service(&self) -> DeliveryService {
        DeliveryService::new(
            self.tenants.clone(),
            self.deliveries.clone(),
            self.deliveries.clone(),
            &Self::platform_sender(),
            self.views.clone(),
        )
    }

    /// The webhook service on these fakes.
    pub fn webhook_service(&self) -> WebhookService {
        WebhookService::new(self.webhooks.clone(), self.tenants.clone(), self.endpoint_check.clone())
    }

    /// The setup assistant on these fakes.
    pub fn assistant_service(&self) -> AssistantService {
        AssistantService::new(
            self.tenants.clone(),
            self.mailer.clone(),
            self.coordination.clone(),
            self.lookups.clone(),
            vec![
                (587, crate::server::Encryption::StartTls),
                (465, crate::server::Encryption::Ssl),
            ],
        )
    }
}

/// An operator's caller.
pub fn operator() -> Caller {
    caller("operator", Role::Operator, None)
}

/// The tenant's admin.
pub fn admin(tenant: TenantId) -> Caller {
    caller(&format!("admin-{tenant}"), Role::TenantAdmin, Some(tenant))
}

/// A service's caller (the platform's backend enqueueing notifications).
pub fn service() -> Caller {
    caller("service", Role::Service, None)
}

fn caller(subject: &str, role: Role, tenant: Option<TenantId>) -> Caller {
    Caller::new(subject.to_owned(), role, tenant).unwrap_or_else(|e| panic!("a fake caller: {e:?}"))
}
