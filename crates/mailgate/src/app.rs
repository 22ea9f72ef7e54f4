//! The one `App`: configuration, database, store, services and the GraphQL schema,
//! built once and passed down. No globals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use domain::PlatformSender;
use domain::service::TenantService;
use domain::settings::PortPolicy;
use graphql_api::auth::JwtKey;
use graphql_api::{JwtConfig, MailgateSchema, SchemaLimits, TokenVerifier, build_schema};
use mailer::{Mailer, MailerConfig, PlatformRelay, RelayUrl};
use persistence::crypto::SecretKeyRing;

use crate::config::{Config, JwtAlgorithm};

/// Everything a request handler or command needs.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub db: sea_orm::DatabaseConnection,
    pub keyring: Arc<SecretKeyRing>,
    pub service: TenantService,
    pub schema: MailgateSchema,
    pub verifier: Arc<TokenVerifier>,
    pub mailer: Arc<Mailer>,
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
    let key = match config.jwt_algorithm {
        JwtAlgorithm::HS256 => JwtKey::Hs256(config.jwt_secret.clone().context("MAILGATE_JWT_SECRET is not set")?),
        JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
            let path = config
                .jwt_public_key_file
                .as_ref()
                .context("MAILGATE_JWT_PUBLIC_KEY_FILE is not set")?;
            let pem = std::fs::read(path)
                .with_context(|| format!("MAILGATE_JWT_PUBLIC_KEY_FILE: cannot read {}", path.display()))?;
            if config.jwt_algorithm == JwtAlgorithm::RS256 {
                JwtKey::Rs256Pem(pem)
            } else {
                JwtKey::EdDsaPem(pem)
            }
        }
    };
    TokenVerifier::new(JwtConfig {
        key,
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        leeway_secs: 30,
    })
    .map_err(|e| anyhow::anyhow!("MAILGATE_JWT_PUBLIC_KEY_FILE: {e}"))
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
pub fn build_mailer(config: &Config, platform: PlatformSender) -> anyhow::Result<Mailer> {
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
    Mailer::new(MailerConfig {
        platform_sender: platform,
        relay,
        allow_private_hosts: config.allow_private_smtp_hosts,
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
            idle_timeout: secs(config.smtp_idle_timeout_secs),
            health_check_after: secs(5).min(secs(config.smtp_idle_timeout_secs)),
            pop_window: secs(config.pop_login_window_secs),
        },
        cache_capacity: config.transport_cache_capacity,
        cache_idle: secs(config.transport_cache_idle_secs),
        send_timeout: secs(config.smtp_send_timeout_secs),
    })
    .map_err(|e| anyhow::anyhow!("MAILGATE_SMTP_CA_FILE: {e}"))
}

/// Connects to the configured database.
pub async fn connect(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    persistence::connect(
        &config.database_url(),
        config.database_schema.as_deref(),
        config.database_max_connections,
    )
    .await
    .context("MAILGATE_DATABASE_URL: cannot connect to the database")
}

impl App {
    /// Connects, migrates (when configured) and wires everything. `config` must have
    /// passed [`Config::validate_and_prepare`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let verifier = token_verifier(&config)?;
        let keyring = Arc::new(keyring(&config)?);
        let db = connect(&config).await?;
        if config.auto_migrate {
            persistence::migrate(&db).await.context("running database migrations")?;
        }
        let platform =
            PlatformSender::parse(&config.default_from).map_err(|e| anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e}"))?;
        let store = persistence::SqlStore::new(db.clone(), keyring.clone());
        let cached = persistence::CachedStore::with_limits(
            store,
            config.tenant_cache_capacity,
            Duration::from_secs(config.tenant_cache_ttl_secs),
        );
        let mailer = Arc::new(build_mailer(&config, platform.clone())?);
        let ports = PortPolicy {
            smtp: config.smtp_allowed_ports.clone(),
            pop: config.pop_allowed_ports.clone(),
        };
        let service = TenantService::new(Arc::new(cached), platform, mailer.clone(), ports);
        let schema = build_schema(
            service.clone(),
            SchemaLimits {
                max_depth: config.max_query_depth,
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
        })
    }
}
