//! The worker's scheduling and recording against in-memory fakes of the queue, the
//! tenant store and the mail transport: no database, no socket, so a scheduling rule is
//! checked in milliseconds. (The same worker runs against real databases and real SMTP
//! servers in the API tests.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::delivery::{
    Attempt, Delivery, DeliveryStatus, DeliveryUpdate, FailureReason, NotificationKind, RenderedMessage,
};
use domain::fakes::{MemoryDeliveries, MemoryTenants, RecordingViews, ScriptedMailer, Server};
use domain::finish::Finish;
use domain::mail::{FailureKind, SendFailure, SendReceipt, SendStage, SenderUsed, Subject};
use domain::ports::DeliveryQueue;
use domain::values::EmailAddress;
use domain::webhook::EventType;
use domain::{LeaseOwner, Locale, MailSettings, MessageId, Plan, SenderSource, Tenant, TenantId, TenantName};
use tokio::sync::{mpsc, oneshot};

use crate::{Metrics, Worker, WorkerConfig, WorkerReport, lock};

// ---------------------------------------------------------------------------------------
// Fixtures on the domain's fakes
// ---------------------------------------------------------------------------------------

/// Tenants on the Basic plan (`basic`) and on the Share plan with their own server saved
/// and live (`own`: send interval in ms).
fn tenants(basic: &[TenantId], own: &[(TenantId, i64)]) -> MemoryTenants {
    let store = MemoryTenants::default();
    let now = Utc::now();
    let tenant = |id: TenantId, plan: Plan| Tenant {
        id,
        name: TenantName::parse("site").unwrap(),
        plan,
        contact_email: None,
        created_at: now,
        updated_at: now,
    };
    for id in basic {
        store.put(tenant(*id, Plan::Basic), None);
    }
    for (id, interval_ms) in own {
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
        store.put(tenant(*id, Plan::Share), Some(settings));
    }
    store
}

/// A mail transport whose tenants' servers answer as `servers` says (the rest accept).
fn mailer(servers: impl IntoIterator<Item = (TenantId, Server)>) -> Arc<ScriptedMailer> {
    let mailer = Arc::new(ScriptedMailer::default());
    for (tenant, server) in servers {
        mailer.script(tenant, server);
    }
    mailer
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn delivery(tenant: TenantId) -> Delivery {
    Delivery::queued(
        tenant,
        NotificationKind::Custom,
        EmailAddress::parse("member@example.net").unwrap(),
        Locale::En,
        RenderedMessage {
            subject: Subject::parse("Hello").unwrap(),
            text: "Hello\r\n".into(),
            html: None,
        },
        MessageId::generate("platform.example"),
        Utc::now() - chrono::Duration::seconds(1),
    )
}

/// The tenant's own server refusing its settings at AUTH (`535 5.7.8`): through the
/// tenant's own settings, so the mail waits for them; it does not fail.
fn auth_refused() -> SendFailure {
    SendFailure {
        smtp_code: Some(535),
        enhanced_code: Some("5.7.8".into()),
        server_message: Some("authentication failed".into()),
        sender: Some(SenderUsed {
            address: EmailAddress::parse("info@example.com").unwrap(),
            name: None,
            source: SenderSource::Custom,
        }),
        ..SendFailure::new(SendStage::Auth, FailureKind::Rejected)
    }
}

/// A queue holding `each` deliveries of every tenant in `first`, due before `n` of `then`.
fn queue_with(first: &[TenantId], each: usize, then: TenantId, n: usize) -> Arc<MemoryDeliveries> {
    let queue = Arc::new(MemoryDeliveries::default());
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
    queue: Arc<MemoryDeliveries>,
    tenants: MemoryTenants,
    mailer: Arc<ScriptedMailer>,
) -> Running {
    start_counted(config, queue, Arc::new(tenants), mailer, Arc::new(Metrics::default()))
}

/// [`start`], with the tenants and the metrics kept by the caller.
fn start_counted(
    config: WorkerConfig,
    queue: Arc<MemoryDeliveries>,
    tenants: Arc<MemoryTenants>,
    mailer: Arc<ScriptedMailer>,
    metrics: Arc<Metrics>,
) -> Running {
    let worker = Worker::new(
        config,
        queue,
        tenants,
        mailer,
        Arc::new(RecordingViews::default()),
        metrics,
    );
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

/// Waits until nothing new was sent for a quarter of a second; how many were sent.
async fn sends_stopped(mailer: &ScriptedMailer) -> usize {
    let mut last = mailer.sent().len();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = mailer.sent().len();
        if now == last {
            return last;
        }
        last = now;
    }
}

// ---------------------------------------------------------------------------------------
// Scheduling
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_has_more_than_its_slots_in_flight() {
    let t = TenantId::generate();
    let queue = Arc::new(MemoryDeliveries::default());
    for _ in 0..40 {
        queue.add(delivery(t));
    }
    let mailer = Arc::new(ScriptedMailer::default());
    let worker = start(config(3, 16, 8), queue.clone(), tenants(&[t], &[]), mailer.clone());
    until("all 40 sent", || queue.count(t, DeliveryStatus::Sent) == 40).await;
    let report = worker.stop().await;

    assert_eq!(
        mailer.most_at_once(t),
        3,
        "the tenant's three slots were used, never more"
    );
    let sent = mailer.sent();
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

/// On shutdown the mailer's pooled sessions are closed (with QUIT) once, after the last
/// send has ended — none is out on a send then — and within what is left of the grace
/// period; when the grace runs out on a send that never ends, they are closed all the
/// same (that send's session is not idle: it goes with the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_closes_the_pooled_sessions_once_the_sends_are_over() {
    for (server, grace, finished) in [
        (
            Server::AcceptsAfter(Duration::from_millis(200)),
            Duration::from_secs(5),
            1,
        ),
        (Server::Hangs, Duration::from_millis(50), 0),
    ] {
        let t = TenantId::generate();
        let queue = Arc::new(MemoryDeliveries::default());
        queue.add(delivery(t));
        let mailer = mailer([(t, server)]);
        let worker = start(
            WorkerConfig {
                shutdown_grace: grace,
                ..config(1, 4, 8)
            },
            queue.clone(),
            tenants(&[t], &[]),
            mailer.clone(),
        );
        until("the send started", || mailer.started(t) == 1).await;
        assert!(mailer.closes().is_empty(), "nothing is closed while the worker runs");
        let report = worker.stop().await;
        assert_eq!(report.finished, finished, "{report:?}");
        let closes = mailer.closes();
        assert_eq!(closes.len(), 1, "closed once: {closes:?}");
        if finished == 1 {
            assert_eq!(closes[0].0, 0, "no send was in flight when the sessions were closed");
        }
        assert!(closes[0].1 <= grace, "within the grace period: {closes:?}");
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
    let mailer = mailer(servers);
    let own_servers: Vec<(TenantId, i64)> = own.iter().map(|t| (*t, 0)).collect();
    let tenants = tenants(&[relay_hangs, busy], &own_servers);
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

/// The common case of a platform, after a start: many tenants with a few mails each.
/// Those whose servers are proven on record (a worker before this one saw them take
/// mail) go at once from the main budget; new ones wait in the side budget's line, none
/// is sent back for later, and their first mail puts them on record for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_tenants_go_at_once_and_what_they_proved_is_put_on_record() {
    use domain::ports::TenantStore as _;
    let known: Vec<TenantId> = (0..200).map(|_| TenantId::generate()).collect();
    let new: Vec<TenantId> = (0..40).map(|_| TenantId::generate()).collect();
    let queue = Arc::new(MemoryDeliveries::default());
    for t in &known {
        for _ in 0..2 {
            queue.add(delivery(*t));
        }
    }
    // The new tenants' mail is due a moment later (after a restart most tenants are
    // known; new ones come along).
    for t in &new {
        for _ in 0..2 {
            let mut d = delivery(*t);
            d.next_attempt_at = Utc::now() + chrono::Duration::milliseconds(700);
            queue.add(d);
        }
    }
    let own: Vec<(TenantId, i64)> = known.iter().chain(&new).map(|t| (*t, 0)).collect();
    let store = Arc::new(tenants(&[], &own));
    let earlier = Utc::now() - chrono::Duration::days(1);
    let notes: Vec<_> = known
        .iter()
        .map(|t| domain::health::ServerNote {
            tenant: *t,
            version: 1,
            learnt: domain::health::ServerLearnt::Reached,
            at: earlier,
        })
        .collect();
    store.record_servers(&notes).await.unwrap();
    // Servers that take a while, so sends overlap and the side budget stays busy.
    let mailer = mailer(
        known
            .iter()
            .chain(&new)
            .map(|t| (*t, Server::AcceptsAfter(Duration::from_millis(20)))),
    );
    let metrics = Arc::new(Metrics::default());
    let worker = start_counted(
        WorkerConfig {
            max_probing: 16,
            ..config(4, 16, 8)
        },
        queue.clone(),
        store.clone(),
        mailer.clone(),
        metrics.clone(),
    );
    until("every mail sent", || {
        known
            .iter()
            .chain(&new)
            .all(|t| queue.count(*t, DeliveryStatus::Sent) == 2)
    })
    .await;
    worker.stop().await;
    assert_eq!(metrics.postponed_count(), 0, "no tenant was sent back to wait");
    assert!(
        mailer.most_at_once_in_all() <= 16 + 16 + 16,
        "the main, side and on-record budgets, no more: {}",
        mailer.most_at_once_in_all()
    );
    let server = |t: TenantId| {
        let store = store.clone();
        async move { store.tenant(t).await.unwrap().unwrap().settings.unwrap().health.server }
    };
    // The new tenants' first mails put their servers on record (written in the
    // background, and what is left when the worker stops); the known ones were not
    // written again.
    for t in &new {
        assert!(server(*t).await.proven(), "the new tenant's server was put on record");
    }
    for t in &known {
        assert_eq!(server(*t).await.reached_at, Some(earlier), "nothing new to write");
    }
}

/// After a start, claims bring new tenants faster than the side budget's first sends
/// end: those beyond the line go back to the queue, and come back as the line moves, not
/// after the whole side wait (the CPU sat idle meanwhile). Two side lanes and a line of
/// eight for 60 new tenants whose servers answer in a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tenants_beyond_the_line_come_back_as_it_moves() {
    let new: Vec<TenantId> = (0..60).map(|_| TenantId::generate()).collect();
    let queue = Arc::new(MemoryDeliveries::default());
    for t in &new {
        for _ in 0..2 {
            queue.add(delivery(*t));
        }
    }
    let own: Vec<(TenantId, i64)> = new.iter().map(|t| (*t, 0)).collect();
    let store = Arc::new(tenants(&[], &own));
    let mailer = mailer(new.iter().map(|t| (*t, Server::AcceptsAfter(Duration::from_millis(3)))));
    let metrics = Arc::new(Metrics::default());
    let worker = start_counted(
        WorkerConfig {
            max_probing: 2,
            ..config(4, 16, 64)
        },
        queue.clone(),
        store.clone(),
        mailer.clone(),
        metrics.clone(),
    );
    // The longest any queued row was set to wait, seen while the mail goes out.
    let mut longest = chrono::Duration::zero();
    until("every mail sent", || {
        let now = Utc::now();
        for row in queue.rows() {
            if row.delivery.status == DeliveryStatus::Queued {
                longest = longest.max(row.delivery.next_attempt_at - now);
            }
        }
        new.iter().all(|t| queue.count(*t, DeliveryStatus::Sent) == 2)
    })
    .await;
    worker.stop().await;
    assert!(
        metrics.postponed_count() > 0,
        "the line was full, so some came back later"
    );
    let side_wait = chrono::Duration::from_std(crate::postpone::SIDE_WAIT).unwrap();
    assert!(
        longest < side_wait / 2,
        "sent back for about as long as the line took to move, not the whole side wait: {longest}"
    );
}

/// The budgets and the line, admission by admission: unknown servers one lane each from
/// the side budget, then a bounded line, then back to the queue for later; servers proven
/// on record one lane each from a budget of their own (never the main one), in the same
/// line when it is full; a proven tenant its cap from the main budget.
#[test]
fn unknown_and_on_record_servers_never_take_the_main_budget_and_the_line_is_bounded() {
    use crate::lanes::{Admission, Lanes, RECORD_LINE_PER_LANE, SIDE_LINE_PER_LANE};
    use crate::standing::{Budget, Route};
    let lanes = Lanes::new(2, 8, 4, 1);
    let now = Utc::now();
    let budget_of = |a: Admission| match a {
        Admission::Start(_, budget) => Some(budget),
        Admission::Waiting => None,
        other => panic!("unexpected {other:?}"),
    };
    // On record: one lane from the on-record budget; the next such tenant waits in line
    // (where it may stand further back than an unknown one, see the end).
    let known: Vec<TenantId> = (0..2).map(|_| TenantId::generate()).collect();
    for t in &known {
        lanes.observe(*t, Route::Own(1), false, true);
    }
    assert_eq!(budget_of(lanes.admit(delivery(known[0]), now)), Some(Budget::OnRecord));
    assert_eq!(
        budget_of(lanes.admit(delivery(known[0]), now)),
        None,
        "one lane until proven"
    );
    assert_eq!(
        budget_of(lanes.admit(delivery(known[1]), now)),
        None,
        "its budget is full"
    );
    // Unknown: one side lane, then the line (which the on-record tenant shares).
    let unknown: Vec<TenantId> = (0..SIDE_LINE_PER_LANE + 1).map(|_| TenantId::generate()).collect();
    assert_eq!(budget_of(lanes.admit(delivery(unknown[0]), now)), Some(Budget::Side));
    for t in &unknown[1..SIDE_LINE_PER_LANE] {
        assert_eq!(budget_of(lanes.admit(delivery(*t), now)), None, "waits in line");
    }
    // The line (one lane × SIDE_LINE_PER_LANE tenants) is full now: back to the queue.
    assert!(matches!(
        lanes.admit(delivery(unknown[SIDE_LINE_PER_LANE]), now),
        Admission::OffToTheSide(_)
    ));
    // A proven tenant takes its cap from the main budget, whatever waits aside.
    let proven = TenantId::generate();
    lanes.observe(proven, Route::Platform, false, false);
    assert_eq!(budget_of(lanes.admit(delivery(proven), now)), Some(Budget::Main));
    assert_eq!(budget_of(lanes.admit(delivery(proven), now)), Some(Budget::Main));
    let held = lanes.holdings();
    assert_eq!(held.aside, 2 + 1 + SIDE_LINE_PER_LANE, "what waits aside takes no room");
    // A tenant on record still finds room in the line, up to its own bound.
    let more: Vec<TenantId> = (0..RECORD_LINE_PER_LANE - SIDE_LINE_PER_LANE + 1)
        .map(|_| TenantId::generate())
        .collect();
    for t in &more {
        lanes.observe(*t, Route::Own(1), false, true);
    }
    for t in &more[..more.len() - 1] {
        assert_eq!(budget_of(lanes.admit(delivery(*t), now)), None, "waits in line");
    }
    assert!(matches!(
        lanes.admit(delivery(more[more.len() - 1]), now),
        Admission::OffToTheSide(_)
    ));
}

/// Sent rows waiting for the recorder take no room from the claims (the lanes go on while
/// a write is under way), up to the in-flight cap's worth: a recorder that cannot write
/// stops the claims there, so what the worker holds stays bounded (its in-flight cap of
/// sends waiting to be written, and the cap plus a batch besides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_cannot_write_holds_the_claims_back() {
    let t = TenantId::generate();
    let queue = Arc::new(MemoryDeliveries::default());
    for _ in 0..400 {
        queue.add(delivery(t));
    }
    let mailer = mailer([]);
    let (max_in_flight, batch) = (16, 8);
    queue.hold_writes();
    let worker = start(
        config(4, max_in_flight, batch),
        queue.clone(),
        tenants(&[t], &[]),
        mailer.clone(),
    );
    until("sends went out", || mailer.sent().len() >= 8).await;
    // The sends stop once the claims do.
    let last = sends_stopped(&mailer).await;
    let held = queue.count_all(DeliveryStatus::Sending);
    let bound = 2 * max_in_flight + usize::try_from(batch).unwrap();
    assert!(held <= bound, "{held} held with no write done (bound {bound})");
    assert!(
        last > max_in_flight,
        "the lanes went on past the cap's worth of sends waiting to be written: {last}"
    );
    assert_eq!(
        queue.most_finishing_at_once(),
        1,
        "one write at a time where writes take turns"
    );
    queue.open_writes();
    until("everything sent and recorded", || {
        queue.count(t, DeliveryStatus::Sent) == 400
    })
    .await;
    worker.stop().await;
    assert_eq!(mailer.sent().len(), 400, "each sent once");
}

/// Where the store's writes run side by side (PostgreSQL), the recorder keeps as many
/// under way as the store says are worth it — the next batch is written while the last
/// one commits — and never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_keeps_as_many_writes_under_way_as_the_store_takes() {
    let t = TenantId::generate();
    let queue = Arc::new(MemoryDeliveries::finishing_at_once(2));
    for _ in 0..400 {
        queue.add(delivery(t));
    }
    let mailer = mailer([]);
    queue.hold_writes();
    // Room for many sends waiting to be written, so outcomes keep coming after the first
    // write has taken what was there.
    let worker = start(config(4, 64, 8), queue.clone(), tenants(&[t], &[]), mailer.clone());
    until("two writes under way", || queue.finishing_now() == 2).await;
    // The sends go on until the claims stop; what they hand over meanwhile starts no
    // third write.
    sends_stopped(&mailer).await;
    assert_eq!(queue.finishing_now(), 2);
    assert_eq!(queue.most_finishing_at_once(), 2);
    queue.open_writes();
    until("everything sent and recorded", || {
        queue.count(t, DeliveryStatus::Sent) == 400
    })
    .await;
    worker.stop().await;
    assert_eq!(queue.most_finishing_at_once(), 2);
    assert_eq!(mailer.sent().len(), 400, "each sent once");
    for row in queue.rows() {
        assert_eq!(row.lease, None);
        assert_eq!(row.delivery.attempts.len(), 1);
    }
}

/// A lane taking its tenant's next waiting delivery says when the tenant has just stopped
/// holding enough (its lanes and a batch beside them), once, so the claim loop claims for
/// it then rather than at its next wake.
#[test]
fn the_lane_that_takes_a_tenant_below_enough_says_so_once() {
    use crate::lanes::{Admission, Lanes};
    use crate::standing::{Budget, Route};
    let (lanes_per_tenant, batch) = (2, 4);
    let lanes = Lanes::new(lanes_per_tenant, batch, 8, 1);
    let now = Utc::now();
    let tenant = TenantId::generate();
    lanes.observe(tenant, Route::Platform, false, false);
    for _ in 0..lanes_per_tenant {
        assert!(matches!(
            lanes.admit(delivery(tenant), now),
            Admission::Start(_, Budget::Main)
        ));
    }
    for _ in 0..batch + 1 {
        assert!(matches!(lanes.admit(delivery(tenant), now), Admission::Waiting));
    }
    assert!(lanes.saturated().contains(&tenant), "2 lanes and 5 waiting");
    let first = lanes.next_for(tenant, Budget::Main);
    assert!(first.delivery.is_some() && !first.wants_claim, "still 2 + 4: enough");
    let second = lanes.next_for(tenant, Budget::Main);
    assert!(second.delivery.is_some() && second.wants_claim, "2 + 3: below enough");
    assert!(!lanes.saturated().contains(&tenant));
    let rest: Vec<bool> = (0..3)
        .map(|_| lanes.next_for(tenant, Budget::Main).wants_claim)
        .collect();
    assert_eq!(rest, [false; 3], "said once, at the crossing");
    assert!(lanes.next_for(tenant, Budget::Main).delivery.is_none(), "nothing left");
}

/// A tenant waiting in the side budget's line for a lane holds what one claim gave it, not
/// its whole queue: with no lane yet it is left out of the next claims like a tenant whose
/// lanes are busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_waiting_in_the_line_is_not_claimed_for_again_and_again() {
    let (hangs, waiting) = (TenantId::generate(), TenantId::generate());
    let queue = Arc::new(MemoryDeliveries::default());
    queue.add(delivery(hangs));
    for _ in 0..200 {
        let mut d = delivery(waiting);
        d.next_attempt_at = Utc::now();
        queue.add(d);
    }
    let mailer = mailer([(hangs, Server::Hangs)]);
    let batch = 8;
    let worker = start(
        WorkerConfig {
            max_probing: 1,
            ..config(4, 8, batch)
        },
        queue.clone(),
        tenants(&[], &[(hangs, 0), (waiting, 0)]),
        mailer.clone(),
    );
    until("the one side lane is taken", || mailer.started(hangs) == 1).await;
    until("the waiting tenant got its first claim", || {
        queue.count(waiting, DeliveryStatus::Sending) > 0
    })
    .await;
    // Fifty polls of the loop (10 ms each): time for many claims, were it claimed for.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = queue.count(waiting, DeliveryStatus::Sending);
    worker.stop().await;
    assert_eq!(
        mailer.started(waiting),
        0,
        "its server was never tried: the lane stayed taken"
    );
    assert!(
        held <= usize::try_from(batch).unwrap(),
        "the tenant in the line holds one claim's share at most, not its queue: {held}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_servers_are_probed_once_and_their_mail_waits_in_the_queue() {
    // Twelve tenants whose servers accept connections and say nothing until our deadline
    // ends each attempt, 12 mails each, all due before a healthy tenant's 30; the side
    // budget has four lanes (and a line of 16).
    let holes: Vec<TenantId> = (0..12).map(|_| TenantId::generate()).collect();
    let healthy = TenantId::generate();
    let queue = queue_with(&holes, 12, healthy, 30);
    let deadline = Duration::from_millis(100);
    let mailer = mailer(holes.iter().map(|t| (*t, Server::BlackHole(deadline))));
    let own: Vec<(TenantId, i64)> = holes.iter().map(|t| (*t, 0)).collect();
    let tenants = tenants(&[healthy], &own);
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

/// The delivery whose try found its tenant's server black-holed probes the server when
/// the back-off ends, with the first of the others beside it (to stand in should it leave
/// for the platform), and the tenant's other mail waits behind them — whichever of the two writes
/// reaches the database first: the delivery's own outcome (the recorder's) or the move
/// of the tenant's waiting mail (in the background).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_keeps_its_place_whichever_write_lands_first() {
    for outcome_first in [true, false] {
        let hole = TenantId::generate();
        let queue = Arc::new(MemoryDeliveries::default());
        for _ in 0..40 {
            queue.add(delivery(hole));
        }
        let mailer = mailer([(hole, Server::BlackHole(Duration::from_millis(50)))]);
        if outcome_first {
            queue.hold_moves();
        } else {
            queue.hold_writes();
        }
        let worker = start(
            config(4, 8, 8),
            queue.clone(),
            tenants(&[], &[(hole, 0)]),
            mailer.clone(),
        );
        let due_now = |queue: &MemoryDeliveries| {
            let soon = Utc::now() + chrono::Duration::seconds(1);
            queue
                .rows()
                .iter()
                .filter(|r| r.delivery.status == DeliveryStatus::Queued && r.delivery.next_attempt_at < soon)
                .count()
        };
        if outcome_first {
            until("the probe's outcome and what the worker held written", || {
                queue.count(hole, DeliveryStatus::Retrying) == 1 && queue.count(hole, DeliveryStatus::Sending) == 0
            })
            .await;
            queue.open_moves();
            until("the waiting mail moved", || queue.moves_done() >= 1).await;
        } else {
            // Moved while the outcome is not written: rows that were due are waiting
            // later now, none is due.
            until("the waiting mail moved", || {
                let soon = Utc::now() + chrono::Duration::seconds(1);
                let moved = queue
                    .rows()
                    .iter()
                    .filter(|r| r.delivery.status == DeliveryStatus::Queued && r.delivery.next_attempt_at >= soon)
                    .count();
                queue.moves_done() >= 1 && due_now(&queue) == 0 && moved > 0
            })
            .await;
            queue.open_writes();
            until("the probe's outcome written", || {
                queue.count(hole, DeliveryStatus::Retrying) == 1 && queue.count(hole, DeliveryStatus::Sending) == 0
            })
            .await;
        }
        worker.stop().await;

        assert_eq!(mailer.started(hole), 1, "one probe");
        let rows: Vec<Delivery> = queue.rows().into_iter().map(|r| r.delivery).collect();
        let probe = rows.iter().find(|d| d.status == DeliveryStatus::Retrying).unwrap();
        assert_eq!(probe.attempts.len(), 1);
        assert!(probe.next_attempt_at > Utc::now(), "it waits for the back-off");
        let others: Vec<&Delivery> = rows.iter().filter(|d| d.id != probe.id).collect();
        assert_eq!(others.len(), 39);
        let beside = others
            .iter()
            .filter(|d| d.next_attempt_at == probe.next_attempt_at)
            .count();
        assert!(
            beside >= 1,
            "one stands in beside the probe, should it leave for the platform (outcome first: {outcome_first})"
        );
        for d in others {
            assert_eq!(d.status, DeliveryStatus::Queued, "waits, unattempted");
            assert!(d.attempts.is_empty());
            assert!(
                d.next_attempt_at >= probe.next_attempt_at,
                "never before the probe (outcome first: {outcome_first})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_the_platform_in_a_tenants_place_does_not_wait_for_its_backing_off_server() {
    // A black-holed tenant with six mails for its own server and, due before them, one
    // that goes through the platform default in its place (a time-critical fallback). Its
    // going through proves nothing of the tenant's server: the black hole is probed once
    // and nothing of it is put on record.
    use domain::ports::TenantStore as _;
    let hole = TenantId::generate();
    let queue = Arc::new(MemoryDeliveries::default());
    for _ in 0..6 {
        queue.add(delivery(hole));
    }
    let mut urgent = delivery(hole);
    urgent.via_platform = true;
    urgent.next_attempt_at = Utc::now() - chrono::Duration::seconds(2);
    let urgent_id = urgent.id;
    queue.add(urgent);
    let mailer = mailer([(hole, Server::BlackHole(Duration::from_millis(100)))]);
    let tenants = Arc::new(tenants(&[], &[(hole, 0)]));
    let worker = start_counted(
        config(4, 8, 8),
        queue.clone(),
        tenants.clone(),
        mailer.clone(),
        Arc::new(Metrics::default()),
    );
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
    let server = tenants
        .tenant(hole)
        .await
        .unwrap()
        .unwrap()
        .settings
        .unwrap()
        .health
        .server;
    assert_eq!(
        server.reached_at, None,
        "the platform's sending is not the tenant's server's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_critical_mail_behind_a_backing_off_server_goes_through_the_platform_at_its_fallback_time() {
    // A black-holed tenant's server backs off for about half a minute after its first
    // failure (the retry policy's 30 s base), and the rest of its mail is held three
    // minutes behind the probe. Its password resets do not wait that long: the two
    // claimed with the probe (held in this worker when it fails) and one due during the
    // back-off (a row in the queue) go through the platform default at their fallback
    // time, one second after they were handed in. Its newsletters keep waiting for its
    // server. A tenant whose server refuses its settings (AUTH) backs off too, but that
    // is no temporary failure: its password resets wait for the settings to be repaired
    // or suspended, as the platform default would not fix them.
    let (hole, refusing) = (TenantId::generate(), TenantId::generate());
    let queue = Arc::new(MemoryDeliveries::default());
    let mut newsletters = Vec::new();
    for t in [hole, refusing] {
        let mut d = delivery(t);
        d.next_attempt_at = Utc::now() - chrono::Duration::seconds(2);
        if t == hole {
            newsletters.push(d.id);
        }
        queue.add(d);
    }
    for _ in 0..2 {
        let mut d = delivery(hole);
        d.next_attempt_at = Utc::now() - chrono::Duration::seconds(2);
        newsletters.push(d.id);
        queue.add(d);
    }
    let handed_in = Utc::now();
    let reset = |tenant, due: chrono::DateTime<Utc>| Delivery {
        kind: NotificationKind::PasswordReset,
        created_at: handed_in,
        next_attempt_at: due,
        ..delivery(tenant)
    };
    let mut urgent = Vec::new();
    for due in [handed_in, handed_in, handed_in + chrono::Duration::milliseconds(300)] {
        let d = reset(hole, due);
        urgent.push(d.id);
        queue.add(d);
    }
    let waiting = reset(refusing, handed_in);
    let waiting_id = waiting.id;
    queue.add(waiting);
    let mailer = mailer([
        (hole, Server::BlackHole(Duration::from_millis(100))),
        (refusing, Server::Fails(auth_refused())),
    ]);
    let mut cfg = config(4, 8, 8);
    cfg.retry.fallback_after = Some(Duration::from_secs(1));
    cfg.suspend_after_failures = 100;
    let worker = start(
        cfg,
        queue.clone(),
        tenants(&[], &[(hole, 0), (refusing, 0)]),
        mailer.clone(),
    );
    let row = |id| queue.rows().into_iter().find(|r| r.delivery.id == id).unwrap().delivery;
    until("the password resets are sent", || {
        urgent.iter().all(|id| row(*id).status == DeliveryStatus::Sent)
    })
    .await;
    // The refusing tenant's reset is past its fallback time too by now.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(1)).await;
    worker.stop().await;
    let fallback = handed_in + chrono::Duration::seconds(1);
    for id in &urgent {
        let d = row(*id);
        assert!(d.via_platform, "through the platform default");
        let sent = d.sent_at.unwrap();
        assert!(sent >= fallback, "not before its fallback time");
        // The back-off lasts at least 24 s (30 s less its jitter).
        assert!(
            sent < fallback + chrono::Duration::seconds(10),
            "at its fallback time, not at the back-off's end: {}",
            sent - fallback
        );
    }
    assert_eq!(mailer.started(hole), 1, "one probe of the black hole, nothing more");
    let back_off_ends = handed_in + chrono::Duration::seconds(20);
    for id in &newsletters {
        let d = row(*id);
        assert!(
            !d.via_platform && d.status != DeliveryStatus::Sent,
            "waits for its server"
        );
        assert!(d.next_attempt_at > back_off_ends, "held behind the back-off");
    }
    let d = row(waiting_id);
    assert!(
        !d.via_platform && d.status != DeliveryStatus::Sent,
        "refused settings are not waited out on the platform"
    );
    assert!(d.next_attempt_at > back_off_ends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_busy_tenant_gets_larger_claims_only_where_claims_take_the_write_turn() {
    // One proven tenant with 600 mails, batches of 8: where each claim takes the store's
    // one write turn (SQLite) its claims grow past a batch once it is all there is to
    // claim, and never take more than the claim leaves a batch beside; elsewhere
    // (PostgreSQL) every claim gives it a batch at most.
    for in_the_turn in [true, false] {
        let t = TenantId::generate();
        let queue = Arc::new(if in_the_turn {
            MemoryDeliveries::claiming_in_the_write_turn()
        } else {
            MemoryDeliveries::default()
        });
        for _ in 0..600 {
            queue.add(delivery(t));
        }
        let mailer = mailer([(t, Server::Accepts)]);
        let worker = start(config(4, 16, 8), queue.clone(), tenants(&[t], &[]), mailer.clone());
        until("all 600 sent", || queue.count(t, DeliveryStatus::Sent) == 600).await;
        worker.stop().await;
        let sizes = queue.claim_sizes();
        let largest = sizes.iter().copied().max().unwrap();
        if in_the_turn {
            assert!(largest > 8, "grew: {sizes:?}");
            assert!(largest <= 16, "a batch of the room stays free for others: {sizes:?}");
        } else {
            assert_eq!(largest, 8, "{sizes:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_back_gets_its_held_back_mail_at_once() {
    // The first attempt meets a silent server; the tenant backs off (a short backoff
    // here), one mail probes it when the backoff ends, and once that goes through the
    // rest — held back three minutes behind the probe — goes at once.
    let t = TenantId::generate();
    let queue = Arc::new(MemoryDeliveries::default());
    for _ in 0..12 {
        queue.add(delivery(t));
    }
    let mailer = mailer(HashMap::from([(t, Server::BackAfterOne)]));
    let mut cfg = config(4, 8, 8);
    cfg.retry.base = Duration::from_millis(200);
    let worker = start(cfg, queue.clone(), tenants(&[], &[(t, 0)]), mailer.clone());
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
    let mailer = mailer([]);
    for t in &paced {
        mailer.pace(*t, hour);
    }
    let own: Vec<(TenantId, i64)> = paced.iter().map(|t| (*t, 3_600_000)).collect();
    let worker = start(
        config(2, 2, 8),
        queue.clone(),
        tenants(&[healthy], &own),
        mailer.clone(),
    );
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
    let queue = Arc::new(MemoryDeliveries::default());
    for t in [slow_down, refuses, flaky, gone] {
        queue.add(delivery(t));
    }
    let mailer = mailer(HashMap::from([
        (slow_down, Server::Fails(reply(421, "4.7.0", "slow down"))),
        (refuses, Server::Fails(reply(550, "5.1.1", "no such user"))),
        (flaky, Server::Fails(reply(451, "4.3.0", "try later"))),
    ]));
    // `gone` is not in the tenant store.
    let tenants = tenants(&[slow_down, refuses, flaky], &[]);
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

/// A configuration failure that suspends a tenant's settings is stored with its change
/// (audit entry, `mail_settings.suspended` event, announcement to other processes), and
/// this process is told to drop what it kept of that tenant; a tenant beside it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_is_stored_with_its_change_and_this_process_drops_what_it_kept() {
    let (broken, fine) = (TenantId::generate(), TenantId::generate());
    let queue = Arc::new(MemoryDeliveries::default());
    queue.add(delivery(broken));
    queue.add(delivery(fine));
    let refused = auth_refused();
    let store = Arc::new(tenants(&[fine], &[(broken, 0)]));
    let views = Arc::new(RecordingViews::default());
    let worker = Worker::new(
        WorkerConfig {
            suspend_after_failures: 1,
            ..config(1, 4, 8)
        },
        queue.clone(),
        store.clone(),
        mailer([(broken, Server::Fails(refused))]),
        views.clone(),
        Arc::new(Metrics::default()),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    until("the broken settings suspended and the other mail sent", || {
        !store.audit().is_empty() && queue.count(fine, DeliveryStatus::Sent) == 1
    })
    .await;
    let _ = stop.send(());
    done.await.unwrap();

    let audit = store.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].tenant_id, audit[0].action),
        (broken, domain::audit::AuditAction::MailSettingsSuspended)
    );
    let events = store.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].tenant_id, events[0].kind),
        (broken, domain::webhook::EventType::MailSettingsSuspended)
    );
    assert_eq!(store.announced(), vec![broken]);
    assert_eq!(views.changed(), vec![broken], "only the suspended tenant is dropped");
    let state = store.record(broken).and_then(|r| r.settings).map(|s| s.health.state);
    assert_eq!(state, Some(domain::health::SettingsState::Suspended));
    // The delivery whose failure suspended them is due at once (its mail goes through the
    // platform default now), like the rest of the tenant's waiting mail, whichever of the
    // two writes landed first.
    let failed = queue
        .rows()
        .into_iter()
        .find(|r| r.delivery.tenant_id == broken)
        .unwrap()
        .delivery;
    // (Or already tried again, at once, if the worker got to it before it stopped.)
    let again_at = failed.attempts.get(1).map_or(failed.next_attempt_at, |a| a.at);
    assert!(
        again_at - failed.attempts[0].at < chrono::Duration::seconds(5),
        "due at once, not at its retry: {} after {}",
        again_at,
        failed.attempts[0].at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_sending_is_contained_and_retried_later() {
    let (poison, healthy) = (TenantId::generate(), TenantId::generate());
    let queue = Arc::new(MemoryDeliveries::default());
    for _ in 0..3 {
        queue.add(delivery(poison));
    }
    for _ in 0..5 {
        queue.add(delivery(healthy));
    }
    let mailer = mailer(HashMap::from([(poison, Server::Panics)]));
    // One slot per tenant: the poison tenant's lane must survive each panic to reach the
    // next delivery.
    let worker = start(config(1, 4, 8), queue.clone(), tenants(&[poison, healthy], &[]), mailer);
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
    let queue = Arc::new(MemoryDeliveries::default());
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
        Arc::new(tenants(&[t], &[])),
        Arc::new(ScriptedMailer::default()),
        Arc::new(RecordingViews::default()),
        Arc::new(Metrics::default()),
    );
    let shared = worker.shared.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let receipt = SendReceipt {
        message_id: String::new(),
        sender: SenderUsed {
            address: EmailAddress::parse("noreply@platform.example").unwrap(),
            name: None,
            source: SenderSource::PlatformDefault,
        },
        smtp_code: Some(250),
        server_message: None,
        elapsed: Duration::ZERO,
    };
    for d in &claimed {
        lock(&shared.held).insert(d.id, d.retries);
        held.push(d.id);
        tx.send(Finish::of(d, DeliveryUpdate::sent(&receipt, 0, Utc::now())))
            .unwrap();
    }
    drop(tx);
    crate::recorder::record_outcomes(shared.clone(), rx).await;

    assert_eq!(
        queue.writes(),
        vec![crate::recorder::RECORD_BATCH, 300 - crate::recorder::RECORD_BATCH],
        "300 waiting outcomes: two writes, the first as large as a write may be"
    );
    assert_eq!(queue.count(t, DeliveryStatus::Sent), 300);
    assert!(lock(&shared.held).is_empty(), "nothing is held once recorded");
    assert_eq!(shared.metrics.recorded_count(DeliveryStatus::Sent), 300);
    let sent_events = queue
        .events()
        .iter()
        .filter(|e| e.kind == EventType::DeliverySent)
        .count();
    assert_eq!(sent_events, 300, "each finish carries its event to the store");
}
