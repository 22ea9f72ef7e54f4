//! The Mailgate server: typed configuration, the wiring of storage, domain services and
//! the GraphQL API into one [`app::App`], the HTTP routes, and the CLI commands.

pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod query_cache;
pub mod sign_in;
pub mod telemetry;
pub mod views;
