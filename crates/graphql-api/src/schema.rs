//! Building the schema once, with its limits and services.

use async_graphql::{EmptySubscription, Schema};

use domain::deliveries::DeliveryService;
use domain::service::TenantService;

use crate::mutation::MutationRoot;
use crate::query::QueryRoot;

pub type MailgateSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Limits against expensive queries.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub introspection: bool,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 1000,
            introspection: false,
        }
    }
}

/// The schema with the services it calls.
pub fn build_schema(service: TenantService, deliveries: DeliveryService, limits: SchemaLimits) -> MailgateSchema {
    let builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(service)
        .data(deliveries)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    let builder = if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder.finish()
}

/// The SDL the frontend builds against (committed as `schema.graphql`).
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish().sdl()
}
