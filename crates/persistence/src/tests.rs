//! Store tests against real databases with the real migrations: a temporary SQLite file
//! for each test, and PostgreSQL (testkit's test database) in a fresh schema that is
//! dropped afterwards. A flow that holds on both runs as `sqlite::name` and
//! `postgres::name` (`testkit::each_backend!`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::audit::{AuditAction, AuditEntry, TrailOrder};
use domain::change::ChangeRecord;
use domain::plan::sender_override_permit;
use domain::ports::TenantStore;
use domain::settings::{Encryption, FieldChange, MailSettings, MailSettingsDraft, PopBeforeSmtpDraft};
use domain::tenant::{NameSearch, TenantFilter};
use domain::{Caller, Plan, Role, Tenant, TenantId, TenantName};
use domain::{StoreError, WriteError};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::{ExposeSecret, SecretString};
use testkit::db::{Backend, PgSchema, TempSqlite, postgres_url};

use crate::entities::{mail_settings, tenants};
use crate::{CachedStore, SecretKeyRing, SqlStore, connect, migrate, rotate_secret_key};
use domain::health::SettingsState;

testkit::each_backend!(
    rotation_reseals_old_values_with_the_current_key,
    settings_saved_before_verification_are_live_after_the_upgrade,
    failure_reasons_stored_as_text_become_codes_and_back,
    deliveries_retried_before_the_upgrade_know_it,
    deliveries_cleared_before_the_upgrade_are_counted,
    a_lowered_quota_holds_from_the_next_enqueue,
    what_a_worker_learnt_of_a_server_is_kept_per_version_and_never_goes_back,
    oauth_states_are_used_once,
    oauth_connections_belong_to_their_tenant,
    oauth_refresh_tokens_are_sealed_for_their_connection,
    oauth_refreshes_take_turns,
    oauth_refresh_tokens_follow_a_key_rotation,
    names_are_found_whatever_their_case_and_width,
    names_stored_before_their_search_key_get_one_at_the_next_migrate,
);

const SMTP_PASSWORD: &str = "smtp-Pa55word-0123";
const POP_PASSWORD: &str = "pop-Pa55word-4567";
/// A database of one backend for one test: a temporary SQLite file or a fresh PostgreSQL
/// schema, removed when this is dropped (the schema also when the test panicked).
pub(crate) struct TestDb {
    conn: DatabaseConnection,
    place: Place,
}

enum Place {
    Sqlite(TempSqlite),
    Postgres(PgSchema),
}

impl TestDb {
    /// A pool on this database (a clone: the same connections).
    pub(crate) fn conn(&self) -> DatabaseConnection {
        self.conn.clone()
    }

    /// Another pool on the same database, as another process would open.
    pub(crate) async fn connect_again(&self, max_connections: u32) -> DatabaseConnection {
        match &self.place {
            Place::Sqlite(file) => connect(&file.url(), None, max_connections).await,
            Place::Postgres(schema) => connect(&postgres_url(), Some(schema.name()), max_connections).await,
        }
        .unwrap()
    }
}

/// An empty database of `backend` (no migration run).
pub(crate) async fn connected(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let file = TempSqlite::new("persistence");
            let conn = connect(&file.url(), None, 4).await.unwrap();
            TestDb {
                conn,
                place: Place::Sqlite(file),
            }
        }
        Backend::Postgres => {
            let schema = PgSchema::fresh("persist");
            let conn = connect(&postgres_url(), Some(schema.name()), 8).await.unwrap();
            TestDb {
                conn,
                place: Place::Postgres(schema),
            }
        }
    }
}

/// A database of `backend` with the real migrations run.
pub(crate) async fn migrated(backend: Backend) -> TestDb {
    let db = connected(backend).await;
    migrate(&db.conn).await.unwrap();
    db
}

pub(crate) fn keys() -> Arc<SecretKeyRing> {
    Arc::new(SecretKeyRing::from_base64(&crate::generate_key_base64(), &[]).unwrap())
}

fn operator() -> Caller {
    Caller::new("operator-1".into(), Role::Operator, None).unwrap()
}

/// The record of an operator's change: its audit entry, events and announcement.
fn audit(id: TenantId, action: AuditAction, changes: Vec<FieldChange>) -> ChangeRecord {
    ChangeRecord::of(AuditEntry::new(id, &operator(), action, changes, Utc::now()))
}

pub(crate) async fn new_tenant(store: &dyn TenantStore, plan: Plan) -> Tenant {
    tenant_named(store, "Example Shop", plan).await
}

/// A tenant named `name` on `plan`, inserted through the store.
async fn tenant_named(store: &dyn TenantStore, name: &str, plan: Plan) -> Tenant {
    let now = Utc::now();
    let tenant = Tenant {
        id: TenantId::generate(),
        name: TenantName::parse(name).unwrap(),
        plan,
        contact_email: None,
        created_at: now,
        updated_at: now,
    };
    store
        .insert_tenant(&tenant, &audit(tenant.id, AuditAction::TenantCreated, vec![]))
        .await
        .unwrap();
    tenant
}

fn settings(port: i64) -> MailSettings {
    MailSettings::validate(
        &MailSettingsDraft {
            host: Some("smtp.example.com".into()),
            port: Some(port),
            from_address: Some("info@example.com".into()),
            from_name: Some("Example 通知".into()),
            smtp_auth: Some(true),
            username: Some("info".into()),
            password: Some(SecretString::from(SMTP_PASSWORD)),
            encryption: Some(Encryption::StartTls),
            pop_before_smtp: Some(PopBeforeSmtpDraft {
                host: Some("pop.example.com".into()),
                port: Some(995),
                username: Some("info".into()),
                password: Some(SecretString::from(POP_PASSWORD)),
                tls: Some(true),
            }),
            local_hostname: Some("www.example.com".into()),
            send_interval_ms: Some(5000),
            ..Default::default()
        },
        None,
    )
    .unwrap()
}

async fn save(store: &dyn TenantStore, id: TenantId, port: i64, expected: i64) -> Result<i64, WriteError> {
    let permit = sender_override_permit(Plan::Share).unwrap();
    let audit = audit(
        id,
        AuditAction::MailSettingsSaved,
        vec![FieldChange::Secret {
            field: "password".into(),
        }],
    );
    store
        .save_mail_settings(
            id,
            permit,
            &settings(port),
            SettingsState::Live,
            expected,
            Utc::now(),
            &audit,
        )
        .await
        .map(|s| s.version)
}

async fn clear(store: &dyn TenantStore, id: TenantId, expected: i64) -> Result<(), WriteError> {
    let audit = audit(id, AuditAction::MailSettingsCleared, vec![]);
    store.clear_mail_settings(id, expected, Utc::now(), &audit).await
}

async fn stored_version(store: &dyn TenantStore, id: TenantId) -> Option<i64> {
    store.tenant(id).await.unwrap().unwrap().settings.map(|s| s.version)
}

/// The save/clear flow both backends must pass: versions, conflicts, the counter that
/// never reuses a version, read-back through the domain's rules, and the audit trail.
async fn save_and_clear_flow(store: &dyn TenantStore) {
    let tenant = new_tenant(store, Plan::Share).await;
    let id = tenant.id;

    let record = store.tenant(id).await.unwrap().unwrap();
    let read = &record.tenant;
    assert_eq!((read.id, &read.name, read.plan), (id, &tenant.name, Plan::Share));
    // PostgreSQL keeps microseconds.
    assert_eq!(read.created_at.timestamp_micros(), tenant.created_at.timestamp_micros());
    assert!(record.settings.is_none());

    assert_eq!(save(store, id, 587, 0).await.unwrap(), 1);
    let saved = store.tenant(id).await.unwrap().unwrap().settings.unwrap();
    assert_eq!(saved.version, 1);
    let s = &saved.settings;
    assert_eq!(s.host().as_str(), "smtp.example.com");
    assert_eq!(s.port().get(), 587);
    assert_eq!(s.from_name().unwrap().as_str(), "Example 通知");
    assert_eq!(s.password().unwrap().expose_secret(), SMTP_PASSWORD);
    let pop = s.pop_before_smtp().unwrap();
    assert_eq!(
        (pop.host().as_str(), pop.port().get(), pop.tls()),
        ("pop.example.com", 995, true)
    );
    assert_eq!(pop.password().expose_secret(), POP_PASSWORD);
    assert_eq!(s.send_interval().as_millis(), 5000);

    // A writer that read version 0 lost: nothing changes, and it learns the version.
    assert!(matches!(
        save(store, id, 2525, 0).await,
        Err(WriteError::VersionConflict { current: 1 })
    ));
    assert!(matches!(
        clear(store, id, 0).await,
        Err(WriteError::VersionConflict { current: 1 })
    ));
    let unchanged = store.tenant(id).await.unwrap().unwrap().settings.unwrap();
    assert_eq!((unchanged.version, unchanged.settings.port().get()), (1, 587));

    assert_eq!(save(store, id, 2525, 1).await.unwrap(), 2);
    clear(store, id, 2).await.unwrap();
    assert_eq!(stored_version(store, id).await, None);
    // Cleared is version 0 again, but the next save does not reuse 1, 2 or 3.
    assert!(matches!(
        save(store, id, 587, 2).await,
        Err(WriteError::VersionConflict { current: 0 })
    ));
    assert_eq!(save(store, id, 587, 0).await.unwrap(), 4);

    let trail = store.audit_trail(id, None, 100, TrailOrder::OldestFirst).await.unwrap();
    let actions: Vec<AuditAction> = trail.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::TenantCreated,
            AuditAction::MailSettingsSaved,
            AuditAction::MailSettingsSaved,
            AuditAction::MailSettingsCleared,
            AuditAction::MailSettingsSaved,
        ],
        "conflicting writes leave no audit entry"
    );
    assert_eq!(
        trail[1].changes,
        vec![FieldChange::Secret {
            field: "password".into()
        }]
    );
    let rest = store
        .audit_trail(id, Some(trail[2].id), 100, TrailOrder::OldestFirst)
        .await
        .unwrap();
    assert_eq!(rest, trail[3..].to_vec());
    // Newest first, paged backwards from a cursor.
    let newest = store.audit_trail(id, None, 2, TrailOrder::NewestFirst).await.unwrap();
    assert_eq!(newest, vec![trail[4].clone(), trail[3].clone()]);
    let older = store
        .audit_trail(id, Some(trail[3].id), 100, TrailOrder::NewestFirst)
        .await
        .unwrap();
    assert_eq!(older, vec![trail[2].clone(), trail[1].clone(), trail[0].clone()]);

    // Unknown tenants.
    let nobody = TenantId::generate();
    assert!(store.tenant(nobody).await.unwrap().is_none());
    assert!(matches!(save(store, nobody, 587, 0).await, Err(WriteError::NotFound)));
    assert!(matches!(clear(store, nobody, 0).await, Err(WriteError::NotFound)));
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_save_and_clear() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    save_and_clear_flow(&SqlStore::new(db, keys())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_in_own_schema() {
    let test_db = connected(Backend::Postgres).await;
    let db = test_db.conn();
    // Two processes starting at once: the advisory lock lets one migrate.
    let other = test_db.connect_again(4).await;
    let (a, b) = tokio::join!(migrate(&db), migrate(&other));
    a.unwrap();
    b.unwrap();
    let store = Arc::new(SqlStore::new(db.clone(), keys()));
    save_and_clear_flow(&*store).await;
    plans_and_pages(&*store).await;
    concurrent_saves_one_wins(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_saves() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    concurrent_saves_one_wins(Arc::new(SqlStore::new(db, keys()))).await;
}

/// Writers that all read version 0: exactly one wins, and the others are told the
/// version it wrote.
async fn concurrent_saves_one_wins(store: Arc<SqlStore>) {
    let id = new_tenant(&*store, Plan::Share).await.id;
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { save(&*store, id, 2000 + i, 0).await })
        })
        .collect();
    let mut won = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(version) => won.push(version),
            Err(WriteError::VersionConflict { current: 1 }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, vec![1]);
    assert_eq!(stored_version(&*store, id).await, Some(1));
    let saves = store
        .audit_trail(id, None, 100, TrailOrder::OldestFirst)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == AuditAction::MailSettingsSaved)
        .count();
    assert_eq!(saves, 1);
}

#[tokio::test]
async fn passwords_are_not_stored_in_plaintext() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let ring = keys();
    let store = SqlStore::new(db.clone(), ring.clone());
    let id = new_tenant(&store, Plan::Biz).await.id;
    save(&store, id, 587, 0).await.unwrap();

    let row = mail_settings::Entity::find()
        .filter(mail_settings::Column::TenantId.eq(id.to_string()))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    for (sealed, plain) in [
        (row.password_ciphertext.unwrap(), SMTP_PASSWORD),
        (row.pop_password_ciphertext.unwrap(), POP_PASSWORD),
    ] {
        assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_bytes()));
        // 12-byte nonce, the text, a 16-byte tag.
        assert_eq!(sealed.len(), 12 + plain.len() + 16);
    }
    assert_eq!(row.password_key_id.as_deref(), Some(ring.current_key_id()));
}

#[tokio::test]
async fn a_password_copied_to_another_tenant_does_not_open() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let a = new_tenant(&store, Plan::Share).await.id;
    let b = new_tenant(&store, Plan::Share).await.id;
    save(&store, a, 587, 0).await.unwrap();
    save(&store, b, 587, 0).await.unwrap();

    let row_a = mail_settings::Entity::find()
        .filter(mail_settings::Column::TenantId.eq(a.to_string()))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    mail_settings::Entity::update_many()
        .set(mail_settings::ActiveModel {
            password_ciphertext: Set(row_a.password_ciphertext),
            password_key_id: Set(row_a.password_key_id),
            ..Default::default()
        })
        .filter(mail_settings::Column::TenantId.eq(b.to_string()))
        .exec(&db)
        .await
        .unwrap();

    assert!(store.tenant(a).await.unwrap().is_some());
    assert_unreadable(&store, b, 1).await;
    match strict_settings(&db, &store, b).await {
        Err(StoreError::Crypto(message)) => {
            assert!(message.contains(&b.to_string()), "{message}");
            assert!(message.contains("password"), "{message}");
        }
        other => panic!("expected a crypto error, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_rows_are_reported_by_field_without_values() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let id = new_tenant(&store, Plan::Share).await.id;
    save(&store, id, 587, 0).await.unwrap();
    mail_settings::Entity::update_many()
        .set(mail_settings::ActiveModel {
            from_address: Set("not an address\r\nBcc: x@evil.example".into()),
            ..Default::default()
        })
        .filter(mail_settings::Column::TenantId.eq(id.to_string()))
        .exec(&db)
        .await
        .unwrap();
    assert_unreadable(&store, id, 1).await;
    match strict_settings(&db, &store, id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("fromAddress"), "{message}");
            assert!(!message.contains("evil"), "{message}");
        }
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }

    tenants::Entity::update_many()
        .set(tenants::ActiveModel {
            plan: Set("GOLD".into()),
            ..Default::default()
        })
        .filter(tenants::Column::Id.eq(id.to_string()))
        .exec(&db)
        .await
        .unwrap();
    assert!(matches!(store.tenant(id).await, Err(StoreError::Corrupt(m)) if m.contains("plan")));
}

/// The tenant reads back, its settings marked unreadable at `version` (not used, not
/// replaced by anything), so it can still be repaired or cleared.
async fn assert_unreadable(store: &SqlStore, id: TenantId, version: i64) {
    let record = store.tenant(id).await.unwrap().expect("the tenant is still there");
    assert!(record.settings.is_none());
    assert_eq!(record.unreadable_settings.map(|u| u.version), Some(version));
    assert_eq!(record.settings_version(), version);
    let listed = store.tenants(&TenantFilter::default(), None, 100).await.unwrap();
    let in_list = listed.iter().find(|r| r.tenant.id == id).expect("listed");
    assert!(in_list.unreadable_settings.is_some(), "a page of tenants reads past it");
}

/// What reading the tenant's settings row reports (the error the log gets).
async fn strict_settings(
    db: &DatabaseConnection,
    store: &SqlStore,
    id: TenantId,
) -> Result<domain::StoredMailSettings, StoreError> {
    let row = mail_settings::Entity::find()
        .filter(mail_settings::Column::TenantId.eq(id.to_string()))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    crate::convert::settings_from_row(&row, &id, &store.keys)
}

/// Plan changes, the plan check inside a save, and paging.
async fn plans_and_pages(store: &dyn TenantStore) {
    let economy = new_tenant(store, Plan::Economy).await;
    let share = new_tenant(store, Plan::Share).await;
    let biz = new_tenant(store, Plan::Biz).await;
    save(store, share.id, 587, 0).await.unwrap();

    // A permit granted before the tenant moved to a plan that forbids saving.
    assert!(matches!(
        save(store, economy.id, 587, 0).await,
        Err(WriteError::PlanChanged)
    ));
    let audit_plan = audit(share.id, AuditAction::PlanChanged, vec![]);
    assert!(matches!(
        store
            .change_plan(share.id, Plan::Basic, Plan::Pro, Utc::now(), &audit_plan)
            .await,
        Err(WriteError::PlanChanged)
    ));
    assert!(matches!(
        store
            .change_plan(TenantId::generate(), Plan::Basic, Plan::Pro, Utc::now(), &audit_plan)
            .await,
        Err(WriteError::NotFound)
    ));
    let moved = store
        .change_plan(share.id, Plan::Share, Plan::Pro, Utc::now(), &audit_plan)
        .await
        .unwrap();
    assert_eq!(moved.plan, Plan::Pro);
    // Settings are kept while the plan forbids them.
    let record = store.tenant(share.id).await.unwrap().unwrap();
    assert_eq!(record.tenant.plan, Plan::Pro);
    assert_eq!(record.settings.map(|s| s.version), Some(1));

    // Pages in creation order, settings included, filtered by plan.
    let all = store.tenants(&TenantFilter::default(), None, 1000).await.unwrap();
    let ids: Vec<TenantId> = all.iter().map(|r| r.tenant.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let mine: Vec<TenantId> = ids
        .iter()
        .copied()
        .filter(|i| [economy.id, share.id, biz.id].contains(i))
        .collect();
    assert_eq!(mine, vec![economy.id, share.id, biz.id]);
    let page = store
        .tenants(&TenantFilter::default(), Some(economy.id), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].tenant.id, share.id);
    assert_eq!(page[0].settings.as_ref().map(|s| s.version), Some(1));
    let biz_filter = |name: Option<&str>| TenantFilter {
        plan: Some(Plan::Biz),
        name: name.map(|n| NameSearch::parse(n).unwrap().unwrap()),
    };
    let biz_only = store.tenants(&biz_filter(None), None, 1000).await.unwrap();
    assert!(biz_only.iter().all(|r| r.tenant.plan == Plan::Biz));
    assert!(biz_only.iter().any(|r| r.tenant.id == biz.id));
    // By part of the name, A–Z in either case; `%` and `_` are matched as themselves.
    let named = |part: &'static str| {
        let filter = biz_filter(Some(part));
        async move {
            store
                .tenants(&filter, None, 1000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.tenant.id)
                .collect::<Vec<_>>()
        }
    };
    assert!(named("MPLE sh").await.contains(&biz.id));
    assert!(!named("%").await.contains(&biz.id));
    assert!(!named("example_shop").await.contains(&biz.id));
}

#[tokio::test]
async fn sqlite_plans_and_pages() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    plans_and_pages(&SqlStore::new(db, keys())).await;
}

/// `rotate-secret-key`: values sealed under the old key are sealed again under the new
/// one, once; afterwards the new key alone opens them and the old one no longer does.
async fn rotation_reseals_old_values_with_the_current_key(backend: Backend) {
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let old_key = crate::generate_key_base64();
    let new_key = crate::generate_key_base64();
    let old_ring = Arc::new(SecretKeyRing::from_base64(&old_key, &[]).unwrap());
    let old_store = SqlStore::new(db.clone(), old_ring.clone());
    let a = new_tenant(&old_store, Plan::Share).await.id;
    let b = new_tenant(&old_store, Plan::Share).await.id;
    save(&old_store, a, 587, 0).await.unwrap();
    save(&old_store, b, 587, 0).await.unwrap();
    // Tenants with two rows (a live version and a newer one waiting for its test), more
    // than one rotation batch of them, so a batch ends between a tenant's two rows.
    let mut pairs = Vec::new();
    for _ in 0..51 {
        let id = new_tenant(&old_store, Plan::Share).await.id;
        let live = save(&old_store, id, 587, 0).await.unwrap();
        let audit = audit(id, AuditAction::MailSettingsSaved, vec![]);
        old_store
            .save_mail_settings(
                id,
                sender_override_permit(Plan::Share).unwrap(),
                &settings(465),
                SettingsState::PendingVerification,
                live,
                Utc::now(),
                &audit,
            )
            .await
            .unwrap();
        pairs.push(id);
    }

    let rotated = Arc::new(SecretKeyRing::from_base64(&new_key, &[old_key]).unwrap());
    // SMTP and POP passwords of every row: 2 tenants with one row, 51 with two.
    assert_eq!(rotate_secret_key(&db, &rotated).await.unwrap(), 2 * (2 + 2 * 51));
    assert_eq!(rotate_secret_key(&db, &rotated).await.unwrap(), 0);
    let new_only = Arc::new(SecretKeyRing::from_base64(&new_key, &[]).unwrap());
    let reader = SqlStore::new(db.clone(), new_only.clone());
    for id in &pairs {
        let record = reader.tenant(*id).await.unwrap().unwrap();
        assert!(
            record.settings.is_some() && record.live_settings.is_some(),
            "both rows open with the new key"
        );
    }

    // Everything now opens with the new key alone, and the versions did not move.
    let new_only = Arc::new(SecretKeyRing::from_base64(&new_key, &[]).unwrap());
    let store = SqlStore::new(db.clone(), new_only);
    for id in [a, b] {
        let saved = store.tenant(id).await.unwrap().unwrap().settings.unwrap();
        assert_eq!(saved.version, 1);
        assert_eq!(saved.settings.password().unwrap().expose_secret(), SMTP_PASSWORD);
    }
    // The old key alone no longer opens them.
    let old_only = SqlStore::new(db.clone(), old_ring);
    assert_unreadable(&old_only, a, 1).await;
    assert!(matches!(
        strict_settings(&db, &old_only, a).await,
        Err(StoreError::Crypto(_))
    ));
}

#[tokio::test]
async fn cache_serves_reads_until_its_owner_drops_the_entry() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let store = CachedStore::with_limits(SqlStore::new(db.clone(), keys()), 100, Duration::from_secs(60));
    let id = new_tenant(&store, Plan::Share).await.id;
    assert_eq!(stored_version(&store, id).await, None);

    // A change behind the cache's back is not seen until the entry is invalidated.
    tenants::Entity::update_many()
        .set(tenants::ActiveModel {
            name: Set("Renamed".into()),
            ..Default::default()
        })
        .filter(tenants::Column::Id.eq(id.to_string()))
        .exec(&db)
        .await
        .unwrap();
    let cached = store.tenant(id).await.unwrap().unwrap();
    assert_eq!(cached.tenant.name.as_str(), "Example Shop");
    store.invalidate(id).await;
    let fresh = store.tenant(id).await.unwrap().unwrap();
    assert_eq!(fresh.tenant.name.as_str(), "Renamed");

    // Writes pass through and drop nothing by themselves: the process's one owner of
    // what it keeps (the app's `TenantViews`) drops the entry once the write is stored.
    save(&store, id, 587, 0).await.unwrap();
    assert_eq!(stored_version(&store, id).await, None, "still the entry read before");
    store.invalidate(id).await;
    assert_eq!(stored_version(&store, id).await, Some(1));
    assert!(save(&store, id, 587, 0).await.is_err());
    clear(&store, id, 1).await.unwrap();
    let audit_plan = audit(id, AuditAction::PlanChanged, vec![]);
    store
        .change_plan(id, Plan::Share, Plan::Economy, Utc::now(), &audit_plan)
        .await
        .unwrap();
    store.invalidate_all();
    let record = store.tenant(id).await.unwrap().unwrap();
    assert_eq!(record.tenant.plan, Plan::Economy);
    assert!(record.settings.is_none());
    assert!(!format!("{store:?}").contains("Renamed"));
}

#[tokio::test]
async fn sqlite_connections_enforce_foreign_keys() {
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let id = new_tenant(&store, Plan::Share).await.id;
    save(&store, id, 587, 0).await.unwrap();
    // Several pooled connections: every one has foreign keys on and WAL mode.
    for _ in 0..4 {
        let fk = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "PRAGMA foreign_keys",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fk.try_get_by_index::<i32>(0).unwrap(), 1);
    }
    let mode = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
    // Deleting the tenant takes its settings with it.
    tenants::Entity::delete_by_id(id.to_string()).exec(&db).await.unwrap();
    assert!(
        mail_settings::Entity::find()
            .filter(mail_settings::Column::TenantId.eq(id.to_string()))
            .one(&db)
            .await
            .unwrap()
            .is_none()
    );
}

/// Settings saved before verification existed were in force: after the migration that
/// keys settings by version, they are `LIVE`, with their values and version intact.
async fn settings_saved_before_verification_are_live_after_the_upgrade(backend: Backend) {
    use migration::MigratorTrait as _;
    let test_db = connected(backend).await;
    let db = test_db.conn();
    migration::Migrator::up(&db, Some(5)).await.unwrap();
    let store = SqlStore::new(db.clone(), keys());
    let backend = db.get_database_backend();
    // Rows as that release wrote them (today's store writes tables it did not have).
    let tenant = TenantId::generate();
    let (insert_tenant, sql) = match backend {
        sea_orm::DbBackend::Postgres => (
            "INSERT INTO tenants (id, name, plan, created_at, updated_at) VALUES ($1, 'Example Shop', 'SHARE', $2, $2)",
            "INSERT INTO mail_settings (tenant_id, version, server_kind, host, port, from_address, smtp_auth, \
             encryption, send_interval_ms, updated_at) VALUES ($1, 7, 'CUSTOM', 'smtp.example.com', 587, \
             'info@example.com', false, 'STARTTLS', 0, $2)",
        ),
        _ => (
            "INSERT INTO tenants (id, name, plan, created_at, updated_at) VALUES (?, 'Example Shop', 'SHARE', ?, ?)",
            "INSERT INTO mail_settings (tenant_id, version, server_kind, host, port, from_address, smtp_auth, \
             encryption, send_interval_ms, updated_at) VALUES (?, 7, 'CUSTOM', 'smtp.example.com', 587, \
             'info@example.com', false, 'STARTTLS', 0, ?)",
        ),
    };
    let saved_at = Utc::now();
    let created: Vec<sea_orm::Value> = match backend {
        sea_orm::DbBackend::Postgres => vec![tenant.to_string().into(), saved_at.into()],
        _ => vec![tenant.to_string().into(), saved_at.into(), saved_at.into()],
    };
    db.execute_raw(sea_orm::Statement::from_sql_and_values(backend, insert_tenant, created))
        .await
        .unwrap();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [tenant.to_string().into(), saved_at.into()],
    ))
    .await
    .unwrap();
    migrate(&db).await.unwrap();
    let record = store.tenant(tenant).await.unwrap().unwrap();
    let saved = record.settings.as_ref().expect("the row survived");
    assert_eq!(saved.version, 7);
    assert_eq!(saved.settings.host().as_str(), "smtp.example.com");
    assert_eq!(saved.health.state, SettingsState::Live);
    assert_eq!(saved.health.consecutive_failures, 0);
    assert!(record.live_settings.is_none());
    assert!(matches!(
        record.route(),
        domain::sender::SenderRoute::Custom { version: 7, .. }
    ));
}

/// A lowered enqueue quota holds from the next enqueue: what this process reserved under
/// the old limit goes back, and the window counts what it really took (the issue's
/// cases: 40 of 40 accepted after lowering to 5 a minute, 49 of 200 after lowering to 3
/// a day). A raised one lets more through at once.
async fn a_lowered_quota_holds_from_the_next_enqueue(backend: Backend) {
    use domain::ports::EnqueueQuota as _;
    use domain::quota::EnqueueLimits;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db, keys());
    let gate = crate::QuotaGate::new(store.clone());
    // Mid-minute and mid-day: the windows do not end during the test.
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:20:30Z")
        .unwrap()
        .with_timezone(&Utc);
    let accepted = |tenant: TenantId, limits: EnqueueLimits, tries: usize| {
        let gate = &gate;
        async move {
            let mut n = 0;
            for _ in 0..tries {
                if gate.try_take(tenant, limits, now).await.unwrap().is_none() {
                    n += 1;
                }
            }
            n
        }
    };

    let minute = new_tenant(&store, Plan::Share).await.id;
    let defaults = EnqueueLimits {
        per_minute: 1_000,
        per_day: 50_000,
    };
    assert_eq!(accepted(minute, defaults, 1).await, 1);
    let lowered = EnqueueLimits {
        per_minute: 5,
        ..defaults
    };
    assert_eq!(
        accepted(minute, lowered, 40).await,
        4,
        "five in the minute, the one before included"
    );
    let refused = gate.try_take(minute, lowered, now).await.unwrap();
    assert_eq!(refused, Some(30), "until the next minute");

    let day = new_tenant(&store, Plan::Share).await.id;
    let defaults = EnqueueLimits {
        per_minute: 0,
        per_day: 1_000,
    };
    assert_eq!(accepted(day, defaults, 1).await, 1);
    let lowered = EnqueueLimits {
        per_minute: 0,
        per_day: 3,
    };
    assert_eq!(accepted(day, lowered, 200).await, 2, "three in the day");
    let raised = EnqueueLimits {
        per_minute: 0,
        per_day: 10,
    };
    assert_eq!(accepted(day, raised, 20).await, 7, "ten in the day");
}

/// What workers learn of a tenant's server is on record for the workers that start later:
/// per settings version, read back with the tenant, and a later fact is never replaced by
/// an earlier one (two workers may write out of order). A save or a failure count kept
/// since does not touch it.
async fn what_a_worker_learnt_of_a_server_is_kept_per_version_and_never_goes_back(backend: Backend) {
    use domain::health::ServerLearnt::{Reached, Unreachable};
    let test_db = migrated(backend).await;
    let store = SqlStore::new(test_db.conn(), keys());
    let id = new_tenant(&store, Plan::Share).await.id;
    let v1 = save(&store, id, 587, 0).await.unwrap();
    // What is on record of a tenant's server (its current version's).
    let server_of = |store: SqlStore, tenant: TenantId| async move {
        let record = store.tenant(tenant).await.unwrap().unwrap();
        record.settings.unwrap().health.server
    };
    let server = |store: SqlStore| server_of(store, id);
    assert!(!server(store.clone()).await.proven(), "nothing known of a new version");

    let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let note = |store: &SqlStore, version, learnt, at| {
        let store = store.clone();
        async move {
            store
                .record_servers(&[domain::health::ServerNote {
                    tenant: id,
                    version,
                    learnt,
                    at,
                }])
                .await
                .unwrap();
        }
    };
    note(&store, v1, Reached, at(10)).await;
    assert!(server(store.clone()).await.proven());
    assert_eq!(server(store.clone()).await.reached_at, Some(at(10)));
    note(&store, v1, Unreachable, at(20)).await;
    assert!(!server(store.clone()).await.proven(), "failed since it took mail");
    // A worker that learnt earlier writes late: the later fact stands.
    note(&store, v1, Reached, at(15)).await;
    assert!(!server(store.clone()).await.proven(), "it still failed after that");
    note(&store, v1, Reached, at(5)).await;
    assert_eq!(server(store.clone()).await.reached_at, Some(at(15)), "never goes back");
    note(&store, v1, Reached, at(30)).await;
    assert!(server(store.clone()).await.proven(), "took mail again");

    // A configuration failure counted on the version keeps what is on record.
    let failure = domain::health::SettingsFailure {
        at: at(40),
        stage: domain::failure::SendStage::Auth,
        smtp_code: Some(535),
        enhanced_code: None,
        server_message: None,
        hint: domain::failure::Hint::WrongCredentials,
    };
    let suspension = domain::suspension::Suspension {
        notice: None,
        change: audit(id, AuditAction::MailSettingsSuspended, vec![]),
    };
    store
        .record_settings_failure(id, v1, &failure, 5, &suspension)
        .await
        .unwrap();
    assert_eq!(server(store.clone()).await.reached_at, Some(at(30)));

    // A new version starts knowing nothing; the old one's record is its own.
    let v2 = save(&store, id, 465, v1).await.unwrap();
    assert!(!server(store.clone()).await.proven());
    note(&store, v1, Reached, at(50)).await;
    assert!(!server(store.clone()).await.proven(), "another version's server");
    // Several notes in one write, each for its own version.
    let other = new_tenant(&store, Plan::Share).await.id;
    let w1 = save(&store, other, 587, 0).await.unwrap();
    let note_of = |tenant, version| domain::health::ServerNote {
        tenant,
        version,
        learnt: Reached,
        at: at(60),
    };
    store
        .record_servers(&[note_of(id, v2), note_of(other, w1)])
        .await
        .unwrap();
    assert!(server(store.clone()).await.proven());
    assert_eq!(server_of(store.clone(), other).await.reached_at, Some(at(60)));
    // One write with both facts of one version, an earlier time of one of them, and a
    // tenant that is gone: each column keeps its latest time, the rest are written.
    store.record_servers(&[]).await.unwrap();
    let gone = domain::health::ServerNote {
        tenant: TenantId::generate(),
        version: 1,
        learnt: Reached,
        at: at(90),
    };
    store
        .record_servers(&[
            gone,
            domain::health::ServerNote {
                learnt: Unreachable,
                at: at(80),
                ..note_of(other, w1)
            },
            domain::health::ServerNote {
                at: at(70),
                ..note_of(other, w1)
            },
            domain::health::ServerNote {
                at: at(65),
                ..note_of(other, w1)
            },
        ])
        .await
        .unwrap();
    let other_server = server_of(store.clone(), other).await;
    assert_eq!(other_server.reached_at, Some(at(70)));
    assert_eq!(other_server.unreachable_at, Some(at(80)));
    assert!(!other_server.proven(), "it failed after it last took mail");
}

/// Waits until the store is ready again (the probe left behind by a refusal finishes on
/// its own first).
async fn ready_again(store: &SqlStore) {
    let started = std::time::Instant::now();
    while let Err(e) = store.ping().await {
        assert!(started.elapsed() < Duration::from_secs(15), "never ready again: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/readyz`'s check: a database whose write lock another connection (another process)
/// holds answers reads but takes no write, so it is not ready — within the deadline, not
/// after SQLite's busy timeout; once the lock is gone it is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_is_not_ready_while_another_connection_holds_the_write_lock() {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    let test_db = migrated(Backend::Sqlite).await;
    let store = SqlStore::new(test_db.conn(), keys());
    store.ping().await.unwrap();
    let other = test_db.connect_again(1).await;
    let lock = other
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(store.ping().await.is_err(), "not ready while the write lock is held");
    assert!(
        started.elapsed() < crate::store::READY_WRITE_DEADLINE + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    ready_again(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_not_ready_while_another_session_locks_the_tables() {
    use sea_orm::TransactionTrait;
    let test_db = migrated(Backend::Postgres).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    store.ping().await.unwrap();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(store.ping().await.is_err(), "not ready while writes wait");
    assert!(
        started.elapsed() < crate::store::READY_WRITE_DEADLINE + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    ready_again(&store).await;
}

// ---- OAuth sign-in state (issue 25) ------------------------------------------------------

fn sign_in(now: chrono::DateTime<chrono::Utc>) -> domain::oauth::AuthorizationState {
    domain::oauth::AuthorizationState::issue(
        domain::oauth::ConnectionKind::MicrosoftDelegatedGraph,
        TenantId::generate(),
        "admin-subject",
        None,
        now,
    )
}

/// A sealed `state` is URL-safe, opens with the ring that sealed it (also after the key
/// rotated), and not with another key or with one byte changed.
#[tokio::test]
async fn oauth_states_are_sealed_with_the_key_ring() {
    use domain::ports::StateSeal as _;
    let test_db = migrated(Backend::Sqlite).await;
    let db = test_db.conn();
    let old_key = crate::generate_key_base64();
    let store = SqlStore::new(db.clone(), Arc::new(SecretKeyRing::from_base64(&old_key, &[]).unwrap()));
    let allow = domain::oauth::ReturnUrlAllowList::parse([]).unwrap();
    let state = sign_in(chrono::Utc::now());
    let sealed = store.seal_state(&state);
    assert!(
        sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "URL-safe: {sealed}"
    );
    assert!(
        !sealed.contains(state.pkce_verifier().expose()),
        "the verifier is not readable"
    );
    let opened = store.open_state(&sealed, &allow).expect("opens");
    assert_eq!(opened.nonce(), state.nonce());
    assert_eq!(opened.pkce_verifier().expose(), state.pkce_verifier().expose());

    // Rotated: the new current key seals, the old one still opens.
    let rotated = SqlStore::new(
        db.clone(),
        Arc::new(SecretKeyRing::from_base64(&crate::generate_key_base64(), &[old_key]).unwrap()),
    );
    assert!(rotated.open_state(&sealed, &allow).is_ok());
    // Another ring, a changed byte, a cut token, another version: nothing opens.
    let stranger = SqlStore::new(db, keys());
    assert!(stranger.open_state(&sealed, &allow).is_err());
    let mut tampered = sealed.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &sealed[..sealed.len() - 4],
        &sealed.replacen("v1.", "v2.", 1),
        "",
        "v1..",
    ] {
        assert!(store.open_state(bad, &allow).is_err(), "{bad:?} must not open");
    }
}

async fn oauth_states_are_used_once(backend: Backend) {
    use domain::ports::AuthorizationStateStore as _;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db, keys());
    let now = chrono::Utc::now();
    let state = sign_in(now);
    assert!(
        store
            .mark_state_used(state.tenant(), state.nonce(), state.expires_at())
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_state_used(state.tenant(), state.nonce(), state.expires_at())
            .await
            .unwrap(),
        "a replayed state is refused"
    );
    // A record of an expired state is dropped by the next use of any state (it would be
    // refused as expired before reaching the store).
    let old = sign_in(now - chrono::Duration::hours(1));
    assert!(
        store
            .mark_state_used(old.tenant(), old.nonce(), old.expires_at())
            .await
            .unwrap()
    );
    let other = sign_in(now);
    assert!(
        store
            .mark_state_used(other.tenant(), other.nonce(), other.expires_at())
            .await
            .unwrap()
    );
    assert!(
        store
            .mark_state_used(old.tenant(), old.nonce(), old.expires_at())
            .await
            .unwrap(),
        "the expired record is gone"
    );
    // Concurrent callbacks with one state: exactly one wins.
    let racing = sign_in(now);
    let store = Arc::new(store);
    let tries = (0..8).map(|_| {
        let (store, racing) = (store.clone(), racing.clone());
        tokio::spawn(async move {
            store
                .mark_state_used(racing.tenant(), racing.nonce(), racing.expires_at())
                .await
                .unwrap()
        })
    });
    let mut wins = 0;
    for t in tries {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

// ---- OAuth connections (issue 25) --------------------------------------------------------

const REFRESH_TOKEN: &str = "refresh-Tok3n-0123456789";

fn rotated(token: &str) -> domain::ports::RefreshOutcome {
    refreshed(token, true)
}

fn refreshed(token: &str, rotated: bool) -> domain::ports::RefreshOutcome {
    domain::ports::RefreshOutcome::Refreshed(domain::oauth::RefreshedTokens {
        tokens: domain::oauth::TokenSet {
            access_token: SecretString::from("access"),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            refresh_token: rotated.then(|| SecretString::from(token)),
            scopes: None,
            identity: None,
        },
        refresh_token: SecretString::from(token),
        rotated,
    })
}

async fn new_connection(store: &SqlStore, tenant: TenantId, token: Option<&str>) -> domain::oauth::MailConnection {
    use domain::ports::MailConnections as _;
    store
        .create(
            tenant,
            domain::oauth::NewConnection {
                kind: domain::oauth::ConnectionKind::MicrosoftDelegatedSmtp,
                mailbox: "shop@example.com",
                scopes: &[
                    "https://outlook.office.com/SMTP.Send".to_owned(),
                    "offline_access".to_owned(),
                ],
                directory: None,
                refresh_token: token.map(SecretString::from).as_ref(),
                client: None,
            },
            Utc::now(),
        )
        .await
        .unwrap()
}

/// The token a turn hands out, or the turn's name.
async fn turn(store: &SqlStore, c: &domain::oauth::MailConnection, holder: &str) -> String {
    use domain::ports::{MailConnections as _, RefreshTurn};
    match store
        .begin_refresh(c.tenant_id, c.id, holder, Duration::from_secs(60), Utc::now())
        .await
        .unwrap()
    {
        RefreshTurn::Yours(token) => token.expose_secret().to_owned(),
        RefreshTurn::Busy => "busy".into(),
        RefreshTurn::Gone => "gone".into(),
        RefreshTurn::NoRefreshToken => "none".into(),
    }
}

async fn oauth_connections_belong_to_their_tenant(backend: Backend) {
    use domain::ports::MailConnections as _;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let tenant = new_tenant(&store, Plan::Share).await.id;
    let other = new_tenant(&store, Plan::Share).await.id;
    let created = new_connection(&store, tenant, Some(REFRESH_TOKEN)).await;
    assert_eq!(created.status, domain::oauth::ConnectionStatus::Active);
    assert_eq!(store.get(tenant, created.id).await.unwrap(), Some(created.clone()));
    assert_eq!(store.get(other, created.id).await.unwrap(), None);
    assert!(
        !store.delete(other, created.id).await.unwrap(),
        "another tenant deletes nothing"
    );
    assert_eq!(turn(&store, &created, "other-holder").await, REFRESH_TOKEN);
    let mut foreign = created.clone();
    foreign.tenant_id = other;
    assert_eq!(turn(&store, &foreign, "h").await, "gone");
    assert!(store.delete(tenant, created.id).await.unwrap());
    assert_eq!(store.get(tenant, created.id).await.unwrap(), None);
    assert!(!store.delete(tenant, created.id).await.unwrap());
    // App-only: no refresh token, no turn.
    let app_only = new_connection(&store, tenant, None).await;
    assert_eq!(turn(&store, &app_only, "h").await, "none");
    // A deleted tenant takes its connections with it.
    let kept = new_connection(&store, tenant, Some(REFRESH_TOKEN)).await;
    tenants::Entity::delete_by_id(tenant.to_string())
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(store.get(tenant, kept.id).await.unwrap(), None);
    assert_eq!(store.get(tenant, app_only.id).await.unwrap(), None);
}

async fn oauth_refresh_tokens_are_sealed_for_their_connection(backend: Backend) {
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let tenant = new_tenant(&store, Plan::Share).await.id;
    let first = new_connection(&store, tenant, Some(REFRESH_TOKEN)).await;
    let second = new_connection(&store, tenant, Some("another-refresh-token")).await;
    let backend = db.get_database_backend();
    let p = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT refresh_token_ciphertext, refresh_token_key_id FROM mail_connections WHERE id = {}",
                p(1)
            ),
            [first.id.to_string().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let sealed: Vec<u8> = row.try_get("", "refresh_token_ciphertext").unwrap();
    let key_id: String = row.try_get("", "refresh_token_key_id").unwrap();
    assert!(
        !sealed
            .windows(REFRESH_TOKEN.len())
            .any(|w| w == REFRESH_TOKEN.as_bytes()),
        "the column holds no plain token"
    );
    // The first connection's sealed token copied into the second's row does not open.
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        format!(
            "UPDATE mail_connections SET refresh_token_ciphertext = {}, refresh_token_key_id = {} WHERE id = {}",
            p(1),
            p(2),
            p(3)
        ),
        [sealed.into(), key_id.into(), second.id.to_string().into()],
    ))
    .await
    .unwrap();
    use domain::ports::MailConnections as _;
    assert!(matches!(
        store
            .begin_refresh(tenant, second.id, "h", Duration::from_secs(60), Utc::now())
            .await,
        Err(StoreError::Crypto(_))
    ));
    assert_eq!(turn(&store, &first, "h").await, REFRESH_TOKEN);
}

async fn oauth_refreshes_take_turns(backend: Backend) {
    use domain::ports::{MailConnections as _, RefreshOutcome, RefreshTurn};
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = Arc::new(SqlStore::new(db, keys()));
    let tenant = new_tenant(store.as_ref(), Plan::Share).await.id;
    let c = new_connection(&store, tenant, Some(REFRESH_TOKEN)).await;
    let lease = Duration::from_secs(60);

    // One turn at a time while the lease lives; the same holder may take it again.
    assert_eq!(turn(&store, &c, "a").await, REFRESH_TOKEN);
    assert_eq!(turn(&store, &c, "b").await, "busy");
    assert_eq!(turn(&store, &c, "a").await, REFRESH_TOKEN);
    // After the lease ran out, another holder gets it; the first has lost it.
    let later = Utc::now() + chrono::Duration::seconds(61);
    assert!(matches!(
        store.begin_refresh(tenant, c.id, "b", lease, later).await.unwrap(),
        RefreshTurn::Yours(_)
    ));
    assert!(
        !store
            .finish_refresh(tenant, c.id, "a", rotated("lost-token"), Utc::now())
            .await
            .unwrap(),
        "a lost lease writes nothing"
    );
    assert_eq!(store.get(tenant, c.id).await.unwrap().unwrap().last_refreshed_at, None);
    // A rotated token is saved with the end of the lease.
    let finished_at = Utc::now();
    assert!(
        store
            .finish_refresh(tenant, c.id, "b", rotated("rotated-token"), finished_at)
            .await
            .unwrap()
    );
    let after = store.get(tenant, c.id).await.unwrap().unwrap();
    assert_eq!(
        after.last_refreshed_at.map(|t| t.timestamp_millis()),
        Some(finished_at.timestamp_millis())
    );
    assert_eq!(
        turn(&store, &c, "c").await,
        "rotated-token",
        "the lease ended; the new token is saved"
    );
    // Without rotation the token stays.
    assert!(
        store
            .finish_refresh(tenant, c.id, "c", refreshed("unused", false), Utc::now())
            .await
            .unwrap()
    );
    assert_eq!(turn(&store, &c, "d").await, "rotated-token");
    // Throttled: the status stays; the grant gone: reconnect.
    assert!(
        store
            .finish_refresh(
                tenant,
                c.id,
                "d",
                RefreshOutcome::Refused(domain::oauth::GrantProblem::Temporary),
                Utc::now()
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(tenant, c.id).await.unwrap().unwrap().status,
        domain::oauth::ConnectionStatus::Active
    );
    assert_eq!(turn(&store, &c, "e").await, "rotated-token");
    assert!(
        store
            .finish_refresh(
                tenant,
                c.id,
                "e",
                RefreshOutcome::Refused(domain::oauth::GrantProblem::NeedsReconnect),
                Utc::now()
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.get(tenant, c.id).await.unwrap().unwrap().status,
        domain::oauth::ConnectionStatus::NeedsReconnect
    );

    // Eight processes at once: one refreshes.
    let racing = new_connection(&store, tenant, Some(REFRESH_TOKEN)).await;
    let tries = (0..8).map(|n| {
        let store = store.clone();
        let racing = racing.clone();
        tokio::spawn(async move { turn(&store, &racing, &format!("racer-{n}")).await })
    });
    let mut yours = 0;
    for t in tries {
        match t.await.unwrap().as_str() {
            REFRESH_TOKEN => yours += 1,
            other => assert_eq!(other, "busy"),
        }
    }
    assert_eq!(yours, 1);
}

/// Key rotation re-seals the connections' refresh tokens too: after it, a ring with only
/// the new key hands out the same token; a second run rewrites nothing.
async fn oauth_refresh_tokens_follow_a_key_rotation(backend: Backend) {
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let old_key = crate::generate_key_base64();
    let new_key = crate::generate_key_base64();
    let old_store = SqlStore::new(db.clone(), Arc::new(SecretKeyRing::from_base64(&old_key, &[]).unwrap()));
    let tenant = new_tenant(&old_store, Plan::Share).await.id;
    let with_token = new_connection(&old_store, tenant, Some(REFRESH_TOKEN)).await;
    let app_only = new_connection(&old_store, tenant, None).await;
    // A generic XOAUTH2 connection's client secret is sealed the same way.
    let secret = SecretString::from("client-secret-1");
    let generic = {
        use domain::ports::MailConnections as _;
        old_store
            .create(
                tenant,
                domain::oauth::NewConnection {
                    kind: domain::oauth::ConnectionKind::Xoauth2ClientCredentials,
                    mailbox: "app@example.com",
                    scopes: &[],
                    directory: None,
                    refresh_token: None,
                    client: Some(domain::oauth::ClientCredentials {
                        token_url: "https://sso.example.com/token",
                        client_id: "relay",
                        client_secret: &secret,
                    }),
                },
                Utc::now(),
            )
            .await
            .unwrap()
    };
    let both = Arc::new(SecretKeyRing::from_base64(&new_key, &[old_key]).unwrap());
    assert_eq!(
        rotate_secret_key(&db, &both).await.unwrap(),
        2,
        "one sealed token, one client secret"
    );
    assert_eq!(rotate_secret_key(&db, &both).await.unwrap(), 0);
    let new_only = SqlStore::new(db, Arc::new(SecretKeyRing::from_base64(&new_key, &[]).unwrap()));
    assert_eq!(turn(&new_only, &with_token, "h").await, REFRESH_TOKEN);
    assert_eq!(turn(&new_only, &app_only, "h").await, "none");
    use domain::ports::MailConnections as _;
    let read = new_only
        .client_secret(tenant, generic.id)
        .await
        .unwrap()
        .expect("a secret");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&read), "client-secret-1");
    let back = new_only.get(tenant, generic.id).await.unwrap().expect("the connection");
    assert_eq!(back.token_url.as_deref(), Some("https://sso.example.com/token"));
    assert_eq!(back.client_id.as_deref(), Some("relay"));
}

/// Hands in a short custom notification for `tenant`; its id.
async fn enqueue_hello(store: &SqlStore, tenant: TenantId) -> domain::DeliveryId {
    use domain::ports::DeliveryOutbox as _;
    let d = domain::delivery::Delivery::queued(
        tenant,
        domain::delivery::NotificationKind::Custom,
        domain::values::EmailAddress::parse("member@example.net").unwrap(),
        domain::Locale::En,
        domain::delivery::RenderedMessage {
            subject: domain::mail::Subject::parse("Hello").unwrap(),
            text: "Hello\r\n".into(),
            html: None,
        },
        domain::MessageId::generate("mailgate.example"),
        Utc::now(),
    );
    store.enqueue(&d).await.unwrap();
    d.id
}

/// Rows whose content an earlier release removed are counted after the upgrade that
/// keeps their counts apart (migration 22 fills the marks and counts from them, up to
/// each tenant's first row that still holds content).
async fn deliveries_cleared_before_the_upgrade_are_counted(backend: Backend) {
    use domain::delivery::DeliveryStatus;
    use domain::ports::DeliveryQueries as _;
    use migration::MigratorTrait as _;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let (tenant, other) = (
        new_tenant(&store, Plan::Share).await.id,
        new_tenant(&store, Plan::Biz).await.id,
    );
    // (tenant, status, content removed)
    let cases = [
        (tenant, "SENT", true),
        (tenant, "SENT", true),
        (tenant, "FAILED", true),
        (tenant, "SENT", false),
        (tenant, "QUEUED", false),
        (other, "SENT", true),
        // Cleared, but after rows that still hold content: counted as they are.
        (tenant, "FAILED", true),
    ];
    let before_22 = Some(u32::try_from(migration::Migrator::migrations().len() - 21).unwrap());
    migration::Migrator::down(&db, before_22).await.unwrap();
    let backend = db.get_database_backend();
    let mut ids = Vec::new();
    for (owner, status, removed) in cases {
        let id = enqueue_hello(&store, owner).await;
        ids.push(id.to_string());
        let sql = match backend {
            sea_orm::DbBackend::Postgres => "UPDATE deliveries SET status = $1, content_removed_at = $2 WHERE id = $3",
            _ => "UPDATE deliveries SET status = ?, content_removed_at = ? WHERE id = ?",
        };
        let at = removed.then(Utc::now);
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [status.into(), at.into(), id.to_string().into()],
        ))
        .await
        .unwrap();
    }
    migrate(&db).await.unwrap();
    let counts = |scope| {
        let store = &store;
        async move {
            let counts = store.status_counts(scope).await.unwrap();
            [DeliveryStatus::Queued, DeliveryStatus::Sent, DeliveryStatus::Failed]
                .map(|s| counts.iter().find(|(c, _)| *c == s).unwrap().1)
        }
    };
    assert_eq!(counts(domain::TenantScope::One(tenant)).await, [1, 3, 2]);
    assert_eq!(counts(domain::TenantScope::One(other)).await, [0, 1, 0]);
    // Kept apart: the tenant's cleared rows before its first row with content.
    let kept = db
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT m.tenant_id, m.counted_through, c.status, c.n FROM delivery_count_marks m \
             JOIN delivery_archived_counts c ON c.tenant_id = m.tenant_id ORDER BY m.tenant_id, c.status",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "tenant_id").unwrap(),
                r.try_get::<String>("", "counted_through").unwrap(),
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect::<std::collections::HashSet<_>>();
    let expected = [
        (tenant.to_string(), ids[2].clone(), "FAILED".to_owned(), 1),
        (tenant.to_string(), ids[2].clone(), "SENT".to_owned(), 2),
        (other.to_string(), ids[5].clone(), "SENT".to_owned(), 1),
    ];
    assert_eq!(kept, expected.into_iter().collect());
}

/// Migration 19: a delivery that can still be retried and had a retry or a deferral
/// before the upgrade is marked retried before (so its next retry is not announced as
/// the first); one without, or already sent, is not; running it again changes nothing.
async fn deliveries_retried_before_the_upgrade_know_it(backend: Backend) {
    use domain::ports::DeliveryQueries as _;
    use migration::MigratorTrait as _;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let tenant = new_tenant(&store, Plan::Share).await.id;
    // (status, outcome of its one attempt, marked after the upgrade)
    let cases = [
        ("RETRYING", Some("RETRY"), true),
        ("QUEUED", Some("DEFERRED"), true),
        ("FAILED", Some("RETRY"), true),
        ("RETRYING", Some("FAILED"), false),
        ("QUEUED", None, false),
        ("SENT", Some("RETRY"), false),
    ];
    let mut ids = Vec::new();
    for _ in &cases {
        ids.push(enqueue_hello(&store, tenant).await);
    }
    let sql = |pg: &'static str, sqlite: &'static str| match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => pg,
        _ => sqlite,
    };
    // The release before: no column; the attempts say what happened. (Counted back to
    // migration 19, so a later migration does not change what is undone.)
    let before_19 = Some(u32::try_from(migration::Migrator::migrations().len() - 18).unwrap());
    migration::Migrator::down(&db, before_19).await.unwrap();
    for ((status, outcome, _), id) in cases.iter().zip(&ids) {
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            sql(
                "UPDATE deliveries SET status = $1 WHERE id = $2",
                "UPDATE deliveries SET status = ? WHERE id = ?",
            ),
            [(*status).into(), id.to_string().into()],
        ))
        .await
        .unwrap();
        if let Some(outcome) = outcome {
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                sql(
                    "INSERT INTO delivery_attempts (id, delivery_id, at, outcome) VALUES ($1, $2, $3, $4)",
                    "INSERT INTO delivery_attempts (id, delivery_id, at, outcome) VALUES (?, ?, ?, ?)",
                ),
                [
                    uuid::Uuid::now_v7().to_string().into(),
                    id.to_string().into(),
                    Utc::now().into(),
                    (*outcome).into(),
                ],
            ))
            .await
            .unwrap();
        }
    }
    for _ in 0..2 {
        migrate(&db).await.unwrap();
        for ((status, outcome, marked), id) in cases.iter().zip(&ids) {
            let read = store
                .delivery(domain::TenantScope::One(tenant), *id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(read.retried_before, *marked, "{status} after {outcome:?}");
        }
        // Again, as SQLite may have to after a step failed half-way.
        db.execute_unprepared("DELETE FROM seaql_migrations WHERE version LIKE '%000019%'")
            .await
            .unwrap();
    }
}

/// Migration 18: a failed delivery's reason stored as English text (as every release
/// before it wrote them) becomes a code with a detail for a refusal, and its down step
/// writes the text back. A row a process of the release before finishes during a
/// rolling upgrade (text, no code) still reads back.
async fn failure_reasons_stored_as_text_become_codes_and_back(backend: Backend) {
    use domain::delivery::{FailureCode, FailureReason};
    use domain::ports::DeliveryQueries as _;
    use migration::MigratorTrait as _;
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    // Back to the release before 18: its migration and every later one undone.
    let before_18 = Some(u32::try_from(migration::Migrator::migrations().len() - 17).unwrap());
    let store = SqlStore::new(db.clone(), keys());
    let tenant = new_tenant(&store, Plan::Share).await.id;
    let texts = [
        ("expired", FailureReason::Expired),
        ("tenant not found", FailureReason::TenantMissing),
        ("invalid stored data", FailureReason::InvalidStoredData),
        (
            "abandoned: every try ended with its process before an outcome",
            FailureReason::Abandoned,
        ),
        (
            "RCPT_TO 550 5.1.1 no such user",
            FailureReason::Refused("RCPT_TO 550 5.1.1 no such user".into()),
        ),
    ];
    let mut ids = Vec::new();
    for _ in &texts {
        ids.push(enqueue_hello(&store, tenant).await);
    }
    // Back to the release before: the column is `failure_reason` and holds the text.
    migration::Migrator::down(&db, before_18).await.unwrap();
    for ((text, _), id) in texts.iter().zip(&ids) {
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    "UPDATE deliveries SET status = 'FAILED', failure_reason = $1 WHERE id = $2"
                }
                _ => "UPDATE deliveries SET status = 'FAILED', failure_reason = ? WHERE id = ?",
            },
            [(*text).into(), id.to_string().into()],
        ))
        .await
        .unwrap();
    }
    migrate(&db).await.unwrap();
    for ((_, reason), id) in texts.iter().zip(&ids) {
        let read = store
            .delivery(domain::TenantScope::One(tenant), *id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.failure_reason.as_ref(), Some(reason));
    }
    let refused = store
        .delivery(domain::TenantScope::One(tenant), ids[4])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        refused.failure_reason.as_ref().map(FailureReason::code),
        Some(FailureCode::Refused)
    );

    // Written by the release before while this one runs: text only.
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "UPDATE deliveries SET failure_code = NULL, failure_detail = NULL, failure_reason = 'tenant not found' WHERE id = $1",
            _ => "UPDATE deliveries SET failure_code = NULL, failure_detail = NULL, failure_reason = 'tenant not found' WHERE id = ?",
        },
        [ids[0].to_string().into()],
    ))
    .await
    .unwrap();
    let legacy = store
        .delivery(domain::TenantScope::One(tenant), ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(legacy.failure_reason, Some(FailureReason::TenantMissing));
    // Running the migration again (SQLite runs it without a transaction) is harmless, and
    // converts that row too.
    migration::Migrator::down(&db, before_18).await.unwrap();
    migrate(&db).await.unwrap();
    let converted = store
        .delivery(domain::TenantScope::One(tenant), ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(converted.failure_reason, Some(FailureReason::TenantMissing));

    // And down again: the texts (the first one's is now the legacy row's).
    migration::Migrator::down(&db, before_18).await.unwrap();
    let texts_after = [("tenant not found", FailureReason::TenantMissing)]
        .into_iter()
        .chain(texts.iter().skip(1).cloned());
    for ((text, _), id) in texts_after.zip(&ids) {
        let row = db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                match db.get_database_backend() {
                    sea_orm::DbBackend::Postgres => "SELECT failure_reason FROM deliveries WHERE id = $1",
                    _ => "SELECT failure_reason FROM deliveries WHERE id = ?",
                },
                [id.to_string().into()],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), text);
    }
}

/// The ids of the tenants whose name contains `part`, in creation order.
async fn found(store: &dyn TenantStore, part: &str) -> Vec<TenantId> {
    let filter = TenantFilter {
        plan: None,
        name: Some(NameSearch::parse(part).unwrap().unwrap()),
    };
    let page = store.tenants(&filter, None, 100).await.unwrap();
    page.into_iter().map(|r| r.tenant.id).collect()
}

/// `nameContains` folds case and width the same way on both backends: before, SQLite
/// folded A–Z only, and PostgreSQL lowered the names but not the search, so a full-width
/// capital name did not even find itself there.
async fn names_are_found_whatever_their_case_and_width(backend: Backend) {
    let test_db = migrated(backend).await;
    let store = SqlStore::new(test_db.conn(), keys());
    let full_width = tenant_named_id(&store, "ＳＨＯＰ さくら").await;
    let katakana = tenant_named_id(&store, "カフェ・ド・サクラ").await;
    let accented = tenant_named_id(&store, "ÉCOLE DU SOIR").await;
    let percent = tenant_named_id(&store, "50% Off").await;
    assert_eq!(found(&store, "ＳＨＯＰ").await, vec![full_width]);
    assert_eq!(found(&store, "shop").await, vec![full_width]);
    assert_eq!(found(&store, "ｓｈｏｐ さ").await, vec![full_width]);
    assert_eq!(found(&store, "ｶﾌｪ").await, vec![katakana]);
    assert_eq!(found(&store, "école").await, vec![accented]);
    assert_eq!(found(&store, "５０％").await, vec![percent]);
    assert_eq!(found(&store, "%").await, vec![percent]);
    assert!(found(&store, "50_").await.is_empty());
    assert!(found(&store, "ecole").await.is_empty(), "accents are not dropped");
}

/// A row a release before migration 23 inserted (no search key) is found as before (A–Z
/// in either case) and gets its key at the next `migrate`, after which it is found like
/// any other.
async fn names_stored_before_their_search_key_get_one_at_the_next_migrate(backend: Backend) {
    let test_db = migrated(backend).await;
    let db = test_db.conn();
    let store = SqlStore::new(db.clone(), keys());
    let old = tenant_named_id(&store, "ＳＨＯＰ Sakura").await;
    tenants::Entity::update_many()
        .set(tenants::ActiveModel {
            name_key: Set(None),
            ..Default::default()
        })
        .filter(tenants::Column::Id.eq(old.to_string()))
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(found(&store, "SAKURA").await, vec![old]);
    assert!(found(&store, "shop").await.is_empty());
    migrate(&db).await.unwrap();
    let row = tenants::Entity::find_by_id(old.to_string())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.name_key.as_deref(), Some("shop sakura"));
    assert_eq!(found(&store, "shop").await, vec![old]);
}

async fn tenant_named_id(store: &dyn TenantStore, name: &str) -> TenantId {
    tenant_named(store, name, Plan::Share).await.id
}
