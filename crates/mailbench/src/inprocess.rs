//! Mailgate in-process for the benchmarks: a service on SQLite or PostgreSQL with tenants
//! whose own server is a loopback port, enqueueing through the domain service, and the
//! worker started and stopped around a measurement.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use domain::delivery::{DeliveryStatus, NotificationKind, NotificationRequest};
use domain::settings::{Encryption, MailSettingsDraft};
use domain::{Caller, Locale, Plan, Role, TenantId};
use mailgate::app::App;
use mailgate::config::{Config, Profile};
use secrecy::SecretString;
use testkit::db::PgSchema;

use crate::{CpuTimes, FROM, SUBJECT, Sink, TO, body_text};

pub use testkit::db::Backend;

/// The test database (testkit's), without TLS unless its URL asks for it, as a
/// PostgreSQL beside the service usually runs (sqlx would otherwise negotiate TLS on
/// loopback too); the plain-INSERT comparison uses the same pool.
pub fn pg_url() -> String {
    let url = testkit::db::postgres_url();
    if url.contains("sslmode=") {
        url
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

pub struct Bench {
    pub app: App,
    pub schema: Option<PgSchema>,
    pub data_dir: std::path::PathBuf,
    pub operator: Caller,
    pub service: Caller,
}

/// Mailgate in-process on `backend` (a fresh SQLite file or PostgreSQL schema), production
/// profile, tenants allowed to use `port` on loopback.
pub async fn build(
    backend: Backend,
    port: u16,
    db_conns: u32,
    in_flight: usize,
    per_tenant: usize,
) -> anyhow::Result<Bench> {
    build_with(backend, port, db_conns, in_flight, per_tenant, |_| {}).await
}

/// [`build`], with `tweak` applied to the configuration last.
pub async fn build_with(
    backend: Backend,
    port: u16,
    db_conns: u32,
    in_flight: usize,
    per_tenant: usize,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<Bench> {
    let data_dir = std::env::temp_dir().join(format!("mailbench-{}", uuid::Uuid::new_v4().simple()));
    let mut config = Config {
        profile: Profile::Production,
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        jwt_secret: Some(SecretString::from("mailbench-secret-that-is-at-least-32-bytes!")),
        secret_key: Some(persistence::crypto::generate_key_base64()),
        default_from: "Platform <noreply@platform.example>".into(),
        graphiql: Some(false),
        introspection: Some(false),
        database_max_connections: db_conns,
        allow_private_smtp_hosts: true,
        allow_private_smtp_hosts_in_production: true,
        smtp_allowed_ports: vec![port],
        worker_max_in_flight: in_flight,
        smtp_max_connections_per_tenant: per_tenant,
        // The benchmark's tenants stand for tenants with servers of their own (they share
        // loopback only because the bench has one machine): no cap per destination host.
        smtp_max_connections_per_host: 100_000,
        // The benchmark measures sending, not the setup assistant: saved settings are live.
        settings_activation: mailgate::config::SettingsActivation::Save,
        // Bursts of 10,000 for one tenant are the point here, not what quotas refuse;
        // MAILBENCH_QUOTAS=on keeps the quota path (with limits no burst reaches) to
        // measure what counting costs.
        enqueue_per_minute: if quotas_on() { 1_000_000 } else { 0 },
        enqueue_per_day: if quotas_on() { 10_000_000 } else { 0 },
        ..Config::default()
    };
    let schema = match backend {
        Backend::Sqlite => {
            config.database_url = Some(format!("sqlite://{}?mode=rwc", data_dir.join("mailgate.db").display()));
            None
        }
        Backend::Postgres => {
            let schema = PgSchema::fresh("mbench");
            config.database_url = Some(pg_url());
            config.database_schema = Some(schema.name().to_owned());
            Some(schema)
        }
    };
    tweak(&mut config);
    config.validate_and_prepare()?;
    let app = App::build(config).await?;
    Ok(Bench {
        app,
        schema,
        data_dir,
        operator: Caller::new("bench-operator".into(), Role::Operator, None).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        service: Caller::new("bench-service".into(), Role::Service, None).map_err(|e| anyhow::anyhow!("{e:?}"))?,
    })
}

impl Bench {
    /// The same database under a new process's app: what a restart or a deploy leaves.
    /// Every cache, pool and worker standing starts empty; the database keeps the rest
    /// (what the workers put on record among it).
    pub async fn restart(self) -> anyhow::Result<Bench> {
        let Bench {
            app,
            schema,
            data_dir,
            operator,
            service,
        } = self;
        let config = (*app.config).clone();
        let _ = app.db.clone().close().await;
        drop(app);
        let app = App::build(config).await?;
        Ok(Bench {
            app,
            schema,
            data_dir,
            operator,
            service,
        })
    }

    /// A bearer token for `subject` with `role` (no tenant), valid for an hour.
    pub fn token(&self, subject: &str, role: Role) -> anyhow::Result<String> {
        let claims = self.app.verifier.claims(subject, role, None, 3600);
        self.app
            .verifier
            .mint(&claims, None)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    pub async fn finish(self) {
        if let Some(schema) = self.schema {
            let _ = schema.drop_with(&self.app.db).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    pub async fn tenant(&self, i: usize, port: u16) -> anyhow::Result<TenantId> {
        self.tenant_with(i, port, 0).await
    }

    /// A Share tenant whose own server is `localhost:port`, with this send interval.
    pub async fn tenant_with(&self, i: usize, port: u16, send_interval_ms: i64) -> anyhow::Result<TenantId> {
        let t = self
            .app
            .service
            .create_tenant(&self.operator, &format!("Shop {i}"), Plan::Share)
            .await
            .map_err(|e| anyhow::anyhow!("create: {e:?}"))?;
        let id = t.tenant().id;
        let draft = MailSettingsDraft {
            host: Some("localhost".into()),
            port: Some(i64::from(port)),
            from_address: Some(FROM.into()),
            from_name: Some(format!("Shop {i}")),
            smtp_auth: Some(false),
            encryption: Some(Encryption::None),
            send_interval_ms: Some(send_interval_ms),
            ..Default::default()
        };
        self.app
            .service
            .update_mail_settings(&self.operator, id, &draft, None)
            .await
            .map_err(|e| anyhow::anyhow!("settings: {e:?}"))?;
        Ok(id)
    }

    pub async fn tenants(&self, n: usize, port: u16) -> anyhow::Result<Vec<TenantId>> {
        let mut out = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
            let futs = chunk.iter().map(|&i| self.tenant(i, port));
            for r in futures_join(futs).await {
                out.push(r?);
            }
        }
        Ok(out)
    }

    pub async fn counts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let c = self
            .app
            .deliveries
            .queries()
            .status_counts(all_tenants())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(c.into_iter().map(|(s, n)| (format!("{s:?}"), n)).collect())
    }

    pub async fn sent(&self) -> anyhow::Result<u64> {
        self.sent_in(all_tenants()).await
    }

    /// SENT deliveries within `scope` (one tenant, or all).
    pub async fn sent_in(&self, scope: domain::TenantScope) -> anyhow::Result<u64> {
        Ok(self
            .app
            .deliveries
            .queries()
            .status_counts(scope)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .filter(|(s, _)| *s == DeliveryStatus::Sent)
            .map(|(_, n)| n)
            .sum())
    }

    /// Enqueues `n` deliveries round-robin over `tenants` with `conc` tasks; returns (ok, failed, secs).
    pub async fn enqueue(&self, tenants: &[TenantId], n: u64, conc: usize) -> (u64, u64, f64, Option<String>) {
        let next = Arc::new(AtomicU64::new(0));
        let tenants = Arc::new(tenants.to_vec());
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (next, tenants, deliveries, caller) = (
                next.clone(),
                tenants.clone(),
                self.app.deliveries.clone(),
                self.service.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        break;
                    }
                    let req = request(tenants[(i as usize) % tenants.len()], i);
                    match deliveries.enqueue(&caller, &req).await {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            failed += 1;
                            first.get_or_insert(format!("{e:?}"));
                        }
                    }
                }
                (ok, failed, first)
            }));
        }
        let (ok, failed, first) = tally(tasks).await;
        (ok, failed, t0.elapsed().as_secs_f64(), first)
    }
}

/// Sums what the load tasks report: (succeeded, failed, the first error seen).
pub async fn tally(tasks: Vec<tokio::task::JoinHandle<(u64, u64, Option<String>)>>) -> (u64, u64, Option<String>) {
    let (mut ok, mut failed, mut first) = (0, 0, None);
    for t in tasks {
        if let Ok((o, f, e)) = t.await {
            ok += o;
            failed += f;
            if first.is_none() {
                first = e;
            }
        }
    }
    (ok, failed, first)
}

pub async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    // Sequential awaiting of already-created futures would not run them concurrently;
    // pin them in a JoinSet-like manner by polling all together.
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut pending: Vec<Option<_>> = futs.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

pub fn request(tenant: TenantId, i: u64) -> NotificationRequest {
    NotificationRequest {
        tenant_id: tenant,
        kind: NotificationKind::Custom,
        to: TO.into(),
        locale: Locale::En,
        variables: BTreeMap::new(),
        subject: Some(format!("{SUBJECT} {i}")),
        text: Some(body_text()),
        html: None,
        idempotency_key: None,
    }
}

pub struct Worker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<worker::WorkerReport>,
}

pub fn start_worker(app: &App) -> Worker {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.worker().run(async {
        let _ = rx.await;
    }));
    Worker { stop, handle }
}

impl Worker {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

/// Counts over every tenant (the benchmark reads the whole queue).
pub fn all_tenants() -> domain::TenantScope {
    domain::TenantScope::All(domain::access::AllTenants::for_operations())
}

/// Whether `MAILBENCH_QUOTAS=on` asks for the enqueue quota path.
fn quotas_on() -> bool {
    std::env::var("MAILBENCH_QUOTAS").is_ok_and(|v| v == "on")
}

/// The rates of one [`end_to_end`] run.
#[derive(Debug, Clone, Copy)]
pub struct EndToEnd {
    /// Notifications handed in per second (the worker stopped, 64 tasks).
    pub enqueued_per_sec: f64,
    /// Deliveries SENT per second once the worker started.
    pub delivered_per_sec: f64,
}

/// Enqueue n round-robin over `tenants` (worker stopped), then time the worker until all
/// are SENT.
pub async fn end_to_end(b: &Bench, sink: &Sink, label: &str, tenants: &[TenantId], n: u64) -> anyhow::Result<EndToEnd> {
    let sent_before = b.sent().await?;
    let (ok, failed, secs, first) = b.enqueue(tenants, n, 64).await;
    let enqueued_per_sec = ok as f64 / secs;
    println!(
        "  {label}: enqueued {ok} in {secs:.2} s in-process ({:.0}/s, 64 tasks), enqueue failures={failed}{}",
        ok as f64 / secs,
        first.map(|e| format!(" first: {e}")).unwrap_or_default()
    );
    let target = sent_before + ok;
    let sink_before = sink.stats().await?;
    // Progress is read from the worker's own count of outcomes written to the database
    // (a GROUP BY over the table every few ms would compete with the worker); the
    // database's counts are checked once at the end.
    let recorded = |b: &Bench| b.app.metrics.recorded_count(DeliveryStatus::Sent);
    let recorded_before = recorded(b);
    let cpu = CpuTimes::now();
    let w = start_worker(&b.app);
    let t0 = Instant::now();
    let (mut last, mut last_change) = (recorded_before, Instant::now());
    // When the first, a tenth, half, nine tenths of the deliveries were recorded: how long
    // the start took, and the rate once under way.
    let marks = [1, ok.div_ceil(10), ok.div_ceil(2), (ok * 9).div_ceil(10)];
    let mut reached: Vec<Option<f64>> = vec![None; marks.len()];
    let done = loop {
        let s = recorded(b);
        for (mark, at) in marks.iter().zip(reached.iter_mut()) {
            if at.is_none() && s - recorded_before >= *mark {
                *at = Some(t0.elapsed().as_secs_f64());
            }
        }
        if s - recorded_before >= ok {
            break true;
        }
        if s != last {
            last = s;
            last_change = Instant::now();
        }
        if last_change.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = CpuTimes::now().since(&cpu);
    w.stop().await;
    let delivered = b.sent().await? - sent_before;
    anyhow::ensure!(
        delivered >= target - sent_before || !done,
        "the worker counted {ok} recorded but the database has {delivered} SENT"
    );
    let sink_d = sink.stats().await?.since(&sink_before);
    let rate = delivered as f64 / secs;
    if let [Some(first), Some(tenth), Some(half), Some(nine)] = reached[..] {
        let under_way = (marks[3] - marks[1]) as f64 / (nine - tenth).max(1e-6);
        println!(
            "  {label}: first recorded after {:.0} ms; 10% / 50% / 90% at {tenth:.2} / {half:.2} / {nine:.2} s; {under_way:.0}/s from 10% to 90%",
            first * 1000.0
        );
    }
    println!(
        "  {label}: END-TO-END {rate:.0} deliveries/s — {delivered}/{ok} SENT in {secs:.2} s{} ({cpu}); sink accepted +{} msgs over +{} conns; status counts now {:?}",
        if done { "" } else { " (STALLED: no progress for 30 s)" },
        sink_d.messages,
        sink_d.connections,
        b.counts().await?
    );
    Ok(EndToEnd {
        enqueued_per_sec,
        delivered_per_sec: rate,
    })
}
