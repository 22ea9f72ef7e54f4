//! Real `mailgate` processes on one PostgreSQL: end-to-end delivery rate with 1, 2 and 3
//! worker processes, and the cross-process invalidation delay of plan changes.
//!
//! cargo run --release -p mailbench --bin cluster -- [--n 10000] [--changes 200] [--mailgate target/release/mailgate]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mailbench::*;
use serde_json::json;
use testkit::client::{try_call as call, try_counts as counts};
use testkit::process::{Database, Started as Proc, terminate, try_start};
use testkit::settings::SettingsInput;

const JWT: &str = "mailbench-secret-that-is-at-least-32-bytes!";

struct Cluster {
    bin: std::path::PathBuf,
    /// The processes' one PostgreSQL schema (dropped with the cluster).
    database: Database,
    secret_key: String,
    port: u16,
    dirs: Vec<std::path::PathBuf>,
}

impl Cluster {
    fn command(&mut self, worker: bool) -> Command {
        let schema = self.database.schema().unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("{schema}-{}", self.dirs.len()));
        self.dirs.push(dir.clone());
        let mut cmd = testkit::process::mailgate(&self.bin, &dir);
        cmd.env("MAILGATE_PROFILE", "development")
            .envs(self.database.env())
            .env("MAILGATE_JWT_SECRET", JWT)
            .env("MAILGATE_SECRET_KEY", &self.secret_key)
            .env("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", "true")
            // The benchmark measures sending, not the setup assistant: saved settings are live.
            .env("MAILGATE_SETTINGS_ACTIVATION", "save")
            .env("MAILGATE_ENQUEUE_PER_MINUTE", "0")
            .env("MAILGATE_ENQUEUE_PER_DAY", "0")
            .env("MAILGATE_SMTP_ALLOWED_PORTS", self.port.to_string())
            .env("MAILGATE_WORKER_ENABLED", worker.to_string())
            .env("MAILGATE_WORKER_POLL_MS", "50")
            .env("MAILGATE_WORKER_MAX_IN_FLIGHT", "64")
            .env("MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT", "8")
            .env("MAILGATE_DATABASE_MAX_CONNECTIONS", "16");
        cmd
    }

    fn start(&mut self, worker: bool) -> anyhow::Result<Proc> {
        Ok(try_start(self.command(worker))?)
    }

    fn service_token(&self) -> anyhow::Result<String> {
        let out = testkit::process::mailgate(&self.bin, self.dirs.first().context("dir")?)
            .env("MAILGATE_JWT_SECRET", JWT)
            .args(["token", "--role", "service"])
            .output()?;
        anyhow::ensure!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Drops the schema and removes the processes' data directories.
    fn finish(self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Stops a process we started: SIGTERM, then kill after 30 s.
fn stop(p: Proc) {
    terminate(p.child, Duration::from_secs(30));
}

fn get(c: &BTreeMap<String, i64>, s: &str) -> i64 {
    c.get(s).copied().unwrap_or(0)
}

async fn setup_tenant(client: &reqwest::Client, p: &Proc, port: u16, name: &str) -> anyhow::Result<String> {
    let settings = SettingsInput::plain(port)
        .from(FROM)
        .from_name("Shop")
        .send_interval_ms(0);
    Ok(testkit::client::try_setup_tenant(client, &p.url, &p.token, name, &settings).await?)
}

async fn enqueue_http(client: &reqwest::Client, url: &str, service: &str, tenant: &str, n: u64) -> (u64, u64, f64) {
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, service, tenant, next) = (
            client.clone(),
            url.to_owned(),
            service.to_owned(),
            tenant.to_owned(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let r = call(&client, &url, &service,
                    "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }",
                    json!({ "i": { "tenantId": tenant, "kind": "CUSTOM", "to": TO, "subject": format!("{SUBJECT} {i}"), "text": body_text() } })).await;
                match r {
                    Ok(v) if v["data"]["enqueueNotification"]["id"].is_string() => ok += 1,
                    Ok(v) => {
                        if failed == 0 {
                            eprintln!("enqueue error: {v}");
                        }
                        failed += 1
                    }
                    Err(e) => {
                        if failed == 0 {
                            eprintln!("enqueue error: {e}");
                        }
                        failed += 1
                    }
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        if let Ok((o, f)) = t.await {
            ok += o;
            failed += f;
        }
    }
    (ok, failed, t0.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n", 10_000);
    let changes: usize = arg("--changes", 200);
    let bin: String = arg("--mailgate", "target/release/mailgate".to_owned());
    println!("# mailbench cluster — command: {}", command_line());
    println!("# start: {}", load_note());
    let sink = Sink::start(None)?;
    let mut c = Cluster {
        bin: std::path::PathBuf::from(&bin)
            .canonicalize()
            .with_context(|| format!("{bin} (build it first)"))?,
        database: Database::postgres("mbench_cluster"),
        secret_key: {
            use secrecy::ExposeSecret as _;
            persistence::crypto::generate_key_base64().expose_secret().to_owned()
        },
        port: sink.port,
        dirs: Vec::new(),
    };
    println!(
        "# binary {}; PostgreSQL {} schema {}; each process: MAILGATE_WORKER_MAX_IN_FLIGHT=64, MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT=8, MAILGATE_DATABASE_MAX_CONNECTIONS=16, MAILGATE_WORKER_POLL_MS=50; plain sink (separate process) port {}; {} cores",
        c.bin.display(),
        testkit::db::postgres_url(),
        c.database.schema().unwrap_or_default(),
        sink.port,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let result = run(&mut c, &sink, n, changes).await;
    c.finish();
    result
}

async fn run(c: &mut Cluster, sink: &Sink, n: u64, changes: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let api = c.start(false)?;
    let service = c.service_token()?;
    let op = api.token.clone();

    for k in 1..=3usize {
        let tenant = setup_tenant(&client, &api, sink.port, &format!("Cluster {k}")).await?;
        let (ok, failed, secs) = enqueue_http(&client, &api.url, &service, &tenant, n).await;
        println!(
            "[{k} worker process(es)] enqueued {ok} through the API process (no worker) in {secs:.2} s ({:.0}/s, 64 clients), failures={failed}",
            ok as f64 / secs
        );
        let sink_before = sink.stats().await?;
        let t_spawn = Instant::now();
        // Start the k workers in parallel; each is ready once it prints its token.
        let handles: Vec<_> = (0..k).map(|_| c.start_async()).collect();
        let mut workers = Vec::new();
        for h in handles {
            workers.push(h.join().map_err(|_| anyhow::anyhow!("start thread"))??);
        }
        let t_ready = Instant::now();
        let sent_at_ready = get(&counts(&client, &api.url, &op, &tenant).await?, "SENT");
        let (mut last, mut last_change) = (sent_at_ready, Instant::now());
        let done = loop {
            let cs = counts(&client, &api.url, &op, &tenant).await?;
            let s = get(&cs, "SENT");
            if s >= ok as i64 {
                break true;
            }
            if s != last {
                last = s;
                last_change = Instant::now();
            }
            if last_change.elapsed() > Duration::from_secs(30) {
                println!("  STALLED: {cs:?}");
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let t_end = Instant::now();
        let cs = counts(&client, &api.url, &op, &tenant).await?;
        let sent = get(&cs, "SENT");
        for w in workers {
            stop(w);
        }
        let sink_d = sink.stats().await?.since(&sink_before);
        let window = (t_end - t_ready).as_secs_f64();
        println!(
            "[{k} worker process(es)] END-TO-END {:.0} deliveries/s with all {k} running ({} delivered in {window:.2} s after all were ready; {sent_at_ready} were already sent during start-up); incl. start-up: {:.0}/s over {:.2} s; SENT={sent}/{ok}{}; sink +{} msgs (duplicates would show as more than {ok}); counts {cs:?}",
            (sent - sent_at_ready) as f64 / window,
            sent - sent_at_ready,
            sent as f64 / (t_end - t_spawn).as_secs_f64(),
            (t_end - t_spawn).as_secs_f64(),
            if done { "" } else { " STALLED" },
            sink_d.messages,
        );
    }

    // Cross-process invalidation: change through the API process, read through another.
    let p2 = c.start(false)?;
    let tenant = setup_tenant(&client, &api, sink.port, "Invalidation").await?;
    let q = "query($id:ID!){ tenant(id:$id){ plan } }";
    let plans = ["BIZ", "SHARE", "ECONOMY", "BASIC", "PRO"];
    let (mut from_send, mut from_ack, mut timeouts, mut errors) = (Vec::new(), Vec::new(), 0, 0);
    for i in 0..changes {
        let plan = plans[i % plans.len()];
        // Process 2 has the tenant cached.
        let before = call(&client, &p2.url, &p2.token, q, json!({ "id": tenant })).await?;
        if !before["data"]["tenant"]["plan"].is_string() {
            errors += 1;
            continue;
        }
        let t0 = Instant::now();
        let r = call(
            &client,
            &api.url,
            &op,
            "mutation($t:ID!,$p:Plan!){ changeTenantPlan(tenantId:$t, plan:$p){ plan } }",
            json!({ "t": tenant, "p": plan }),
        )
        .await?;
        if r["data"]["changeTenantPlan"]["plan"] != plan {
            errors += 1;
            println!("  change failed: {r}");
            continue;
        }
        let t_ack = Instant::now();
        loop {
            let seen = call(&client, &p2.url, &p2.token, q, json!({ "id": tenant })).await?;
            if seen["data"]["tenant"]["plan"] == plan {
                break;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                timeouts += 1;
                break;
            }
        }
        from_send.push(t0.elapsed());
        from_ack.push(t_ack.elapsed());
    }
    from_send.sort();
    from_ack.sort();
    println!(
        "invalidation delay over {} plan changes (process 1 -> process 2 `tenant(id){{plan}}`, polled back-to-back): from mutation sent p50={:.2} ms p99={:.2} ms max={:.2} ms; from mutation answered p50={:.2} ms p99={:.2} ms max={:.2} ms; not seen within 5 s: {timeouts}; errors: {errors}",
        from_send.len(),
        pct_ms(&from_send, 50.0),
        pct_ms(&from_send, 99.0),
        pct_ms(&from_send, 100.0),
        pct_ms(&from_ack, 50.0),
        pct_ms(&from_ack, 99.0),
        pct_ms(&from_ack, 100.0),
    );
    stop(p2);
    stop(api);
    println!("# end: {}", load_note());
    Ok(())
}

impl Cluster {
    /// Starts a worker process on a thread (so several start in parallel).
    fn start_async(&mut self) -> std::thread::JoinHandle<anyhow::Result<Proc>> {
        let cmd = self.command(true);
        std::thread::spawn(move || Ok(try_start(cmd)?))
    }
}
