//! Mailgate's GraphQL API: the schema the frontend relies on (see PRODUCT.md), JWT
//! authentication, and the one place where errors become GraphQL errors with a stable
//! `extensions.code`.
//!
//! Organised by feature: [`schema`] holds the two roots, each field handing over to its
//! feature module — `tenants` (tenants, plans, the `Tenant` type), `mail_settings` (the
//! settings form, presets, test mail), `deliveries` (notifications) and `audit` (the
//! trail). `pagination` and `values` are shared by all of them; a feature module never
//! imports the schema, and `tenants` (which gathers the others' fields) is the only one
//! that imports other features.

mod assistant;
mod audit;
pub mod auth;
pub mod catalogue;
mod connections;
pub mod context;
mod deliveries;
pub mod depth;
pub mod error;
mod mail_settings;
mod pagination;
pub mod schema;
mod tenants;
pub mod validated;
mod values;
mod webhooks;

pub use auth::{AuthError, Claims, JwtConfig, TokenVerifier};
pub use context::RequestContext;
pub use depth::{DocumentLimits, Shape};
pub use schema::{MailgateSchema, SchemaLimits};
pub use validated::{Schemas, Verdict, build_schema};
