//! The one `App`: configuration, database, store, services and the GraphQL schema,
//! built once and passed down. No globals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use domain::PlatformSender;
use domain::delivery::RetryPolicy;
use domain::ports::{
    Coordination, DeliveryOutbox, DeliveryQueries, DeliveryQueue, MailTransport, TenantStore, TenantViews,
    WebhookQueue, WebhookStore,
};
use domain::services::TenantService;
use domain::services::assistant::AssistantService;
use domain::services::deliveries::DeliveryService;
use domain::services::webhooks::WebhookService;
use domain::settings::PortPolicy;
use graphql_api::auth::JwtKey;
use graphql_api::{JwtConfig, SchemaLimits, Schemas, TokenVerifier, build_schema};
use mailer::{Mailer, MailerConfig, PlatformRelay, RelayUrl};
use persistence::crypto::SecretKeyRing;
use worker::{Metrics, Worker, WorkerConfig};

use crate::config::{Config, JwtAlgorithm};

/// Deliveries stored by one enqueue statement at most.
const ENQUEUE_BATCH: usize = 64;

/// Everything a request handler or command needs.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: sea_orm::DatabaseConnection,
    pub keyring: Arc<SecretKeyRing>,
    pub service: TenantService,
    /// The GraphQL schema, strict and fast (see `graphql_api::validated`).
    pub schema: Schemas,
    pub verifier: Arc<TokenVerifier>,
    pub mailer: Arc<Mailer>,
    pub deliveries: DeliveryService,
    /// The worker's side of the delivery queue.
    pub delivery_queue: Arc<dyn DeliveryQueue>,
    pub tenants: Arc<dyn TenantStore>,
    /// The one owner of what this process keeps of tenants (see [`crate::views`]).
    pub views: Arc<dyn TenantViews>,
    /// Wakes this process's worker after an enqueue.
    pub queue_signal: Arc<worker::WorkSignal>,
    pub metrics: Arc<Metrics>,
    /// Every series `/metrics` answers (the worker's and the dispatcher's among them).
    pub telemetry: Arc<crate::metrics::Telemetry>,
    /// The webhook dispatcher's side of the webhook messages, and the operators'.
    pub webhook_queue: Arc<dyn WebhookQueue>,
    pub webhook_store: Arc<dyn WebhookStore>,
    /// The address guard for webhook endpoints (`MAILGATE_WEBHOOK_ALLOW_PRIVATE_HOSTS`).
    pub webhook_guard: mailer::guard::Guard,
    pub webhook_stats: Arc<webhooks::DispatchStats>,
    /// Held while this process uses a SQLite database.
    pub sqlite_lock: Option<Arc<SqliteLock>>,
    /// Parsed GraphQL documents by query text.
    pub query_cache: Arc<crate::query_cache::QueryCache>,
    /// The sign-ins' access tokens in this process (and their daily keep-alive).
    pub tokens: Arc<oauth::TokenCache>,
    /// The sign-in configuration (callbacks, return URLs).
    pub sign_in: Arc<crate::config::SignInConfig>,
    /// Opens the sealed sign-in `state` (the callback reads its return URL).
    pub state_seal: Arc<dyn domain::ports::StateSeal>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// Builds the token verifier from configuration.
pub fn token_verifier(config: &Config) -> anyhow::Result<TokenVerifier> {
    let (key, previous) = match config.jwt_algorithm {
        JwtAlgorithm::HS256 => {
            let previous = config
                .jwt_previous_secrets
                .as_ref()
                .map(|list| {
                    crate::config::split_secrets(list)
                        .map(|s| JwtKey::Hs256(secrecy::SecretString::from(s.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            (
                JwtKey::Hs256(config.jwt_secret.clone().context("MAILGATE_JWT_SECRET is not set")?),
                previous,
            )
        }
        JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
            let path = config
                .jwt_public_key_file
                .as_ref()
                .context("MAILGATE_JWT_PUBLIC_KEY_FILE is not set")?;
            let pem = std::fs::read(path)
                .with_context(|| format!("MAILGATE_JWT_PUBLIC_KEY_FILE: cannot read {}", path.display()))?;
            let wrap = |pem: Vec<u8>| {
                if config.jwt_algorithm == JwtAlgorithm::RS256 {
                    JwtKey::Rs256Pem(pem)
                } else {
                    JwtKey::EdDsaPem(pem)
                }
            };
            let mut blocks = JwtKey::pem_blocks(&pem).into_iter();
            let first = blocks
                .next()
                .with_context(|| format!("MAILGATE_JWT_PUBLIC_KEY_FILE: {} holds no PEM key", path.display()))?;
            (wrap(first), blocks.map(wrap).collect())
        }
    };
    let jwks = match &config.jwt_jwks_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("MAILGATE_JWT_JWKS_FILE: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    TokenVerifier::new(JwtConfig {
        key,
        previous,
        jwks,
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        leeway_secs: 30,
    })
    .map_err(|e| anyhow::anyhow!("MAILGATE_JWT_PUBLIC_KEY_FILE / MAILGATE_JWT_JWKS_FILE: {e}"))
}

/// The key ring for stored passwords.
pub fn keyring(config: &Config) -> anyhow::Result<SecretKeyRing> {
    let current = config.secret_key.as_ref().context("MAILGATE_SECRET_KEY is not set")?;
    let current = persistence::crypto::parse_key(current.expose_secret())
        .map_err(|e| anyhow::anyhow!("MAILGATE_SECRET_KEY: {e}"))?;
    let mut previous = Vec::new();
    if let Some(prev) = &config.previous_secret_keys {
        for k in prev.expose_secret().split(',').map(str::trim).filter(|k| !k.is_empty()) {
            previous.push(
                persistence::crypto::parse_key(k).map_err(|e| anyhow::anyhow!("MAILGATE_PREVIOUS_SECRET_KEYS: {e}"))?,
            );
        }
    }
    Ok(SecretKeyRing::new(current, previous))
}

/// The mailer, from configuration.
pub fn build_mailer(
    config: &Config,
    platform: PlatformSender,
    coordination: Option<Arc<dyn Coordination>>,
) -> anyhow::Result<Mailer> {
    let relay = match &config.default_smtp_url {
        Some(url) => PlatformRelay::Smtp(
            RelayUrl::parse(url.expose_secret()).map_err(|e| anyhow::anyhow!("MAILGATE_DEFAULT_SMTP_URL: {e}"))?,
        ),
        None => PlatformRelay::Files(config.data_dir.join("mail")),
    };
    let extra_ca_pem = match &config.smtp_ca_file {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("MAILGATE_SMTP_CA_FILE: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let secs = Duration::from_secs;
    Mailer::new(
        MailerConfig {
            platform_sender: platform,
            relay,
            allow_private_hosts: config.allow_private_smtp_hosts,
            dns_servers: config.dns_servers.clone(),
            ports: PortPolicy {
                smtp: config.smtp_allowed_ports.clone(),
                pop: config.pop_allowed_ports.clone(),
            },
            extra_ca_pem,
            ehlo_name: config.ehlo()?,
            timeouts: mailer::session::Timeouts {
                connect: secs(config.smtp_connect_timeout_secs),
                command: secs(config.smtp_command_timeout_secs),
                data: secs(config.smtp_command_timeout_secs * 2),
            },
            pool: mailer::pool::PoolLimits {
                max_connections: config.smtp_max_connections_per_tenant,
                max_connections_per_host: config.smtp_max_connections_per_host,
                idle_timeout: secs(config.smtp_idle_timeout_secs),
                health_check_after: secs(5).min(secs(config.smtp_idle_timeout_secs)),
                pop_window: secs(config.pop_login_window_secs),
            },
            cache_capacity: config.transport_cache_capacity,
            cache_idle: secs(config.transport_cache_idle_secs),
            send_timeout: secs(config.smtp_send_timeout_secs),
        },
        coordination,
    )
    .map_err(|e| match e {
        mailer::tls::TlsSetupError::RelayHost(_) => anyhow::anyhow!("MAILGATE_DEFAULT_SMTP_URL: {e}"),
        mailer::tls::TlsSetupError::BadPem(_) | mailer::tls::TlsSetupError::NoRoots => {
            anyhow::anyhow!("MAILGATE_SMTP_CA_FILE: {e}")
        }
    })
}

/// Holds an exclusive lock on a SQLite database file for the life of the process.
#[derive(Debug)]
pub struct SqliteLock(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

/// SQLite is for one process: a second process pointed at the same file is refused.
fn lock_sqlite(url: &str) -> anyhow::Result<Option<SqliteLock>> {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        return Ok(None);
    };
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("MAILGATE_DATABASE_URL: cannot open {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(SqliteLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "MAILGATE_DATABASE_URL: another Mailgate process is already using the SQLite database {path}. \
             SQLite serves one process; stop the other one, or use PostgreSQL to run several processes"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {lock_path}")),
    }
}

/// Connects to the configured database (locking a SQLite file for this process).
pub async fn connect(config: &Config) -> anyhow::Result<(sea_orm::DatabaseConnection, Option<SqliteLock>)> {
    let url = config.database_url();
    let lock = lock_sqlite(&url)?;
    let db = persistence::connect(&url, config.database_schema.as_deref(), config.database_max_connections)
        .await
        .context("MAILGATE_DATABASE_URL: cannot connect to the database")?;
    Ok((db, lock))
}

impl App {
    /// Connects, migrates (when configured) and wires everything. `config` must have
    /// passed [`Config::validate_and_prepare`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let verifier = token_verifier(&config)?;
        let keyring = Arc::new(keyring(&config)?);
        let (db, sqlite_lock) = connect(&config).await?;
        if config.auto_migrate {
            persistence::migrate(&db).await.context("running database migrations")?;
        }
        let platform =
            PlatformSender::parse(&config.default_from).map_err(|e| anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e}"))?;
        let store = persistence::SqlStore::new(db.clone(), keyring.clone());
        let webhook_store = Arc::new(store.clone());
        // Concurrent enqueues share one statement and one commit (SQLite has one writer;
        // on PostgreSQL a few batches may be written at once).
        let writers = match sea_orm::ConnectionTrait::get_database_backend(&db) {
            sea_orm::DbBackend::Postgres => usize::try_from(config.database_max_connections / 2)
                .unwrap_or(1)
                .clamp(1, 8),
            _ => 1,
        };
        let outbox: Arc<dyn DeliveryOutbox> = Arc::new(persistence::GroupCommit::start(
            Arc::new(store.clone()),
            ENQUEUE_BATCH,
            writers,
        ));
        let delivery_queue: Arc<dyn DeliveryQueue> = Arc::new(store.clone());
        let oauth_store = Arc::new(store.clone());
        let delivery_queries: Arc<dyn DeliveryQueries> = Arc::new(store.clone());
        let coordination: Arc<dyn Coordination> = Arc::new(store.clone());
        let quota_gate = Arc::new(persistence::QuotaGate::new(store.clone()));
        let quota: Arc<dyn domain::ports::EnqueueQuota> = quota_gate.clone();
        let cached = persistence::CachedStore::with_limits(
            store,
            config.tenant_cache_capacity,
            Duration::from_secs(config.tenant_cache_ttl_secs),
        );
        let mailer = Arc::new(build_mailer(&config, platform.clone(), Some(coordination.clone()))?);
        let ports = PortPolicy {
            smtp: config.smtp_allowed_ports.clone(),
            pop: config.pop_allowed_ports.clone(),
        };
        let cached = Arc::new(cached);
        let tenants: Arc<dyn TenantStore> = cached.clone();
        // The one owner of what this process keeps of tenants: told by the services and
        // the worker after each change, and by the listener of every change another
        // process announces (and this process's own, which come back on PostgreSQL).
        let views: Arc<dyn TenantViews> = Arc::new(crate::views::LocalViews::new(
            cached.clone(),
            quota_gate.clone(),
            mailer.clone(),
        ));
        tokio::spawn(persistence::listen_for_changes(db.clone(), {
            let views = views.clone();
            move |changed| {
                let views = views.clone();
                async move {
                    match changed {
                        Some(id) => views.changed(id).await,
                        None => views.all_changed().await,
                    }
                }
            }
        }));
        let queue_signal = Arc::new(worker::WorkSignal::default());
        let wake = queue_signal.clone();
        let deliveries = DeliveryService::new(tenants.clone(), outbox, delivery_queries, &platform, views.clone())
            .with_signal(Arc::new(move |tenant| wake.tenant_has_work(tenant)))
            .with_quota(
                quota,
                domain::quota::EnqueueLimits {
                    per_minute: config.enqueue_per_minute,
                    per_day: config.enqueue_per_day,
                },
            );
        let lookups: Arc<dyn domain::ports::SetupLookups> = Arc::new(assistant::Lookups::new(
            &mailer,
            assistant::LookupsConfig {
                https_port: config.autoconfig_https_port,
                ..assistant::LookupsConfig::default()
            },
        ));
        let assistant = AssistantService::new(
            tenants.clone(),
            mailer.clone(),
            coordination.clone(),
            lookups.clone(),
            config.probe_pairs.clone(),
        );
        let metrics = Arc::new(Metrics::default());
        let webhook_stats = Arc::new(webhooks::DispatchStats::default());
        let telemetry = Arc::new(crate::metrics::Telemetry::new(&metrics, &webhook_stats));
        let counted = telemetry.clone();
        // Sign-in with Microsoft or Google (issue 25): the providers, access tokens in this
        // process's memory, and the mail APIs the mailer sends through.
        let sign_in = config.sign_in()?;
        let mail_connections: Arc<dyn domain::ports::MailConnections> = oauth_store.clone();
        let mut providers = oauth::Providers::new(
            sign_in.microsoft.clone(),
            sign_in.google.clone(),
            oauth::TokenClient::new(mailer.guard().resolver.clone(), mailer.tls().clone()),
        );
        if let Some(template) = &sign_in.microsoft_app_token_url {
            providers = providers.with_microsoft_app(template);
        }
        if let Some(account) = &sign_in.service_account {
            providers = providers.with_service_account(account.clone());
        }
        // Token endpoints tenants name go through the tenants' address guard.
        providers = providers.with_tenant_client(oauth::TokenClient::for_tenants(
            mailer.guard().clone(),
            mailer.tls().clone(),
        ));
        let providers = Arc::new(providers);
        let tokens = Arc::new(oauth::TokenCache::new(providers.clone(), mail_connections.clone()));
        mailer.use_sign_ins(tokens.clone(), sign_in.apis.clone());
        let service = TenantService::new(
            tenants.clone(),
            platform,
            mailer.clone(),
            ports,
            coordination,
            views.clone(),
        )
        .with_activation(config.settings_activation.mode())
        .with_product_name(config.product_name.trim())
        .with_lookups(lookups)
        .with_connections(mail_connections.clone())
        .with_test_mail_counter(Arc::new(move |count| counted.test_mail(count)));
        let connections = domain::services::connections::ConnectionService::new(
            Arc::new(service.clone()),
            providers.clone(),
            oauth_store.clone(),
            oauth_store.clone(),
            mail_connections,
            tokens.clone(),
            sign_in.return_urls.clone(),
        );
        let webhook_guard = mailer::guard::Guard {
            allow_private: config.webhook_allow_private_hosts,
            resolver: mailer.guard().resolver.clone(),
        };
        let webhooks = WebhookService::new(
            webhook_store.clone(),
            tenants.clone(),
            Arc::new(webhooks::GuardCheck(webhook_guard.clone())),
        );
        let schema = build_schema(
            service.clone(),
            deliveries.clone(),
            assistant,
            webhooks,
            connections,
            SchemaLimits {
                max_complexity: config.max_query_complexity,
                introspection: config.introspection_enabled(),
            },
        );
        Ok(Self {
            config: Arc::new(config),
            db,
            keyring,
            service,
            schema,
            verifier: Arc::new(verifier),
            mailer,
            deliveries,
            delivery_queue,
            tenants,
            views,
            queue_signal,
            metrics,
            telemetry,
            webhook_queue: webhook_store.clone(),
            webhook_store,
            webhook_guard,
            webhook_stats,
            sqlite_lock: sqlite_lock.map(Arc::new),
            query_cache: Arc::new(crate::query_cache::QueryCache::default()),
            tokens,
            sign_in: Arc::new(sign_in),
            state_seal: oauth_store,
        })
    }

    /// Starts the daily refresh of idle sign-ins (when a provider is set up), so neither
    /// Microsoft's 90-day nor Google's 6-month inactivity limit ends a connection. Runs
    /// wherever mail is delivered; several processes share the work through the store's
    /// refresh lease.
    pub fn keep_connections_alive(&self) -> Option<tokio::task::JoinHandle<()>> {
        let on = self.sign_in.microsoft.is_some() || self.sign_in.google.is_some();
        // App-only connections have no refresh token to keep alive.
        on.then(|| {
            self.tokens
                .spawn_keep_alive(Duration::from_secs(self.config.oauth_keep_alive_secs))
        })
    }

    /// The delivery worker for this process, woken by enqueues made through this app.
    pub fn worker(&self) -> Worker {
        let c = &self.config;
        let secs = Duration::from_secs;
        let config = WorkerConfig {
            worker_id: domain::LeaseOwner::unique(&hostname()),
            batch_size: c.worker_batch_size,
            max_in_flight: c.worker_max_in_flight,
            per_tenant_in_flight: c.smtp_max_connections_per_tenant,
            // Unproven tenants get a budget of their own, as large as the main one.
            max_probing: c.worker_max_in_flight,
            lease: secs(c.worker_lease_secs),
            poll_interval: Duration::from_millis(c.worker_poll_ms),
            shutdown_grace: secs(c.worker_shutdown_grace_secs),
            retry: RetryPolicy {
                base: secs(c.retry_base_secs),
                max_delay: secs(c.retry_max_delay_secs),
                max_age: secs(c.delivery_max_age_secs),
                defer: secs(c.rate_limit_defer_secs),
                configuration_failures_wait: c.suspend_after_failures > 0,
                fallback_after: (c.fallback_after_secs > 0).then(|| secs(c.fallback_after_secs)),
            },
            suspend_after_failures: c.suspend_after_failures,
            retention: (c.retention_days > 0).then(|| secs(c.retention_days.saturating_mul(24 * 3600))),
            history: (c.delivery_history_days > 0).then(|| secs(c.delivery_history_days.saturating_mul(24 * 3600))),
        };
        let mailer: Arc<dyn MailTransport> = self.mailer.clone();
        Worker::new(
            config,
            self.delivery_queue.clone(),
            self.tenants.clone(),
            mailer,
            self.views.clone(),
            self.metrics.clone(),
        )
        .with_wake(self.queue_signal.clone())
        .with_trace_link(Arc::new(crate::telemetry::link_to))
    }
}

impl App {
    /// The webhook dispatcher for this process.
    pub fn dispatcher(&self) -> webhooks::Dispatcher {
        let c = &self.config;
        webhooks::Dispatcher::new(
            webhooks::DispatchConfig {
                owner: domain::LeaseOwner::unique(&hostname()),
                max_in_flight: c.webhook_max_in_flight,
                per_endpoint: c.webhook_per_endpoint_in_flight,
                attempt_timeout: Duration::from_secs(c.webhook_timeout_secs),
                poll_interval: Duration::from_millis(c.webhook_poll_ms),
                retention: (c.retention_days > 0)
                    .then(|| Duration::from_secs(c.retention_days.saturating_mul(24 * 3600))),
            },
            self.webhook_queue.clone(),
            self.webhook_guard.clone(),
            self.mailer.tls().clone(),
            self.webhook_stats.clone(),
        )
    }
}

/// This host's name, for lease owners (readable in the database).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mailgate".to_owned())
}
