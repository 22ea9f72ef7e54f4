//! Mailgate's mail sending. [`Mailer`] is the single entry point
//! ([`domain::ports::MailTransport`]): it applies the plan gate, sends through the
//! tenant's own server (a cached, pooled transport per tenant and settings version) or
//! through the platform relay (or `.eml` files in development), paces each tenant by its
//! send interval, and reports failures with the stage, the server's reply and a
//! diagnosis. Tenants' hosts are resolved and checked before any connection.

#![allow(
    clippy::result_large_err,
    reason = "a SendFailure carries the server's reply for the diagnosis; failures are rare and not on a hot path"
)]

pub mod api;
pub mod guard;
pub mod hosts;
pub mod http;
pub mod message;
pub mod pool;
pub mod pop3;
mod probe;
pub mod resolver;
pub mod session;
pub mod tls;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;

use domain::TenantId;
use domain::mail::{FailureKind, OutgoingMail, SendFailure, SendReceipt, SendStage, SenderUsed};
use domain::oauth::{ConnectionId, Transport};
use domain::plan::SenderOverridePermit;
use domain::ports::{
    AccessToken, AccessTokens, Coordination, HostCheck, MailTransport, Pacing, TenantRecord, TokenUnavailable,
};
use domain::sender::{PlatformSender, ReplyTo, SenderRoute, SenderSource};
use domain::settings::{Encryption, MailSettings, PortPolicy};
use domain::values::{Host, LocalHostname};

use crate::api::MailApis;
use crate::guard::Guard;
use crate::hosts::HostGates;
use crate::pool::{Closing, Endpoint, Pacer, Pool, PoolLimits};
use crate::resolver::Resolver;
use crate::session::{AuthMechanism, ServerParams, Timeouts};
use crate::tls::TlsMaterial;

pub use crate::tls::TlsSetupError;

/// Where the platform's own mail goes.
#[derive(Debug, Clone)]
pub enum PlatformRelay {
    /// Development: each message is written as an `.eml` file into this directory.
    Files(PathBuf),
    /// An SMTP relay: `smtp://[user:pass@]host[:port]` (plain, or STARTTLS with
    /// `?starttls=required`) or `smtps://…` (implicit TLS).
    Smtp(RelayUrl),
}

/// A parsed relay URL. Credentials never print.
#[derive(Clone)]
pub struct RelayUrl {
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub credentials: Option<(String, SecretString)>,
}

impl std::fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A relay URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayUrlError(String);

impl RelayUrl {
    pub fn parse(raw: &str) -> Result<Self, RelayUrlError> {
        let url = url::Url::parse(raw).map_err(|e| RelayUrlError(format!("not a URL ({e})")))?;
        let (default_port, mut encryption) = match url.scheme() {
            "smtp" => (25, Encryption::None),
            "smtps" => (465, Encryption::Ssl),
            other => return Err(RelayUrlError(format!("scheme {other:?}: use smtp:// or smtps://"))),
        };
        if url.query_pairs().any(|(k, v)| k == "starttls" && v == "required") {
            if encryption == Encryption::Ssl {
                return Err(RelayUrlError("starttls=required makes no sense with smtps://".into()));
            }
            encryption = Encryption::StartTls;
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| RelayUrlError("no host".into()))?;
        let host = host.trim_matches(['[', ']']).to_owned();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((
                decode(url.username()),
                SecretString::from(decode(url.password().unwrap_or(""))),
            ))
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            encryption,
            credentials,
        })
    }
}

/// How the mailer behaves. Built once from configuration.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    pub platform_sender: PlatformSender,
    pub relay: PlatformRelay,
    /// Lets tenants use hosts on private and loopback addresses (development, tests).
    pub allow_private_hosts: bool,
    /// DNS servers for tenants' names and the setup assistant's lookups; empty: the system's.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Ports open to tenants (SMTP and POP3).
    pub ports: PortPolicy,
    /// Extra trusted CA certificates (PEM), for private CAs and tests.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// EHLO name when a tenant sets none (never `localhost`).
    pub ehlo_name: LocalHostname,
    pub timeouts: Timeouts,
    pub pool: PoolLimits,
    /// Cached tenant transports at most, and how long an unused one is kept.
    pub cache_capacity: u64,
    pub cache_idle: Duration,
    /// A whole send (not a test mail) gives up after this.
    pub send_timeout: Duration,
}

/// The mailer. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    config: MailerConfig,
    tls: TlsMaterial,
    /// The resolver and address check every tenant-chosen host goes through.
    guard: Guard,
    /// One pool per tenant and settings version.
    transports: moka::future::Cache<(TenantId, i64), Arc<Pool>>,
    /// One pacer per tenant, kept across settings versions.
    pacers: moka::future::Cache<TenantId, Arc<Pacer>>,
    relay: Option<Arc<Pool>>,
    /// Places at each destination host, shared by all tenants' pools.
    hosts: HostGates,
    /// Send slots shared with other processes (the database), if any.
    coordination: Option<Arc<dyn Coordination>>,
    /// Access tokens and the mail APIs, for settings that authenticate with a sign-in.
    sign_in: std::sync::OnceLock<SignIn>,
    /// The guard for the operator's endpoints (the mail APIs): internal addresses allowed.
    operator_guard: Guard,
    /// Where every pool's let-go sessions say QUIT (waited for by [`Mailer::close_all`]).
    closing: Arc<Closing>,
}

struct SignIn {
    tokens: Arc<dyn AccessTokens>,
    apis: MailApis,
}

/// A sign-in that gave no token, as the failure of a send.
fn token_failure(why: TokenUnavailable) -> SendFailure {
    let kind = match why {
        TokenUnavailable::Gone | TokenUnavailable::NeedsReconnect => FailureKind::SignInRevoked,
        TokenUnavailable::Misconfigured => FailureKind::SignInMisconfigured,
        TokenUnavailable::Temporary { .. } => FailureKind::SignInUnavailable,
    };
    SendFailure::new(SendStage::Auth, kind)
}

fn token_refused(r: &Result<(u16, String), SendFailure>) -> bool {
    matches!(r, Err(f) if f.kind == FailureKind::TokenRefused)
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &self.inner.config.relay)
            .finish_non_exhaustive()
    }
}

fn client_id(name: &LocalHostname) -> ClientId {
    let s = name.as_str();
    match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(lit) => match lit.strip_prefix("IPv6:").unwrap_or(lit).parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => ClientId::Ipv4(v4),
            Ok(std::net::IpAddr::V6(v6)) => ClientId::Ipv6(v6),
            Err(_) => ClientId::Domain(s.to_owned()),
        },
        None => ClientId::Domain(s.to_owned()),
    }
}

fn elapsed(mut f: SendFailure, started: Instant, sender: &SenderUsed) -> SendFailure {
    f.elapsed = started.elapsed();
    f.sender = Some(sender.clone());
    f
}

impl Mailer {
    /// `coordination` shares each tenant's send slots with other processes; without it
    /// pacing holds within this process only.
    pub fn new(config: MailerConfig, coordination: Option<Arc<dyn Coordination>>) -> Result<Self, TlsSetupError> {
        let tls = TlsMaterial::load(config.extra_ca_pem.as_deref())?;
        let closing = Closing::new(config.timeouts);
        let transports = moka::future::Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_idle(config.cache_idle)
            .support_invalidation_closures()
            .build();
        let pacers = moka::future::Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_idle(Duration::from_secs(3600 * 2))
            .build();
        let relay = match &config.relay {
            PlatformRelay::Files(_) => None,
            PlatformRelay::Smtp(url) => {
                // A relay reached over TLS must have a name a certificate can be checked
                // against; say so at start rather than on every send.
                if url.encryption != Encryption::None {
                    rustls_pki_types::ServerName::try_from(url.host.as_str())
                        .map_err(|e| TlsSetupError::RelayHost(format!("{}: {e}", url.host)))?;
                }
                let params = ServerParams {
                    host: url.host.clone(),
                    port: url.port,
                    encryption: url.encryption,
                    credentials: url.credentials.clone(),
                    mechanism: AuthMechanism::Password,
                    ehlo: client_id(&config.ehlo_name),
                };
                let timeout = config.timeouts.connect;
                let resolve = Box::new(move || {
                    let params = params.clone();
                    let fut: pool::futures_resolve::BoxFuture<Result<Endpoint, SendFailure>> = Box::pin(async move {
                        // The operator's relay may live on a private network: no address check.
                        let addrs = match tokio::time::timeout(
                            timeout,
                            tokio::net::lookup_host((params.host.as_str(), params.port)),
                        )
                        .await
                        {
                            Ok(Ok(a)) => a.collect::<Vec<_>>(),
                            Ok(Err(_)) => return Err(SendFailure::new(SendStage::Resolve, FailureKind::HostNotFound)),
                            Err(_) => return Err(SendFailure::new(SendStage::Resolve, FailureKind::TimedOut)),
                        };
                        Ok(Endpoint { params, addrs })
                    });
                    fut
                });
                Some(Arc::new(Pool::new(resolve, None, config.pool, None, closing.clone())))
            }
        };
        let guard = Guard {
            allow_private: config.allow_private_hosts,
            resolver: Resolver::new(&config.dns_servers),
        };
        let operator_guard = Guard {
            allow_private: true,
            resolver: guard.resolver.clone(),
        };
        let inner = Arc::new(Inner {
            hosts: HostGates::new(config.pool.max_connections_per_host),
            guard,
            config,
            tls,
            transports,
            pacers,
            relay,
            coordination,
            sign_in: std::sync::OnceLock::new(),
            operator_guard,
            closing,
        });
        close_idle_sessions_on_a_timer(&inner);
        Ok(Self { inner })
    }

    /// Lets settings authenticate with a sign-in: `tokens` gives access tokens, `apis`
    /// says where Graph and Gmail are. Set once, after the store exists (the tokens live
    /// there); a second call changes nothing.
    pub fn use_sign_ins(&self, tokens: Arc<dyn AccessTokens>, apis: MailApis) {
        let _ = self.inner.sign_in.set(SignIn { tokens, apis });
    }

    /// A token for the tenant's connection `id`.
    async fn access_token(&self, tenant: TenantId, id: ConnectionId) -> Result<AccessToken, SendFailure> {
        let sign_in = self
            .inner
            .sign_in
            .get()
            .ok_or_else(|| SendFailure::new(SendStage::Auth, FailureKind::SignInMisconfigured))?;
        sign_in.tokens.access_token(tenant, id).await.map_err(token_failure)
    }

    /// Sends through a mail API with the connection's token; a token the API refuses is
    /// dropped and the send tried once more with a fresh one.
    async fn send_by_api(
        &self,
        tenant: TenantId,
        id: ConnectionId,
        transport: Transport,
        token: AccessToken,
        bytes: &[u8],
        deadline: Duration,
    ) -> Result<(u16, String), SendFailure> {
        let Some(sign_in) = self.inner.sign_in.get() else {
            return Err(SendFailure::new(SendStage::Auth, FailureKind::SignInMisconfigured));
        };
        // Both attempts share one budget: a second one may only use what the first left,
        // so the caller's own deadline never cancels a request the API may have taken.
        let until = Instant::now() + deadline;
        let attempt = |token: AccessToken| async move {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendFailure::new(SendStage::Timeout, FailureKind::TimedOut));
            }
            api::send(
                &self.inner.operator_guard,
                &self.inner.tls,
                &sign_in.apis,
                transport,
                &token.token,
                bytes,
                left,
            )
            .await
        };
        let first = attempt(token).await;
        if !token_refused(&first) {
            return first;
        }
        sign_in.tokens.forget(id).await;
        let token = self.access_token(tenant, id).await?;
        attempt(token).await
    }

    /// The address guard (and resolver) tenants' hosts go through, for the setup assistant.
    pub fn guard(&self) -> &Guard {
        &self.inner.guard
    }

    /// The trusted roots (and test CA) TLS connections to tenants' hosts check against.
    pub fn tls(&self) -> &TlsMaterial {
        &self.inner.tls
    }

    fn platform_sender(&self) -> SenderUsed {
        let p = &self.inner.config.platform_sender;
        SenderUsed {
            address: p.address.clone(),
            name: p.name.clone(),
            source: SenderSource::PlatformDefault,
        }
    }

    fn custom_sender(settings: &MailSettings) -> SenderUsed {
        SenderUsed {
            address: settings.from_address().clone(),
            name: settings.from_name().cloned(),
            source: SenderSource::Custom,
        }
    }

    /// Builds the connection parameters for a tenant's settings.
    fn tenant_params(&self, settings: &MailSettings) -> ServerParams {
        let credentials = match (settings.smtp_auth(), settings.username(), settings.password()) {
            (true, Some(u), Some(p)) => Some((u.as_str().to_owned(), p.clone())),
            _ => None,
        };
        ServerParams {
            host: settings.host().as_str().to_owned(),
            port: settings.port().get(),
            encryption: settings.encryption(),
            credentials,
            mechanism: AuthMechanism::Password,
            ehlo: client_id(settings.local_hostname().unwrap_or(&self.inner.config.ehlo_name)),
        }
    }

    /// Refuses ports that are not open to tenants, before any connection.
    fn check_ports(&self, settings: &MailSettings) -> Result<(), SendFailure> {
        match self.inner.config.ports.check(settings) {
            Ok(()) => Ok(()),
            Err(errs) if errs.iter().any(|e| e.field == "port") => {
                Err(SendFailure::new(SendStage::Connect, FailureKind::PortNotAllowed))
            }
            Err(_) => Err(SendFailure::new(SendStage::PopLogin, FailureKind::PortNotAllowed)),
        }
    }

    fn new_pool(&self, tenant: TenantId, settings: &MailSettings) -> Result<Pool, SendFailure> {
        let params = self.tenant_params(settings);
        let host: Host = settings.host().clone();
        let guard = self.inner.guard.clone();
        let timeout = self.inner.config.timeouts.connect;
        let resolve = Box::new(move || {
            let params = params.clone();
            let host = host.clone();
            let guard = guard.clone();
            let fut: pool::futures_resolve::BoxFuture<Result<Endpoint, SendFailure>> = Box::pin(async move {
                let addrs = guard.resolve(&host, params.port, timeout).await?;
                Ok(Endpoint { params, addrs })
            });
            fut
        });
        let pool = Pool::new(
            resolve,
            settings.pop_before_smtp().cloned(),
            self.inner.config.pool,
            Some(self.inner.hosts.gate(settings.host().as_str())),
            self.inner.closing.clone(),
        );
        Ok(match settings.connection() {
            None => pool,
            Some(id) => {
                let mailer = self.clone();
                let user = settings.username().map(|u| u.as_str().to_owned());
                pool.with_bearer(Box::new(move || {
                    let mailer = mailer.clone();
                    let user = user.clone();
                    Box::pin(async move {
                        let token = mailer.access_token(tenant, id).await?;
                        Ok((user.unwrap_or(token.mailbox), token.token))
                    })
                }))
            }
        })
    }

    /// Checks out a session and delivers; with `pace`, the MAIL FROM waits for the
    /// tenant's turn. The turn is taken only once the connection is ready, so the starts
    /// of two sends are never closer than the interval, however long connecting took.
    async fn send_on_pool(
        &self,
        pool: &Pool,
        built: &message::Built,
        pace: Option<(TenantId, Duration)>,
    ) -> Result<(u16, String), SendFailure> {
        let t = &self.inner.config.timeouts;
        let mut lease = pool.checkout(&self.inner.tls, &self.inner.guard, t).await?;
        let sent = match pace {
            // A paced send's MAIL FROM goes at its turn, on its own.
            Some((tenant, interval)) if !interval.is_zero() => {
                let started = self
                    .paced_start(
                        tenant,
                        interval,
                        lease.session.mail_from(&built.from, &built.bytes, built.smtputf8, t),
                    )
                    .await;
                match started {
                    Ok(()) => lease.session.finish_mail(&built.to, &built.bytes, t).await,
                    Err(f) => Err(f),
                }
            }
            _ => {
                lease
                    .session
                    .deliver(&built.from, &built.to, &built.bytes, built.smtputf8, t)
                    .await
            }
        };
        match sent {
            Ok(reply) => {
                pool.checkin(lease);
                Ok(reply)
            }
            Err(f) => {
                // A refused mail leaves a usable session (reset and kept); a broken one
                // is dropped, never reused half-finished.
                pool.after_failure(lease, t).await;
                Err(f)
            }
        }
    }

    /// Runs `start` (a MAIL FROM) at the tenant's turn: shared through the database when
    /// several processes send (the turn is released with the database's clock right after
    /// the MAIL FROM is answered), kept in this process otherwise or if the database fails.
    async fn paced_start<T>(
        &self,
        tenant: TenantId,
        interval: Duration,
        start: impl std::future::Future<Output = T>,
    ) -> T {
        let pacer = self
            .inner
            .pacers
            .get_with(tenant, async { Arc::new(Pacer::default()) })
            .await;
        let Some(coordination) = &self.inner.coordination else {
            return pacer.paced(interval, start).await;
        };
        // One start at a time from this process; the database orders the processes.
        pacer
            .exclusive(async {
                let holder = uuid::Uuid::new_v4().simple().to_string();
                loop {
                    match coordination.try_take_send_turn(tenant, &holder).await {
                        Ok(None) => break,
                        Ok(Some(wait)) => tokio::time::sleep(wait.min(Duration::from_secs(1))).await,
                        Err(e) => {
                            tracing::warn!(tenant = %tenant, error = %e, "shared send turn unavailable; pacing in this process");
                            tokio::time::sleep(interval).await;
                            break;
                        }
                    }
                }
                let out = start.await;
                if let Err(e) = coordination.finish_send_turn(tenant, &holder, interval).await {
                    tracing::warn!(tenant = %tenant, error = %e, "releasing the send turn failed; it expires by itself");
                }
                out
            })
            .await
    }

    async fn send_custom(
        &self,
        _permit: SenderOverridePermit,
        tenant: TenantId,
        version: i64,
        settings: &MailSettings,
        mail: &OutgoingMail,
    ) -> Result<SendReceipt, SendFailure> {
        let started = Instant::now();
        let sender = Self::custom_sender(settings);
        self.check_ports(settings).map_err(|f| elapsed(f, started, &sender))?;
        let built = message::build(settings.from_address(), settings.from_name(), None, mail)
            .map_err(|f| elapsed(f, started, &sender))?;
        // One pool per tenant and version, however many first sends race for it: the
        // cache builds it once and hands the others the same (its cap is the tenant's).
        let pool = self
            .inner
            .transports
            .try_get_with((tenant, version), async {
                self.new_pool(tenant, settings).map(Arc::new)
            })
            .await
            .map_err(|f| elapsed((*f).clone(), started, &sender))?;
        let interval = settings.send_interval().duration();
        let run = async {
            let transport = match settings.connection() {
                Some(id) => Some((id, self.access_token(tenant, id).await?)),
                None => None,
            };
            match transport {
                Some((id, token))
                    if matches!(token.kind.transport(), Transport::GraphSendMail | Transport::GmailApi) =>
                {
                    let api = token.kind.transport();
                    let send = self.send_by_api(tenant, id, api, token, &built.bytes, self.inner.config.send_timeout);
                    if interval.is_zero() {
                        send.await
                    } else {
                        self.paced_start(tenant, interval, send).await
                    }
                }
                Some((id, _)) => {
                    let first = self.send_on_pool(&pool, &built, Some((tenant, interval))).await;
                    if !token_refused(&first) {
                        return first;
                    }
                    // The session that failed is gone; the next one asks for a new token.
                    if let Some(sign_in) = self.inner.sign_in.get() {
                        sign_in.tokens.forget(id).await;
                    }
                    self.send_on_pool(&pool, &built, Some((tenant, interval))).await
                }
                None => self.send_on_pool(&pool, &built, Some((tenant, interval))).await,
            }
        };
        let deadline = self.inner.config.send_timeout + interval;
        let result = match tokio::time::timeout(deadline, run).await {
            Ok(r) => r,
            Err(_) => Err(SendFailure::new(SendStage::Timeout, FailureKind::TimedOut)),
        };
        match result {
            Ok((code, text)) => {
                tracing::info!(tenant = %tenant, message_id = %built.message_id, source = "CUSTOM", "mail accepted");
                Ok(SendReceipt {
                    message_id: built.message_id,
                    sender,
                    smtp_code: Some(code),
                    server_message: Some(text),
                    elapsed: started.elapsed(),
                })
            }
            Err(f) => {
                tracing::warn!(tenant = %tenant, message_id = %built.message_id, stage = f.stage.code(), code = ?f.smtp_code, "mail not sent");
                Err(elapsed(f, started, &sender))
            }
        }
    }

    async fn send_platform(
        &self,
        tenant: TenantId,
        mail: &OutgoingMail,
        reply_to: Option<&ReplyTo>,
    ) -> Result<SendReceipt, SendFailure> {
        let started = Instant::now();
        let sender = self.platform_sender();
        let p = &self.inner.config.platform_sender;
        let built =
            message::build(&p.address, p.name.as_ref(), reply_to, mail).map_err(|f| elapsed(f, started, &sender))?;
        let reply = match (&self.inner.config.relay, &self.inner.relay) {
            (PlatformRelay::Files(dir), _) => write_eml(dir, &built).await.map_err(|f| elapsed(f, started, &sender))?,
            (PlatformRelay::Smtp(_), Some(pool)) => {
                match tokio::time::timeout(self.inner.config.send_timeout, self.send_on_pool(pool, &built, None)).await
                {
                    Ok(r) => r.map_err(|f| elapsed(f, started, &sender))?,
                    Err(_) => {
                        return Err(elapsed(
                            SendFailure::new(SendStage::Timeout, FailureKind::TimedOut),
                            started,
                            &sender,
                        ));
                    }
                }
            }
            (PlatformRelay::Smtp(_), None) => {
                return Err(elapsed(
                    SendFailure::new(SendStage::Connect, FailureKind::Network),
                    started,
                    &sender,
                ));
            }
        };
        tracing::info!(tenant = %tenant, message_id = %built.message_id, source = "PLATFORM_DEFAULT", "mail accepted");
        Ok(SendReceipt {
            message_id: built.message_id,
            sender,
            smtp_code: Some(reply.0),
            server_message: Some(reply.1),
            elapsed: started.elapsed(),
        })
    }

    /// Drops the tenant's pooled connections except those of settings version `keep`
    /// (the version its mail goes through now; `None`: all of them).
    pub async fn forget_all_but(&self, tenant: TenantId, keep: Option<i64>) {
        let _ = self
            .inner
            .transports
            .invalidate_entries_if(move |k, _| k.0 == tenant && Some(k.1) != keep);
        self.inner.transports.run_pending_tasks().await;
    }

    /// Ends every idle pooled session with QUIT and waits, at most `deadline`, until each
    /// has been said (and the sessions already being closed too); how many were idle. For
    /// a shutdown, once nothing sends any more: a server that does not answer QUIT holds
    /// no one past the deadline (its connection goes when the process does).
    pub async fn close_all(&self, deadline: Duration) -> usize {
        self.inner.transports.run_pending_tasks().await;
        let mut closed = 0;
        for (_, pool) in &self.inner.transports {
            closed += pool.close_all_idle();
        }
        if let Some(relay) = &self.inner.relay {
            closed += relay.close_all_idle();
        }
        if tokio::time::timeout(deadline, self.inner.closing.settled())
            .await
            .is_err()
        {
            tracing::debug!(
                unanswered = self.inner.closing.in_progress(),
                "QUIT not answered within the deadline; those connections are dropped"
            );
        }
        closed
    }

    /// Cached tenant transports (for tests and memory figures).
    pub async fn cached_transports(&self) -> u64 {
        self.inner.transports.run_pending_tasks().await;
        self.inner.transports.entry_count()
    }
}

/// Writes a message as `<dir>/<time>-<id>.eml` (development default).
async fn write_eml(dir: &std::path::Path, built: &message::Built) -> Result<(u16, String), SendFailure> {
    let io = |_| SendFailure::new(SendStage::Data, FailureKind::Network);
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let stem: String = built
        .message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("{}-{stem}.eml", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
    let path = dir.join(name);
    let mut bytes = format!(
        "X-Mailgate-Envelope-From: {}\r\nX-Mailgate-Envelope-To: {}\r\n",
        built.from, built.to
    )
    .into_bytes();
    bytes.extend_from_slice(&built.bytes);
    tokio::fs::write(&path, bytes).await.map_err(io)?;
    Ok((250, format!("written to {}", path.display())))
}

#[async_trait::async_trait]
impl MailTransport for Mailer {
    async fn send(&self, tenant: &TenantRecord, mail: &OutgoingMail) -> Result<SendReceipt, SendFailure> {
        let id = tenant.tenant.id;
        match tenant.route() {
            // A fallback or a notice: the platform default, replies to the tenant.
            SenderRoute::Custom { settings, .. } if mail.via_platform => {
                self.send_platform(id, mail, Some(&ReplyTo::of(settings))).await
            }
            SenderRoute::Custom {
                permit,
                settings,
                version,
            } => self.send_custom(permit, id, version, settings, mail).await,
            SenderRoute::PlatformDefault { reply_to, .. } => self.send_platform(id, mail, reply_to.as_ref()).await,
            SenderRoute::Unreadable { .. } if mail.via_platform => self.send_platform(id, mail, None).await,
            // Never the platform default in their place: the tenant chose its own server.
            SenderRoute::Unreadable { .. } => {
                Err(SendFailure::new(SendStage::Resolve, FailureKind::SettingsUnreadable))
            }
        }
    }

    async fn probe(
        &self,
        _permit: SenderOverridePermit,
        target: &domain::probe::ProbeTarget,
        deadline: Duration,
    ) -> domain::probe::ProbeReport {
        self.run_probe(target, deadline).await
    }

    async fn check_host(&self, host: &Host, port: u16) -> HostCheck {
        self.inner.guard.check_on_save(host, port).await
    }

    async fn close_sessions(&self, deadline: Duration) {
        let closed = self.close_all(deadline).await;
        tracing::debug!(closed, "pooled SMTP sessions closed");
    }

    async fn pacing(&self, tenant: &TenantRecord) -> Option<Pacing> {
        let SenderRoute::Custom { settings, .. } = tenant.route() else {
            return None;
        };
        let interval = settings.send_interval().duration();
        if interval.is_zero() {
            return None;
        }
        let id = tenant.tenant.id;
        let here = match self.inner.pacers.get(&id).await {
            Some(pacer) => pacer.turn_in(interval),
            None => Duration::ZERO,
        };
        let shared = match &self.inner.coordination {
            Some(coordination) => coordination.send_turn_in(id, interval).await.unwrap_or_else(|e| {
                tracing::debug!(tenant = %id, error = %e, "reading the shared send turn failed");
                Duration::ZERO
            }),
            None => Duration::ZERO,
        };
        Some(Pacing {
            interval,
            next_turn_in: here.max(shared),
        })
    }

    async fn send_test(
        &self,
        _permit: SenderOverridePermit,
        tenant: TenantId,
        settings: &MailSettings,
        mail: &OutgoingMail,
        deadline: Duration,
    ) -> Result<SendReceipt, SendFailure> {
        let started = Instant::now();
        let sender = Self::custom_sender(settings);
        let run = async {
            self.check_ports(settings)?;
            let built = message::build(settings.from_address(), settings.from_name(), None, mail)?;
            // Each step gets what is left of the deadline, at most its usual time.
            let t = self.inner.config.timeouts;
            let step = (deadline / 2).min(t.connect);
            let t = Timeouts {
                connect: step,
                command: step,
                data: step,
            };
            let token = match settings.connection() {
                Some(id) => Some((id, self.access_token(tenant, id).await?)),
                None => None,
            };
            if let Some((id, token)) = &token
                && matches!(token.kind.transport(), Transport::GraphSendMail | Transport::GmailApi)
            {
                let reply = self
                    .send_by_api(tenant, *id, token.kind.transport(), token.clone(), &built.bytes, step)
                    .await?;
                return Ok::<_, SendFailure>((built.message_id, reply));
            }
            if let Some(pop) = settings.pop_before_smtp() {
                pop3::login(pop, &self.inner.tls, &self.inner.guard, step).await?;
            }
            let mut params = self.tenant_params(settings);
            let addrs = self.inner.guard.resolve(settings.host(), params.port, step).await?;
            let mut tries = 0;
            let mut session = loop {
                if let Some((id, token)) = &token {
                    // The first try with the token in hand, a second with a fresh one.
                    let token = if tries == 0 {
                        token.clone()
                    } else {
                        self.access_token(tenant, *id).await?
                    };
                    let user = settings
                        .username()
                        .map_or(token.mailbox.clone(), |u| u.as_str().to_owned());
                    params.credentials = Some((user, token.token));
                    params.mechanism = AuthMechanism::Xoauth2;
                }
                tries += 1;
                match session::open(&params, &addrs, &self.inner.tls, &t).await {
                    Ok(session) => break session,
                    Err(f) if f.kind == FailureKind::TokenRefused && tries == 1 => {
                        if let (Some((id, _)), Some(sign_in)) = (&token, self.inner.sign_in.get()) {
                            sign_in.tokens.forget(*id).await;
                        }
                    }
                    Err(f) => return Err(f),
                }
            };
            let reply = session
                .deliver(&built.from, &built.to, &built.bytes, built.smtputf8, &t)
                .await;
            // Said whether the mail went or was refused (a broken session is only dropped).
            session.quit(&t).await;
            Ok::<_, SendFailure>((built.message_id, reply?))
        };
        let result = match tokio::time::timeout(deadline, run).await {
            Ok(r) => r,
            Err(_) => Err(SendFailure::new(SendStage::Timeout, FailureKind::TimedOut)),
        };
        match result {
            Ok((message_id, (code, text))) => {
                tracing::info!(tenant = %tenant, message_id = %message_id, "test mail accepted");
                Ok(SendReceipt {
                    message_id,
                    sender,
                    smtp_code: Some(code),
                    server_message: Some(text),
                    elapsed: started.elapsed(),
                })
            }
            Err(f) => {
                tracing::info!(tenant = %tenant, stage = f.stage.code(), code = ?f.smtp_code, "test mail failed");
                Err(elapsed(f, started, &sender))
            }
        }
    }
}

/// Closes idle pooled sessions (with QUIT) once they sat longer than the idle limit, on a
/// timer of half that limit (1–30 s), for as long as the mailer exists; and at once, the
/// idle sessions to a host someone waits for a place at. Without it an idle session would
/// stay open until it is next wanted, or until the process stops.
fn close_idle_sessions_on_a_timer(inner: &Arc<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = (inner.config.pool.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let sweep = inner.hosts.sweep.clone();
    let mailer = Arc::downgrade(inner);
    runtime.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = sweep.notified() => {}
            }
            let Some(inner) = mailer.upgrade() else {
                return;
            };
            inner.hosts.prune();
            let mut closed = 0;
            for (_, pool) in &inner.transports {
                closed += pool.close_idle();
            }
            if let Some(relay) = &inner.relay {
                closed += relay.close_idle();
            }
            if closed > 0 {
                tracing::debug!(closed, "idle SMTP sessions closed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn relay_urls() {
        let u = RelayUrl::parse("smtps://user%40x.com:p%40ss@relay.example.com").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.encryption),
            ("relay.example.com", 465, Encryption::Ssl)
        );
        let (user, pass) = u.credentials.unwrap();
        assert_eq!((user.as_str(), pass.expose_secret()), ("user@x.com", "p@ss"));
        let u = RelayUrl::parse("smtp://relay:2525?starttls=required").unwrap();
        assert_eq!((u.port, u.encryption), (2525, Encryption::StartTls));
        assert!(u.credentials.is_none());
        assert!(RelayUrl::parse("http://x").is_err());
        assert!(!format!("{:?}", RelayUrl::parse("smtp://u:secretpw@h").unwrap()).contains("secretpw"));
    }

    #[tokio::test]
    async fn pacer_spaces_concurrent_callers() {
        let pacer = Arc::new(Pacer::default());
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..4 {
            let p = pacer.clone();
            handles.push(tokio::spawn(async move {
                p.paced(Duration::from_millis(50), async { Instant::now() }).await
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap().duration_since(start));
        }
        times.sort();
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(50), "{times:?}");
        }
    }
}
