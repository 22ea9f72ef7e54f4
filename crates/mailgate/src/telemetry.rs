//! Logging and traces. Logs: human-readable by default, JSON with
//! `MAILGATE_LOG_FORMAT=json`; the level from `MAILGATE_LOG` (or `RUST_LOG`), default
//! `info`. Traces: OpenTelemetry over OTLP/HTTP (protobuf), off unless
//! `MAILGATE_OTLP_ENDPOINT` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as it is) names a collector; spans are
//! batched and sent in the background, and what the collector does not take in time is
//! dropped, never waited for. The W3C `traceparent` of a request is continued
//! ([`continue_trace`]).

use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// Flushes the spans still batched when dropped (at the end of `main`).
#[derive(Debug, Default)]
pub struct Traces(Option<SdkTracerProvider>);

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Where spans go: `MAILGATE_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (the base,
/// `/v1/traces` added), or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as it is).
pub fn traces_endpoint(mailgate: Option<&str>) -> Option<String> {
    let base = |b: &str| format!("{}/v1/traces", b.trim_end_matches('/'));
    if let Some(m) = mailgate.filter(|m| !m.trim().is_empty()) {
        return Some(base(m.trim()));
    }
    if let Ok(t) = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_owned());
    }
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .map(|b| base(b.trim()))
}

/// Installs the global subscriber once; later calls do nothing. A `MAILGATE_LOG` that is
/// not a valid filter stops the start with the setting named (it used to be ignored).
/// With an OTLP endpoint, Mailgate's spans (at `info` and above, whatever the log level)
/// are exported too.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Traces> {
    let filter = match std::env::var("MAILGATE_LOG") {
        Ok(v) => {
            EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("MAILGATE_LOG: {e} (e.g. `info,mailgate=debug`)"))?
        }
        Err(_) => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn")),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let (otel, traces) = match traces_endpoint(otlp_endpoint) {
        Some(endpoint) => {
            let provider = provider(&endpoint)?;
            let tracer = provider.tracer("mailgate");
            let spans = tracing_subscriber::filter::Targets::new()
                .with_target("mailgate", tracing::Level::INFO)
                .with_target("worker", tracing::Level::INFO)
                .with_target("persistence", tracing::Level::INFO)
                .with_target("webhooks", tracing::Level::INFO);
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans);
            (Some(layer), Traces(Some(provider)))
        }
        None => (None, Traces::default()),
    };
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    Ok(traces)
}

fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let client = OnTokio {
        handle: tokio::runtime::Handle::try_current().map_err(|_| anyhow::anyhow!("traces need the Tokio runtime"))?,
        inner: std::sync::Arc::new(opentelemetry_http::hyper::HyperClient::with_default_connector(
            Duration::from_secs(10),
            None,
        )),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow::anyhow!("MAILGATE_OTLP_ENDPOINT: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("mailgate")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The SDK's batch processor runs on a thread of its own; hyper needs the Tokio runtime,
/// so each export is run there and awaited from that thread.
#[derive(Debug)]
struct OnTokio {
    handle: tokio::runtime::Handle,
    inner: std::sync::Arc<opentelemetry_http::hyper::HyperClient>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnTokio {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let inner = self.inner.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle.spawn(async move {
            let _ = tx.send(inner.send_bytes(request).await);
        });
        rx.await.map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
    }
}

/// Makes `span` a child of the W3C `traceparent` (and `tracestate`) in `headers`, if any.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if headers.get("traceparent").is_none() {
        return;
    }
    let carrier = Headers(headers);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the W3C `traceparent` given.
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let mut map = std::collections::HashMap::new();
    map.insert("traceparent".to_owned(), traceparent.to_owned());
    let parent = TraceContextPropagator::new().extract(&map);
    let _ = span.set_parent(parent);
}

/// The W3C `traceparent` of `span`, when traces are on (none otherwise).
pub fn traceparent_of(span: &tracing::Span) -> Option<domain::TraceParent> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut map = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut map);
    map.get("traceparent").and_then(|t| domain::TraceParent::parse(t))
}
