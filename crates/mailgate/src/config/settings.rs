//! Every setting, declared once: its name (`MAILGATE_<NAME>`), type, default, the check
//! it makes of itself and one line of description. README.md's configuration table
//! shows the same names and defaults (a test holds it to that); checks that span several
//! settings or parse a value are in `checks.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use super::declare::{at_least, between, not_blank, settings};
use super::values::{
    JwtAlgorithm, LogFormat, Profile, SettingsActivation, dns_server_list, port_list, probe_pair_list,
};

settings! {
    /// Every setting, as read. Names map to `MAILGATE_<UPPER_NAME>`.
    pub struct Config {
        /// `development` (generated secrets, GraphiQL, introspection and the console on) or
        /// `production` (every secret required).
        pub profile: Profile = Profile::Development;
        /// Where the SQLite database, development secrets and `.eml` files live.
        pub data_dir: PathBuf = PathBuf::from("data");
        /// The database; default: `sqlite://<data_dir>/mailgate.db`.
        pub database_url: Option<String> = None, shown "`sqlite://<data dir>/mailgate.db?mode=rwc`";
        /// PostgreSQL schema (search_path) to use; default the server's.
        pub database_schema: Option<String> = None;
        /// Database connections in the pool at most.
        pub database_max_connections: u32 = 16, check at_least(1);
        /// Run migrations when `serve` starts.
        pub auto_migrate: bool = true;
        /// The HTTP address `serve` listens on.
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
        /// An OTLP/HTTP collector (`http://collector:4318`) to send traces to; unset: the
        /// standard `OTEL_EXPORTER_OTLP_ENDPOINT`, and without either no traces.
        pub otlp_endpoint: Option<String> = None;
        /// Where `mailgate worker` answers `/metrics`, `/healthz` and `/readyz` (it serves no
        /// GraphQL).
        pub worker_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9091));
        /// How bearer tokens are signed: `HS256`, `RS256` or `EdDSA`.
        pub jwt_algorithm: JwtAlgorithm = JwtAlgorithm::HS256;
        /// HS256 shared secret, at least 32 bytes.
        pub jwt_secret: Option<SecretString> = None, shown "generated in development";
        /// PEM public key for RS256 / EdDSA; several concatenated PEM keys are all accepted
        /// (the old and the new one while they rotate).
        pub jwt_public_key_file: Option<PathBuf> = None;
        /// Earlier HS256 secrets, comma-separated, still accepted until their tokens expire.
        pub jwt_previous_secrets: Option<SecretString> = None;
        /// A JWKS document (RS256 / EdDSA) whose keys are accepted too, chosen by `kid`.
        pub jwt_jwks_file: Option<PathBuf> = None;
        /// The `iss` a bearer token must carry.
        pub jwt_issuer: String = "mailgate".into(), check not_blank();
        /// The `aud` a bearer token must carry.
        pub jwt_audience: String = "mailgate".into(), check not_blank();
        /// Base64 of 32 random bytes: encrypts stored SMTP/POP passwords (AES-256-GCM).
        pub secret_key: Option<SecretString> = None, shown "generated in development";
        /// Comma-separated earlier keys, still accepted for reading until rotated.
        pub previous_secret_keys: Option<SecretString> = None;
        /// The platform relay (`smtp://` or `smtps://`); unset = `.eml` files in the data directory.
        pub default_smtp_url: Option<SecretString> = None;
        /// The platform's default sender, e.g. `Platform <noreply@example.com>`.
        pub default_from: String = "Mailgate <noreply@example.com>".into();
        /// The name tenants know the service by (the platform's own): the console's title
        /// and header, and the subject of test mails. At most 60 characters.
        pub product_name: String = domain::services::DEFAULT_PRODUCT_NAME.into(), check not_blank();
        /// Lets tenants use servers on private and loopback addresses (development, tests).
        pub allow_private_smtp_hosts: bool = false;
        /// The production profile refuses `allow_private_smtp_hosts` without this second,
        /// explicit acknowledgement (a local demo such as the compose file's Mailpit).
        pub allow_private_smtp_hosts_in_production: bool = false;
        /// Lets webhook endpoints be on internal addresses (loopback, private networks): the
        /// platform's own services often are. Off: such URLs are refused on save and on send.
        pub webhook_allow_private_hosts: bool = false;
        /// One webhook attempt's deadline (connect, send, read the answer).
        pub webhook_timeout_secs: u64 = 10, check between(1, 60);
        /// Webhook attempts in flight per process at most.
        pub webhook_max_in_flight: u32 = 32, check at_least(1);
        /// Webhook attempts in flight per endpoint at most.
        pub webhook_per_endpoint_in_flight: u32 = 2, check at_least(1);
        /// How often the webhook dispatcher looks for due messages.
        pub webhook_poll_ms: u64 = 1000, check at_least(10);
        /// DNS servers (`ip` or `ip:port`, comma-separated) for tenants' host names and the setup
        /// assistant's MX, SRV and TXT lookups; empty: the system's resolver.
        #[serde(deserialize_with = "dns_server_list")]
        pub dns_servers: Vec<SocketAddr> = Vec::new();
        /// The pairs the setup assistant's probe tries on every host, besides the form's own:
        /// `port/encryption`, comma-separated.
        #[serde(deserialize_with = "probe_pair_list")]
        pub probe_pairs: Vec<(u16, domain::settings::Encryption)> = domain::probe::USUAL_PAIRS.to_vec();
        /// `text` or `json` logs.
        pub log_format: LogFormat = LogFormat::Text;
        /// GraphiQL at `GET /graphql`; default on in development.
        pub graphiql: Option<bool> = None, shown "on in development";
        /// Schema introspection; default on in development.
        pub introspection: Option<bool> = None, shown "on in development";
        /// The console in the browser at `/console/`; default on in development.
        pub console: Option<bool> = None, shown "on in development";
        /// A request body's size at most.
        pub max_body_bytes: usize = 64 * 1024, check at_least(1024);
        /// A `/graphql` request that has not answered after this many seconds is ended with
        /// `TIMEOUT`; keep it above a test mail's 20 s.
        pub request_timeout_secs: u64 = 30,
            check at_least(1).because("keep it above 20: a test mail may take that long");
        /// `/graphql` requests handled at once; more are refused at once with `OVERLOADED`
        /// (503, `Retry-After`) instead of queueing.
        pub max_requests_in_flight: usize = 256, check at_least(1);
        /// Operations in one batched request at most.
        pub max_batch_size: usize = 10, check at_least(1);
        /// How deep a query may nest our own fields.
        pub max_query_depth: usize = 12;
        /// What a query may cost at most (a list's fields once per row it may return).
        pub max_query_complexity: usize = 5000;
        /// Tenants kept in the in-process cache at most.
        pub tenant_cache_capacity: u64 = 10_000;
        /// How long a cached tenant is trusted.
        pub tenant_cache_ttl_secs: u64 = 60;
        /// SMTP ports tenants may use.
        #[serde(deserialize_with = "port_list")]
        pub smtp_allowed_ports: Vec<u16> = vec![25, 465, 587, 2525];
        /// POP3 ports tenants may use for POP-before-SMTP.
        #[serde(deserialize_with = "port_list")]
        pub pop_allowed_ports: Vec<u16> = vec![110, 995];
        /// Extra trusted CA certificates (PEM) for tenants' and the relay's servers.
        pub smtp_ca_file: Option<PathBuf> = None;
        /// EHLO name when a tenant sets none; default: the domain of `MAILGATE_DEFAULT_FROM`.
        pub ehlo_name: Option<String> = None, shown "the domain of `MAILGATE_DEFAULT_FROM`";
        /// Open SMTP connections per tenant at most.
        pub smtp_max_connections_per_tenant: usize = 4, check at_least(1);
        /// Open SMTP connections to one destination host name at most, across all tenants
        /// (many tenants on one provider share its limits); the platform relay is not counted.
        pub smtp_max_connections_per_host: usize = 32, check at_least(1);
        /// An idle SMTP connection is closed after this many seconds.
        pub smtp_idle_timeout_secs: u64 = 60;
        /// Our own deadline for an SMTP connection to open.
        pub smtp_connect_timeout_secs: u64 = 10;
        /// Our own deadline for one SMTP command's answer.
        pub smtp_command_timeout_secs: u64 = 30;
        /// A whole send gives up after this many seconds (plus the tenant's send interval).
        pub smtp_send_timeout_secs: u64 = 120;
        /// POP-before-SMTP logins are repeated once older than this.
        pub pop_login_window_secs: u64 = 300;
        /// Cached tenant transports at most.
        pub transport_cache_capacity: u64 = 10_000;
        /// How long an unused cached transport is kept.
        pub transport_cache_idle_secs: u64 = 600;
        /// Run the delivery worker inside `serve` (turn off when separate `mailgate worker`
        /// processes deliver).
        pub worker_enabled: bool = true;
        /// Deliveries claimed per query.
        pub worker_batch_size: u32 = 32, check at_least(1);
        /// Deliveries sending at once per process.
        pub worker_max_in_flight: usize = 64, check at_least(1);
        /// How long a claim holds without renewal (renewed every third of it while held):
        /// also how long a crashed process's deliveries wait before another takes them up.
        // Under 3 s the renewals would crowd the database, and a lease shorter than a
        // renewal's round trip would lapse while still held.
        pub worker_lease_secs: u64 = 10, check at_least(3);
        /// How long an idle worker sleeps before it looks for work again.
        // 0 would make the worker's loop spin.
        pub worker_poll_ms: u64 = 500, check at_least(10);
        /// On SIGTERM, time for sends in flight to finish; the rest goes back to the queue.
        /// Pooled SMTP sessions then say QUIT within what is left of it.
        pub worker_shutdown_grace_secs: u64 = 25;
        /// First retry after this many seconds, doubled each time up to the maximum.
        pub retry_base_secs: u64 = 30;
        /// The longest wait between two retries.
        pub retry_max_delay_secs: u64 = 3600;
        /// A delivery still failing after this age fails for good (`expired`); 3 days.
        pub delivery_max_age_secs: u64 = 3 * 24 * 3600;
        /// Wait after a rate-limit reply (421, 4.7.x, "too many").
        pub rate_limit_defer_secs: u64 = 60;
        /// What makes saved settings live: `test` (a successful test mail of them), `code`
        /// (the code that test mail carries) or `save` (at once).
        pub settings_activation: SettingsActivation = SettingsActivation::Test;
        /// Configuration failures in a row (wrong password, SMTP AUTH off, sender refused,
        /// certificate no longer valid) after which a live version is suspended and the
        /// tenant's mail goes through the platform default; 0: never.
        pub suspend_after_failures: u32 = 3;
        /// Password-reset and registration mail that the tenant's server has not taken after
        /// this many seconds (for a temporary reason) goes through the platform default; 0: never.
        pub fallback_after_secs: u64 = 900;
        /// Days a SENT or FAILED delivery keeps its recipient, subject, bodies and reply texts
        /// (status, times, codes and a hash of the recipient stay); 0: for ever.
        pub retention_days: u64 = 30;
        /// Days a SENT or FAILED delivery is kept at all: then it is deleted with its attempts
        /// (its idempotency key may be used again); 0: for ever. Bounds the table's size.
        pub delivery_history_days: u64 = 0;
        /// Notifications one tenant may hand in per UTC minute (an operator can override it
        /// per tenant); 0: no limit.
        pub enqueue_per_minute: u32 = 6_000;
        /// Notifications one tenant may hand in per UTC day (an operator can override it per
        /// tenant); 0: no limit.
        pub enqueue_per_day: u32 = 200_000;
        /// Where browsers reach this service (`https://mailgate.example.net`): the sign-in
        /// callbacks are `<public_url>/oauth/microsoft/callback` and `…/google/callback`, and
        /// the console is `<public_url>/console/`. Default: `http://<listen>`.
        pub public_url: Option<String> = None, shown "`http://<MAILGATE_LISTEN>`";
        /// "Connect with Microsoft": the multi-tenant Entra app's client id; unset: off.
        pub oauth_microsoft_client_id: Option<String> = None;
        /// "Connect with Microsoft": the Entra app's client secret.
        pub oauth_microsoft_client_secret: Option<SecretString> = None;
        /// Microsoft's authorization endpoint (`common`: work and personal accounts).
        pub oauth_microsoft_authorize_url: String =
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize".into();
        /// Microsoft's token endpoint.
        pub oauth_microsoft_token_url: String = "https://login.microsoftonline.com/common/oauth2/v2.0/token".into();
        /// Microsoft's admin-consent endpoint.
        pub oauth_microsoft_admin_consent_url: String =
            "https://login.microsoftonline.com/organizations/v2.0/adminconsent".into();
        /// Microsoft Graph, where `sendMail` is.
        pub oauth_microsoft_graph_url: String = "https://graph.microsoft.com".into();
        /// Microsoft app-only tokens (`SMTP.SendAsApp`): the token URL with `{tenant}` for the
        /// organisation; used with the Microsoft client id and secret.
        pub oauth_microsoft_app_token_url: String =
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token".into();
        /// Google Workspace domain-wide delegation: the service account's JSON key file.
        pub oauth_google_service_account_file: Option<PathBuf> = None;
        /// "Connect with Google": the Google project's OAuth client id; unset: off.
        pub oauth_google_client_id: Option<String> = None;
        /// "Connect with Google": the OAuth client's secret.
        pub oauth_google_client_secret: Option<SecretString> = None;
        /// Google's authorization endpoint.
        pub oauth_google_authorize_url: String = "https://accounts.google.com/o/oauth2/v2/auth".into();
        /// Google's token endpoint.
        pub oauth_google_token_url: String = "https://oauth2.googleapis.com/token".into();
        /// Google's token revocation endpoint.
        pub oauth_google_revoke_url: String = "https://oauth2.googleapis.com/revoke".into();
        /// The Gmail API.
        pub oauth_google_gmail_url: String = "https://gmail.googleapis.com".into();
        /// Where a sign-in may send the browser back to besides the console: comma-separated
        /// `https://panel.example.com/mail` (that URL and below it).
        pub oauth_return_urls: Option<String> = None;
        /// How often idle connections are looked for and refreshed (each once a day), so no
        /// provider's inactivity limit ends them.
        pub oauth_keep_alive_secs: u64 = 3600, check at_least(1);
    }
    derived {
        /// The port autoconfig documents are fetched from: 443; tests set their server's.
        pub autoconfig_https_port: u16 = 443;
        /// The JWT secret in use is the development one Mailgate generated (then, and only
        /// then, the development banner prints a working operator token).
        pub jwt_secret_generated: bool = false;
        /// The Kubernetes service-link variables (`MAILGATE_PORT`, `MAILGATE_SERVICE_HOST`, …)
        /// that were set and ignored; logged at start.
        pub ignored_service_links: Vec<String> = Vec::new();
    }
}
