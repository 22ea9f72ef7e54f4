//! [`DeliveryQueries`]: reads and the requeue of a failed delivery, always for a tenant
//! or a scope only an operator or a service is handed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::delivery::{Attempt, Delivery, DeliveryStatus, DeliveryUpdate};
use domain::ports::{DeliveryQueries, StatusCounts};
use domain::{DeliveryId, StoreError, TenantId, TenantScope};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, Statement,
};

use crate::convert::{db_err, retries_column};
use crate::entities::{deliveries, delivery_attempts};
use crate::leased_queue::in_list;
use crate::sql::SqlBuilder;
use crate::store::SqlStore;

use super::archived::counts_statement;
use super::rows::{attempt_from_row, delivery_from_row};

#[async_trait::async_trait]
impl DeliveryQueries for SqlStore {
    async fn delivery(&self, scope: TenantScope, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let key = id.to_string();
        let mut query = deliveries::Entity::find_by_id(key.as_str());
        if let Some(tenant) = scope.tenant() {
            query = query.filter(deliveries::Column::TenantId.eq(tenant.to_string()));
        }
        let Some(row) = query.one(self.connection()).await.map_err(db_err)? else {
            return Ok(None);
        };
        let attempts = self.attempts_of(&[key.as_str()]).await?.remove(&key);
        delivery_from_row(&row, attempts.unwrap_or_default()).map(Some)
    }

    async fn deliveries(
        &self,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        after: Option<DeliveryId>,
        limit: u64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let statuses = match &status {
            Some(status) => std::slice::from_ref(status),
            None => &DeliveryStatus::ALL[..],
        };
        let after = after.map(|id| id.to_string());
        let stmt = tenant_rows_statement(
            self.connection().get_database_backend(),
            "*",
            &tenant.to_string(),
            statuses,
            TenantRows::NewestFirst(after.as_deref()),
            limit,
        );
        let page = self
            .connection()
            .query_all_raw(stmt)
            .await
            .map_err(db_err)?
            .iter()
            .map(|row| deliveries::Model::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        // The attempts of the whole page in one query, not one per delivery.
        let ids: Vec<&str> = page.iter().map(|row| row.id.as_str()).collect();
        let mut attempts = self.attempts_of(&ids).await?;
        page.iter()
            .map(|row| delivery_from_row(row, attempts.remove(&row.id).unwrap_or_default()))
            .collect()
    }

    async fn oldest_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        // The claim's own predicate, so the same partial index answers it.
        let backend = self.connection().get_database_backend();
        let mut q = SqlBuilder::new(backend);
        q.sql(
            "SELECT MIN(next_attempt_at_ms) AS due FROM deliveries \
             WHERE status IN ('QUEUED', 'RETRYING') AND next_attempt_at_ms <= ",
        )
        .bind(now.timestamp_millis());
        let row = self.connection().query_one_raw(q.build()).await.map_err(db_err)?;
        let due: Option<i64> = row.and_then(|r| r.try_get::<Option<i64>>("", "due").ok()).flatten();
        Ok(due.and_then(DateTime::from_timestamp_millis))
    }

    async fn status_counts(&self, scope: TenantScope) -> Result<StatusCounts, StoreError> {
        let tenant = scope.tenant().map(|t| t.to_string());
        let rows: Vec<(String, i64)> = self
            .connection()
            .query_all_raw(counts_statement(
                self.connection().get_database_backend(),
                tenant.as_deref(),
            ))
            .await
            .map_err(db_err)?
            .iter()
            .map(|row| Ok((row.try_get::<String>("", "status")?, row.try_get::<i64>("", "n")?)))
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(db_err)?;
        let mut counts: StatusCounts = DeliveryStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for (code, n) in rows {
            match DeliveryStatus::from_code(&code) {
                Some(status) => {
                    if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                        slot.1 = u64::try_from(n).unwrap_or(0);
                    }
                }
                None => tracing::warn!(
                    count = n,
                    "deliveries with an unknown status are left out of the counts"
                ),
            }
        }
        Ok(counts)
    }

    async fn requeue(&self, tenant: TenantId, id: DeliveryId, update: &DeliveryUpdate) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut change = deliveries::Entity::update_many()
            .col_expr(deliveries::Column::Status, Expr::value(update.status().code()))
            .col_expr(
                deliveries::Column::FailureCode,
                Expr::value(update.failure_reason().map(|r| r.code().code())),
            )
            .col_expr(
                deliveries::Column::FailureDetail,
                Expr::value(update.failure_reason().and_then(|r| r.detail()).map(str::to_owned)),
            )
            .col_expr(deliveries::Column::FailureReason, Expr::value(Option::<String>::None))
            .col_expr(
                deliveries::Column::NextAttemptAtMs,
                Expr::value(update.next_attempt_at().timestamp_millis()),
            )
            .col_expr(deliveries::Column::SentAt, Expr::value(update.sent_at()))
            .col_expr(deliveries::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(deliveries::Column::LeaseUntilMs, Expr::value(Option::<i64>::None))
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(now));
        if let Some(retries) = update.retries() {
            change = change.col_expr(deliveries::Column::Retries, Expr::value(retries_column(retries)));
        }
        let requeued = change
            .filter(deliveries::Column::Id.eq(id.to_string()))
            .filter(deliveries::Column::TenantId.eq(tenant.to_string()))
            .filter(deliveries::Column::Status.eq(update.expected().code()))
            // A row whose content retention removed in between stays as it is (and stays
            // counted among the archived ones).
            .filter(deliveries::Column::ContentRemovedAt.is_null())
            .exec(self.connection())
            .await
            .map_err(db_err)?;
        Ok(requeued.rows_affected == 1)
    }
}

/// Where a read of a tenant's rows starts and which way it goes: newest first after an
/// id (before it in time), or oldest first after one.
#[derive(Debug, Clone, Copy)]
pub(super) enum TenantRows<'a> {
    NewestFirst(Option<&'a str>),
    OldestFirst(&'a str),
}

/// `columns` of a tenant's rows in one of `statuses`, in id order (time order: ids are
/// UUIDv7) from where `from` says, at most `limit`. The table has no index of a tenant's
/// rows of every status (each of a delivery's three writes would pay an entry in it,
/// migration 24): one read per status along `(tenant_id, status, id)`, each already in
/// order and cut at `limit`, merged and cut again. Each status is a literal, so that
/// PostgreSQL's plan for any tenant (kept after a few runs) still weighs a rare status
/// by its own frequency, not as one fifth of the tenant's rows.
pub(super) fn tenant_rows_statement(
    backend: DbBackend,
    columns: &str,
    tenant: &str,
    statuses: &[DeliveryStatus],
    from: TenantRows<'_>,
    limit: u64,
) -> Statement {
    let (beyond, order) = match from {
        TenantRows::NewestFirst(before) => (before.map(|id| (" < ", id)), " ORDER BY id DESC"),
        TenantRows::OldestFirst(after) => (Some((" > ", after)), " ORDER BY id"),
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut q = SqlBuilder::new(backend);
    for (i, status) in statuses.iter().enumerate() {
        if i > 0 {
            q.sql(" UNION ALL ");
        }
        q.sql("SELECT * FROM (SELECT ")
            .sql(columns)
            .sql(" FROM deliveries WHERE tenant_id = ")
            .bind(tenant)
            .sql(" AND ")
            .sql(&in_list("status", &[status.code()]));
        if let Some((cmp, id)) = beyond {
            q.sql(" AND id").sql(cmp).bind(id);
        }
        q.sql(order).limit(limit).sql(&format!(") AS s{i}"));
    }
    q.sql(order).limit(limit);
    q.build()
}

impl SqlStore {
    /// The attempts of these deliveries, each list oldest first, keyed by delivery id.
    pub(super) async fn attempts_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Attempt>>, StoreError> {
        let rows = delivery_attempts::Entity::find()
            .filter(delivery_attempts::Column::DeliveryId.is_in(ids.iter().copied()))
            .order_by_asc(delivery_attempts::Column::DeliveryId)
            .order_by_asc(delivery_attempts::Column::Id)
            .all(self.connection())
            .await
            .map_err(db_err)?;
        let mut by_delivery: HashMap<String, Vec<Attempt>> = HashMap::new();
        for row in &rows {
            by_delivery
                .entry(row.delivery_id.clone())
                .or_default()
                .push(attempt_from_row(row)?);
        }
        Ok(by_delivery)
    }
}
