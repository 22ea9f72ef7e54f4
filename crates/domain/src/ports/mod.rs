//! Ports: what the domain needs from storage and transport, one module per kind of
//! caller. `persistence` and `mailer` implement them. A port depends on the models; no
//! model depends on a port.

pub mod assistant;
pub mod coordination;
pub mod deliveries;
pub mod oauth;
pub mod tenants;
pub mod transport;
pub mod views;
pub mod webhooks;

pub use assistant::{CheckedServer, SetupLookups};
pub use coordination::{Coordination, EnqueueQuota, TestMailLimit};
pub use deliveries::{DeliveryOutbox, DeliveryQueries, DeliveryQueue, EnqueueOutcome, StatusCounts};
pub use oauth::{
    AccessToken, AccessTokens, AuthorizationStateStore, MailConnections, ProviderFailure, RefreshOutcome, RefreshTurn,
    SignInProviders, StateSeal, TokenUnavailable,
};
pub use tenants::{TenantRecord, TenantStore};
pub use transport::{HostCheck, MailTransport, Pacing};
pub use views::TenantViews;
pub use webhooks::{EndpointCheck, WebhookQueue, WebhookStore};
