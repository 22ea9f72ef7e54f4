//! `/metrics`: one `prometheus-client` registry per process, holding the worker's and the
//! webhook dispatcher's series, the HTTP requests by route and operation, test mails by
//! result, and gauges read when scraped (the queue by status and how long its oldest due
//! delivery has waited, settings versions by state, webhook messages by status, the
//! database pool, the transport cache). No label names a tenant: every label has a fixed,
//! small set of values (an operation is a root field of the schema, or `other`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::Utc;
use domain::access::{AllTenants, TenantScope};
use domain::services::TestMailCount;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Telemetry::render`] answers.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Request latency bucket upper bounds, in seconds.
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    route: &'static str,
    operation: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Timed {
    route: &'static str,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TestMail {
    result: &'static str,
    stage: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// Where the gauges are read from when scraped.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub deliveries: &'a dyn domain::ports::DeliveryQueries,
    pub tenants: &'a dyn domain::ports::TenantStore,
    pub webhooks: &'a dyn domain::ports::WebhookStore,
    pub db: &'a sea_orm::DatabaseConnection,
    pub mailer: &'a mailer::Mailer,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// What one request was, as the HTTP layer tells it: one of the labels
/// [`Telemetry::operation_label`] gives, or the HTTP layer's own (`batch`, `refused`).
#[derive(Debug, Clone, Copy)]
pub struct Operation(pub &'static str);

/// The process's series.
pub struct Telemetry {
    registry: Registry,
    deliveries: Family<Status, Gauge>,
    oldest_due_age: Gauge<f64, AtomicU64>,
    mail_settings: Family<State, Gauge>,
    webhook_messages: Family<Status, Gauge>,
    pool: Family<State, Gauge>,
    pool_max: Gauge,
    transport_cache: Gauge,
    requests: Family<Request, Counter>,
    durations: HistogramFamily<Timed>,
    test_mails: Family<TestMail, Counter>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The registry with every series, the worker's and the dispatcher's included.
    pub fn new(worker: &worker::Metrics, webhooks: &webhooks::DispatchStats) -> Self {
        // Built here, not on the first request (it builds and reads the schema's SDL).
        LazyLock::force(&ROOT_OPERATIONS);
        let mut t = Self {
            registry: Registry::default(),
            deliveries: Family::default(),
            oldest_due_age: Gauge::default(),
            mail_settings: Family::default(),
            webhook_messages: Family::default(),
            pool: Family::default(),
            pool_max: Gauge::default(),
            transport_cache: Gauge::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(http_histogram),
            test_mails: Family::default(),
        };
        let r = &mut t.registry;
        r.register(
            "mailgate_deliveries",
            "Deliveries in the queue by status (the whole database: aggregate over processes with max)",
            t.deliveries.clone(),
        );
        r.register(
            "mailgate_queue_oldest_due_age_seconds",
            "How long the longest-waiting due delivery (queued or retrying, its time come) has waited; 0 when none waits",
            t.oldest_due_age.clone(),
        );
        r.register(
            "mailgate_mail_settings",
            "Saved tenant settings versions by state",
            t.mail_settings.clone(),
        );
        r.register(
            "mailgate_webhook_messages",
            "Webhook messages by status, over every endpoint",
            t.webhook_messages.clone(),
        );
        r.register(
            "mailgate_db_pool_connections",
            "This process's database connections by state (in_use, idle)",
            t.pool.clone(),
        );
        r.register(
            "mailgate_db_pool_max_connections",
            "The most database connections this process opens",
            t.pool_max.clone(),
        );
        r.register(
            "mailgate_transport_cache_entries",
            "Tenant SMTP transports cached by this process",
            t.transport_cache.clone(),
        );
        r.register(
            "mailgate_http_requests",
            "HTTP requests by route, GraphQL operation (its root field) and status",
            t.requests.clone(),
        );
        r.register(
            "mailgate_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and GraphQL operation",
            t.durations.clone(),
        );
        r.register(
            "mailgate_test_mails",
            "Test mails by result (sent, failed, rate_limited) and the stage a failed one reached",
            t.test_mails.clone(),
        );
        worker.register(r);
        webhooks.register(r);
        t
    }

    /// What a test mail came to (the service calls it).
    pub fn test_mail(&self, count: TestMailCount) {
        let (result, stage) = match count {
            TestMailCount::Sent => ("sent", ""),
            TestMailCount::Failed(stage) => ("failed", stage.code()),
            TestMailCount::RateLimited => ("rate_limited", ""),
        };
        self.test_mails.get_or_create(&TestMail { result, stage }).inc();
    }

    /// The label an operation is counted under: `query.tenant`, `mutation.updateMailSettings`
    /// (the first root field), `batch`, or `other` for anything not of the schema.
    pub fn operation_label(&self, kind: OperationKind, field: &str) -> &'static str {
        let labels = match kind {
            OperationKind::Query => &ROOT_OPERATIONS.query,
            OperationKind::Mutation => &ROOT_OPERATIONS.mutation,
        };
        labels.get(field).copied().unwrap_or("other")
    }

    /// A request answered.
    pub fn request(&self, route: &'static str, operation: Option<&'static str>, status: u16, took: Duration) {
        let operation = operation.unwrap_or("");
        self.requests
            .get_or_create(&Request {
                route,
                operation,
                status,
            })
            .inc();
        self.durations
            .get_or_create(&Timed { route, operation })
            .observe(took.as_secs_f64());
    }

    /// Reads the gauges (the database is asked) and encodes every series.
    pub async fn render(&self, from: Sources<'_>) -> Result<String, domain::StoreError> {
        let counts = from
            .deliveries
            .status_counts(TenantScope::All(AllTenants::for_operations()))
            .await?;
        for status in domain::delivery::DeliveryStatus::ALL {
            let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.deliveries
                .get_or_create(&Status {
                    status: status.code().to_ascii_lowercase(),
                })
                .set(gauge(n));
        }
        let now = Utc::now();
        let oldest = from.deliveries.oldest_due(now).await?;
        self.oldest_due_age
            .set(oldest.map_or(0.0, |due| (now - due).num_milliseconds().max(0) as f64 / 1000.0));
        let states = from.tenants.settings_state_counts().await?;
        for state in domain::health::SettingsState::ALL {
            let n = states.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
            self.mail_settings
                .get_or_create(&State {
                    state: state.code().to_ascii_lowercase(),
                })
                .set(gauge(n));
        }
        let messages = from.webhooks.message_counts().await?;
        for status in domain::webhook::MessageStatus::ALL {
            let n = messages.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.webhook_messages
                .get_or_create(&Status {
                    status: status.code().to_ascii_lowercase(),
                })
                .set(gauge(n));
        }
        let pool = persistence::pool_use(from.db);
        self.pool
            .get_or_create(&State { state: "in_use".into() })
            .set(i64::from(pool.open.saturating_sub(pool.idle)));
        self.pool
            .get_or_create(&State { state: "idle".into() })
            .set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
        self.transport_cache.set(gauge(from.mailer.cached_transports().await));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .map_err(|e| domain::StoreError::Database(Box::new(e)))?;
        Ok(out)
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `query.<field>` and `mutation.<field>` for every root field of the schema.
/// The kind of operation a label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
}

/// The label of each root field of the schema, by kind and field name.
struct RootOperations {
    query: HashMap<&'static str, &'static str>,
    mutation: HashMap<&'static str, &'static str>,
}

/// Built once per process from the schema (which is the same for every server in it):
/// a request's label is then a lookup by its root field's name, with nothing allocated.
static ROOT_OPERATIONS: LazyLock<RootOperations> = LazyLock::new(root_operations);

fn root_operations() -> RootOperations {
    let mut labels = RootOperations {
        query: HashMap::new(),
        mutation: HashMap::new(),
    };
    let Ok(doc) = async_graphql::parser::parse_schema(graphql_api::schema::sdl()) else {
        return labels;
    };
    for def in doc.definitions {
        if let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = def
            && let async_graphql::parser::types::TypeKind::Object(object) = &ty.node.kind
        {
            let (kind, into) = match ty.node.name.node.as_str() {
                "Query" => ("query", &mut labels.query),
                "Mutation" => ("mutation", &mut labels.mutation),
                _ => continue,
            };
            for field in &object.fields {
                // Kept for the process's life, once: the schema's root fields are a fixed,
                // small set.
                let label: &'static str = Box::leak(format!("{kind}.{}", field.node.name.node).into_boxed_str());
                into.insert(&label[kind.len() + 1..], label);
            }
        }
    }
    labels
}

/// Shared by the routes.
pub type SharedTelemetry = Arc<Telemetry>;
