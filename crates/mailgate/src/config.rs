//! Configuration: defaults, then an optional TOML file (`MAILGATE_CONFIG` or
//! `--config`), then `MAILGATE_*` environment variables. Validated once at start-up with
//! a message that names the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Development (the default: generated secrets, GraphiQL on) or production (every
/// secret must be configured, GraphiQL and introspection off unless asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What makes saved settings live (`MAILGATE_SETTINGS_ACTIVATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SettingsActivation {
    /// A successful test mail of the saved settings.
    #[default]
    Test,
    /// The one-time code that test mail carries, given to `activateMailSettings`.
    Code,
    /// Live on save, unproven.
    Save,
}

impl SettingsActivation {
    pub fn mode(self) -> domain::health::ActivationMode {
        match self {
            Self::Test => domain::health::ActivationMode::Test,
            Self::Code => domain::health::ActivationMode::Code,
            Self::Save => domain::health::ActivationMode::Save,
        }
    }
}

/// How bearer tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum JwtAlgorithm {
    #[default]
    HS256,
    RS256,
    EdDSA,
}

/// Every setting, as read. Names map to `MAILGATE_<UPPER_NAME>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub profile: Profile,
    /// Where the SQLite database, development secrets and `.eml` files live.
    pub data_dir: PathBuf,
    /// Default: `sqlite://<data_dir>/mailgate.db`.
    pub database_url: Option<String>,
    /// PostgreSQL schema (search_path) to use; default the server's.
    pub database_schema: Option<String>,
    pub database_max_connections: u32,
    /// Run migrations when `serve` starts.
    pub auto_migrate: bool,
    pub listen: SocketAddr,
    /// An OTLP/HTTP collector (`http://collector:4318`) to send traces to; unset: the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT`, and without either no traces.
    pub otlp_endpoint: Option<String>,
    /// Where `mailgate worker` answers `/metrics`, `/healthz` and `/readyz` (it serves no
    /// GraphQL).
    pub worker_listen: SocketAddr,
    pub jwt_algorithm: JwtAlgorithm,
    /// HS256 shared secret, at least 32 bytes.
    pub jwt_secret: Option<SecretString>,
    /// PEM public key for RS256 / EdDSA; several concatenated PEM keys are all accepted
    /// (the old and the new one while they rotate).
    pub jwt_public_key_file: Option<PathBuf>,
    /// Earlier HS256 secrets, comma-separated, still accepted until their tokens expire.
    pub jwt_previous_secrets: Option<SecretString>,
    /// A JWKS document (RS256 / EdDSA) whose keys are accepted too, chosen by `kid`.
    pub jwt_jwks_file: Option<PathBuf>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Base64 of 32 random bytes: encrypts stored SMTP/POP passwords (AES-256-GCM).
    pub secret_key: Option<SecretString>,
    /// Comma-separated earlier keys, still accepted for reading until rotated.
    pub previous_secret_keys: Option<SecretString>,
    /// The platform relay (`smtp://` or `smtps://`); unset = `.eml` files in the data directory.
    pub default_smtp_url: Option<SecretString>,
    /// The platform's default sender, e.g. `Platform <noreply@example.com>`.
    pub default_from: String,
    /// Lets tenants use servers on private and loopback addresses (development, tests).
    pub allow_private_smtp_hosts: bool,
    /// The production profile refuses `allow_private_smtp_hosts` without this second,
    /// explicit acknowledgement (a local demo such as the compose file's Mailpit).
    pub allow_private_smtp_hosts_in_production: bool,
    /// Lets webhook endpoints be on internal addresses (loopback, private networks): the
    /// platform's own services often are. Off: such URLs are refused on save and on send.
    pub webhook_allow_private_hosts: bool,
    /// One webhook attempt's deadline (connect, send, read the answer).
    pub webhook_timeout_secs: u64,
    /// Webhook attempts in flight per process at most, and per endpoint at most.
    pub webhook_max_in_flight: u32,
    pub webhook_per_endpoint_in_flight: u32,
    /// How often the webhook dispatcher looks for due messages.
    pub webhook_poll_ms: u64,
    /// DNS servers (`ip` or `ip:port`, comma-separated) for tenants' host names and the setup
    /// assistant's MX, SRV and TXT lookups; empty: the system's resolver.
    #[serde(deserialize_with = "dns_server_list")]
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// The pairs the setup assistant's probe tries on every host, besides the form's own:
    /// `port/encryption`, comma-separated (`587/starttls,465/ssl,25/starttls,2525/starttls`).
    #[serde(deserialize_with = "probe_pair_list")]
    pub probe_pairs: Vec<(u16, domain::settings::Encryption)>,
    /// The port autoconfig documents are fetched from: 443; tests set their server's.
    #[serde(skip)]
    pub autoconfig_https_port: u16,
    pub log_format: LogFormat,
    /// The JWT secret in use is the development one Mailgate generated (then, and only
    /// then, the development banner prints a working operator token).
    #[serde(skip)]
    pub jwt_secret_generated: bool,
    /// The Kubernetes service-link variables (`MAILGATE_PORT`, `MAILGATE_SERVICE_HOST`, …)
    /// that were set and ignored; logged at start.
    #[serde(skip)]
    pub ignored_service_links: Vec<String>,
    /// GraphiQL at `GET /graphql`; default on in development.
    pub graphiql: Option<bool>,
    /// Schema introspection; default on in development.
    pub introspection: Option<bool>,
    /// The console in the browser at `/console/`; default on in development.
    pub console: Option<bool>,
    pub max_body_bytes: usize,
    /// A `/graphql` request that has not answered after this many seconds is ended with
    /// `TIMEOUT`; keep it above a test mail's 20 s.
    pub request_timeout_secs: u64,
    /// `/graphql` requests handled at once; more are refused at once with `OVERLOADED`
    /// (503, `Retry-After`) instead of queueing.
    pub max_requests_in_flight: usize,
    pub max_batch_size: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    pub tenant_cache_capacity: u64,
    pub tenant_cache_ttl_secs: u64,
    /// SMTP ports tenants may use (`25,465,587,2525`).
    #[serde(deserialize_with = "port_list")]
    pub smtp_allowed_ports: Vec<u16>,
    /// POP3 ports tenants may use for POP-before-SMTP (`110,995`).
    #[serde(deserialize_with = "port_list")]
    pub pop_allowed_ports: Vec<u16>,
    /// Extra trusted CA certificates (PEM) for tenants' and the relay's servers.
    pub smtp_ca_file: Option<PathBuf>,
    /// EHLO name when a tenant sets none; default: the domain of `MAILGATE_DEFAULT_FROM`.
    pub ehlo_name: Option<String>,
    /// Open SMTP connections per tenant at most.
    pub smtp_max_connections_per_tenant: usize,
    /// Open SMTP connections to one destination host name at most, across all tenants
    /// (many tenants on one provider share its limits); the platform relay is not counted.
    pub smtp_max_connections_per_host: usize,
    /// An idle SMTP connection is closed after this many seconds.
    pub smtp_idle_timeout_secs: u64,
    pub smtp_connect_timeout_secs: u64,
    pub smtp_command_timeout_secs: u64,
    /// A whole send gives up after this many seconds (plus the tenant's send interval).
    pub smtp_send_timeout_secs: u64,
    /// POP-before-SMTP logins are repeated once older than this.
    pub pop_login_window_secs: u64,
    /// Cached tenant transports at most, and how long an unused one is kept.
    pub transport_cache_capacity: u64,
    pub transport_cache_idle_secs: u64,
    /// Run the delivery worker inside `serve` (turn off when separate `mailgate worker`
    /// processes deliver).
    pub worker_enabled: bool,
    pub worker_batch_size: u32,
    pub worker_max_in_flight: usize,
    /// How long a claim holds without renewal (renewed every third of it while held):
    /// also how long a crashed process's deliveries wait before another takes them up.
    pub worker_lease_secs: u64,
    pub worker_poll_ms: u64,
    pub worker_shutdown_grace_secs: u64,
    /// First retry after this many seconds, doubled each time up to the maximum.
    pub retry_base_secs: u64,
    pub retry_max_delay_secs: u64,
    /// A delivery still failing after this age fails for good (`expired`); 3 days.
    pub delivery_max_age_secs: u64,
    /// Wait after a rate-limit reply (421, 4.7.x, "too many").
    pub rate_limit_defer_secs: u64,
    /// What makes saved settings live: `test` (a successful test mail of them), `code`
    /// (the code that test mail carries) or `save` (at once).
    pub settings_activation: SettingsActivation,
    /// Configuration failures in a row (wrong password, SMTP AUTH off, sender refused,
    /// certificate no longer valid) after which a live version is suspended and the
    /// tenant's mail goes through the platform default; 0: never.
    pub suspend_after_failures: u32,
    /// Password-reset and registration mail that the tenant's server has not taken after
    /// this many seconds (for a temporary reason) goes through the platform default; 0: never.
    pub fallback_after_secs: u64,
    /// Days a SENT or FAILED delivery keeps its recipient, subject, bodies and reply texts
    /// (status, times, codes and a hash of the recipient stay); 0: for ever.
    pub retention_days: u64,
    /// Notifications one tenant may hand in per UTC minute / per UTC day (an operator can
    /// override them per tenant); 0: no limit.
    pub enqueue_per_minute: u32,
    pub enqueue_per_day: u32,
    /// Where browsers reach this service (`https://mailgate.example.net`): the sign-in
    /// callbacks are `<public_url>/oauth/microsoft/callback` and `…/google/callback`, and
    /// the console is `<public_url>/console/`. Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// "Connect with Microsoft": the multi-tenant Entra app's client id and secret; unset:
    /// off. The endpoints default to Microsoft's (`common`: work and personal accounts).
    pub oauth_microsoft_client_id: Option<String>,
    pub oauth_microsoft_client_secret: Option<SecretString>,
    pub oauth_microsoft_authorize_url: String,
    pub oauth_microsoft_token_url: String,
    pub oauth_microsoft_admin_consent_url: String,
    pub oauth_microsoft_graph_url: String,
    /// Microsoft app-only tokens (`SMTP.SendAsApp`): the token URL with `{tenant}` for the
    /// organisation; used with the Microsoft client id and secret.
    pub oauth_microsoft_app_token_url: String,
    /// Google Workspace domain-wide delegation: the service account's JSON key file.
    pub oauth_google_service_account_file: Option<PathBuf>,
    /// "Connect with Google": the Google project's OAuth client id and secret; unset: off.
    pub oauth_google_client_id: Option<String>,
    pub oauth_google_client_secret: Option<SecretString>,
    pub oauth_google_authorize_url: String,
    pub oauth_google_token_url: String,
    pub oauth_google_revoke_url: String,
    pub oauth_google_gmail_url: String,
    /// Where a sign-in may send the browser back to besides the console: comma-separated
    /// `https://panel.example.com/mail` (that URL and below it).
    pub oauth_return_urls: Option<String>,
    /// How often idle connections are looked for and refreshed (each once a day), so no
    /// provider's inactivity limit ends them.
    pub oauth_keep_alive_secs: u64,
}

/// Accepts `[25, 587]`, `"25,587"` or `587`.
fn port_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<u16>),
        One(u16),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::List(v) => Ok(v),
        Raw::One(p) => Ok(vec![p]),
        Raw::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| serde::de::Error::custom(format!("{p:?} is not a port")))
            })
            .collect(),
    }
}

/// Accepts `"587/starttls, 465/ssl"` (encryption `none`, `ssl` or `starttls`).
fn probe_pair_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(u16, domain::settings::Encryption)>, D::Error> {
    let text = String::deserialize(d)?;
    parse_probe_pairs(&text).map_err(serde::de::Error::custom)
}

pub(crate) fn parse_probe_pairs(text: &str) -> Result<Vec<(u16, domain::settings::Encryption)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (port, encryption) = item
                .split_once('/')
                .ok_or_else(|| format!("{item:?} is not port/encryption (e.g. 587/starttls)"))?;
            let port = port
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("{port:?} is not a port"))?;
            let encryption = domain::settings::Encryption::from_code(&encryption.trim().to_ascii_uppercase())
                .ok_or_else(|| format!("{encryption:?} is not none, ssl or starttls"))?;
            Ok((port, encryption))
        })
        .collect()
}

/// Accepts `"192.0.2.53, 127.0.0.1:5353, [::1]:53"` or a list of such; port 53 by default.
fn dns_server_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<std::net::SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items: Vec<String> = match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(t) => t.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address or ip:port")))
        })
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: Profile::Development,
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_schema: None,
            database_max_connections: 16,
            auto_migrate: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            worker_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            otlp_endpoint: None,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_previous_secrets: None,
            jwt_jwks_file: None,
            jwt_issuer: "mailgate".into(),
            jwt_audience: "mailgate".into(),
            secret_key: None,
            previous_secret_keys: None,
            default_smtp_url: None,
            default_from: "Mailgate <noreply@example.com>".into(),
            allow_private_smtp_hosts: false,
            allow_private_smtp_hosts_in_production: false,
            webhook_allow_private_hosts: false,
            webhook_timeout_secs: 10,
            webhook_max_in_flight: 32,
            webhook_per_endpoint_in_flight: 2,
            webhook_poll_ms: 1000,
            dns_servers: Vec::new(),
            probe_pairs: domain::probe::USUAL_PAIRS.to_vec(),
            autoconfig_https_port: 443,
            log_format: LogFormat::Text,
            jwt_secret_generated: false,
            ignored_service_links: Vec::new(),
            graphiql: None,
            introspection: None,
            console: None,
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
            max_requests_in_flight: 256,
            max_batch_size: 10,
            max_query_depth: 12,
            max_query_complexity: 5000,
            tenant_cache_capacity: 10_000,
            tenant_cache_ttl_secs: 60,
            smtp_allowed_ports: vec![25, 465, 587, 2525],
            pop_allowed_ports: vec![110, 995],
            smtp_ca_file: None,
            ehlo_name: None,
            smtp_max_connections_per_tenant: 4,
            smtp_max_connections_per_host: 32,
            smtp_idle_timeout_secs: 60,
            smtp_connect_timeout_secs: 10,
            smtp_command_timeout_secs: 30,
            smtp_send_timeout_secs: 120,
            pop_login_window_secs: 300,
            transport_cache_capacity: 10_000,
            transport_cache_idle_secs: 600,
            worker_enabled: true,
            worker_batch_size: 32,
            worker_max_in_flight: 64,
            worker_lease_secs: 10,
            worker_poll_ms: 500,
            worker_shutdown_grace_secs: 25,
            retry_base_secs: 30,
            retry_max_delay_secs: 3600,
            delivery_max_age_secs: 3 * 24 * 3600,
            rate_limit_defer_secs: 60,
            settings_activation: SettingsActivation::Test,
            suspend_after_failures: 3,
            fallback_after_secs: 900,
            retention_days: 30,
            enqueue_per_minute: 6_000,
            enqueue_per_day: 200_000,
            public_url: None,
            oauth_microsoft_client_id: None,
            oauth_microsoft_client_secret: None,
            oauth_microsoft_authorize_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize".into(),
            oauth_microsoft_token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token".into(),
            oauth_microsoft_admin_consent_url: "https://login.microsoftonline.com/organizations/v2.0/adminconsent"
                .into(),
            oauth_microsoft_graph_url: "https://graph.microsoft.com".into(),
            oauth_microsoft_app_token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token".into(),
            oauth_google_service_account_file: None,
            oauth_google_client_id: None,
            oauth_google_client_secret: None,
            oauth_google_authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            oauth_google_token_url: "https://oauth2.googleapis.com/token".into(),
            oauth_google_revoke_url: "https://oauth2.googleapis.com/revoke".into(),
            oauth_google_gmail_url: "https://gmail.googleapis.com".into(),
            oauth_return_urls: None,
            oauth_keep_alive_secs: 3600,
        }
    }
}

/// The sign-in part of the configuration, checked: each provider that has a client id,
/// where the mail APIs are, and the return URLs allowed.
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// Microsoft app-only token URL template, when Microsoft is set up with a secret.
    pub microsoft_app_token_url: Option<String>,
    /// Google Workspace domain-wide delegation.
    pub service_account: Option<std::sync::Arc<oauth::ServiceAccount>>,
    pub microsoft: Option<oauth::ProviderConfig>,
    pub google: Option<oauth::ProviderConfig>,
    pub apis: mailer::api::MailApis,
    pub return_urls: domain::oauth::ReturnUrlAllowList,
    /// The console's address, where a sign-in returns by default.
    pub console_url: String,
}

impl Config {
    /// `<public_url>` without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The sign-in configuration, or the first problem, naming its setting.
    pub fn sign_in(&self) -> anyhow::Result<SignInConfig> {
        use domain::oauth::{Provider, SignInEndpoint};
        let base = self.public_base();
        let url = |name: &str, raw: &str| -> anyhow::Result<url::Url> {
            let u = url::Url::parse(raw.trim()).map_err(|e| anyhow::anyhow!("MAILGATE_{name}: {raw:?} {e}"))?;
            if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
                bail!("MAILGATE_{name}: {raw:?} is not an http(s) URL");
            }
            Ok(u)
        };
        url("PUBLIC_URL", &base)?;
        let provider = |provider: Provider,
                        name: &str,
                        id: &Option<String>,
                        secret: &Option<SecretString>,
                        authorize: &str,
                        token: &str,
                        admin_consent: Option<&str>,
                        revoke: Option<&str>|
         -> anyhow::Result<Option<oauth::ProviderConfig>> {
            let Some(id) = id.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            let callback = format!("{base}/oauth/{}/callback", name.to_ascii_lowercase());
            let sign_in = SignInEndpoint::new(provider, authorize, id, &callback, admin_consent)
                .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_{name}_AUTHORIZE_URL: {e}"))?;
            let auth = match secret {
                Some(s) => oauth::ClientAuth::Secret(s.clone()),
                None => oauth::ClientAuth::None,
            };
            let token = oauth::TokenEndpoint::new(token, id, auth)
                .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_{name}_TOKEN_URL: {e}"))?;
            let revoke_url = revoke
                .map(|r| url(&format!("OAUTH_{name}_REVOKE_URL"), r))
                .transpose()?;
            Ok(Some(oauth::ProviderConfig {
                sign_in,
                token,
                revoke_url,
            }))
        };
        let microsoft = provider(
            Provider::Microsoft,
            "MICROSOFT",
            &self.oauth_microsoft_client_id,
            &self.oauth_microsoft_client_secret,
            &self.oauth_microsoft_authorize_url,
            &self.oauth_microsoft_token_url,
            Some(&self.oauth_microsoft_admin_consent_url),
            None,
        )?;
        let google = provider(
            Provider::Google,
            "GOOGLE",
            &self.oauth_google_client_id,
            &self.oauth_google_client_secret,
            &self.oauth_google_authorize_url,
            &self.oauth_google_token_url,
            None,
            Some(&self.oauth_google_revoke_url),
        )?;
        let microsoft_app_token_url = match &microsoft {
            Some(m) if m.token.has_secret() => {
                if !self
                    .oauth_microsoft_app_token_url
                    .contains(oauth::DIRECTORY_PLACEHOLDER)
                {
                    bail!(
                        "MAILGATE_OAUTH_MICROSOFT_APP_TOKEN_URL: must contain {} for the organisation, e.g. https://login.microsoftonline.com/{{tenant}}/oauth2/v2.0/token",
                        oauth::DIRECTORY_PLACEHOLDER
                    );
                }
                let sample = self
                    .oauth_microsoft_app_token_url
                    .replace(oauth::DIRECTORY_PLACEHOLDER, "contoso.onmicrosoft.com");
                m.token
                    .at(&sample)
                    .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_MICROSOFT_APP_TOKEN_URL: {e}"))?;
                Some(self.oauth_microsoft_app_token_url.clone())
            }
            _ => None,
        };
        let service_account = match &self.oauth_google_service_account_file {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "MAILGATE_OAUTH_GOOGLE_SERVICE_ACCOUNT_FILE: cannot read {}",
                        path.display()
                    )
                })?;
                Some(std::sync::Arc::new(oauth::ServiceAccount::from_json(&bytes).map_err(
                    |e| anyhow::anyhow!("MAILGATE_OAUTH_GOOGLE_SERVICE_ACCOUNT_FILE: {}: {e}", path.display()),
                )?))
            }
            None => None,
        };
        let apis = mailer::api::MailApis {
            graph: url("OAUTH_MICROSOFT_GRAPH_URL", &self.oauth_microsoft_graph_url)?,
            gmail: url("OAUTH_GOOGLE_GMAIL_URL", &self.oauth_google_gmail_url)?,
        };
        let console_url = format!("{base}/console/");
        let on = microsoft.is_some() || google.is_some() || service_account.is_some();
        // The console is where a sign-in returns by default: it must be a return URL a
        // browser may be sent to (https, or http on loopback) once sign-in is on.
        let console_ok = domain::oauth::ReturnUrlAllowList::parse([console_url.as_str()]).is_ok();
        if on && !console_ok {
            bail!(
                "MAILGATE_PUBLIC_URL: {base:?} must be the https address browsers reach Mailgate at (http only on loopback) when sign-in with Microsoft or Google is set up"
            );
        }
        let mut entries = Vec::new();
        if console_ok {
            entries.push(console_url.clone());
        }
        if let Some(list) = &self.oauth_return_urls {
            entries.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        let return_urls = domain::oauth::ReturnUrlAllowList::parse(entries.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("MAILGATE_OAUTH_RETURN_URLS: {e}"))?;
        if self.oauth_keep_alive_secs == 0 {
            bail!("MAILGATE_OAUTH_KEEP_ALIVE_SECS must be at least 1");
        }
        Ok(SignInConfig {
            microsoft_app_token_url,
            service_account,
            microsoft,
            google,
            apis,
            return_urls,
            console_url,
        })
    }
}

/// The secrets of a comma-separated list, trimmed, empty entries skipped.
pub fn split_secrets(list: &SecretString) -> impl Iterator<Item = &str> {
    list.expose_secret().split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Development secrets generated on first start, kept in the data directory (mode 0600).
#[derive(Debug, Deserialize, serde::Serialize)]
struct DevSecrets {
    jwt_secret: String,
    secret_key: String,
}

/// Whether `key` (a `MAILGATE_` variable's name without the prefix, any case) is one that
/// Kubernetes injects for a Service whose name starts with `mailgate` (service links:
/// `MAILGATE_PORT`, `MAILGATE_SERVICE_HOST`, `MAILGATE_SERVICE_PORT[_NAME]`,
/// `MAILGATE_PORT_80_TCP[_PROTO|_PORT|_ADDR]`, and the same after `MAILGATE_<REST>_` for a
/// Service named `mailgate-<rest>`), and never a setting: no setting ends in `_port` or
/// holds `service_host`/`service_port`, so real typos are still refused.
fn is_service_link(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    let parts: Vec<&str> = key.split('_').collect();
    let n = parts.len();
    let ends = |suffix: &[&str]| n >= suffix.len() && parts[n - suffix.len()..] == *suffix;
    let number = |p: &str| !p.is_empty() && p.parse::<u16>().is_ok();
    let proto = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    ends(&["SERVICE", "HOST"])
        || parts.windows(2).any(|w| w == ["SERVICE", "PORT"])
        || ends(&["PORT"])
        || (n >= 3 && parts[n - 3] == "PORT" && number(parts[n - 2]) && proto(parts[n - 1]))
        || (n >= 4
            && parts[n - 4] == "PORT"
            && number(parts[n - 3])
            && proto(parts[n - 2])
            && matches!(parts[n - 1], "PROTO" | "PORT" | "ADDR"))
}

/// A deserializer that answers nothing and only remembers the field names a struct asks
/// for: how [`Config::setting_names`] reads them from the struct itself.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("the field names were read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

impl Config {
    /// Every `MAILGATE_*` setting the binary reads, from the struct's own fields (those
    /// it never reads from outside, `#[serde(skip)]`, are not among them). README.md's
    /// configuration table names exactly these (a test holds it to that).
    pub fn setting_names() -> Vec<String> {
        let mut fields: &'static [&'static str] = &[];
        let _ = Config::deserialize(FieldNames(&mut fields));
        fields
            .iter()
            .map(|f| format!("MAILGATE_{}", f.to_ascii_uppercase()))
            .collect()
    }

    /// Reads defaults, the optional file and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MAILGATE_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            if !path.exists() {
                bail!("MAILGATE_CONFIG: the file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("MAILGATE_")
                .ignore(&["config", "log"])
                .filter(|key| !is_service_link(key.as_str())),
        );
        let mut config: Config = figment.extract().map_err(|e| {
            let problems: Vec<String> = e
                .into_iter()
                .map(|err| {
                    let key = err.path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("_");
                    if key.is_empty() {
                        err.kind.to_string()
                    } else {
                        format!("MAILGATE_{key}: {}", err.kind)
                    }
                })
                .collect();
            anyhow::anyhow!("configuration error: {}", problems.join("; "))
        })?;
        config.ignored_service_links = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .filter(|name| name.strip_prefix("MAILGATE_").is_some_and(is_service_link))
            .collect();
        config.ignored_service_links.sort();
        Ok(config)
    }

    pub fn console_enabled(&self) -> bool {
        self.console.unwrap_or(self.profile == Profile::Development)
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(self.profile == Profile::Development)
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(self.profile == Profile::Development)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("mailgate.db").display()))
    }

    /// Checks every setting and, in development, fills in generated secrets. Returns the
    /// first problem, naming the setting.
    pub fn validate_and_prepare(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("MAILGATE_DATA_DIR: cannot create {}", self.data_dir.display()))?;
        if self.profile == Profile::Development && (self.needs_jwt_secret() || self.secret_key.is_none()) {
            let dev = self.dev_secrets()?;
            if self.needs_jwt_secret() {
                self.jwt_secret = Some(SecretString::from(dev.jwt_secret));
                self.jwt_secret_generated = true;
            }
            if self.secret_key.is_none() {
                self.secret_key = Some(SecretString::from(dev.secret_key));
            }
        }
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 => match &self.jwt_secret {
                None => bail!(
                    "MAILGATE_JWT_SECRET is required (HS256) in production; or set MAILGATE_JWT_ALGORITHM and MAILGATE_JWT_PUBLIC_KEY_FILE"
                ),
                Some(s) if s.expose_secret().len() < 32 => bail!("MAILGATE_JWT_SECRET must be at least 32 bytes long"),
                Some(_) => {}
            },
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {}
        }
        if let Some(previous) = &self.jwt_previous_secrets {
            if self.jwt_algorithm != JwtAlgorithm::HS256 {
                bail!(
                    "MAILGATE_JWT_PREVIOUS_SECRETS is for HS256; rotate public keys with MAILGATE_JWT_PUBLIC_KEY_FILE (several PEM keys) or MAILGATE_JWT_JWKS_FILE"
                );
            }
            if split_secrets(previous).any(|s| s.len() < 32) {
                bail!("MAILGATE_JWT_PREVIOUS_SECRETS: every secret must be at least 32 bytes long");
            }
        }
        match &self.jwt_jwks_file {
            Some(_) if self.jwt_algorithm == JwtAlgorithm::HS256 => {
                bail!("MAILGATE_JWT_JWKS_FILE holds public keys: set MAILGATE_JWT_ALGORITHM to RS256 or EdDSA")
            }
            Some(p) if !p.is_file() => bail!("MAILGATE_JWT_JWKS_FILE: {} is not a readable file", p.display()),
            _ => {}
        }
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 => {}
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => match &self.jwt_public_key_file {
                None => bail!(
                    "MAILGATE_JWT_PUBLIC_KEY_FILE is required when MAILGATE_JWT_ALGORITHM is {:?}",
                    self.jwt_algorithm
                ),
                Some(p) if !p.is_file() => {
                    bail!("MAILGATE_JWT_PUBLIC_KEY_FILE: {} is not a readable file", p.display())
                }
                Some(_) => {}
            },
        }
        if self.jwt_issuer.trim().is_empty() {
            bail!("MAILGATE_JWT_ISSUER must not be empty");
        }
        if self.jwt_audience.trim().is_empty() {
            bail!("MAILGATE_JWT_AUDIENCE must not be empty");
        }
        match &self.secret_key {
            None => bail!("MAILGATE_SECRET_KEY is required in production (base64 of 32 random bytes)"),
            Some(k) => {
                persistence::crypto::parse_key(k.expose_secret())
                    .map_err(|e| anyhow::anyhow!("MAILGATE_SECRET_KEY: {e}"))?;
            }
        }
        if let Some(prev) = &self.previous_secret_keys {
            for k in prev.expose_secret().split(',').map(str::trim).filter(|k| !k.is_empty()) {
                persistence::crypto::parse_key(k).map_err(|e| anyhow::anyhow!("MAILGATE_PREVIOUS_SECRET_KEYS: {e}"))?;
            }
        }
        domain::PlatformSender::parse(&self.default_from).map_err(|e| {
            anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e} (expected `Name <address@example.com>` or an address)")
        })?;
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("MAILGATE_DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        // The name is used unquoted, where PostgreSQL folds it to lower case: only a name
        // that is already lower case means the same schema everywhere.
        if let Some(schema) = &self.database_schema
            && (schema.is_empty()
                || schema.len() > 63
                || schema.starts_with(|c: char| c.is_ascii_digit())
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            bail!(
                "MAILGATE_DATABASE_SCHEMA must be a PostgreSQL schema name of lower-case letters, digits and \
                 underscores (not starting with a digit, at most 63 characters)"
            );
        }
        // Tenants could make Mailgate connect to internal hosts (metadata services, admin
        // ports): in production only with a second, explicit yes.
        if self.profile == Profile::Production
            && self.allow_private_smtp_hosts
            && !self.allow_private_smtp_hosts_in_production
        {
            bail!(
                "MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS=true lets tenants make Mailgate connect to internal addresses; the \
                 production profile refuses it unless MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION=true says so too \
                 (a local demo only)"
            );
        }
        if self.max_body_bytes < 1024 {
            bail!("MAILGATE_MAX_BODY_BYTES must be at least 1024");
        }
        if self.request_timeout_secs == 0 {
            bail!(
                "MAILGATE_REQUEST_TIMEOUT_SECS must be at least 1 (keep it above 20: a test mail may take that long)"
            );
        }
        if self.max_requests_in_flight == 0 {
            bail!("MAILGATE_MAX_REQUESTS_IN_FLIGHT must be at least 1");
        }
        if self.max_batch_size == 0 {
            bail!("MAILGATE_MAX_BATCH_SIZE must be at least 1");
        }
        if self.database_max_connections == 0 {
            bail!("MAILGATE_DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        // Renewed every third of the lease: under 3 s the renewals would crowd the database,
        // and a lease shorter than a renewal's round trip would lapse while still held.
        if self.worker_lease_secs < 3 {
            bail!("MAILGATE_WORKER_LEASE_SECS must be at least 3");
        }
        // The worker's loop sleeps for the poll interval when idle; 0 would make it spin.
        if self.worker_poll_ms < 10 {
            bail!("MAILGATE_WORKER_POLL_MS must be at least 10");
        }
        if !(1..=60).contains(&self.webhook_timeout_secs) {
            bail!("MAILGATE_WEBHOOK_TIMEOUT_SECS must be 1 to 60");
        }
        if self.webhook_max_in_flight == 0 || self.webhook_per_endpoint_in_flight == 0 {
            bail!("MAILGATE_WEBHOOK_MAX_IN_FLIGHT and MAILGATE_WEBHOOK_PER_ENDPOINT_IN_FLIGHT must be at least 1");
        }
        if self.webhook_poll_ms < 10 {
            bail!("MAILGATE_WEBHOOK_POLL_MS must be at least 10");
        }
        if self.worker_batch_size == 0 || self.worker_max_in_flight == 0 {
            bail!("MAILGATE_WORKER_BATCH_SIZE and MAILGATE_WORKER_MAX_IN_FLIGHT must be at least 1");
        }
        if self.smtp_max_connections_per_tenant == 0 {
            bail!("MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT must be at least 1");
        }
        if self.smtp_max_connections_per_host == 0 {
            bail!("MAILGATE_SMTP_MAX_CONNECTIONS_PER_HOST must be at least 1");
        }
        Ok(())
    }

    /// The EHLO name for tenants that set none: configured, or the platform sender's domain.
    pub fn ehlo(&self) -> anyhow::Result<domain::values::LocalHostname> {
        let raw = match &self.ehlo_name {
            Some(name) => name.clone(),
            None => {
                let from = domain::PlatformSender::parse(&self.default_from)
                    .map_err(|e| anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e}"))?;
                from.address
                    .to_ascii()
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_owned())
                    .unwrap_or_default()
            }
        };
        domain::values::LocalHostname::parse(&raw).map_err(|e| {
            anyhow::anyhow!("MAILGATE_EHLO_NAME: {raw:?} {e}: use a fully qualified host name such as mail.example.com")
        })
    }

    fn needs_jwt_secret(&self) -> bool {
        self.jwt_algorithm == JwtAlgorithm::HS256 && self.jwt_secret.is_none()
    }

    fn dev_secrets(&self) -> anyhow::Result<DevSecrets> {
        let path = self.data_dir.join("dev-secrets.toml");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            return toml_from_str(&text)
                .with_context(|| format!("{} is not valid; delete it to regenerate", path.display()));
        }
        use base64::Engine as _;
        let mut jwt = [0u8; 32];
        rand::fill(&mut jwt);
        let secrets = DevSecrets {
            jwt_secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt),
            secret_key: persistence::crypto::generate_key_base64().expose_secret().to_owned(),
        };
        let text = format!(
            "# Development secrets generated by Mailgate. Do not use in production.\njwt_secret = \"{}\"\nsecret_key = \"{}\"\n",
            secrets.jwt_secret, secrets.secret_key
        );
        write_private(&path, &text)?;
        tracing::warn!(path = %path.display(), "generated development secrets");
        Ok(secrets)
    }
}

fn toml_from_str(text: &str) -> anyhow::Result<DevSecrets> {
    Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Config, Profile, is_service_link};

    /// The variables README.md's configuration table names (first column, `A` / `B`).
    fn readme_settings() -> Vec<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        let section = readme.split("\n## Configuration\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `MAILGATE_").map(|_| l))
            .flat_map(|l| {
                let first = l.split(" | ").next().unwrap_or("").trim_start_matches("| ");
                first
                    .split(" / ")
                    .map(|n| n.trim().trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_readme_table_names_every_setting_the_binary_reads_and_no_other() {
        let read = Config::setting_names();
        assert!(read.len() > 50, "the names come from the struct: {read:?}");
        assert!(read.contains(&"MAILGATE_DATABASE_URL".to_owned()));
        let documented = readme_settings();
        let missing: Vec<&String> = read.iter().filter(|n| !documented.contains(n)).collect();
        let unknown: Vec<&String> = documented.iter().filter(|n| !read.contains(n)).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README.md's configuration table is not what the binary reads: not in the table {missing:?}; \
             in the table but not read {unknown:?}"
        );
        let mut once = documented.clone();
        once.sort();
        once.dedup();
        assert_eq!(once.len(), documented.len(), "a setting has two rows");
    }

    #[test]
    fn production_refuses_private_smtp_hosts_without_the_second_yes() {
        let dir = std::env::temp_dir().join(format!("mailgate-config-{}", uuid::Uuid::new_v4().simple()));
        let base = Config {
            profile: Profile::Production,
            data_dir: dir.clone(),
            jwt_secret: Some("a-production-secret-of-at-least-32-bytes!".into()),
            secret_key: Some(persistence::crypto::generate_key_base64()),
            ..Config::default()
        };
        let mut plain = base.clone();
        plain
            .validate_and_prepare()
            .expect("a safe production configuration starts");
        let mut private = Config {
            allow_private_smtp_hosts: true,
            ..base.clone()
        };
        let refused = private.validate_and_prepare().unwrap_err().to_string();
        assert!(
            refused.contains("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION"),
            "{refused}"
        );
        let mut acknowledged = Config {
            allow_private_smtp_hosts: true,
            allow_private_smtp_hosts_in_production: true,
            ..base.clone()
        };
        acknowledged.validate_and_prepare().expect("acknowledged");
        let mut development = Config {
            profile: Profile::Development,
            allow_private_smtp_hosts: true,
            ..base
        };
        development
            .validate_and_prepare()
            .expect("development needs no acknowledgement");
        assert!(!development.introspection_enabled() || development.profile == Profile::Development);
        assert!(
            !plain.introspection_enabled() && !plain.graphiql_enabled(),
            "off in production unless asked for"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn kubernetes_service_links_are_recognised_and_settings_are_not() {
        for link in [
            "PORT",
            "SERVICE_HOST",
            "SERVICE_PORT",
            "SERVICE_PORT_HTTP",
            "PORT_80_TCP",
            "PORT_80_TCP_PROTO",
            "PORT_80_TCP_PORT",
            "PORT_80_TCP_ADDR",
            // A Service named `mailgate-metrics`.
            "METRICS_SERVICE_HOST",
            "METRICS_PORT_9090_TCP_ADDR",
            "port_8080_udp",
        ] {
            assert!(is_service_link(link), "{link}");
        }
        for typo in [
            "PORTS",
            "LISTEN_PORT_X",
            "PORT_80",
            "PORT_80_TCP_HOST",
            "SERVICE",
            "SMTP_ALLOWED_PORT_S",
            "DATABSE_URL",
        ] {
            assert!(!is_service_link(typo), "{typo}");
        }
        // No documented setting looks like a service link.
        let readme = include_str!("../../../README.md");
        let mut names: Vec<&str> = readme
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter_map(|w| w.strip_prefix("MAILGATE_"))
            .filter(|w| !w.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() > 30, "the README's settings were found: {names:?}");
        for name in names {
            assert!(
                !is_service_link(name),
                "MAILGATE_{name} would be ignored as a service link"
            );
        }
    }
}
