//! Test support for the API suite, the one place its test files import besides
//! `testkit`: `spawn_app` (the real server in process, real migrations, its own
//! database), tokens, a GraphQL client, a log capture to check that secrets never reach
//! the logs; `deliveries` (an app that sends, its worker, enqueueing and waiting) and
//! `process` (this build's `mailgate` binary as a child).

pub mod deliveries;
pub mod process;

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use domain::{Role, TenantId};
use mailgate::app::App;
use mailgate::config::{Config, Profile, SettingsActivation};
use mailgate::http::RunningServer;
use secrecy::SecretString;
use serde_json::{Value, json};
use testkit::db::PgSchema;
use testkit::settings::SettingsInput;

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long!!";

pub use testkit::db::Backend;
use testkit::db::postgres_url;

/// Runs each named `async fn name(app: &TestApp)` once per backend (`sqlite::name`,
/// `postgres::name`), on a server of its own that is finished afterwards.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        testkit::each_backend!(|backend, test| {
            let app = $crate::support::spawn_app(backend).await;
            test(&app).await;
            app.finish().await;
        }; $($name),*);
    };
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<LogBuffer> = OnceLock::new();

/// Captures every log line of this test process (at trace level) into memory.
fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

/// Everything logged so far in this process.
pub fn logs() -> String {
    LOGS.get()
        .and_then(|b| b.0.lock().ok().map(|v| String::from_utf8_lossy(&v).into_owned()))
        .unwrap_or_default()
}

#[derive(Debug)]
pub struct TestApp {
    #[allow(dead_code, reason = "read by tests that branch on the backend")]
    pub backend: Backend,
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    pub app: App,
    server: Option<RunningServer>,
    schema: Option<PgSchema>,
    data_dir: std::path::PathBuf,
}

/// The base configuration of a test server on `backend`.
pub fn test_config(backend: Backend) -> (Config, Option<PgSchema>) {
    let data_dir = std::env::temp_dir().join(format!("mailgate-test-{}", uuid::Uuid::new_v4().simple()));
    let mut config = Config {
        profile: Profile::Production,
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse().expect("address"),
        jwt_secret: Some(SecretString::from(JWT_SECRET)),
        secret_key: Some(persistence::crypto::generate_key_base64()),
        default_from: "Platform <noreply@platform.example>".into(),
        // GraphiQL and introspection follow the production profile's own default (off).
        database_max_connections: 5,
        // Tests of everything but verification want saved settings in force at once;
        // `tests/api/verification.rs` runs the `test` and `code` modes.
        settings_activation: SettingsActivation::Save,
        // Many tests let tenants use loopback servers; the production profile wants
        // that said twice.
        allow_private_smtp_hosts_in_production: true,
        // Tenants' names go to a DNS server on loopback that knows none of them (the
        // setup assistant's tests bring their own zones), never to the machine's resolver.
        dns_servers: vec![testkit::servers::empty_dns().addr()],
        ..Config::default()
    };
    let schema = match backend {
        Backend::Sqlite => {
            config.database_url = Some(format!("sqlite://{}?mode=rwc", data_dir.join("mailgate.db").display()));
            None
        }
        Backend::Postgres => {
            let schema = PgSchema::fresh("t");
            config.database_url = Some(postgres_url());
            config.database_schema = Some(schema.name().to_owned());
            Some(schema)
        }
    };
    (config, schema)
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server with a configuration changed by `adjust`.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    capture_logs();
    let (mut config, schema) = test_config(backend);
    adjust(&mut config);
    let data_dir = config.data_dir.clone();
    config.validate_and_prepare().expect("test configuration is valid");
    let app = App::build(config).await.expect("app builds (is PostgreSQL running?)");
    let server = RunningServer::start(app.clone()).await.expect("server starts");
    let addr = server.addr;
    TestApp {
        backend,
        addr,
        url: format!("http://{addr}/graphql"),
        client: reqwest::Client::new(),
        app,
        server: Some(server),
        schema,
        data_dir,
    }
}

impl TestApp {
    /// Stops the server and drops the test's PostgreSQL schema.
    pub async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops cleanly");
        }
        if let Some(schema) = self.schema.take() {
            let _ = schema.drop_with(&self.app.db).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// The PostgreSQL schema this test's server uses (another server can share it).
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_ref().map(PgSchema::name)
    }

    pub fn token(&self, role: Role, tenant: Option<&str>) -> String {
        let tenant = tenant.map(|t| t.parse::<TenantId>().expect("tenant id"));
        let claims = self
            .app
            .verifier
            .claims(&format!("{}-subject", role.code()), role, tenant, 3600);
        self.app.verifier.mint(&claims, None).expect("mint")
    }

    pub fn operator(&self) -> String {
        self.token(Role::Operator, None)
    }

    pub fn admin(&self, tenant: &str) -> String {
        self.token(Role::TenantAdmin, Some(tenant))
    }

    pub fn service(&self) -> String {
        self.token(Role::Service, None)
    }

    /// POSTs a GraphQL request and returns the HTTP status and JSON body.
    pub async fn post(&self, token: Option<&str>, lang: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(&self.url).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(l) = lang {
            req = req.header("Accept-Language", l);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {status}: {text}")),
        )
    }

    /// Runs one operation as `token` and returns the whole response body.
    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.post(Some(token), None, &json!({ "query": query, "variables": variables }))
            .await
            .1
    }

    /// Runs one operation that must succeed, and returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Creates a tenant on `plan` and returns its id.
    pub async fn create_tenant(&self, name: &str, plan: &str) -> String {
        let data = self
            .ok(
                &self.operator(),
                "mutation($n:String!,$p:Plan!){ createTenant(name:$n, plan:$p){ id } }",
                json!({ "n": name, "p": plan }),
            )
            .await;
        data["createTenant"]["id"].as_str().expect("id").to_owned()
    }

    /// The tenant as an operator sees it, with settings and effective sender.
    pub async fn tenant(&self, id: &str) -> Value {
        self.ok(&self.operator(), TENANT_QUERY, json!({ "id": id })).await["tenant"].clone()
    }
}

pub const TENANT_QUERY: &str = "query($id:ID!){ tenant(id:$id){ id name plan canOverrideSender \
    mailSettings { serverKind host port fromAddress fromName smtpAuth username hasPassword encryption \
    popBeforeSmtp { host port username hasPassword tls } localHostname sendIntervalMs active version updatedAt \
    warnings { code field message } } effectiveSender { address name source reason } } }";

pub const UPDATE: &str = "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ \
    serverKind host port fromAddress fromName smtpAuth username hasPassword encryption \
    popBeforeSmtp { host port username hasPassword tls } localHostname sendIntervalMs active version updatedAt \
    warnings { code field message } } }";

/// A complete, valid settings input.
pub fn valid_input() -> Value {
    SettingsInput::plain(587)
        .host("smtp.example.com")
        .starttls()
        .from("info@shop.example.com")
        .from_name("ショップ通知")
        .with_auth("info@shop.example.com", "s3cret-Passw0rd")
        .send_interval_ms(5000)
        .json()
}

/// The error code of the first error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error with a code: {body}"))
}

/// `(field, code)` pairs of a VALIDATION_FAILED error.
pub fn fields(body: &Value) -> Vec<(String, String)> {
    body["errors"][0]["extensions"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("fields: {body}"))
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or("").to_owned(),
                f["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Flushes stderr so captured output interleaves sensibly.
pub fn flush() {
    let _ = std::io::stderr().flush();
}
