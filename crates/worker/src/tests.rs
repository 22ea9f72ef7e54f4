//! The worker's scheduling and recording against in-memory fakes of the queue, the
//! tenant store and the mail transport: no database, no socket, so a scheduling rule is
//! checked in milliseconds. (The same worker runs against real databases and real SMTP
//! servers in the API tests.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::delivery::{
    Attempt, Delivery, DeliveryStatus, DeliveryUpdate, FailureReason, NotificationKind, Postponement, RenderedMessage,
};
use domain::mail::{FailureKind, OutgoingMail, SendFailure, SendReceipt, SendStage, SenderUsed, Subject};
use domain::ports::{DeliveryQueue, MailTransport, Pacing, TenantStore};
use domain::values::EmailAddress;
use domain::{
    DeliveryId, LeaseOwner, Locale, MailSettings, MessageId, Plan, SenderOverridePermit, SenderSource, StoreError,
    Tenant, TenantId, TenantName, TenantRecord, WriteError,
};
use tokio::sync::{mpsc, oneshot};

use crate::{Metrics, Worker, WorkerConfig, WorkerReport, lock};

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

/// A stored delivery in the fake queue.
#[derive(Debug, Clone)]
struct Row {
    delivery: Delivery,
    lease: Option<LeaseOwner>,
}

/// The queue in memory: claims due rows in order, applies updates only under the lease
/// and in the expected status (what the SQL store promises), and remembers how many
/// updates each write carried.
#[derive(Debug, Default)]
struct MemoryQueue {
    rows: Mutex<Vec<Row>>,
    writes: Mutex<Vec<usize>>,
}

impl MemoryQueue {
    fn add(&self, delivery: Delivery) {
        lock(&self.rows).push(Row { delivery, lease: None });
    }

    fn rows(&self) -> Vec<Row> {
        lock(&self.rows).clone()
    }

    fn count(&self, tenant: TenantId, status: DeliveryStatus) -> usize {
        lock(&self.rows)
            .iter()
            .filter(|r| r.delivery.tenant_id == tenant && r.delivery.status == status)
            .count()
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn claim_fairly(
        &self,
        owner: &LeaseOwner,
        now: DateTime<Utc>,
        _lease_until: DateTime<Utc>,
        limit: u32,
        per_tenant: u32,
        exclude: &[TenantId],
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut rows = lock(&self.rows);
        let mut due: Vec<&mut Row> = rows
            .iter_mut()
            .filter(|r| {
                matches!(r.delivery.status, DeliveryStatus::Queued | DeliveryStatus::Retrying)
                    && r.delivery.next_attempt_at <= now
                    && !exclude.contains(&r.delivery.tenant_id)
            })
            .collect();
        due.sort_by_key(|r| (r.delivery.next_attempt_at, r.delivery.id));
        let mut per: HashMap<TenantId, u32> = HashMap::new();
        Ok(due
            .into_iter()
            .filter(|r| {
                let n = per.entry(r.delivery.tenant_id).or_insert(0);
                *n += 1;
                *n <= per_tenant
            })
            .take(limit as usize)
            .map(|r| {
                r.delivery.status = DeliveryStatus::Sending;
                r.lease = Some(owner.clone());
                r.delivery.clone()
            })
            .collect())
    }

    async fn postpone_waiting(
        &self,
        tenant: TenantId,
        schedule: &Postponement,
        _now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut rows = lock(&self.rows);
        let mut waiting: Vec<&mut Row> = rows
            .iter_mut()
            .filter(|r| {
                r.delivery.tenant_id == tenant
                    && matches!(r.delivery.status, DeliveryStatus::Queued | DeliveryStatus::Retrying)
                    && r.delivery.next_attempt_at < schedule.from()
            })
            .collect();
        waiting.sort_by_key(|r| (r.delivery.next_attempt_at, r.delivery.id));
        let moved = waiting.len() as u64;
        for (n, r) in waiting.into_iter().enumerate() {
            r.delivery.next_attempt_at = schedule.at(n as u32);
        }
        Ok(moved)
    }

    async fn resume_waiting(
        &self,
        tenant: TenantId,
        up_to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut moved = 0;
        for r in lock(&self.rows).iter_mut() {
            if r.delivery.tenant_id == tenant
                && matches!(r.delivery.status, DeliveryStatus::Queued | DeliveryStatus::Retrying)
                && r.delivery.next_attempt_at > now
                && r.delivery.next_attempt_at <= up_to
            {
                r.delivery.next_attempt_at = now;
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn renew_leases(&self, owner: &LeaseOwner, _until: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(lock(&self.rows)
            .iter()
            .filter(|r| r.lease.as_ref() == Some(owner))
            .count() as u64)
    }

    async fn finish_many(
        &self,
        owner: &LeaseOwner,
        updates: &[(DeliveryId, DeliveryUpdate)],
    ) -> Result<Vec<bool>, StoreError> {
        lock(&self.writes).push(updates.len());
        let mut rows = lock(&self.rows);
        Ok(updates
            .iter()
            .map(|(id, u)| {
                let Some(row) = rows.iter_mut().find(|r| r.delivery.id == *id) else {
                    return false;
                };
                if row.delivery.status != u.expected() || row.lease.as_ref() != Some(owner) {
                    return false;
                }
                row.delivery = u.applied_to(row.delivery.clone());
                row.lease = None;
                true
            })
            .collect())
    }
}

/// Tenants in memory; only reading one is supported.
#[derive(Debug, Default)]
struct MemoryTenants {
    records: HashMap<TenantId, TenantRecord>,
}

impl MemoryTenants {
    fn with(tenants: &[TenantId]) -> Self {
        let now = Utc::now();
        let records = tenants
            .iter()
            .map(|id| {
                let tenant = Tenant {
                    id: *id,
                    name: TenantName::parse("site").unwrap(),
                    plan: Plan::Basic,
                    contact_email: None,
                    created_at: now,
                    updated_at: now,
                };
                (*id, TenantRecord::new(tenant, None))
            })
            .collect();
        Self { records }
    }

    /// Tenants on the Share plan with their own server saved (send interval in ms).
    fn with_own_servers(tenants: &[(TenantId, i64)]) -> Self {
        let now = Utc::now();
        let records = tenants
            .iter()
            .map(|(id, interval_ms)| {
                let tenant = Tenant {
                    id: *id,
                    name: TenantName::parse("site").unwrap(),
                    plan: Plan::Share,
                    contact_email: None,
                    created_at: now,
                    updated_at: now,
                };
                let draft = domain::MailSettingsDraft {
                    host: Some("smtp.example.com".into()),
                    port: Some(587),
                    from_address: Some("info@example.com".into()),
                    encryption: Some(domain::settings::Encryption::StartTls),
                    smtp_auth: Some(false),
                    send_interval_ms: Some(*interval_ms),
                    ..domain::MailSettingsDraft::default()
                };
                let settings = domain::StoredMailSettings {
                    settings: MailSettings::validate(&draft, None).unwrap(),
                    version: 1,
                    updated_at: now,
                    health: domain::health::SettingsHealth::live(now),
                };
                (*id, TenantRecord::new(tenant, Some(settings)))
            })
            .collect();
        Self { records }
    }

    fn and(mut self, other: Self) -> Self {
        self.records.extend(other.records);
        self
    }
}

fn unsupported() -> StoreError {
    StoreError::Corrupt("not supported by the in-memory tenant store".into())
}

#[async_trait::async_trait]
impl TenantStore for MemoryTenants {
    async fn insert_tenant(&self, _: &Tenant, _: &domain::audit::AuditEntry) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self.records.get(&id).cloned())
    }
    async fn tenants(&self, _: Option<Plan>, _: Option<TenantId>, _: u64) -> Result<Vec<TenantRecord>, StoreError> {
        Err(unsupported())
    }
    async fn change_plan(
        &self,
        _: TenantId,
        _: Plan,
        _: Plan,
        _: DateTime<Utc>,
        _: &domain::audit::AuditEntry,
    ) -> Result<Tenant, WriteError> {
        Err(unsupported().into())
    }
    async fn set_contact_email(
        &self,
        _: TenantId,
        _: Option<&domain::values::EmailAddress>,
        _: DateTime<Utc>,
        _: &domain::audit::AuditEntry,
    ) -> Result<Tenant, WriteError> {
        Err(unsupported().into())
    }
    async fn save_mail_settings(
        &self,
        _: TenantId,
        _: SenderOverridePermit,
        _: &MailSettings,
        _: domain::health::SettingsState,
        _: i64,
        _: DateTime<Utc>,
        _: &domain::audit::AuditEntry,
    ) -> Result<domain::StoredMailSettings, WriteError> {
        Err(unsupported().into())
    }
    async fn activate_mail_settings(
        &self,
        _: TenantId,
        _: i64,
        _: DateTime<Utc>,
        _: &domain::audit::AuditEntry,
    ) -> Result<(), WriteError> {
        Err(unsupported().into())
    }
    async fn set_activation_code(
        &self,
        _: TenantId,
        _: i64,
        _: &domain::health::ActivationCode,
    ) -> Result<(), WriteError> {
        Err(unsupported().into())
    }
    async fn record_settings_failure(
        &self,
        _: TenantId,
        _: i64,
        _: &domain::health::SettingsFailure,
        _: u32,
        _: &domain::suspension::Suspension,
    ) -> Result<bool, StoreError> {
        Err(unsupported())
    }
    async fn record_settings_success(&self, _: TenantId, _: i64) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn settings_state_counts(&self) -> Result<Vec<(domain::health::SettingsState, u64)>, StoreError> {
        Err(unsupported())
    }
    async fn clear_mail_settings(
        &self,
        _: TenantId,
        _: i64,
        _: DateTime<Utc>,
        _: &domain::audit::AuditEntry,
    ) -> Result<(), WriteError> {
        Err(unsupported().into())
    }
    async fn audit_trail(
        &self,
        _: TenantId,
        _: Option<uuid::Uuid>,
        _: u64,
    ) -> Result<Vec<domain::audit::AuditEntry>, StoreError> {
        Err(unsupported())
    }
    async fn record_audit(&self, _: &domain::audit::AuditEntry) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn remove_old_audit_content(&self, _: DateTime<Utc>, _: u64, _: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// How the fake server of a tenant answers.
#[derive(Debug, Clone)]
enum Server {
    /// Takes every mail after a short pause (so sends of one tenant overlap).
    Accepts,
    /// Never answers.
    Hangs,
    /// Accepts the connection and says nothing until our deadline (this long) ends it.
    BlackHole(Duration),
    /// Says nothing to the first connection (our deadline ends it at once), then takes
    /// every mail: a server that was down and came back.
    BackAfterOne,
    /// Refuses every mail with this failure.
    Fails(SendFailure),
    /// Panics (a bug of ours while sending, as a test hook).
    Panics,
}

/// A mail transport whose answer is scripted per tenant; it counts the sends in flight
/// per tenant and remembers the most seen at once.
#[derive(Debug, Default)]
struct ScriptedMailer {
    servers: HashMap<TenantId, Server>,
    in_flight: Mutex<HashMap<TenantId, usize>>,
    most_at_once: Mutex<HashMap<TenantId, usize>>,
    sent: Mutex<Vec<(TenantId, String)>>,
    /// Send intervals by tenant, and when each tenant's last send started.
    intervals: HashMap<TenantId, Duration>,
    last_start: Mutex<HashMap<TenantId, std::time::Instant>>,
    /// Sends started, by tenant.
    started: Mutex<HashMap<TenantId, usize>>,
    /// Sends in flight over all tenants: now, and the most at once.
    all_in_flight: Mutex<(usize, usize)>,
}

impl ScriptedMailer {
    fn most_at_once(&self, tenant: TenantId) -> usize {
        lock(&self.most_at_once).get(&tenant).copied().unwrap_or(0)
    }

    fn most_at_once_in_all(&self) -> usize {
        lock(&self.all_in_flight).1
    }

    fn started(&self, tenant: TenantId) -> usize {
        lock(&self.started).get(&tenant).copied().unwrap_or(0)
    }
}

/// Leaves the in-flight count when a send ends or is dropped (aborted).
struct Flight<'a> {
    mailer: &'a ScriptedMailer,
    tenant: TenantId,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.mailer.in_flight).get_mut(&self.tenant) {
            *n -= 1;
        }
        lock(&self.mailer.all_in_flight).0 -= 1;
    }
}

fn platform_sender() -> SenderUsed {
    SenderUsed {
        address: EmailAddress::parse("noreply@platform.example").unwrap(),
        name: None,
        source: SenderSource::PlatformDefault,
    }
}

/// What a server that takes `mail` answers.
fn accepted(mail: &OutgoingMail) -> SendReceipt {
    SendReceipt {
        message_id: mail.message_id.clone().unwrap_or_default(),
        sender: platform_sender(),
        smtp_code: Some(250),
        server_message: Some("2.0.0 ok".into()),
        elapsed: Duration::ZERO,
    }
}

#[async_trait::async_trait]
impl MailTransport for ScriptedMailer {
    async fn send(&self, tenant: &TenantRecord, mail: &OutgoingMail) -> Result<SendReceipt, SendFailure> {
        let id = tenant.tenant.id;
        // The platform relay in the tenant's place: its server is not involved.
        if mail.via_platform {
            lock(&self.sent).push((id, mail.message_id.clone().unwrap_or_default()));
            return Ok(accepted(mail));
        }
        {
            let mut in_flight = lock(&self.in_flight);
            let n = in_flight.entry(id).or_insert(0);
            *n += 1;
            let mut most = lock(&self.most_at_once);
            let m = most.entry(id).or_insert(0);
            *m = (*m).max(*n);
            let mut all = lock(&self.all_in_flight);
            all.0 += 1;
            all.1 = all.1.max(all.0);
        }
        let _flight = Flight {
            mailer: self,
            tenant: id,
        };
        *lock(&self.started).entry(id).or_insert(0) += 1;
        lock(&self.last_start).insert(id, std::time::Instant::now());
        match self.servers.get(&id).cloned().unwrap_or(Server::Accepts) {
            Server::Accepts => {
                tokio::time::sleep(Duration::from_millis(3)).await;
                lock(&self.sent).push((id, mail.message_id.clone().unwrap_or_default()));
                Ok(accepted(mail))
            }
            Server::Hangs => std::future::pending().await,
            Server::BackAfterOne if self.started(id) == 1 => {
                Err(SendFailure::new(SendStage::Greeting, FailureKind::TimedOut))
            }
            Server::BackAfterOne => {
                lock(&self.sent).push((id, mail.message_id.clone().unwrap_or_default()));
                Ok(accepted(mail))
            }
            Server::BlackHole(deadline) => {
                tokio::time::sleep(deadline).await;
                Err(SendFailure::new(SendStage::Greeting, FailureKind::TimedOut))
            }
            Server::Fails(failure) => Err(failure),
            Server::Panics => panic!("test hook: sending panics"),
        }
    }

    async fn pacing(&self, tenant: &TenantRecord) -> Option<Pacing> {
        let interval = *self.intervals.get(&tenant.tenant.id)?;
        let next_turn_in = lock(&self.last_start)
            .get(&tenant.tenant.id)
            .map_or(Duration::ZERO, |last| {
                (*last + interval).saturating_duration_since(std::time::Instant::now())
            });
        Some(Pacing { interval, next_turn_in })
    }

    async fn send_test(
        &self,
        _: SenderOverridePermit,
        _: TenantId,
        _: &MailSettings,
        _: &OutgoingMail,
        _: Duration,
    ) -> Result<SendReceipt, SendFailure> {
        Err(SendFailure::new(SendStage::Connect, FailureKind::Network))
    }

    async fn forget(&self, _: TenantId) {}
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn delivery(tenant: TenantId) -> Delivery {
    let now = Utc::now() - chrono::Duration::seconds(1);
    Delivery {
        id: DeliveryId::generate(),
        tenant_id: tenant,
        kind: NotificationKind::Custom,
        to: EmailAddress::parse("member@example.net").unwrap(),
        locale: Locale::En,
        message: RenderedMessage {
            subject: Subject::parse("Hello").unwrap(),
            text: "Hello\r\n".into(),
            html: None,
        },
        message_id: MessageId::generate("platform.example"),
        idempotency_key: None,
        status: DeliveryStatus::Queued,
        retries: 0,
        next_attempt_at: now,
        created_at: now,
        sent_at: None,
        failure_reason: None,
        claims: 0,
        via_platform: false,
        content_removed_at: None,
        recipient_hash: None,
        payload_hash: None,
        trace_parent: None,
        attempts: Vec::new(),
    }
}

/// A queue holding `each` deliveries of every tenant in `first`, due before `n` of `then`.
fn queue_with(first: &[TenantId], each: usize, then: TenantId, n: usize) -> Arc<MemoryQueue> {
    let queue = Arc::new(MemoryQueue::default());
    for t in first {
        for _ in 0..each {
            queue.add(delivery(*t));
        }
    }
    for _ in 0..n {
        let mut d = delivery(then);
        d.next_attempt_at = Utc::now();
        queue.add(d);
    }
    queue
}

fn reply(code: u16, enhanced: &str, text: &str) -> SendFailure {
    SendFailure {
        smtp_code: Some(code),
        enhanced_code: Some(enhanced.into()),
        server_message: Some(text.into()),
        ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
    }
}

fn config(per_tenant: usize, max_in_flight: usize, batch: u32) -> WorkerConfig {
    WorkerConfig {
        worker_id: LeaseOwner::unique("test"),
        batch_size: batch,
        max_in_flight,
        per_tenant_in_flight: per_tenant,
        max_probing: max_in_flight,
        lease: Duration::from_secs(60),
        poll_interval: Duration::from_millis(10),
        shutdown_grace: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

/// A worker running on the fakes until it is told to stop.
struct Running {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<WorkerReport>,
}

fn start(
    config: WorkerConfig,
    queue: Arc<MemoryQueue>,
    tenants: MemoryTenants,
    mailer: Arc<ScriptedMailer>,
) -> Running {
    let worker = Worker::new(config, queue, Arc::new(tenants), mailer, Arc::new(Metrics::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, done }
}

impl Running {
    async fn stop(self) -> WorkerReport {
        let _ = self.stop.send(());
        self.done.await.unwrap()
    }
}

/// Waits until `done` holds; fails with `what` if it does not within a generous
/// deadline (a liveness check, not a speed check).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scheduling
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_has_more_than_its_slots_in_flight() {
    let t = TenantId::generate();
    let queue = Arc::new(MemoryQueue::default());
    for _ in 0..40 {
        queue.add(delivery(t));
    }
    let mailer = Arc::new(ScriptedMailer::default());
    let worker = start(
        config(3, 16, 8),
        queue.clone(),
        MemoryTenants::with(&[t]),
        mailer.clone(),
    );
    until("all 40 sent", || queue.count(t, DeliveryStatus::Sent) == 40).await;
    let report = worker.stop().await;

    assert_eq!(
        mailer.most_at_once(t),
        3,
        "the tenant's three slots were used, never more"
    );
    let sent = lock(&mailer.sent).clone();
    assert_eq!(sent.len(), 40, "each sent once");
    let distinct: std::collections::HashSet<_> = sent.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(distinct.len(), 40);
    assert_eq!(
        report,
        WorkerReport {
            finished: 40,
            released: 0
        }
    );
    for row in queue.rows() {
        assert_eq!(row.lease, None);
        assert_eq!(row.delivery.attempts.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_never_answer_hold_only_their_own_slots_and_lose_nothing() {
    // Three tenants whose own servers never answer, and one on the platform relay that
    // hangs too, each with more mail due first than the worker has room (12 × 4 against
    // 4 in flight + a batch of 8): the other tenant's mail still all goes out.
    let own: Vec<TenantId> = (0..3).map(|_| TenantId::generate()).collect();
    let (relay_hangs, busy) = (TenantId::generate(), TenantId::generate());
    let queue = queue_with(&[own.as_slice(), &[relay_hangs]].concat(), 12, busy, 30);
    let mut servers: HashMap<TenantId, Server> = own.iter().map(|t| (*t, Server::Hangs)).collect();
    servers.insert(relay_hangs, Server::Hangs);
    let mailer = Arc::new(ScriptedMailer {
        servers,
        ..ScriptedMailer::default()
    });
    let own_servers: Vec<(TenantId, i64)> = own.iter().map(|t| (*t, 0)).collect();
    let tenants = MemoryTenants::with(&[relay_hangs, busy]).and(MemoryTenants::with_own_servers(&own_servers));
    let worker = start(config(2, 4, 8), queue.clone(), tenants, mailer.clone());
    until("the other tenant's 30 sent", || {
        queue.count(busy, DeliveryStatus::Sent) == 30
    })
    .await;
    for t in &own {
        assert_eq!(
            mailer.most_at_once(*t),
            1,
            "a server that never took mail from us gets one connection"
        );
        assert_eq!(queue.count(*t, DeliveryStatus::Sent), 0);
    }
    assert!(
        mailer.most_at_once(relay_hangs) <= 2,
        "the platform relay's tenant holds its two slots at most"
    );

    // Shutdown: the hanging sends are cut off after the grace period; every delivery the
    // worker held is given back, unattempted, none left SENDING.
    let report = worker.stop().await;
    assert!(report.released >= 4, "{report:?}");
    for t in own.iter().chain([&relay_hangs]) {
        assert_eq!(queue.count(*t, DeliveryStatus::Sending), 0);
        assert_eq!(queue.count(*t, DeliveryStatus::Queued), 12);
    }
    for row in queue.rows().iter().filter(|r| r.delivery.tenant_id != busy) {
        assert!(row.delivery.attempts.is_empty() && row.lease.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_servers_are_probed_once_and_their_mail_waits_in_the_queue() {
    // Twelve tenants whose servers accept connections and say nothing until our deadline
    // ends each attempt, 12 mails each, all due before a healthy tenant's 30; the side
    // budget has four lanes (and a line of four: the rest come back a little later).
    let holes: Vec<TenantId> = (0..12).map(|_| TenantId::generate()).collect();
    let healthy = TenantId::generate();
    let queue = queue_with(&holes, 12, healthy, 30);
    let deadline = Duration::from_millis(100);
    let mailer = Arc::new(ScriptedMailer {
        servers: holes.iter().map(|t| (*t, Server::BlackHole(deadline))).collect(),
        ..ScriptedMailer::default()
    });
    let own: Vec<(TenantId, i64)> = holes.iter().map(|t| (*t, 0)).collect();
    let tenants = MemoryTenants::with(&[healthy]).and(MemoryTenants::with_own_servers(&own));
    let worker = start(
        WorkerConfig {
            max_probing: 4,
            ..config(4, 8, 8)
        },
        queue.clone(),
        tenants,
        mailer.clone(),
    );
    until("the healthy tenant's 30 sent", || {
        queue.count(healthy, DeliveryStatus::Sent) == 30
    })
    .await;
    until("every black hole probed once", || {
        holes.iter().all(|t| queue.count(*t, DeliveryStatus::Retrying) == 1)
    })
    .await;
    worker.stop().await;

    assert!(
        mailer.most_at_once_in_all() <= 4 + 4,
        "black holes used the four side lanes, the healthy tenant its own four: {}",
        mailer.most_at_once_in_all()
    );
    for t in &holes {
        assert_eq!(mailer.started(*t), 1, "one probe per server, not one attempt per mail");
        let rows: Vec<Delivery> = queue
            .rows()
            .into_iter()
            .filter(|r| r.delivery.tenant_id == *t)
            .map(|r| r.delivery)
            .collect();
        let probe = rows.iter().find(|d| d.status == DeliveryStatus::Retrying).unwrap();
        assert_eq!(probe.attempts.len(), 1);
        assert_eq!(probe.attempts[0].stage.as_deref(), Some("GREETING"));
        for d in rows.iter().filter(|d| d.id != probe.id) {
            assert_eq!(d.status, DeliveryStatus::Queued, "waits, unattempted");
            assert!(d.attempts.is_empty());
            assert!(
                d.next_attempt_at >= probe.next_attempt_at,
                "not before the probe's own retry"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_the_platform_in_a_tenants_place_does_not_wait_for_its_backing_off_server() {
    // A black-holed tenant with six mails for its own server and, due after them, one
    // that goes through the platform default in its place (a time-critical fallback).
    let hole = TenantId::generate();
    let queue = Arc::new(MemoryQueue::default());
    for _ in 0..6 {
        queue.add(delivery(hole));
    }
    let mut urgent = delivery(hole);
    urgent.via_platform = true;
    urgent.next_attempt_at = Utc::now();
    let urgent_id = urgent.id;
    queue.add(urgent);
    let mailer = Arc::new(ScriptedMailer {
        servers: [(hole, Server::BlackHole(Duration::from_millis(100)))]
            .into_iter()
            .collect(),
        ..ScriptedMailer::default()
    });
    let tenants = MemoryTenants::with_own_servers(&[(hole, 0)]);
    let worker = start(config(4, 8, 8), queue.clone(), tenants, mailer.clone());
    let status = |id| {
        queue
            .rows()
            .into_iter()
            .find(|r| r.delivery.id == id)
            .map(|r| r.delivery.status)
    };
    until("the mail for the platform is sent", || {
        status(urgent_id) == Some(DeliveryStatus::Sent)
    })
    .await;
    until("the tenant's server was probed", || {
        queue.count(hole, DeliveryStatus::Retrying) == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(mailer.started(hole), 1, "one probe of the black hole, nothing more");
    assert_eq!(queue.count(hole, DeliveryStatus::Sent), 1, "only the platform's one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_back_gets_its_held_back_mail_at_once() {
    // The first attempt meets a silent server; the tenant backs off (a short backoff
    // here), one mail probes it when the backoff ends, and once that goes through the
    // rest — held back three minutes behind the probe — goes at once.
    let t = TenantId::generate();
    let queue = Arc::new(MemoryQueue::default());
    for _ in 0..12 {
        queue.add(delivery(t));
    }
    let mailer = Arc::new(ScriptedMailer {
        servers: HashMap::from([(t, Server::BackAfterOne)]),
        ..ScriptedMailer::default()
    });
    let mut cfg = config(4, 8, 8);
    cfg.retry.base = Duration::from_millis(200);
    let worker = start(
        cfg,
        queue.clone(),
        MemoryTenants::with_own_servers(&[(t, 0)]),
        mailer.clone(),
    );
    until("all 12 sent", || queue.count(t, DeliveryStatus::Sent) == 12).await;
    worker.stop().await;
    assert_eq!(mailer.started(t), 13, "one failed probe, then each mail once");
    let failed_once: Vec<Delivery> = queue
        .rows()
        .into_iter()
        .map(|r| r.delivery)
        .filter(|d| d.attempts.len() == 2)
        .collect();
    assert_eq!(failed_once.len(), 1, "only the first probe failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_tenant_waits_for_its_turn_in_the_queue_not_in_a_lane() {
    // Three tenants paced at one mail an hour, five mails each, due before a healthy
    // tenant's 30, on a worker with two lanes in all.
    let paced: Vec<TenantId> = (0..3).map(|_| TenantId::generate()).collect();
    let healthy = TenantId::generate();
    let queue = queue_with(&paced, 5, healthy, 30);
    let hour = Duration::from_secs(3600);
    let mailer = Arc::new(ScriptedMailer {
        intervals: paced.iter().map(|t| (*t, hour)).collect(),
        ..ScriptedMailer::default()
    });
    let own: Vec<(TenantId, i64)> = paced.iter().map(|t| (*t, 3_600_000)).collect();
    let tenants = MemoryTenants::with(&[healthy]).and(MemoryTenants::with_own_servers(&own));
    let worker = start(config(2, 2, 8), queue.clone(), tenants, mailer.clone());
    until("the healthy tenant's 30 and each paced tenant's first sent", || {
        queue.count(healthy, DeliveryStatus::Sent) == 30
            && paced.iter().all(|t| queue.count(*t, DeliveryStatus::Sent) == 1)
    })
    .await;
    until("every paced tenant's other four waiting in the queue", || {
        paced.iter().all(|t| queue.count(*t, DeliveryStatus::Queued) == 4)
    })
    .await;
    worker.stop().await;

    for t in &paced {
        assert_eq!(mailer.started(*t), 1, "nothing else started before its turn");
        let mut waiting: Vec<Delivery> = queue
            .rows()
            .into_iter()
            .filter(|r| r.delivery.tenant_id == *t && r.delivery.status == DeliveryStatus::Queued)
            .map(|r| r.delivery)
            .collect();
        waiting.sort_by_key(|d| d.next_attempt_at);
        let first = waiting[0].next_attempt_at;
        assert!(
            first > Utc::now() + chrono::Duration::minutes(50),
            "the next one is due at the next turn, about an hour on: {first}"
        );
        for (n, d) in waiting.iter().enumerate() {
            assert!(d.attempts.is_empty());
            assert_eq!(
                d.next_attempt_at,
                first + chrono::Duration::hours(n as i64),
                "one per turn, in order"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_is_recorded_as_the_domain_decides() {
    let (slow_down, refuses, flaky, gone) = (
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
    );
    let queue = Arc::new(MemoryQueue::default());
    for t in [slow_down, refuses, flaky, gone] {
        queue.add(delivery(t));
    }
    let mailer = Arc::new(ScriptedMailer {
        servers: HashMap::from([
            (slow_down, Server::Fails(reply(421, "4.7.0", "slow down"))),
            (refuses, Server::Fails(reply(550, "5.1.1", "no such user"))),
            (flaky, Server::Fails(reply(451, "4.3.0", "try later"))),
        ]),
        ..ScriptedMailer::default()
    });
    // `gone` is not in the tenant store.
    let tenants = MemoryTenants::with(&[slow_down, refuses, flaky]);
    let worker = start(config(1, 8, 8), queue.clone(), tenants, mailer);
    until("all four attempted", || {
        queue.rows().iter().all(|r| r.delivery.attempts.len() == 1)
    })
    .await;
    worker.stop().await;

    let by_tenant: HashMap<TenantId, Delivery> = queue
        .rows()
        .into_iter()
        .map(|r| (r.delivery.tenant_id, r.delivery))
        .collect();
    let outcome = |t: TenantId| -> (DeliveryStatus, u32, Option<FailureReason>, Attempt) {
        let d = &by_tenant[&t];
        (d.status, d.retries, d.failure_reason.clone(), d.attempts[0].clone())
    };
    let (status, retries, reason, attempt) = outcome(slow_down);
    assert_eq!(
        (status, retries, reason),
        (DeliveryStatus::Retrying, 0, None),
        "deferred, no retry used"
    );
    assert_eq!(attempt.outcome.code(), "DEFERRED");
    let (status, retries, reason, _) = outcome(flaky);
    assert_eq!((status, retries, reason), (DeliveryStatus::Retrying, 1, None));
    let (status, _, reason, attempt) = outcome(refuses);
    assert_eq!(status, DeliveryStatus::Failed);
    assert_eq!(reason, Some(FailureReason::Refused("DATA 550 no such user".into())));
    assert_eq!((attempt.smtp_code, attempt.stage.as_deref()), (Some(550), Some("DATA")));
    let (status, _, reason, attempt) = outcome(gone);
    assert_eq!(
        (status, reason),
        (DeliveryStatus::Failed, Some(FailureReason::TenantMissing))
    );
    assert_eq!(attempt.stage.as_deref(), Some("RESOLVE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_sending_is_contained_and_retried_later() {
    let (poison, healthy) = (TenantId::generate(), TenantId::generate());
    let queue = Arc::new(MemoryQueue::default());
    for _ in 0..3 {
        queue.add(delivery(poison));
    }
    for _ in 0..5 {
        queue.add(delivery(healthy));
    }
    let mailer = Arc::new(ScriptedMailer {
        servers: HashMap::from([(poison, Server::Panics)]),
        ..ScriptedMailer::default()
    });
    // One slot per tenant: the poison tenant's lane must survive each panic to reach the
    // next delivery.
    let worker = start(
        config(1, 4, 8),
        queue.clone(),
        MemoryTenants::with(&[poison, healthy]),
        mailer,
    );
    until("every delivery attempted", || {
        queue.count(healthy, DeliveryStatus::Sent) == 5 && queue.count(poison, DeliveryStatus::Retrying) == 3
    })
    .await;
    let report = worker.stop().await;
    assert_eq!(report.released, 0, "nothing was left held");
    for row in queue.rows().iter().filter(|r| r.delivery.tenant_id == poison) {
        assert_eq!(row.delivery.retries, 1);
        assert_eq!(row.delivery.attempts.len(), 1);
        assert_eq!(row.delivery.attempts[0].stage.as_deref(), Some("INTERNAL"));
        assert!(
            row.delivery.next_attempt_at > Utc::now(),
            "tried again later, not at once"
        );
        assert_eq!(row.lease, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_waiting_together_are_written_in_one_transaction() {
    let t = TenantId::generate();
    let queue = Arc::new(MemoryQueue::default());
    let owner = LeaseOwner::unique("recorder");
    let mut held = Vec::new();
    for _ in 0..300 {
        queue.add(delivery(t));
    }
    let claimed = queue.claim(&owner, Utc::now(), Utc::now(), 300, &[]).await.unwrap();
    let worker = Worker::new(
        WorkerConfig {
            worker_id: owner,
            ..config(4, 16, 8)
        },
        queue.clone(),
        Arc::new(MemoryTenants::with(&[t])),
        Arc::new(ScriptedMailer::default()),
        Arc::new(Metrics::default()),
    );
    let shared = worker.shared.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let receipt = SendReceipt {
        message_id: String::new(),
        sender: platform_sender(),
        smtp_code: Some(250),
        server_message: None,
        elapsed: Duration::ZERO,
    };
    for d in &claimed {
        lock(&shared.held).insert(d.id, d.retries);
        held.push(d.id);
        tx.send((d.id, DeliveryUpdate::sent(&receipt, 0, Utc::now()))).unwrap();
    }
    drop(tx);
    crate::recorder::record_outcomes(shared.clone(), rx).await;

    assert_eq!(
        *lock(&queue.writes),
        vec![crate::recorder::RECORD_BATCH, 300 - crate::recorder::RECORD_BATCH],
        "300 waiting outcomes: two writes, the first as large as a write may be"
    );
    assert_eq!(queue.count(t, DeliveryStatus::Sent), 300);
    assert!(lock(&shared.held).is_empty(), "nothing is held once recorded");
    assert_eq!(shared.metrics.recorded_count(DeliveryStatus::Sent), 300);
}
