//! A mail transport whose servers answer as a test scripts them, per tenant (real mail)
//! and for test mails; it counts sends in flight and keeps what it sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;
use crate::mail::{FailureKind, OutgoingMail, SendFailure, SendReceipt, SendStage, SenderUsed};
use crate::plan::SenderOverridePermit;
use crate::ports::{HostCheck, MailTransport, Pacing};
use crate::sender::{SenderRoute, SenderSource};
use crate::settings::MailSettings;
use crate::tenant::{TenantId, TenantRecord};
use crate::values::Host;

/// How a tenant's (fake) server answers.
#[derive(Debug, Clone, Default)]
pub enum Server {
    /// Takes every mail after a short pause (so sends of one tenant overlap).
    #[default]
    Accepts,
    /// Never answers.
    Hangs,
    /// Accepts the connection and says nothing until our deadline (this long) ends it.
    BlackHole(Duration),
    /// Takes the mail, but only after this long (a slow server that works).
    AcceptsAfter(Duration),
    /// Says nothing to the first connection (our deadline ends it at once), then takes
    /// every mail: a server that was down and came back.
    BackAfterOne,
    /// Refuses every mail with this failure.
    Fails(SendFailure),
    /// Panics (a bug of ours while sending, as a test hook).
    Panics,
}

/// A test mail the transport was asked to send.
#[derive(Debug, Clone)]
pub struct TestMail {
    pub tenant: TenantId,
    pub settings: MailSettings,
    pub mail: OutgoingMail,
}

#[derive(Debug, Default)]
struct Script {
    servers: HashMap<TenantId, Server>,
    intervals: HashMap<TenantId, Duration>,
    /// How test mails are answered (default: accepted).
    test_server: Server,
    hosts: HashMap<String, HostCheck>,
}

#[derive(Debug, Default)]
struct Seen {
    in_flight: HashMap<TenantId, usize>,
    most_at_once: HashMap<TenantId, usize>,
    /// Sends in flight over all tenants: now, and the most at once.
    all_in_flight: (usize, usize),
    started: HashMap<TenantId, usize>,
    last_start: HashMap<TenantId, Instant>,
    sent: Vec<(TenantId, String)>,
    tests: Vec<TestMail>,
    /// Each call to close the pooled sessions: the sends in flight then, and its deadline.
    closes: Vec<(usize, Duration)>,
}

/// `MailTransport` with scripted servers. A tenant's script stands for the route its
/// mail takes (its own server when a live version carries it, else the platform relay
/// for it); mail `via_platform` always goes through the relay and is taken.
#[derive(Debug, Default)]
pub struct ScriptedMailer {
    script: Mutex<Script>,
    seen: Mutex<Seen>,
}

impl ScriptedMailer {
    /// The tenant's server answers so from now on.
    pub fn script(&self, tenant: TenantId, server: Server) {
        lock(&self.script).servers.insert(tenant, server);
    }

    /// The tenant's sends are paced at `interval`.
    pub fn pace(&self, tenant: TenantId, interval: Duration) {
        lock(&self.script).intervals.insert(tenant, interval);
    }

    /// Test mails are answered so from now on.
    pub fn script_tests(&self, server: Server) {
        lock(&self.script).test_server = server;
    }

    /// What a look at `host` finds from now on (default: reachable).
    pub fn host_check(&self, host: &str, check: HostCheck) {
        lock(&self.script).hosts.insert(host.to_ascii_lowercase(), check);
    }

    /// The most sends of the tenant in flight at once.
    pub fn most_at_once(&self, tenant: TenantId) -> usize {
        lock(&self.seen).most_at_once.get(&tenant).copied().unwrap_or(0)
    }

    /// The most sends in flight at once over all tenants.
    pub fn most_at_once_in_all(&self) -> usize {
        lock(&self.seen).all_in_flight.1
    }

    /// Sends of the tenant started (real mail, not through the platform).
    pub fn started(&self, tenant: TenantId) -> usize {
        lock(&self.seen).started.get(&tenant).copied().unwrap_or(0)
    }

    /// Mail the servers took: tenant and Message-ID, in order.
    pub fn sent(&self) -> Vec<(TenantId, String)> {
        lock(&self.seen).sent.clone()
    }

    /// Test mails asked for, in order (whatever their answer).
    /// Each time the pooled sessions were closed: (sends in flight then, the deadline).
    pub fn closes(&self) -> Vec<(usize, Duration)> {
        lock(&self.seen).closes.clone()
    }

    pub fn test_mails(&self) -> Vec<TestMail> {
        lock(&self.seen).tests.clone()
    }

    fn server(&self, tenant: TenantId) -> Server {
        lock(&self.script).servers.get(&tenant).cloned().unwrap_or_default()
    }

    fn took(&self, tenant: TenantId, mail: &OutgoingMail, sender: SenderUsed) -> SendReceipt {
        lock(&self.seen)
            .sent
            .push((tenant, mail.message_id.clone().unwrap_or_default()));
        SendReceipt {
            message_id: mail.message_id.clone().unwrap_or_default(),
            sender,
            smtp_code: Some(250),
            server_message: Some("2.0.0 ok".into()),
            elapsed: Duration::ZERO,
        }
    }

    /// One answer of `server` (the sends in flight are counted around it by the caller).
    async fn answer(
        &self,
        server: Server,
        tenant: TenantId,
        mail: &OutgoingMail,
        sender: SenderUsed,
    ) -> Result<SendReceipt, SendFailure> {
        match server {
            Server::Accepts => {
                tokio::time::sleep(ACCEPT_PAUSE).await;
                Ok(self.took(tenant, mail, sender))
            }
            Server::Hangs => std::future::pending().await,
            Server::BackAfterOne if self.started(tenant) <= 1 => {
                Err(SendFailure::new(SendStage::Greeting, FailureKind::TimedOut))
            }
            Server::BackAfterOne => Ok(self.took(tenant, mail, sender)),
            Server::BlackHole(deadline) => {
                tokio::time::sleep(deadline).await;
                Err(SendFailure::new(SendStage::Greeting, FailureKind::TimedOut))
            }
            Server::AcceptsAfter(delay) => {
                tokio::time::sleep(delay).await;
                Ok(self.took(tenant, mail, sender))
            }
            Server::Fails(failure) => Err(failure),
            Server::Panics => panic!("test hook: sending panics"),
        }
    }
}

/// The platform default's sender as the fakes name it.
fn platform_sender() -> SenderUsed {
    let platform = super::Fakes::platform_sender();
    SenderUsed {
        address: platform.address,
        name: platform.name,
        source: SenderSource::PlatformDefault,
    }
}

/// The tenant's own sender, when its settings carry its mail.
fn sender_of(settings: &MailSettings) -> SenderUsed {
    SenderUsed {
        address: settings.from_address().clone(),
        name: settings.from_name().cloned(),
        source: SenderSource::Custom,
    }
}

/// How long an accepting server takes, so sends of one tenant overlap.
const ACCEPT_PAUSE: Duration = Duration::from_millis(3);

/// Leaves the in-flight counts when a send ends or is dropped (aborted).
struct Flight<'a> {
    mailer: &'a ScriptedMailer,
    tenant: TenantId,
}

impl Flight<'_> {
    fn start(mailer: &ScriptedMailer, tenant: TenantId) -> Flight<'_> {
        let mut seen = lock(&mailer.seen);
        let n = seen.in_flight.entry(tenant).or_insert(0);
        *n += 1;
        let now_in_flight = *n;
        let most = seen.most_at_once.entry(tenant).or_insert(0);
        *most = (*most).max(now_in_flight);
        seen.all_in_flight.0 += 1;
        seen.all_in_flight.1 = seen.all_in_flight.1.max(seen.all_in_flight.0);
        *seen.started.entry(tenant).or_insert(0) += 1;
        seen.last_start.insert(tenant, Instant::now());
        Flight { mailer, tenant }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut seen = lock(&self.mailer.seen);
        if let Some(n) = seen.in_flight.get_mut(&self.tenant) {
            *n -= 1;
        }
        seen.all_in_flight.0 -= 1;
    }
}

#[async_trait::async_trait]
impl MailTransport for ScriptedMailer {
    async fn send(&self, tenant: &TenantRecord, mail: &OutgoingMail) -> Result<SendReceipt, SendFailure> {
        let id = tenant.tenant.id;
        // The platform relay in the tenant's place: its server is not involved.
        if mail.via_platform {
            return Ok(self.took(id, mail, platform_sender()));
        }
        // The tenant's script is how its route answers: its own server when a live version
        // carries its mail, the platform relay for it otherwise; the sender is the route's.
        let sender = match tenant.route() {
            SenderRoute::Custom { settings, .. } => sender_of(settings),
            SenderRoute::PlatformDefault { .. } | SenderRoute::Unreadable { .. } => platform_sender(),
        };
        let server = self.server(id);
        let _flight = Flight::start(self, id);
        self.answer(server, id, mail, sender).await
    }

    async fn pacing(&self, tenant: &TenantRecord) -> Option<Pacing> {
        let interval = *lock(&self.script).intervals.get(&tenant.tenant.id)?;
        let next_turn_in = lock(&self.seen)
            .last_start
            .get(&tenant.tenant.id)
            .map_or(Duration::ZERO, |last| {
                (*last + interval).saturating_duration_since(Instant::now())
            });
        Some(Pacing { interval, next_turn_in })
    }

    async fn send_test(
        &self,
        _permit: SenderOverridePermit,
        tenant: TenantId,
        settings: &MailSettings,
        mail: &OutgoingMail,
        _deadline: Duration,
    ) -> Result<SendReceipt, SendFailure> {
        lock(&self.seen).tests.push(TestMail {
            tenant,
            settings: settings.clone(),
            mail: mail.clone(),
        });
        let server = lock(&self.script).test_server.clone();
        self.answer(server, tenant, mail, sender_of(settings)).await
    }

    async fn close_sessions(&self, deadline: Duration) {
        let mut seen = lock(&self.seen);
        let in_flight = seen.all_in_flight.0;
        seen.closes.push((in_flight, deadline));
    }

    async fn check_host(&self, host: &Host, _port: u16) -> HostCheck {
        lock(&self.script)
            .hosts
            .get(&host.as_str().to_ascii_lowercase())
            .copied()
            .unwrap_or(HostCheck::Reachable)
    }
}
