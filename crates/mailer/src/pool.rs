//! The per-tenant transport: a small pool of open SMTP sessions to one server with one
//! set of settings (a cap per tenant, a place at the destination host for each open
//! session, idle sessions closed, a NOOP health check only for a session that sat idle),
//! the POP-before-SMTP login state, and the pacer that keeps the starts of two sends at
//! least `sendIntervalMs` apart. Every session a pool lets go of that still stands is
//! ended with QUIT by [`Closing`] (in the background, counted, so a shutdown can wait
//! for the goodbyes); only a broken or timed-out one is dropped without.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::settings::PopBeforeSmtp;

use crate::guard::Guard;
use crate::hosts::HostGate;
use crate::session::{self, ServerParams, Session, Timeouts};
use crate::tls::TlsMaterial;

/// Pool limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Open connections per tenant at most.
    pub max_connections: usize,
    /// Open connections to one destination host name at most, across all tenants (the
    /// platform relay is not counted).
    pub max_connections_per_host: usize,
    /// A session idle longer than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// A session idle longer than this is checked with NOOP before reuse.
    pub health_check_after: Duration,
    /// A POP login older than this is repeated before the next send.
    pub pop_window: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            max_connections_per_host: 32,
            idle_timeout: Duration::from_secs(60),
            health_check_after: Duration::from_secs(5),
            pop_window: Duration::from_secs(300),
        }
    }
}

/// Keeps the starts of sends through one server at least `interval` apart, across
/// concurrent callers in this process: one start at a time, each waiting until the
/// interval has passed since the previous start was answered (so the server never sees
/// two starts closer than the interval, however late a caller runs).
#[derive(Debug, Default)]
pub struct Pacer {
    last_start: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    /// Runs `start` (a MAIL FROM) at this caller's turn.
    pub async fn paced<T>(&self, interval: Duration, start: impl std::future::Future<Output = T>) -> T {
        let mut last = self.last_start.lock().await;
        if let Some(previous) = *last {
            tokio::time::sleep_until((previous + interval).into()).await;
        }
        let out = start.await;
        *last = Some(Instant::now());
        out
    }

    /// How long until a start could go at `interval` (zero: now); at least `interval`
    /// while another start is under way or waiting.
    pub fn turn_in(&self, interval: Duration) -> Duration {
        match self.last_start.try_lock() {
            Ok(last) => last.map_or(Duration::ZERO, |previous| {
                (previous + interval).saturating_duration_since(Instant::now())
            }),
            Err(_) => interval,
        }
    }

    /// Serialises starts without spacing them (the spacing is kept elsewhere).
    pub async fn exclusive<T>(&self, start: impl std::future::Future<Output = T>) -> T {
        let _turn = self.last_start.lock().await;
        start.await
    }
}

/// Sessions being ended in the background: each says QUIT (when it still stands, within
/// the command deadline) and then frees its place at the host. Counted, so a shutdown
/// can wait until every goodbye was said ([`Closing::settled`]).
#[derive(Debug)]
pub struct Closing {
    timeouts: Timeouts,
    in_progress: AtomicUsize,
    done: Notify,
}

impl Closing {
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            timeouts,
            in_progress: AtomicUsize::new(0),
            done: Notify::new(),
        })
    }

    /// Ends `session` in the background; its `place` is freed once it has. Outside a
    /// runtime (a pool dropped at the very end) the session is only dropped.
    fn close(self: &Arc<Self>, session: Session, place: Option<OwnedSemaphorePermit>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        let closing = self.clone();
        runtime.spawn(async move {
            session.quit(&closing.timeouts).await;
            drop(place);
            closing.in_progress.fetch_sub(1, Ordering::SeqCst);
            closing.done.notify_waiters();
        });
    }

    /// Resolves once no session is being ended.
    pub async fn settled(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.in_progress.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Sessions being ended now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::SeqCst)
    }
}

/// Where a pool connects: the checked addresses and how to talk.
#[derive(Debug)]
pub struct Endpoint {
    pub params: ServerParams,
    pub addrs: Vec<SocketAddr>,
}

/// An open session and its place at the destination host (none for the relay).
#[derive(Debug)]
struct Open {
    session: Session,
    _place: Option<OwnedSemaphorePermit>,
}

/// One tenant's (or the relay's) pooled connections for one settings version.
pub struct Pool {
    endpoint: Mutex<Option<Arc<Endpoint>>>,
    resolve: Box<dyn Fn() -> futures_resolve::BoxFuture<Result<Endpoint, SendFailure>> + Send + Sync>,
    idle: std::sync::Mutex<Vec<Open>>,
    slots: Semaphore,
    /// The destination host's places, shared with every other pool that reaches it.
    host: Option<Arc<HostGate>>,
    pop: Option<PopBeforeSmtp>,
    pop_login_at: Mutex<Option<Instant>>,
    limits: PoolLimits,
    /// For settings with a sign-in: the user and a current access token for each new
    /// session (AUTH XOAUTH2), asked for when the session opens — a pooled session
    /// stays authenticated after its token expires, a new one never uses a stale token.
    bearer: Option<BearerSource>,
    /// Where let-go sessions say QUIT.
    closing: Arc<Closing>,
}

/// Where a pool's sessions get their user and access token.
pub type BearerSource =
    Box<dyn Fn() -> futures_resolve::BoxFuture<Result<(String, secrecy::SecretString), SendFailure>> + Send + Sync>;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A pool that goes (its settings changed, its tenant went quiet, the mailer stopped)
/// ends its idle sessions with QUIT rather than dropping them.
impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all_idle();
    }
}

/// Tiny boxed-future alias, to keep the resolver closure object-safe.
pub mod futures_resolve {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

/// A checked-out session; goes back to the pool with [`Pool::checkin`].
#[derive(Debug)]
pub struct Lease<'a> {
    pub session: Session,
    place: Option<OwnedSemaphorePermit>,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl Pool {
    /// A pool whose open sessions each hold a place at `host` (when given), and end
    /// through `closing`.
    pub fn new(
        resolve: Box<dyn Fn() -> futures_resolve::BoxFuture<Result<Endpoint, SendFailure>> + Send + Sync>,
        pop: Option<PopBeforeSmtp>,
        limits: PoolLimits,
        host: Option<Arc<HostGate>>,
        closing: Arc<Closing>,
    ) -> Self {
        Self {
            endpoint: Mutex::new(None),
            resolve,
            idle: std::sync::Mutex::new(Vec::new()),
            slots: Semaphore::new(limits.max_connections.max(1)),
            host,
            pop,
            pop_login_at: Mutex::new(None),
            limits,
            bearer: None,
            closing,
        }
    }

    /// Sessions authenticate with AUTH XOAUTH2 and a token from `source` instead of the
    /// endpoint's credentials.
    pub fn with_bearer(mut self, source: BearerSource) -> Self {
        self.bearer = Some(source);
        self
    }

    async fn endpoint(&self) -> Result<Arc<Endpoint>, SendFailure> {
        let mut guard = self.endpoint.lock().await;
        if let Some(e) = guard.as_ref() {
            return Ok(e.clone());
        }
        let e = Arc::new((self.resolve)().await?);
        *guard = Some(e.clone());
        Ok(e)
    }

    /// Logs in to POP when configured and the last login is older than the window.
    async fn pop_login_if_due(&self, tls: &TlsMaterial, guard: &Guard, t: &Timeouts) -> Result<(), SendFailure> {
        let Some(pop) = &self.pop else {
            return Ok(());
        };
        let mut at = self.pop_login_at.lock().await;
        if at.is_some_and(|t0| t0.elapsed() < self.limits.pop_window) {
            return Ok(());
        }
        crate::pop3::login(pop, tls, guard, t.connect).await?;
        *at = Some(Instant::now());
        Ok(())
    }

    /// A session to send on: an idle one (checked if it sat idle) or a new one.
    pub async fn checkout(&self, tls: &TlsMaterial, guard: &Guard, t: &Timeouts) -> Result<Lease<'_>, SendFailure> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendFailure::new(SendStage::Connect, FailureKind::Network))?;
        self.pop_login_if_due(tls, guard, t).await?;
        loop {
            let candidate = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let Some(Open {
                mut session,
                _place: place,
            }) = candidate
            else {
                break;
            };
            let idle_for = session.last_used.elapsed();
            if idle_for > self.limits.idle_timeout || session.is_broken() {
                self.closing.close(session, place);
                continue;
            }
            if idle_for > self.limits.health_check_after && !session.is_alive(t).await {
                // A refused NOOP still gets a QUIT; a silent or closed one is dropped.
                self.closing.close(session, place);
                continue;
            }
            return Ok(Lease {
                session,
                place,
                _slot: slot,
            });
        }
        let endpoint = self.endpoint().await?;
        // A place at the host before connecting; waiting for one no longer than a
        // connect may take, then the send is deferred (the host is busy, not broken).
        let place = match &self.host {
            Some(host) => Some(
                host.enter(t.connect)
                    .await
                    .map_err(|_| SendFailure::new(SendStage::Connect, FailureKind::HostBusy))?,
            ),
            None => None,
        };
        let session = match &self.bearer {
            None => session::open(&endpoint.params, &endpoint.addrs, tls, t).await?,
            Some(source) => {
                let (user, token) = source().await?;
                let params = ServerParams {
                    credentials: Some((user, token)),
                    mechanism: session::AuthMechanism::Xoauth2,
                    ..endpoint.params.clone()
                };
                session::open(&params, &endpoint.addrs, tls, t).await?
            }
        };
        Ok(Lease {
            session,
            place,
            _slot: slot,
        })
    }

    /// Keeps an open session for the next send, unless someone waits for a place at its
    /// host: then it is closed (with QUIT) so the place goes to them.
    fn keep(&self, session: Session, place: Option<OwnedSemaphorePermit>) {
        if self.host.as_ref().is_some_and(|h| h.wanted()) {
            self.closing.close(session, place);
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Open { session, _place: place });
    }

    /// Returns a healthy session after a successful send (no round trip: the hot path).
    pub fn checkin(&self, lease: Lease<'_>) {
        let Lease { session, place, _slot } = lease;
        if !session.is_broken() {
            self.keep(session, place);
        }
    }

    /// After a failed send on `lease`: a session that still stands (the server refused
    /// the mail with a reply, or the mail was never started) is reset (RSET) and kept for
    /// the next send, or ended with QUIT when it refuses the RSET; one that timed out,
    /// broke or broke the protocol is dropped (its state is unknown).
    pub async fn after_failure(&self, lease: Lease<'_>, t: &Timeouts) {
        let Lease {
            mut session,
            place,
            _slot,
        } = lease;
        if session.is_broken() {
            return;
        }
        if session.reset(t).await {
            self.keep(session, place);
        } else {
            self.closing.close(session, place);
        }
    }

    /// Closes, with QUIT, the idle sessions that sat longer than the idle limit (all of
    /// them when someone waits for a place at their host); how many. Run on a timer, so
    /// an idle session does not stay open until it is next wanted.
    pub fn close_idle(&self) -> usize {
        let wanted = self.host.as_ref().is_some_and(|h| h.wanted());
        let expired: Vec<Open> = {
            let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (keep, expired): (Vec<Open>, Vec<Open>) = idle
                .drain(..)
                .partition(|o| !wanted && o.session.last_used.elapsed() <= self.limits.idle_timeout);
            *idle = keep;
            expired
        };
        let closed = expired.len();
        for open in expired {
            self.closing.close(open.session, open._place);
        }
        closed
    }

    /// Closes, with QUIT, every idle session now (at shutdown); how many. Sessions out on
    /// a send are closed when they come back only if the pool is dropped by then.
    pub fn close_all_idle(&self) -> usize {
        let all: Vec<Open> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let closed = all.len();
        for open in all {
            self.closing.close(open.session, open._place);
        }
        closed
    }

    /// Open idle sessions (for memory and tests).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}
