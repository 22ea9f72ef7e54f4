//! HTTP: `POST /graphql` (JSON only, bounded body and batch), `GET /graphql` (GraphiQL
//! when enabled; never an operation, so never a mutation), `/healthz`, `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{BatchRequest, BatchResponse};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use domain::Locale;
use graphql_api::RequestContext;
use graphql_api::catalogue::Text;
use graphql_api::error::{code, http_error_body, with_engine_error_codes};

use crate::app::App;

/// The app as the routes' state: one reference count per request rather than a clone of
/// the app's every handle (cloning and dropping `App` per extraction was a quarter of a
/// request's CPU time in the GraphQL benchmark).
type Shared = Arc<App>;

/// The routes, with the app as state.
pub fn router(app: App) -> Router {
    let app: Shared = Arc::new(app);
    let guard = Guard {
        in_flight: Arc::new(Semaphore::new(app.config.max_requests_in_flight)),
        deadline: Duration::from_secs(app.config.request_timeout_secs),
    };
    let console = if app.config.console_enabled() {
        console::router(app.config.product_name.trim())
    } else {
        Router::new()
    };
    let graphiql_files = if app.config.graphiql_enabled() {
        console::graphiql::router()
    } else {
        Router::new()
    };
    Router::new()
        .merge(console)
        .merge(graphiql_files)
        .route(
            "/graphql",
            get(graphiql)
                .post(graphql)
                .layer(axum::middleware::from_fn_with_state(guard, guarded)),
        )
        .route("/oauth/{provider}/callback", get(crate::sign_in::callback))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), measured))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// The routes a `mailgate worker` serves on its own address: `/metrics`, `/healthz`,
/// `/readyz`.
pub fn operations_router(app: App) -> Router {
    let app: Shared = Arc::new(app);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), measured))
        .with_state(app)
}

/// Counts every request and how long it took, by route and (for `/graphql`) the
/// operation the handler names in the response's extensions.
async fn measured(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let route = match request.uri().path() {
        "/graphql" => "/graphql",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        p if p == console::BASE || p.starts_with("/console/") => "/console",
        p if p.starts_with("/graphiql/") => "/graphiql",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let operation = response.extensions().get::<crate::metrics::Operation>().map(|o| o.0);
    app.telemetry
        .request(route, operation, response.status().as_u16(), started.elapsed());
    response
}

/// The label of a request's operation: its kind and first root field (`query.tenant`),
/// `other` for one the schema does not have, `invalid` when it does not parse.
fn operation_label(app: &App, request: &mut async_graphql::Request) -> &'static str {
    use crate::metrics::OperationKind;
    use async_graphql::parser::types::{OperationType, Selection};
    let name = request.operation_name.take();
    let label = match request.parsed_query() {
        Err(_) => "invalid",
        Ok(doc) => {
            let mut operations = doc.operations.iter();
            let chosen = match &name {
                Some(wanted) => operations.find(|(n, _)| n.is_some_and(|n| n.as_str() == wanted)),
                None => operations.next(),
            };
            let kind = chosen.and_then(|(_, op)| match op.node.ty {
                OperationType::Query => Some((OperationKind::Query, op)),
                OperationType::Mutation => Some((OperationKind::Mutation, op)),
                OperationType::Subscription => None,
            });
            match kind.and_then(|(kind, op)| Some((kind, op.node.selection_set.node.items.first()?))) {
                Some((kind, selection)) => match &selection.node {
                    Selection::Field(field) => app.telemetry.operation_label(kind, field.node.name.node.as_str()),
                    _ => "other",
                },
                None => "other",
            }
        }
    };
    request.operation_name = name;
    label
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = router(app);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Both handlers are installed now, not when the future is first polled: a SIGTERM
    // that arrives between here and the first poll (while the banner prints) is then
    // waited for rather than ending the process with the default action.
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; finishing requests in flight");
    }
}

/// What every `/graphql` request is held to: a place among the requests in flight and an
/// overall deadline, so slow or expensive requests cannot pile up. (Health and metrics
/// stay outside: a busy server is alive.)
#[derive(Debug, Clone)]
struct Guard {
    in_flight: Arc<Semaphore>,
    deadline: Duration,
}

async fn guarded(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let locale = locale_of(request.headers());
    // Refused at once rather than queued: a queue would only add to the wait.
    let Ok(_place) = guard.in_flight.clone().try_acquire_owned() else {
        tracing::warn!("too many requests in flight; one refused");
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            code::OVERLOADED,
            Text::Overloaded,
            locale,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    match tokio::time::timeout(guard.deadline, next.run(request)).await {
        Ok(response) => response,
        // Dropping the request's future rolls back any transaction it had open.
        Err(_) => {
            tracing::warn!(
                deadline_secs = guard.deadline.as_secs(),
                "a request ran past its deadline and was stopped"
            );
            error_response(StatusCode::SERVICE_UNAVAILABLE, code::TIMEOUT, Text::Timeout, locale)
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Shared>) -> Response {
    match app.service.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Prometheus text for operators (bearer token with the operator role): every series of
/// the process (see `crate::metrics`).
async fn metrics(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let locale = locale_of(&headers);
    let caller = headers
        .get(header::AUTHORIZATION)
        .and_then(bearer)
        .and_then(|t| app.verifier.verify(t).ok());
    // Only operators: the series cover every tenant.
    match caller {
        None => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                code::UNAUTHENTICATED,
                Text::Unauthenticated,
                locale,
            );
        }
        Some(c) if c.role() != domain::Role::Operator => {
            return error_response(StatusCode::FORBIDDEN, code::FORBIDDEN, Text::Forbidden, locale);
        }
        Some(_) => {}
    }
    let sources = crate::metrics::Sources {
        deliveries: &**app.deliveries.queries(),
        tenants: &*app.tenants,
        webhooks: &*app.webhook_store,
        db: &app.db,
        mailer: &app.mailer,
    };
    match app.telemetry.render(sources).await {
        Ok(out) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            out,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the gauges for /metrics failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn graphiql(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if app.config.graphiql_enabled() {
        // Served from the binary with a strict policy: nothing from a CDN on the page
        // where operators paste tokens.
        console::graphiql::page()
    } else {
        error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            code::VALIDATION_FAILED,
            Text::UsePost,
            locale_of(&headers),
        )
    }
}

/// A response with one GraphQL-shaped error.
fn error_response(status: StatusCode, code: &str, text: Text<'_>, locale: Locale) -> Response {
    let body = http_error_body(code, text, locale);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &axum::http::HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn locale_of(headers: &HeaderMap) -> Locale {
    Locale::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.eq_ignore_ascii_case("application/graphql-response+json")
        })
}

async fn graphql(State(app): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let locale = locale_of(headers);
    if !is_json(headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::VALIDATION_FAILED,
            Text::ContentTypeNotJson,
            locale,
        );
    }
    let caller = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let token = bearer(value);
            match token.map(|t| app.verifier.verify(t)) {
                Some(Ok(caller)) => Some(caller),
                Some(Err(e)) => {
                    tracing::info!(reason = %e, "bearer token rejected");
                    return error_response(
                        StatusCode::UNAUTHORIZED,
                        code::UNAUTHENTICATED,
                        Text::Unauthenticated,
                        locale,
                    );
                }
                None => {
                    return error_response(
                        StatusCode::UNAUTHORIZED,
                        code::UNAUTHENTICATED,
                        Text::Unauthenticated,
                        locale,
                    );
                }
            }
        }
    };
    let bytes: Bytes = match axum::body::to_bytes(Body::new(body), app.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::VALIDATION_FAILED,
                Text::BodyTooLarge,
                locale,
            );
        }
    };
    // A JSON array is a batch (even an empty one), anything else a single operation.
    let is_batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if is_batch {
        serde_json::from_slice::<Vec<async_graphql::Request>>(&bytes).map(BatchRequest::Batch)
    } else {
        serde_json::from_slice::<async_graphql::Request>(&bytes).map(BatchRequest::Single)
    };
    let batch: BatchRequest = match parsed {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                code::VALIDATION_FAILED,
                Text::BodyNotGraphql,
                locale,
            );
        }
    };
    if let BatchRequest::Batch(list) = &batch
        && (list.len() > app.config.max_batch_size || list.is_empty())
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            code::VALIDATION_FAILED,
            Text::BatchSize,
            locale,
        );
    }
    let anonymous = caller.is_none();
    if anonymous && matches!(&batch, BatchRequest::Batch(list) if list.len() > 1) {
        return error_response(
            StatusCode::BAD_REQUEST,
            code::VALIDATION_FAILED,
            Text::AnonymousBatch,
            locale,
        );
    }
    let limits = {
        let limits = graphql_api::DocumentLimits::with_depth(app.config.max_query_depth);
        if anonymous { limits.anonymous() } else { limits }
    };
    let context = RequestContext::new(caller, locale);
    let client_name = match &batch {
        BatchRequest::Single(r) => r
            .operation_name
            .as_ref()
            .map(|n| n.chars().take(100).collect::<String>()),
        BatchRequest::Batch(_) => None,
    };
    let list = match batch {
        BatchRequest::Single(r) => vec![r],
        BatchRequest::Batch(list) => list,
    };
    let single = !is_batch;
    // Parsed and measured (time linear in the text), off the async threads when the text
    // is long and new; refused here before the engine sees a document beyond the limits.
    let mut prepared: Vec<Admitted> = list
        .into_iter()
        .map(|r| {
            let heavy = r.query.len() > HEAVY_TEXT_BYTES && !app.query_cache.knows(&r);
            let p = off_async_threads(heavy, || app.query_cache.prepare(r));
            let refusal = p.shape.as_ref().and_then(|shape| {
                limits
                    .refusal(shape)
                    .or_else(|| graphql_api::depth::variables_refusal(shape, &p.request.variables))
            });
            match refusal {
                Some(message) => Admitted::Refused(message),
                None => Admitted::Run {
                    heavy: p.shape.is_some_and(|s| s.selections > HEAVY_SELECTIONS),
                    request: p.request,
                    verdict: p.verdict,
                },
            }
        })
        .collect();
    let operation = match prepared.as_mut_slice() {
        [Admitted::Run { request, .. }] if single => operation_label(&app, request),
        [Admitted::Refused(_)] if single => "refused",
        _ => "batch",
    };
    // One span per operation (its label and the client's name, never its variables),
    // continuing the caller's W3C trace; what it enqueues continues it too.
    let span = tracing::info_span!(
        "graphql",
        otel.name = %format!("graphql {operation}"),
        graphql.operation = %operation,
        graphql.operation.name = client_name.as_deref().unwrap_or(""),
    );
    crate::telemetry::continue_trace(&span, headers);
    let context = context.with_trace_parent(crate::telemetry::traceparent_of(&span));
    // The operations of a batch are independent and run concurrently, answered in order.
    let runs = prepared.into_iter().map(|item| {
        let (app, context, span) = (&app, context.clone(), span.clone());
        async move {
            match item {
                Admitted::Refused(message) => {
                    async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(message, None)])
                }
                Admitted::Run {
                    request,
                    heavy,
                    verdict,
                } => {
                    let run = app.schema.execute(request.data(context), verdict);
                    // The engine validates on its first poll, before it awaits anything: a
                    // large (already bounded) document is validated off the async threads.
                    FirstPollOff::new(heavy, run).instrument(span).await
                }
            }
        }
    });
    let mut responses: Vec<async_graphql::Response> = async_graphql::futures_util::stream::StreamExt::collect(
        runs.collect::<async_graphql::futures_util::stream::FuturesOrdered<_>>(),
    )
    .await;
    let response = if single {
        match responses.pop() {
            Some(r) => BatchResponse::Single(r),
            None => BatchResponse::Batch(Vec::new()),
        }
    } else {
        BatchResponse::Batch(responses)
    };
    let response = with_engine_error_codes(response);
    let body = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL,
                Text::Internal,
                locale,
            );
        }
    };
    if anonymous && body.len() > ANONYMOUS_RESPONSE_BYTES {
        return error_response(
            StatusCode::OK,
            code::VALIDATION_FAILED,
            Text::AnonymousResponseTooLarge {
                kib: ANONYMOUS_RESPONSE_BYTES / 1024,
            },
            locale,
        );
    }
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    response.extensions_mut().insert(crate::metrics::Operation(operation));
    response
}

/// Query texts longer than this, parsed for the first time, are parsed off the async
/// threads.
const HEAVY_TEXT_BYTES: usize = 4 * 1024;

/// Documents that expand to more selections than this are validated off the async
/// threads (a document the limits admit is validated in milliseconds, but `/healthz` and
/// every other request must not wait even that long).
const HEAVY_SELECTIONS: usize = 500;

/// What an anonymous caller may get back in one response.
pub const ANONYMOUS_RESPONSE_BYTES: usize = 256 * 1024;

/// A request held to the document limits: refused with the limit's message, or run.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per operation; boxing would cost an allocation per request"
)]
enum Admitted {
    Refused(&'static str),
    Run {
        request: async_graphql::Request,
        heavy: bool,
        /// Whether its text passed the strict validation before (cached texts).
        verdict: Option<Arc<graphql_api::Verdict>>,
    },
}

/// Runs `work` where it does not hold up the async worker threads when `heavy` (the
/// multi-threaded runtime hands this thread's other tasks to another thread meanwhile).
fn off_async_threads<T>(heavy: bool, work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if heavy && multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// A future whose first poll (where the engine parses and validates, synchronously)
/// runs off the async worker threads when `heavy`; later polls (the resolvers, which
/// await the database) run as usual.
struct FirstPollOff<F> {
    heavy: bool,
    inner: std::pin::Pin<Box<F>>,
}

impl<F> FirstPollOff<F> {
    fn new(heavy: bool, inner: F) -> Self {
        Self {
            heavy,
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for FirstPollOff<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let heavy = std::mem::take(&mut self.heavy);
        let inner = &mut self.inner;
        off_async_threads(heavy, || inner.as_mut().poll(cx))
    }
}

/// A server running in the background (tests, benchmarks, `serve`).
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub app: App,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Binds `app.config.listen` (port 0 picks a free port) and serves in the background.
    pub async fn start(app: App) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(app.config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("MAILGATE_LISTEN: cannot listen on {}: {e}", app.config.listen))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(serve(app.clone(), listener, async {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            app,
            shutdown: Some(tx),
            handle,
        })
    }

    /// Stops accepting, finishes requests in flight, and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await?
    }
}
