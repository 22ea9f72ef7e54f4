//! Mailgate load benchmark.
//!
//! Measures the hot read path of the API — `tenant(id){ effectiveSender { address source } }`
//! as an operator — against the ceiling of this machine: a bare axum endpoint that
//! returns a fixed JSON body of similar size, driven by the same client in the same run.
//!
//! For each backend (SQLite, PostgreSQL) it
//! 1. starts Mailgate in-process exactly as the API tests do (production profile, real
//!    migrations, a fresh temporary data directory, and on PostgreSQL a fresh schema
//!    `bench_<uuid>` that is dropped at the end),
//! 2. seeds `--tenants` tenants through the domain service (plans cycle Economy, Basic,
//!    Pro, Share, Biz; Share and Biz tenants get saved mail settings, so 40% of the
//!    effective senders are `CUSTOM` and 60% `PLATFORM_DEFAULT`),
//! 3. measures the bare endpoint, then Mailgate, then the bare endpoint again, each with
//!    `--connections` keep-alive HTTP/1.1 connections (one closed-loop task per
//!    connection): `--warmup` seconds unmeasured — which first read every tenant once, so
//!    the tenant cache is as warm as in steady state — then `--seconds` measured with a
//!    random tenant per request,
//! 4. prints requests/s, p50/p99 latency, process CPU time per request and errors;
//!    Mailgate's share of the bare throughput (the ceiling is the better of the two bare
//!    runs, so a disturbance cannot flatter Mailgate); and a verdict against the target
//!    (at least 60% of bare).
//!
//! Client, server and database share the machine (and client and servers share one tokio
//! runtime), so the figures are relative: compare Mailgate with the bare line printed
//! next to it, not with figures from another machine. CPU time per request is the steadier
//! figure on a shared machine; the run warns when the two bare runs disagree or other
//! processes used the CPU meanwhile. Every response is checked (status
//! 200; for Mailgate an `effectiveSender` and no `errors`); failures are counted and
//! samples printed, because a benchmark that measures errors measures nothing.
//!
//! Run (release mode matters):
//!
//! ```text
//! cargo run --release -p bench -- [--backend sqlite|postgres|both] [--tenants 10000]
//!     [--connections 64] [--seconds 10] [--warmup 2]
//! ```
//!
//! PostgreSQL: `MAILGATE_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). The exit status is 1 when a backend
//! misses the target, any request failed, or the bare runs disagree (busy machine).

mod client;

/// The same allocator as the `mailgate` binary, so the in-process server is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use domain::services::TenantService;
use domain::settings::MailSettingsDraft;
use domain::{Caller, Plan, Role, TenantId};
use mailgate::app::App;
use mailgate::config::{Config, Profile};
use mailgate::http::RunningServer;
use sea_orm::ConnectionTrait as _;
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::client::{Check, Load, Stats};

/// Mailgate must reach this share of the bare endpoint's requests/s.
const TARGET_SHARE: f64 = 0.60;
/// Bare runs before and after Mailgate further apart than this (relative) mean the
/// machine was disturbed.
const UNSTABLE_SPREAD: f64 = 0.15;
/// Other processes using more than this share of the CPU during a run disturb it.
const OTHERS_WARNING: f64 = 0.10;
/// Tenants created concurrently while seeding.
const SEED_CONCURRENCY: usize = 8;
/// The measured operation.
const QUERY: &str = "query($id:ID!){ tenant(id:$id){ effectiveSender { address source } } }";
/// What the bare endpoint returns: the shape and size of a Mailgate answer.
const BARE_BODY: &str =
    r#"{"data":{"tenant":{"effectiveSender":{"address":"noreply@platform.example","source":"PLATFORM_DEFAULT"}}}}"#;
const PLANS: [Plan; 5] = [Plan::Economy, Plan::Basic, Plan::Pro, Plan::Share, Plan::Biz];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What one backend's run found.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// Mailgate's requests/s over the bare ceiling's.
    share: f64,
    /// Failed requests, bare and Mailgate.
    errors: u64,
    /// The relative spread of the two bare runs, when too large to trust the figures.
    unstable: Option<f64>,
}

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<Backend>,
    tenants: usize,
    connections: usize,
    seconds: u64,
    warmup: u64,
}

const USAGE: &str =
    "usage: bench [--backend sqlite|postgres|both] [--tenants 10000] [--connections 64] [--seconds 10] [--warmup 2]";

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut args = Args {
            backends: vec![Backend::Sqlite, Backend::Postgres],
            tenants: 10_000,
            connections: 64,
            seconds: 10,
            warmup: 2,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || -> anyhow::Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it.next().with_context(|| format!("{name} needs a value\n{USAGE}")),
                }
            };
            match name.as_str() {
                "--backend" => {
                    args.backends = match value()?.as_str() {
                        "sqlite" => vec![Backend::Sqlite],
                        "postgres" | "postgresql" => vec![Backend::Postgres],
                        "both" => vec![Backend::Sqlite, Backend::Postgres],
                        other => bail!("--backend: unknown backend {other:?}\n{USAGE}"),
                    }
                }
                "--tenants" => args.tenants = number(&name, &value()?)?,
                "--connections" => args.connections = number(&name, &value()?)?,
                "--seconds" => args.seconds = number(&name, &value()?)?,
                "--warmup" => args.warmup = value()?.parse().with_context(|| format!("{name}: not a number"))?,
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(args)
    }
}

/// A positive integer argument.
fn number<T: std::str::FromStr + PartialEq + From<u8>>(name: &str, raw: &str) -> anyhow::Result<T> {
    let n: T = raw.parse().map_err(|_| anyhow!("{name}: {raw:?} is not a number"))?;
    if n == T::from(0) {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs every selected backend; true when all met the target without errors.
async fn run() -> anyhow::Result<bool> {
    let args = Args::parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Mailgate benchmark: {} tenants, {} connections, {}s warm-up + {}s measured per run, {} CPU threads (client, servers and database share them)",
        args.tenants, args.connections, args.warmup, args.seconds, threads
    );
    println!("query: {QUERY}");
    let bare = BareServer::start().await?;
    let mut verdicts = Vec::new();
    for &backend in &args.backends {
        println!();
        println!("== {} ==", backend.name());
        let outcome = run_backend(backend, &args, bare.addr)
            .await
            .with_context(|| format!("{} run", backend.name()))?;
        verdicts.push((backend, outcome));
    }
    bare.stop().await;
    println!();
    let mut all_ok = true;
    for (backend, outcome) in verdicts {
        let met = outcome.share >= TARGET_SHARE && outcome.errors == 0;
        all_ok &= met && outcome.unstable.is_none();
        let mut notes = String::new();
        if outcome.errors > 0 {
            notes.push_str(&format!(", {} failed requests", outcome.errors));
        }
        if let Some(spread) = outcome.unstable {
            notes.push_str(&format!(", UNRELIABLE: bare runs differed by {:.0}%", spread * 100.0));
        }
        println!(
            "verdict {:<9}: {} — mailgate reached {:.0}% of bare axum (target >= {:.0}%){notes}",
            backend.name(),
            if met { "PASS" } else { "FAIL" },
            outcome.share * 100.0,
            TARGET_SHARE * 100.0,
        );
    }
    Ok(all_ok)
}

/// The ceiling: an axum router with one handler returning a fixed JSON body.
#[derive(Debug)]
struct BareServer {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn bare_graphql(_body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BARE_BODY)
}

impl BareServer {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the bare endpoint")?;
        let addr = listener.local_addr()?;
        let router = Router::new().route("/graphql", post(bare_graphql));
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Self { addr, shutdown, handle })
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.handle.await;
    }
}

/// Starts Mailgate on `backend`, seeds, measures bare then Mailgate, and cleans up.
async fn run_backend(backend: Backend, args: &Args, bare: SocketAddr) -> anyhow::Result<Outcome> {
    let (mut config, schema) = bench_config(backend);
    // The seeded hosts (`smtp.site<i>.example.com`) are looked up on save: a DNS server
    // of the bench's own answers at once, so seeding does not measure this machine's
    // resolver (on a closed network every lookup waited for its deadline).
    config.dns_servers = vec![nxdomain_dns().await.context("the bench's DNS server")?];
    let data_dir = config.data_dir.clone();
    let pool = match backend {
        Backend::Sqlite => "SQLite WAL file, pool sized by persistence".to_owned(),
        Backend::Postgres => format!("PostgreSQL pool of {}", config.database_max_connections),
    };
    println!(
        "{pool}, tenant cache {} entries / {}s TTL",
        config.tenant_cache_capacity, config.tenant_cache_ttl_secs
    );
    let built = async {
        config.validate_and_prepare().context("bench configuration")?;
        App::build(config)
            .await
            .context("building the app (is PostgreSQL running? see MAILGATE_BENCH_POSTGRES_URL)")
    }
    .await;
    let app = match built {
        Ok(app) => app,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&data_dir);
            return Err(e);
        }
    };
    let result = measure_backend(backend, args, bare, &app).await;
    if let Some(schema) = &schema
        && let Err(e) = app
            .db
            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
    {
        eprintln!("warning: could not drop schema {schema}: {e}");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// A DNS server on loopback that answers every question over UDP with NXDOMAIN (the
/// question echoed, no records), for the seeded host names.
async fn nxdomain_dns() -> anyhow::Result<SocketAddr> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(reply) = nxdomain(&buf[..n]) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    Ok(addr)
}

/// The NXDOMAIN answer to one query: its header (QR, RA, RCODE 3, one question) and its
/// question; `None` for what is not one query.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        at += len + 1;
    }
    let end = at + 1 + 4;
    if end > query.len() || query[2] & 0x80 != 0 {
        return None;
    }
    let mut reply = query[..end].to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, the query's opcode and RD
    reply[3] = 0x80 | 3; // RA, NXDOMAIN
    reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    Some(reply)
}

/// The production configuration the tests use, on a fresh database.
fn bench_config(backend: Backend) -> (Config, Option<String>) {
    let data_dir = std::env::temp_dir().join(format!("mailgate-bench-{}", uuid::Uuid::new_v4().simple()));
    let jwt_secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut config = Config {
        profile: Profile::Production,
        data_dir: data_dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        jwt_secret: Some(SecretString::from(jwt_secret)),
        secret_key: Some(persistence::crypto::generate_key_base64()),
        default_from: "Platform <noreply@platform.example>".into(),
        graphiql: Some(false),
        introspection: Some(false),
        // Seeded settings are in force at once, as before verification existed, so the
        // figure stays comparable (the custom route is the longer path).
        settings_activation: mailgate::config::SettingsActivation::Save,
        ..Config::default()
    };
    let schema = match backend {
        Backend::Sqlite => {
            config.database_url = Some(format!("sqlite://{}?mode=rwc", data_dir.join("mailgate.db").display()));
            None
        }
        Backend::Postgres => {
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            config.database_url = Some(
                std::env::var("MAILGATE_BENCH_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            );
            config.database_schema = Some(schema.clone());
            Some(schema)
        }
    };
    (config, schema)
}

async fn measure_backend(backend: Backend, args: &Args, bare: SocketAddr, app: &App) -> anyhow::Result<Outcome> {
    let caller = Caller::new("bench".into(), Role::Operator, None).map_err(|e| anyhow!("operator caller: {e}"))?;
    let started = Instant::now();
    let ids = seed(&app.service, &caller, args.tenants).await?;
    let seeded = started.elapsed();
    let custom = (0..args.tenants)
        .filter(|i| PLANS[i % PLANS.len()].can_override_sender())
        .count();
    println!(
        "seeded {} tenants ({} with saved mail settings) in {:.1}s ({:.0} tenants/s, {} at a time)",
        ids.len(),
        custom,
        seeded.as_secs_f64(),
        ids.len() as f64 / seeded.as_secs_f64(),
        SEED_CONCURRENCY
    );

    let server = RunningServer::start(app.clone()).await.context("starting Mailgate")?;
    let claims = app.verifier.claims("bench", Role::Operator, None, 3600);
    let token = app
        .verifier
        .mint(&claims, None)
        .map_err(|e| anyhow!("minting the bench token: {e}"))?;
    let requests_for = |addr: SocketAddr| -> Arc<Vec<Vec<u8>>> {
        Arc::new(
            ids.iter()
                .map(|id| {
                    let body = serde_json::json!({ "query": QUERY, "variables": { "id": id.to_string() } }).to_string();
                    client::post_request(addr, Some(&token), &body)
                })
                .collect(),
        )
    };
    let bare_load = Load {
        addr: bare,
        requests: requests_for(bare),
        check: Check::Status200,
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.seconds),
    };
    let mailgate_load = Load {
        addr: server.addr,
        requests: requests_for(server.addr),
        check: Check::EffectiveSender,
        ..bare_load.clone()
    };
    println!("load average before the runs: {}", load_average());
    let measured = async {
        let before = client::run(&bare_load).await.context("load on the bare endpoint")?;
        let mailgate = client::run(&mailgate_load).await.context("load on Mailgate")?;
        let after = client::run(&bare_load)
            .await
            .context("load on the bare endpoint (again)")?;
        anyhow::Ok((before, mailgate, after))
    }
    .await;
    let stopped = server.stop().await.context("stopping Mailgate");
    let (before, stats, after) = measured?;
    stopped?;

    // The ceiling is the better of the two bare runs, so a disturbance during one of
    // them cannot flatter Mailgate.
    let ceiling = before.requests_per_sec().max(after.requests_per_sec());
    let share = stats.requests_per_sec() / ceiling;
    let spread = (before.requests_per_sec() - after.requests_per_sec()).abs() / ceiling;
    report("bare axum", &before, None);
    report(&format!("mailgate {}", backend.name()), &stats, Some(share));
    report("bare axum (again)", &after, None);
    if stats.requests > 0 {
        println!(
            "  effective sender CUSTOM in {:.0}% of measured responses (seeded: {:.0}%)",
            stats.custom as f64 * 100.0 / stats.requests as f64,
            custom as f64 * 100.0 / args.tenants as f64
        );
    }
    let bare_cpu = [before.cpu_us_per_request(), after.cpu_us_per_request()]
        .into_iter()
        .flatten()
        .reduce(f64::min);
    if let (Some(bare_cpu), Some(mailgate_cpu)) = (bare_cpu, stats.cpu_us_per_request()) {
        println!(
            "  CPU per request (client + server in this process): mailgate {mailgate_cpu:.1} µs, bare {bare_cpu:.1} µs — Mailgate adds {:.1} µs; CPU-bound share {:.0}%",
            mailgate_cpu - bare_cpu,
            bare_cpu / mailgate_cpu * 100.0
        );
    }
    let others = [&before, &stats, &after]
        .iter()
        .filter_map(|s| s.others_share())
        .fold(0.0, f64::max);
    if others > OTHERS_WARNING {
        println!(
            "  warning: other processes used up to {:.0}% of the machine's CPU during these runs (load average now {})",
            others * 100.0,
            load_average()
        );
    }
    let unstable = (spread > UNSTABLE_SPREAD).then_some(spread);
    if let Some(spread) = unstable {
        println!(
            "  warning: the two bare runs differ by {:.0}% — something else was using the CPU; re-run for reliable figures",
            spread * 100.0
        );
    }
    Ok(Outcome {
        share,
        errors: before.errors + stats.errors + after.errors,
        unstable,
    })
}

/// `/proc/loadavg`'s first three fields, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn report(label: &str, stats: &Stats, share: Option<f64>) {
    let share = share
        .map(|s| format!("  = {:.0}% of bare", s * 100.0))
        .unwrap_or_default();
    let cpu = stats
        .cpu_us_per_request()
        .map(|c| format!("  cpu {c:.1} µs/req"))
        .unwrap_or_default();
    println!(
        "{label:<17}: {:>6.0} req/s  p50 {:.2} ms  p99 {:.2} ms{cpu}  (errors {}){share}",
        stats.requests_per_sec(),
        stats.percentile_ms(50.0),
        stats.percentile_ms(99.0),
        stats.errors
    );
    for sample in &stats.error_samples {
        let sample: String = sample.chars().take(300).collect();
        println!("  error: {sample}");
    }
}

/// Creates `count` tenants with a mix of plans; Share and Biz tenants get mail
/// settings. Returns the ids in creation order.
async fn seed(service: &TenantService, caller: &Caller, count: usize) -> anyhow::Result<Vec<TenantId>> {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..SEED_CONCURRENCY {
        let service = service.clone();
        let caller = caller.clone();
        workers.spawn(async move {
            let mut made = Vec::new();
            for i in (worker..count).step_by(SEED_CONCURRENCY) {
                let plan = PLANS[i % PLANS.len()];
                let view = service
                    .create_tenant(&caller, &format!("Bench site {i}"), plan)
                    .await
                    .map_err(|e| anyhow!("creating tenant {i}: {e:?}"))?;
                let id = view.tenant().id;
                if plan.can_override_sender() {
                    let draft = MailSettingsDraft {
                        host: Some(format!("smtp.site{i}.example.com")),
                        port: Some(587),
                        from_address: Some(format!("noreply@site{i}.example.com")),
                        smtp_auth: Some(false),
                        ..MailSettingsDraft::default()
                    };
                    service
                        .update_mail_settings(&caller, id, &draft, None)
                        .await
                        .map_err(|e| anyhow!("saving mail settings of tenant {i}: {e:?}"))?;
                }
                made.push((i, id));
            }
            anyhow::Ok(made)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("a seeding task panicked")??);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, id)| id).collect())
}
