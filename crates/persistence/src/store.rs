//! [`SqlStore`]: the domain's [`TenantStore`] port on sea-orm, for SQLite and
//! PostgreSQL. Every write and its change record (audit entry, webhook events,
//! announcement) commit in one transaction; the settings
//! version check and the plan check happen inside that transaction, after the tenant
//! row is locked, so two writers can never both succeed against the same version.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::audit::{ACTIONS_WITH_CONTENT, AuditEntry, TrailOrder};
use domain::change::ChangeRecord;
use domain::health::{ActivationCode, SettingsFailure, SettingsHealth, SettingsState, state_after_failure};
use domain::ports::{TenantRecord, TenantStore};
use domain::settings::{MailSettings, StoredMailSettings};
use domain::suspension::Suspension;
use domain::tenant::TenantFilter;
use domain::values::EmailAddress;
use domain::{Plan, SenderOverridePermit, Tenant, TenantId};
use domain::{StoreError, WriteError};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::convert::delivery_row;
use crate::convert::{
    audit_from_row, audit_row, changes_json, corrupt, db_err, health_from_row, record_from_rows, set_health,
    settings_row, tenant_from_row, tenant_id, tenant_row,
};
use crate::crypto::{SecretKeyRing, SecretPurpose};
use crate::entities::{audit_events, deliveries, mail_settings, tenants};

/// Tenants, their mail settings and the audit trail in a SQL database, with passwords
/// sealed by a [`SecretKeyRing`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    pub(crate) keys: Arc<SecretKeyRing>,
    /// SQLite only: the queue's writers (enqueue, claim, finish) take turns here rather
    /// than in SQLite's busy handler, which sleeps whole milliseconds between tries.
    queue_writes: Option<Arc<tokio::sync::Mutex<()>>>,
    /// One readiness write at a time: a probe that outlives its deadline finishes (and
    /// rolls back) on its own while later probes wait here, so a locked database never
    /// piles probes up on the pool.
    ready_probe: Arc<tokio::sync::Mutex<()>>,
}

/// How long the readiness write may take before the database counts as not ready
/// (shorter than SQLite's busy timeout, which a locked database would wait out).
pub const READY_WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

impl SqlStore {
    /// A store over an open, migrated database (see [`crate::connect`] and
    /// [`crate::migrate`]). The key ring must hold every key that sealed a stored value.
    pub fn new(db: DatabaseConnection, keys: Arc<SecretKeyRing>) -> Self {
        let queue_writes =
            (db.get_database_backend() == sea_orm::DbBackend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Self {
            db,
            keys,
            queue_writes,
            ready_probe: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Whether the queue's writes take turns in this process (SQLite: one writer at a
    /// time) rather than running side by side (PostgreSQL).
    pub(crate) fn queue_writes_take_turns(&self) -> bool {
        self.queue_writes.is_some()
    }

    /// A write that must get through: a write transaction (on SQLite `BEGIN IMMEDIATE`,
    /// which takes the database's write lock) with an `UPDATE` that matches no row (on
    /// PostgreSQL refused by a read-only server or transaction), rolled back.
    async fn probe_write(db: &DatabaseConnection) -> Result<(), StoreError> {
        let backend = db.get_database_backend();
        let txn = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_err)?;
        if backend == sea_orm::DbBackend::Postgres {
            let ms = READY_WRITE_DEADLINE.as_millis();
            txn.execute_unprepared(&format!(
                "SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}"
            ))
            .await
            .map_err(db_err)?;
        }
        txn.execute_unprepared("UPDATE tenants SET settings_version = settings_version WHERE 1 = 0")
            .await
            .map_err(db_err)?;
        txn.rollback().await.map_err(db_err)
    }

    /// Held while the delivery queue writes (SQLite only; see the field).
    pub(crate) async fn queue_write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.queue_writes {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }

    /// The connection pool, for other parts of the service that share the database.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Starts a write transaction. On SQLite it takes the write lock at `BEGIN`
    /// (IMMEDIATE), so a read inside it can never be upgraded into a deadlock; on
    /// PostgreSQL the first UPDATE takes the row lock.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_err)
    }

    /// Bumps the tenant's settings-version counter and returns its new value. This is
    /// the first statement of a settings write, so it takes the lock that orders
    /// concurrent writers. `plans` limits it to tenants on those plans.
    async fn bump_settings_version(
        txn: &DatabaseTransaction,
        key: &str,
        plans: Option<&[&str]>,
    ) -> Result<i64, WriteError> {
        let mut update = tenants::Entity::update_many()
            .col_expr(
                tenants::Column::SettingsVersion,
                Expr::col(tenants::Column::SettingsVersion).add(1),
            )
            .filter(tenants::Column::Id.eq(key));
        if let Some(plans) = plans {
            update = update.filter(tenants::Column::Plan.is_in(plans.iter().copied()));
        }
        let bumped = update.exec(txn).await.map_err(db_err)?;
        if bumped.rows_affected == 0 {
            return Err(if Self::tenant_exists(txn, key).await? {
                WriteError::PlanChanged
            } else {
                WriteError::NotFound
            });
        }
        tenants::Entity::find_by_id(key)
            .select_only()
            .column(tenants::Column::SettingsVersion)
            .into_tuple::<i64>()
            .one(txn)
            .await
            .map_err(db_err)?
            .ok_or(WriteError::NotFound)
    }

    /// Starts a write of the tenant's settings: bumps its version counter (the first
    /// statement, which takes the lock that orders concurrent writers; only on `plans`
    /// when given) and checks that the saved version is still `expected`. Returns the
    /// transaction and the counter's new value (the version a save stores).
    async fn begin_settings_write(
        &self,
        key: &str,
        plans: Option<&[&str]>,
        expected: i64,
    ) -> Result<(DatabaseTransaction, i64), WriteError> {
        let txn = self.begin_write().await?;
        let version = Self::bump_settings_version(&txn, key, plans).await?;
        let current = Self::stored_version(&txn, key).await?;
        if current != expected {
            rollback(txn).await?;
            return Err(WriteError::VersionConflict { current });
        }
        Ok((txn, version))
    }

    async fn tenant_exists(txn: &DatabaseTransaction, key: &str) -> Result<bool, StoreError> {
        Ok(tenants::Entity::find_by_id(key)
            .select_only()
            .column(tenants::Column::Id)
            .into_tuple::<String>()
            .one(txn)
            .await
            .map_err(db_err)?
            .is_some())
    }

    /// The version of the saved settings (0: none saved): the newest row's.
    async fn stored_version(txn: &DatabaseTransaction, key: &str) -> Result<i64, StoreError> {
        Ok(mail_settings::Entity::find()
            .filter(mail_settings::Column::TenantId.eq(key))
            .select_only()
            .column(mail_settings::Column::Version)
            .order_by_desc(mail_settings::Column::Version)
            .limit(1)
            .into_tuple::<i64>()
            .one(txn)
            .await
            .map_err(db_err)?
            .unwrap_or(0))
    }

    /// The tenant's settings row of `version`.
    async fn settings_row_of(
        txn: &DatabaseTransaction,
        key: &str,
        version: i64,
    ) -> Result<Option<mail_settings::Model>, StoreError> {
        mail_settings::Entity::find_by_id((key.to_owned(), version))
            .one(txn)
            .await
            .map_err(db_err)
    }

    /// Writes what `change` says in `txn`, and nothing else: its audit entry, a message
    /// of each of its events for every webhook endpoint that wants it, and, when it is
    /// announced, the notice other processes get when the transaction commits.
    pub(crate) async fn write_change(txn: &DatabaseTransaction, change: &ChangeRecord) -> Result<(), StoreError> {
        audit_events::Entity::insert(audit_row(&change.audit))
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
        crate::webhook_outbox::append(txn, &change.events).await?;
        if change.announce {
            crate::changes::notify_change(txn, &change.tenant().to_string()).await?;
        }
        Ok(())
    }
}

/// Codes of the plans whose tenants may save their own settings.
fn permitting_plan_codes() -> Vec<&'static str> {
    Plan::ALL
        .into_iter()
        .filter(|p| p.can_override_sender())
        .map(Plan::code)
        .collect()
}

async fn rollback(txn: DatabaseTransaction) -> Result<(), StoreError> {
    txn.rollback().await.map_err(db_err)
}

#[async_trait::async_trait]
impl TenantStore for SqlStore {
    async fn insert_tenant(&self, tenant: &Tenant, change: &ChangeRecord) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        tenants::Entity::insert(tenant_row(tenant))
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        Self::write_change(&txn, change).await?;
        txn.commit().await.map_err(db_err)
    }

    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        // One LEFT JOIN: the tenant and its settings rows from the same snapshot.
        let found = tenants::Entity::find_by_id(id.to_string())
            .find_with_related(mail_settings::Entity)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        found
            .into_iter()
            .next()
            .map(|(tenant, settings)| record_from_rows(&tenant, &settings.iter().collect::<Vec<_>>(), &self.keys))
            .transpose()
    }

    async fn tenants(
        &self,
        filter: &TenantFilter,
        after: Option<TenantId>,
        limit: u64,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let mut query = tenants::Entity::find();
        if let Some(plan) = filter.plan {
            query = query.filter(tenants::Column::Plan.eq(plan.code()));
        }
        if let Some(name) = &filter.name {
            // Both sides in the search key's form (a row a release before migration 23
            // wrote and `migrate` has not filled yet: its name with A–Z lowered, as
            // before); the part is matched literally, `%`, `_` and `\` included.
            let escaped: String = name
                .key()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            query = query.filter(
                Expr::expr(Func::coalesce([
                    Expr::col(tenants::Column::NameKey),
                    Expr::expr(Func::lower(Expr::col(tenants::Column::Name))),
                ]))
                .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        }
        if let Some(after) = after {
            query = query.filter(tenants::Column::Id.gt(after.to_string()));
        }
        let page = query
            .order_by_asc(tenants::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        // The settings of the whole page in one query, not one per tenant.
        let rows = mail_settings::Entity::find()
            .filter(mail_settings::Column::TenantId.is_in(page.iter().map(|t| t.id.as_str())))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let mut settings: HashMap<&str, Vec<&mail_settings::Model>> = HashMap::new();
        for row in &rows {
            settings.entry(row.tenant_id.as_str()).or_default().push(row);
        }
        page.iter()
            .map(|tenant| {
                let rows = settings.remove(tenant.id.as_str()).unwrap_or_default();
                record_from_rows(tenant, &rows, &self.keys)
            })
            .collect()
    }

    async fn change_plan(
        &self,
        id: TenantId,
        from: Plan,
        to: Plan,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        let changed = tenants::Entity::update_many()
            .col_expr(tenants::Column::Plan, Expr::value(to.code()))
            .col_expr(tenants::Column::UpdatedAt, Expr::value(at))
            .filter(tenants::Column::Id.eq(key.as_str()))
            .filter(tenants::Column::Plan.eq(from.code()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if changed.rows_affected == 0 {
            let exists = Self::tenant_exists(&txn, &key).await?;
            rollback(txn).await?;
            return Err(if exists {
                WriteError::PlanChanged
            } else {
                WriteError::NotFound
            });
        }
        Self::write_change(&txn, change).await?;
        let row = tenants::Entity::find_by_id(key)
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or(WriteError::NotFound)?;
        let tenant = tenant_from_row(&row)?;
        txn.commit().await.map_err(db_err)?;
        Ok(tenant)
    }

    async fn set_contact_email(
        &self,
        id: TenantId,
        contact: Option<&EmailAddress>,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<Tenant, WriteError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        let changed = tenants::Entity::update_many()
            .col_expr(
                tenants::Column::ContactEmail,
                Expr::value(contact.map(|c| c.as_str().to_owned())),
            )
            .col_expr(tenants::Column::UpdatedAt, Expr::value(at))
            .filter(tenants::Column::Id.eq(key.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if changed.rows_affected == 0 {
            rollback(txn).await?;
            return Err(WriteError::NotFound);
        }
        Self::write_change(&txn, change).await?;
        let row = tenants::Entity::find_by_id(key)
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or(WriteError::NotFound)?;
        let tenant = tenant_from_row(&row)?;
        txn.commit().await.map_err(db_err)?;
        Ok(tenant)
    }

    async fn save_mail_settings(
        &self,
        id: TenantId,
        permit: SenderOverridePermit,
        settings: &MailSettings,
        state: SettingsState,
        expected_version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<StoredMailSettings, WriteError> {
        // The permit was granted for the plan the caller read; the tenant must still be
        // on a plan that grants one when the write happens, or it is `PlanChanged`.
        debug_assert!(permit.plan().can_override_sender());
        let key = id.to_string();
        let plans = permitting_plan_codes();
        let (txn, version) = self.begin_settings_write(&key, Some(&plans), expected_version).await?;
        let health = SettingsHealth::new(state, at);
        let row = settings_row(&id, settings, version, at, &health, &self.keys)?;
        // What is kept besides the new version: the live one, while the new one waits
        // for its test. Everything else (an older pending or suspended version) goes.
        let mut stale = mail_settings::Entity::delete_many().filter(mail_settings::Column::TenantId.eq(key.as_str()));
        if state == SettingsState::PendingVerification {
            stale = stale.filter(mail_settings::Column::State.ne(SettingsState::Live.code()));
        }
        stale.exec(&txn).await.map_err(db_err)?;
        mail_settings::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(db_err)?;
        Self::write_change(&txn, change).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(StoredMailSettings {
            settings: settings.clone(),
            version,
            updated_at: at,
            health,
        })
    }

    async fn activate_mail_settings(
        &self,
        id: TenantId,
        version: i64,
        at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        let key = id.to_string();
        // Ordered with saves and clears of the same tenant (the counter only has to grow).
        let (txn, _) = self.begin_settings_write(&key, None, version).await?;
        let mut row = mail_settings::ActiveModel {
            tenant_id: Set(key.clone()),
            version: Set(version),
            ..Default::default()
        };
        set_health(&mut row, &SettingsHealth::live(at));
        mail_settings::Entity::update(row).exec(&txn).await.map_err(db_err)?;
        // Proven: the version before it is no longer needed.
        mail_settings::Entity::delete_many()
            .filter(mail_settings::Column::TenantId.eq(key.as_str()))
            .filter(mail_settings::Column::Version.ne(version))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        Self::write_change(&txn, change).await?;
        Ok(txn.commit().await.map_err(db_err)?)
    }

    async fn set_activation_code(&self, id: TenantId, version: i64, code: &ActivationCode) -> Result<(), WriteError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        Self::bump_settings_version(&txn, &key, None).await?;
        if Self::settings_row_of(&txn, &key, version).await?.is_none() {
            let current = Self::stored_version(&txn, &key).await?;
            rollback(txn).await?;
            return Err(WriteError::VersionConflict { current });
        }
        let mut update = mail_settings::ActiveModel {
            tenant_id: Set(key.clone()),
            version: Set(version),
            ..Default::default()
        };
        update.activation_code_hash = Set(Some(code.hash.clone()));
        update.activation_code_expires_at = Set(Some(code.expires_at));
        mail_settings::Entity::update(update).exec(&txn).await.map_err(db_err)?;
        crate::changes::notify_change(&txn, &key).await?;
        Ok(txn.commit().await.map_err(db_err)?)
    }

    async fn record_settings_failure(
        &self,
        id: TenantId,
        version: i64,
        failure: &SettingsFailure,
        suspend_after: u32,
        suspension: &Suspension,
    ) -> Result<bool, StoreError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        // Read under a row lock (SQLite: the write lock taken at BEGIN), so failures
        // recorded at once by several lanes or processes each count.
        let mut find = mail_settings::Entity::find_by_id((key.clone(), version));
        if self.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            find = find.lock_exclusive();
        }
        let Some(row) = find.one(&txn).await.map_err(db_err)? else {
            rollback(txn).await?;
            return Ok(false);
        };
        let before = health_from_row(&row, &format!("tenant {id}"))?;
        let state = state_after_failure(&before, suspend_after);
        let suspended = state == SettingsState::Suspended && before.state != SettingsState::Suspended;
        let after = SettingsHealth {
            state,
            since: if state == before.state {
                before.since
            } else {
                failure.at
            },
            consecutive_failures: before.consecutive_failures.saturating_add(1),
            last_failure: Some(failure.clone()),
            activation_code: before.activation_code.clone(),
            server: before.server,
        };
        let mut update = mail_settings::ActiveModel {
            tenant_id: Set(key.clone()),
            version: Set(version),
            ..Default::default()
        };
        set_health(&mut update, &after);
        mail_settings::Entity::update(update).exec(&txn).await.map_err(db_err)?;
        if suspended {
            if let Some(notice) = &suspension.notice {
                deliveries::Entity::insert(delivery_row(notice, failure.at))
                    .exec_without_returning(&txn)
                    .await
                    .map_err(db_err)?;
            }
            Self::write_change(&txn, &suspension.change).await?;
        } else {
            crate::changes::notify_change(&txn, &key).await?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(suspended)
    }

    async fn record_settings_success(&self, id: TenantId, version: i64) -> Result<(), StoreError> {
        let key = id.to_string();
        let txn = self.begin_write().await?;
        let reset = mail_settings::Entity::update_many()
            .col_expr(mail_settings::Column::ConsecutiveFailures, Expr::value(0))
            .filter(mail_settings::Column::TenantId.eq(key.as_str()))
            .filter(mail_settings::Column::Version.eq(version))
            .filter(mail_settings::Column::ConsecutiveFailures.gt(0))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if reset.rows_affected > 0 {
            crate::changes::notify_change(&txn, &key).await?;
        }
        txn.commit().await.map_err(db_err)
    }

    async fn record_servers(&self, notes: &[domain::health::ServerNote]) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        // One transaction for the lot (after a start, a thousand tenants prove themselves
        // within a second: one commit each was most of what they waited on with SQLite);
        // rows are locked in the order given (the worker sorts them, so writers in several
        // processes take them in the same order).
        let txn = self.begin_write().await?;
        for note in notes {
            let column = match note.learnt {
                domain::health::ServerLearnt::Reached => mail_settings::Column::ServerReachedAt,
                domain::health::ServerLearnt::Unreachable => mail_settings::Column::ServerUnreachableAt,
            };
            // A later time never goes back.
            mail_settings::Entity::update_many()
                .col_expr(column, Expr::value(note.at))
                .filter(mail_settings::Column::TenantId.eq(note.tenant.to_string()))
                .filter(mail_settings::Column::Version.eq(note.version))
                .filter(Condition::any().add(column.is_null()).add(column.lt(note.at)))
                .exec(&txn)
                .await
                .map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn settings_state_counts(&self) -> Result<Vec<(SettingsState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = mail_settings::Entity::find()
            .select_only()
            .column(mail_settings::Column::State)
            .column_as(Expr::col(mail_settings::Column::Version).count(), "n")
            .group_by(mail_settings::Column::State)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = SettingsState::from_code(&state).ok_or_else(|| {
                    corrupt(
                        "a mail_settings row",
                        "health.state",
                        domain::error::FieldCode::InvalidFormat,
                    )
                })?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn clear_mail_settings(
        &self,
        id: TenantId,
        expected_version: i64,
        _at: DateTime<Utc>,
        change: &ChangeRecord,
    ) -> Result<(), WriteError> {
        let key = id.to_string();
        // Bumped even though no row remains, so the next save gets a version never seen.
        let (txn, _) = self.begin_settings_write(&key, None, expected_version).await?;
        mail_settings::Entity::delete_many()
            .filter(mail_settings::Column::TenantId.eq(key.as_str()))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        Self::write_change(&txn, change).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn audit_trail(
        &self,
        id: TenantId,
        after: Option<uuid::Uuid>,
        limit: u64,
        order: TrailOrder,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = audit_events::Entity::find().filter(audit_events::Column::TenantId.eq(id.to_string()));
        // Ids are time-ordered UUIDs (v7) stored as text, which sorts the same way.
        if let Some(after) = after.map(|a| a.hyphenated().to_string()) {
            query = query.filter(match order {
                TrailOrder::OldestFirst => audit_events::Column::Id.gt(after),
                TrailOrder::NewestFirst => audit_events::Column::Id.lt(after),
            });
        }
        query = match order {
            TrailOrder::OldestFirst => query.order_by_asc(audit_events::Column::Id),
            TrailOrder::NewestFirst => query.order_by_desc(audit_events::Column::Id),
        };
        query
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn record_change(&self, change: &ChangeRecord) -> Result<(), StoreError> {
        if change.events.is_empty() && !change.announce {
            // The audit entry alone: one statement needs no transaction.
            audit_events::Entity::insert(audit_row(&change.audit))
                .exec_without_returning(&self.db)
                .await
                .map_err(db_err)?;
            return Ok(());
        }
        let txn = self.begin_write().await?;
        Self::write_change(&txn, change).await?;
        txn.commit().await.map_err(db_err)
    }

    async fn remove_old_audit_content(
        &self,
        before: DateTime<Utc>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let actions = ACTIONS_WITH_CONTENT.map(|a| a.code());
        let rows = audit_events::Entity::find()
            .filter(audit_events::Column::Action.is_in(actions))
            .filter(audit_events::Column::ContentRemovedAt.is_null())
            .filter(audit_events::Column::At.lt(before))
            .order_by_asc(audit_events::Column::At)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let _turn = self.queue_write_turn().await;
        let txn = self.begin_write().await?;
        let mut cleared = 0;
        for row in &rows {
            // An entry that no longer reads back loses all its changes rather than keep
            // what might be a person's data.
            let changes = match audit_from_row(row) {
                Ok(entry) => changes_json(&entry.changes_without_content()),
                Err(error) => {
                    tracing::error!(entry = %row.id, %error, "an audit entry past retention cannot be read; its changes are removed");
                    changes_json(&[])
                }
            };
            let changed = audit_events::Entity::update_many()
                .col_expr(audit_events::Column::Changes, Expr::value(changes))
                .col_expr(audit_events::Column::ContentRemovedAt, Expr::value(Some(now)))
                .filter(audit_events::Column::Id.eq(row.id.as_str()))
                .filter(audit_events::Column::ContentRemovedAt.is_null())
                .exec(&txn)
                .await
                .map_err(db_err)?;
            cleared += changed.rows_affected;
        }
        txn.commit().await.map_err(db_err)?;
        Ok(cleared)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let backend = self.db.get_database_backend();
        self.db
            .query_one_raw(Statement::from_string(backend, "SELECT 1"))
            .await
            .map_err(db_err)?;
        // The write runs as a task of its own: past the deadline the answer is "not
        // ready", and the probe still ends (and rolls back) rather than being dropped
        // half-way through a `BEGIN` on a pooled connection.
        let gate = self.ready_probe.clone();
        let db = self.db.clone();
        let probe = async move {
            let turn = gate.lock_owned().await;
            tokio::spawn(async move {
                let written = Self::probe_write(&db).await;
                drop(turn);
                written
            })
            .await
        };
        match tokio::time::timeout(READY_WRITE_DEADLINE, probe).await {
            Ok(Ok(result)) => result,
            Ok(Err(joined)) => Err(StoreError::Database(Box::new(joined))),
            Err(_) => Err(StoreError::Database(
                format!(
                    "a write did not get through within {} ms",
                    READY_WRITE_DEADLINE.as_millis()
                )
                .into(),
            )),
        }
    }
}

/// Rows read per round of a rotation.
const ROTATION_BATCH: u64 = 100;

/// Re-seals every stored SMTP and POP password whose key is not the ring's current key:
/// opens it with its old key (which must still be in the ring) and seals it with the
/// current one, for the same tenant and purpose (`crate::rotate_secret_key` does this and
/// the OAuth refresh tokens). Returns how many values were rewritten.
///
/// Run it after every process uses the new current key; then the old key can be dropped
/// from the configuration. A row saved concurrently is left alone (the save sealed it
/// with the writer's current key) and the version is not bumped, since the settings
/// themselves do not change.
pub(crate) async fn rotate_settings_secrets(
    db: &DatabaseConnection,
    keys: &SecretKeyRing,
) -> Result<usize, StoreError> {
    let current = keys.current_key_id().to_owned();
    let mut rewritten = 0;
    // A tenant may have two rows (two versions): the cursor is (tenant, version).
    let mut after: Option<(String, i64)> = None;
    loop {
        let mut query = mail_settings::Entity::find().filter(
            Condition::any()
                .add(mail_settings::Column::PasswordKeyId.ne(current.as_str()))
                .add(mail_settings::Column::PopPasswordKeyId.ne(current.as_str())),
        );
        if let Some((tenant, version)) = &after {
            query = query.filter(
                Condition::any()
                    .add(mail_settings::Column::TenantId.gt(tenant.as_str()))
                    .add(
                        Condition::all()
                            .add(mail_settings::Column::TenantId.eq(tenant.as_str()))
                            .add(mail_settings::Column::Version.gt(*version)),
                    ),
            );
        }
        let rows = query
            .order_by_asc(mail_settings::Column::TenantId)
            .order_by_asc(mail_settings::Column::Version)
            .limit(ROTATION_BATCH)
            .all(db)
            .await
            .map_err(db_err)?;
        let Some(last) = rows.last() else {
            return Ok(rewritten);
        };
        after = Some((last.tenant_id.clone(), last.version));
        for row in &rows {
            rewritten += reseal_row(db, keys, row, &current).await?;
        }
    }
}

/// Re-seals the out-of-date secrets of one row; returns how many were rewritten.
async fn reseal_row(
    db: &DatabaseConnection,
    keys: &SecretKeyRing,
    row: &mail_settings::Model,
    current: &str,
) -> Result<usize, StoreError> {
    let tenant = tenant_id(&row.tenant_id, "mail_settings")?;
    let reseal = |field: &str,
                  purpose: SecretPurpose,
                  sealed: &Option<Vec<u8>>,
                  key_id: &Option<String>|
     -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let crypto = |e| StoreError::Crypto(format!("tenant {tenant}: field {field}: {e}"));
        match (sealed, key_id) {
            (Some(sealed), Some(key_id)) if key_id != current => {
                let plain = keys.decrypt(sealed, key_id, &tenant, purpose).map_err(crypto)?;
                keys.encrypt(&plain, &tenant, purpose).map(Some).map_err(crypto)
            }
            (Some(_), Some(_)) | (None, None) => Ok(None),
            _ => Err(corrupt(
                &format!("tenant {tenant}"),
                field,
                domain::error::FieldCode::Required,
            )),
        }
    };
    let mut update = mail_settings::ActiveModel::default();
    let mut count = 0;
    if let Some((sealed, key_id)) = reseal(
        "password",
        SecretPurpose::Smtp,
        &row.password_ciphertext,
        &row.password_key_id,
    )? {
        update.password_ciphertext = Set(Some(sealed));
        update.password_key_id = Set(Some(key_id));
        count += 1;
    }
    if let Some((sealed, key_id)) = reseal(
        "popBeforeSmtp.password",
        SecretPurpose::Pop,
        &row.pop_password_ciphertext,
        &row.pop_password_key_id,
    )? {
        update.pop_password_ciphertext = Set(Some(sealed));
        update.pop_password_key_id = Set(Some(key_id));
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let result = mail_settings::Entity::update_many()
        .set(update)
        .filter(mail_settings::Column::TenantId.eq(row.tenant_id.as_str()))
        .filter(mail_settings::Column::Version.eq(row.version))
        .exec(db)
        .await
        .map_err(db_err)?;
    Ok(if result.rows_affected == 1 { count } else { 0 })
}
