//! GraphQL values that several features share: the enums of plans, roles and sender
//! sources, dates as RFC 3339 text, and reading the request's context.

use async_graphql::{Context, Enum};
use chrono::SecondsFormat;

use domain::{Caller, Locale};

use crate::context::RequestContext;
use crate::error::ResultExt as _;

/// The request's language (English when no request context is attached).
pub(crate) fn locale(ctx: &Context<'_>) -> Locale {
    ctx.data_opt::<RequestContext>().map_or(Locale::En, |r| r.locale)
}

/// The authenticated caller and the service a resolver calls, or `UNAUTHENTICATED`.
pub(crate) fn caller_and<'a, S: Send + Sync + 'static>(
    ctx: &'a Context<'_>,
) -> async_graphql::Result<(&'a Caller, &'a S, Locale)> {
    let rc = ctx.data::<RequestContext>()?;
    let caller = rc.caller().gql(rc.locale)?;
    Ok((caller, ctx.data::<S>()?, rc.locale))
}

/// A malformed id names no tenant.
pub(crate) fn parse_tenant_id(id: &async_graphql::ID) -> domain::Result<domain::TenantId> {
    id.parse().map_err(|_| domain::Error::NotFound)
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A count or size as a GraphQL `Int` (saturating).
pub(crate) fn int(v: impl TryInto<i32>) -> i32 {
    v.try_into().unwrap_or(i32::MAX)
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Plan")]
pub enum Plan {
    Economy,
    Basic,
    Pro,
    Share,
    Biz,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::SenderSource")]
pub enum SenderSource {
    Custom,
    PlatformDefault,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Role")]
pub enum Role {
    Operator,
    TenantAdmin,
    Service,
}
