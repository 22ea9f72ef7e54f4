//! Mailgate's GraphQL API: the schema the frontend relies on (see PRODUCT.md), JWT
//! authentication, and the one place where errors become GraphQL errors with a stable
//! `extensions.code`.

pub mod auth;
pub mod context;
mod deliveries;
pub mod error;
mod inputs;
mod mutation;
mod query;
pub mod schema;
mod types;

pub use auth::{AuthError, Claims, JwtConfig, TokenVerifier};
pub use context::RequestContext;
pub use schema::{MailgateSchema, SchemaLimits, build_schema};
