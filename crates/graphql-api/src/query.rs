//! Read operations.

use std::str::FromStr;

use async_graphql::{Context, ID, Object};

use domain::service::TenantService;
use domain::settings::PRESETS;
use domain::{Locale, TenantId};

use crate::context::RequestContext;
use crate::error::{ResultExt as _, validation_error};
use crate::types::{
    MailServerPreset, PageInfo, Plan, PlanInfo, Tenant, TenantConnection, TenantEdge, Viewer, decode_cursor,
    encode_cursor,
};

pub(crate) fn page_size(first: i32, l: Locale) -> async_graphql::Result<u64> {
    if (1..=100).contains(&first) {
        Ok(u64::try_from(first).unwrap_or(1))
    } else {
        Err(validation_error(
            "first",
            "OUT_OF_RANGE",
            l.pick(
                "first must be between 1 and 100.",
                "first は1から100の間で指定してください。",
            )
            .into(),
            l,
        ))
    }
}

pub(crate) fn bad_cursor(l: Locale) -> async_graphql::Error {
    validation_error(
        "after",
        "INVALID_FORMAT",
        l.pick(
            "after is not a cursor from this list.",
            "after のカーソルが正しくありません。",
        )
        .into(),
        l,
    )
}

fn rc<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a RequestContext> {
    ctx.data::<RequestContext>()
}

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The caller: role and, for tenant admins, their tenant.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let rc = rc(ctx)?;
        Ok(Viewer {
            caller: rc.caller().gql(rc.locale)?.clone(),
        })
    }

    /// Null if the tenant does not exist or the caller may not see it.
    async fn tenant(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Tenant>> {
        let rc = rc(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let Ok(id) = TenantId::from_str(&id) else {
            return Ok(None);
        };
        let service = ctx.data::<TenantService>()?;
        Ok(service.tenant(caller, id).await.gql(rc.locale)?.map(Tenant))
    }

    /// Operators: tenants in creation order, optionally of one plan.
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1–100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        plan: Option<Plan>,
    ) -> async_graphql::Result<TenantConnection> {
        let rc = rc(ctx)?;
        let caller = rc.caller().gql(rc.locale)?;
        let first = page_size(first.unwrap_or(20), rc.locale)?;
        let after = match after {
            None => None,
            Some(c) => Some(
                decode_cursor(&c)
                    .and_then(|s| TenantId::from_str(&s).ok())
                    .ok_or_else(|| bad_cursor(rc.locale))?,
            ),
        };
        let service = ctx.data::<TenantService>()?;
        let page = service
            .tenants(caller, plan.map(Into::into), after, first)
            .await
            .gql(rc.locale)?;
        let edges: Vec<TenantEdge> = page
            .items
            .into_iter()
            .map(|v| TenantEdge {
                cursor: encode_cursor(&v.tenant().id.to_string()),
                node: Tenant(v),
            })
            .collect();
        let end_cursor = edges.last().map(|e| e.cursor.clone());
        Ok(TenantConnection {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        })
    }

    /// A delivery; null if absent or not visible to the caller.
    async fn delivery(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<crate::deliveries::Delivery>> {
        crate::deliveries::delivery(ctx, id).await
    }

    /// All plans and whether each may replace the default sender.
    async fn plans(&self) -> Vec<PlanInfo> {
        domain::Plan::ALL
            .into_iter()
            .map(|p| PlanInfo {
                code: p.into(),
                name: p.display_name().into(),
                can_override_sender: p.can_override_sender(),
            })
            .collect()
    }

    /// Presets for the server fields (GMAIL: smtp.gmail.com, 587, STARTTLS, auth).
    async fn mail_server_presets(&self) -> Vec<MailServerPreset> {
        PRESETS
            .iter()
            .map(|p| MailServerPreset {
                kind: p.kind.into(),
                host: p.host.into(),
                port: i32::from(p.port),
                encryption: p.encryption.into(),
                smtp_auth: p.smtp_auth,
            })
            .collect()
    }
}
