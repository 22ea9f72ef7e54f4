//! Real `mailgate` processes on one PostgreSQL: end-to-end delivery rate with 1, 2 and 3
//! worker processes, and the cross-process invalidation delay of plan changes.
//!
//! cargo run --release -p mailbench --bin cluster -- [--n 10000] [--changes 200] [--mailgate target/release/mailgate]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mailbench::*;
use serde_json::{Value, json};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const JWT: &str = "mailbench-secret-that-is-at-least-32-bytes!";
const UPDATE: &str = "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }";

struct Cluster {
    bin: std::path::PathBuf,
    schema: String,
    secret_key: String,
    port: u16,
    dirs: Vec<std::path::PathBuf>,
}

struct Proc {
    child: Child,
    url: String,
    token: String,
}

impl Cluster {
    fn command(&mut self, worker: bool) -> Command {
        let dir = std::env::temp_dir().join(format!("{}-{}", self.schema, self.dirs.len()));
        self.dirs.push(dir.clone());
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("MAILGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MAILGATE_DATA_DIR", &dir)
            .env("MAILGATE_LISTEN", "127.0.0.1:0")
            .env("MAILGATE_LOG", "warn")
            .env("MAILGATE_PROFILE", "development")
            .env("MAILGATE_DATABASE_URL", PG_URL)
            .env("MAILGATE_DATABASE_SCHEMA", &self.schema)
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
        let mut cmd = self.command(worker);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(out).lines();
        let (mut url, mut token) = (String::new(), String::new());
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.trim().strip_prefix("GraphiQL:") {
                url = rest.trim().to_owned();
            }
            if line.contains("Operator token") {
                token = lines.next().and_then(Result::ok).unwrap_or_default().trim().to_owned();
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        anyhow::ensure!(url.starts_with("http://"), "mailgate did not start (url {url:?})");
        if token.split('.').count() != 3 {
            token = mint_operator_like(&cmd)?;
        }
        Ok(Proc { child, url, token })
    }

    fn service_token(&self) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .env("MAILGATE_JWT_SECRET", JWT)
            .env("MAILGATE_DATA_DIR", self.dirs.first().context("dir")?)
            .args(["token", "--role", "service"])
            .output()?;
        anyhow::ensure!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    fn drop_schema(&self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
            .output();
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Stops a process we started: SIGTERM by its id, then wait.
fn stop(mut p: Proc) {
    let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(_)) = p.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
}

/// An operator token from the binary `cmd` runs, with `cmd`'s settings (a process with a
/// JWT secret of its own prints none).
fn mint_operator_like(cmd: &Command) -> anyhow::Result<String> {
    let mut mint = Command::new(cmd.get_program());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => mint.env(k, v),
            None => mint.env_remove(k),
        };
    }
    let out = mint.args(["token", "--role", "operator"]).output()?;
    anyhow::ensure!(out.status.success(), "token: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

async fn call(client: &reqwest::Client, url: &str, token: &str, query: &str, vars: Value) -> anyhow::Result<Value> {
    Ok(client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await?
        .json()
        .await?)
}

async fn counts(client: &reqwest::Client, url: &str, op: &str, tenant: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let d = call(
        client,
        url,
        op,
        "query($id:ID!){ tenant(id:$id){ deliveries(first:1){ counts { status count } } } }",
        json!({ "id": tenant }),
    )
    .await?;
    Ok(d["data"]["tenant"]["deliveries"]["counts"]
        .as_array()
        .with_context(|| format!("counts: {d}"))?
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["count"].as_i64().unwrap_or(0),
            )
        })
        .collect())
}

fn get(c: &[(String, i64)], s: &str) -> i64 {
    c.iter().find(|(k, _)| k == s).map_or(0, |(_, v)| *v)
}

async fn setup_tenant(client: &reqwest::Client, p: &Proc, port: u16, name: &str) -> anyhow::Result<String> {
    let t = call(
        client,
        &p.url,
        &p.token,
        "mutation($n:String!){ createTenant(name:$n, plan:SHARE){ id } }",
        json!({ "n": name }),
    )
    .await?;
    let id = t["data"]["createTenant"]["id"]
        .as_str()
        .with_context(|| format!("{t}"))?
        .to_owned();
    let s = call(
        client,
        &p.url,
        &p.token,
        UPDATE,
        json!({ "t": id, "i": { "host": "localhost", "port": port, "encryption": "NONE", "fromAddress": FROM, "fromName": "Shop", "sendIntervalMs": 0 } }),
    )
    .await?;
    anyhow::ensure!(s.get("errors").is_none(), "settings: {s}");
    Ok(id)
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
        schema: format!("mbench_cluster_{}", uuid::Uuid::new_v4().simple()),
        secret_key: {
            use secrecy::ExposeSecret as _;
            persistence::crypto::generate_key_base64().expose_secret().to_owned()
        },
        port: sink.port,
        dirs: Vec::new(),
    };
    println!(
        "# binary {}; PostgreSQL {PG_URL} schema {}; each process: MAILGATE_WORKER_MAX_IN_FLIGHT=64, MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT=8, MAILGATE_DATABASE_MAX_CONNECTIONS=16, MAILGATE_WORKER_POLL_MS=50; plain sink (separate process) port {}; {} cores",
        c.bin.display(),
        c.schema,
        sink.port,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let result = run(&mut c, &sink, n, changes).await;
    c.drop_schema();
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
        std::thread::spawn(move || {
            let mut cmd = cmd;
            let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
            let out = child.stdout.take().context("stdout")?;
            let mut lines = BufReader::new(out).lines();
            let (mut url, mut token) = (String::new(), String::new());
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.trim().strip_prefix("GraphiQL:") {
                    url = rest.trim().to_owned();
                }
                if line.contains("Operator token") {
                    token = lines.next().and_then(Result::ok).unwrap_or_default().trim().to_owned();
                    break;
                }
            }
            std::thread::spawn(move || for _ in lines {});
            anyhow::ensure!(url.starts_with("http://"), "worker did not start");
            if token.split('.').count() != 3 {
                token = mint_operator_like(&cmd)?;
            }
            Ok(Proc { child, url, token })
        })
    }
}
