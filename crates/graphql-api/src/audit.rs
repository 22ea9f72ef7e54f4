//! GraphQL for the audit trail: `Tenant.auditTrail` and its events.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};

use domain::TenantId;
use domain::audit::AuditEntry;
use domain::audit_value::AuditValue;
use domain::services::TenantService;
use domain::settings::FieldChange;

use crate::catalogue::{Text, say};
use crate::error::ResultExt as _;
use crate::pagination::{self, PageInfo};
use crate::values::{Role, caller_and, rfc3339};

/// One changed field. Secrets show only that they changed: `secret` is true and no values.
#[derive(SimpleObject, Debug)]
pub struct AuditFieldChange {
    pub field: String,
    /// The field's name in the caller's language (`field` stays the API's name).
    pub label: String,
    /// The value as stored: a code (`SHARE`, `STARTTLS`, `true`), a number or what was
    /// typed, for programs.
    pub before: Option<String>,
    pub after: Option<String>,
    /// `before` in words, in the caller's language (`シェアプラン`, `認証の段階で失敗
    /// （応答コード 535）`); what was typed stays as typed.
    pub before_text: Option<String>,
    pub after_text: Option<String>,
    pub secret: bool,
}

/// One entry of a tenant's audit trail.
#[derive(Debug)]
pub struct AuditEvent {
    pub entry: AuditEntry,
}

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.entry.id.to_string())
    }
    /// `TENANT_CREATED`, `PLAN_CHANGED`, `MAIL_SETTINGS_SAVED`, `MAIL_SETTINGS_CLEARED`.
    async fn action(&self) -> &str {
        self.entry.action.code()
    }
    /// What was done, as a sentence in the caller's language.
    async fn description(&self, ctx: &Context<'_>) -> &'static str {
        crate::catalogue::audit_action(self.entry.action, crate::values::locale(ctx))
    }
    async fn actor_subject(&self) -> &str {
        &self.entry.actor_subject
    }
    async fn actor_role(&self) -> Role {
        self.entry.actor_role.into()
    }
    /// Who did it, in the caller's language: the role and the token's subject
    /// (「サイト管理者（cli）」), or the system itself for what Mailgate did on its own.
    async fn actor_label(&self, ctx: &Context<'_>) -> String {
        let text = Text::AuditActor {
            role: self.entry.actor_role,
            subject: &self.entry.actor_subject,
        };
        say(text, crate::values::locale(ctx)).into_owned()
    }
    async fn at(&self) -> String {
        rfc3339(self.entry.at)
    }
    async fn changes(&self, ctx: &Context<'_>) -> Vec<AuditFieldChange> {
        let l = crate::values::locale(ctx);
        let label = |field: &str| crate::catalogue::field_name(field, l).to_owned();
        let words = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| say(Text::AuditValue(AuditValue::read(field, v)), l).into_owned())
        };
        self.entry
            .changes
            .iter()
            .map(|c| match c {
                FieldChange::Value { field, before, after } => AuditFieldChange {
                    label: label(field),
                    before_text: words(field, before),
                    after_text: words(field, after),
                    field: field.clone(),
                    before: before.clone(),
                    after: after.clone(),
                    secret: false,
                },
                FieldChange::Secret { field } => AuditFieldChange {
                    label: label(field),
                    field: field.clone(),
                    before: None,
                    after: None,
                    before_text: None,
                    after_text: None,
                    secret: true,
                },
            })
            .collect()
    }
}

#[derive(SimpleObject, Debug)]
pub struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}

#[derive(SimpleObject, Debug)]
pub struct AuditEventConnection {
    pub edges: Vec<AuditEventEdge>,
    pub page_info: PageInfo,
}

/// Which end of the trail a page starts from.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
#[graphql(remote = "domain::audit::TrailOrder")]
pub enum AuditOrder {
    /// Oldest first (the default); `after` continues towards newer entries.
    #[default]
    OldestFirst,
    /// Newest first; `after` continues towards older entries.
    NewestFirst,
}

/// `Tenant.auditTrail`: who changed what, in `order`.
pub(crate) async fn trail(
    ctx: &Context<'_>,
    tenant: TenantId,
    first: Option<i32>,
    after: Option<String>,
    order: AuditOrder,
) -> async_graphql::Result<AuditEventConnection> {
    let (caller, service, l) = caller_and::<TenantService>(ctx)?;
    let first = pagination::page_size(first, 50, l)?;
    let after = pagination::after::<uuid::Uuid>(after, l)?;
    let page = service
        .audit_trail(caller, tenant, after, first, order.into())
        .await
        .gql(l)?;
    let (edges, page_info) = pagination::edges(page, |entry| entry.id, |entry| AuditEvent { entry });
    Ok(AuditEventConnection {
        edges: edges
            .into_iter()
            .map(|(cursor, node)| AuditEventEdge { cursor, node })
            .collect(),
        page_info,
    })
}
