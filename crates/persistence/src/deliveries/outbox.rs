//! [`DeliveryOutbox`]: new deliveries in, each committed before the call returns; a
//! tenant's idempotency key stores nothing twice.

use std::collections::HashSet;

use chrono::Utc;
use domain::StoreError;
use domain::delivery::Delivery;
use domain::ports::{DeliveryOutbox, EnqueueOutcome};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement, TryIntoModel};

use crate::convert::{db_err, delivery_row};
use crate::entities::deliveries;
use crate::sql::SqlBuilder;
use crate::store::SqlStore;

use super::ENQUEUE_ROUNDS;
use super::rows::delivery_from_row;

#[async_trait::async_trait]
impl DeliveryOutbox for SqlStore {
    async fn enqueue(&self, delivery: &Delivery) -> Result<EnqueueOutcome, StoreError> {
        let db = self.connection();
        let _turn = self.queue_write_turn().await;
        for _ in 0..ENQUEUE_ROUNDS {
            // Autocommit: the row is committed when the statement returns. A concurrent
            // enqueue with the same key waits for this one, then inserts nothing.
            let row = delivery_row(delivery, Utc::now()).try_into_model().map_err(db_err)?;
            let inserted = insert_statement(db.get_database_backend(), &[row])
                .map(|stmt| db.query_all_raw(stmt))
                .ok_or_else(|| db_err(DbErr::Custom("enqueue: no row".into())))?
                .await
                .map_err(db_err)?;
            if inserted.len() == 1 {
                let mut created = delivery.clone();
                created.attempts.clear();
                return Ok(EnqueueOutcome::Created(created));
            }
            let Some(key) = &delivery.idempotency_key else {
                break;
            };
            let existing = deliveries::Entity::find()
                .filter(deliveries::Column::TenantId.eq(delivery.tenant_id.to_string()))
                .filter(deliveries::Column::IdempotencyKey.eq(key.as_str()))
                .one(db)
                .await
                .map_err(db_err)?;
            if let Some(row) = existing {
                let attempts = self.attempts_of(&[row.id.as_str()]).await?.remove(&row.id);
                return delivery_from_row(&row, attempts.unwrap_or_default()).map(EnqueueOutcome::Existing);
            }
        }
        Err(db_err(DbErr::Custom(
            "enqueue: neither inserted nor found the delivery with this idempotency key".into(),
        )))
    }

    #[tracing::instrument(name = "queue.enqueue", skip_all, fields(deliveries = batch.len()))]
    async fn enqueue_many(&self, batch: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        if batch.len() <= 1 {
            return self.enqueue_each(batch).await;
        }
        // One statement, so one commit for all; a row that conflicts on its idempotency
        // key is skipped by the statement and answered one by one below.
        let now = Utc::now();
        let rows: Result<Vec<deliveries::Model>, DbErr> =
            batch.iter().map(|d| delivery_row(d, now).try_into_model()).collect();
        let db = self.connection();
        let turn = self.queue_write_turn().await;
        let inserted = match rows.map(|rows| insert_statement(db.get_database_backend(), &rows)) {
            Ok(Some(stmt)) => db.query_all_raw(stmt).await,
            Ok(None) => Ok(Vec::new()),
            Err(error) => Err(error),
        };
        drop(turn);
        let inserted: HashSet<String> = match inserted {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| row.try_get::<String>("", "id").ok())
                .collect(),
            Err(error) => {
                // E.g. a tenant deleted in between: each on its own, so it fails alone.
                tracing::debug!(%error, rows = batch.len(), "enqueue batch refused; enqueueing one by one");
                return self.enqueue_each(batch).await;
            }
        };
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            if inserted.contains(&d.id.to_string()) {
                let mut created = d.clone();
                created.attempts.clear();
                out.push(Ok(EnqueueOutcome::Created(created)));
            } else {
                out.push(self.enqueue(d).await);
            }
        }
        out
    }
}

impl SqlStore {
    /// Enqueues each delivery on its own statement.
    async fn enqueue_each(&self, batch: &[Delivery]) -> Vec<Result<EnqueueOutcome, StoreError>> {
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(self.enqueue(d).await);
        }
        out
    }
}

/// The insert of `rows`, padded (one text per power of two: see
/// `SqlBuilder::padded_rows`), answering the ids it stored. A second delivery with a
/// tenant's idempotency key inserts nothing, in the table or earlier in the same
/// statement (the key's unique index is partial: only rows with a key).
fn insert_statement(backend: DbBackend, rows: &[deliveries::Model]) -> Option<Statement> {
    SqlBuilder::insert_padded(
        backend,
        rows,
        " ON CONFLICT (\"tenant_id\", \"idempotency_key\") WHERE \"idempotency_key\" IS NOT NULL DO NOTHING RETURNING \"id\"",
    )
}
