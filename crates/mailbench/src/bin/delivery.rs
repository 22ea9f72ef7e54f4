//! End-to-end durable delivery: Mailgate in-process (SQLite and PostgreSQL), a plain SMTP
//! sink, enqueue with the worker stopped, then time the worker until everything is SENT.
//! Also nodemailer (pool, non-durable), the enqueueNotification mutation rate over HTTP
//! next to a plain INSERT rate, and an optional soak.
//!
//! cargo run --release -p mailbench --bin delivery -- [--n 10000] [--tenants 1000]
//!     [--http-n 10000] [--backends sqlite,postgres] [--soak-minutes 0]
//!     [--in-flight 64] [--per-tenant 8] [--batch-size 32] [--db-conns 16] [--only-one-tenant]

/// The same allocator as the `mailgate` binary, so the in-process service is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use domain::delivery::DeliveryStatus;
use domain::{Role, TenantId};
use mailbench::inprocess::*;
use mailbench::*;
use mailgate::http::RunningServer;
use sea_orm::{ConnectionTrait as _, Statement};

/// The mutation over HTTP, `conc` keep-alive clients sharing one reqwest client.
async fn http_enqueue(b: &Bench, tenants: &[TenantId], n: u64, conc: usize) -> anyhow::Result<f64> {
    let server = RunningServer::start(b.app.clone()).await?;
    let url = format!("http://{}/graphql", server.addr);
    let token = b.token("bench-service", Role::Service)?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(conc).build()?;
    let q = "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id status } }";
    let text = body_text();
    let next = Arc::new(AtomicU64::new(0));
    let tenants = Arc::new(tenants.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, token, next, tenants, text) = (
            client.clone(),
            url.clone(),
            token.clone(),
            next.clone(),
            tenants.clone(),
            text.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None::<String>);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let body = serde_json::json!({ "query": q, "variables": { "i": {
                    "tenantId": tenants[(i as usize) % tenants.len()], "kind": "CUSTOM", "to": TO,
                    "subject": format!("{SUBJECT} h{i}"), "text": text } } });
                let r = client.post(&url).bearer_auth(&token).json(&body).send().await;
                let good = match r {
                    Ok(resp) => match resp.json::<serde_json::Value>().await {
                        Ok(v) if v.get("errors").is_none() && v["data"]["enqueueNotification"]["id"].is_string() => {
                            true
                        }
                        Ok(v) => {
                            first.get_or_insert(v.to_string());
                            false
                        }
                        Err(e) => {
                            first.get_or_insert(e.to_string());
                            false
                        }
                    },
                    Err(e) => {
                        first.get_or_insert(e.to_string());
                        false
                    }
                };
                if good { ok += 1 } else { failed += 1 }
            }
            (ok, failed, first)
        }));
    }
    let (ok, failed, first) = tally(tasks).await;
    let secs = t0.elapsed().as_secs_f64();
    server.stop().await?;
    let rate = ok as f64 / secs;
    println!(
        "  enqueueNotification over HTTP/1.1 keep-alive, {conc} concurrent clients: {rate:.0} req/s — ok={ok} failed={failed} in {secs:.2} s{}",
        first.map(|e| format!(" first error: {e}")).unwrap_or_default()
    );
    Ok(rate)
}

/// Plain single-row INSERTs into a scratch table with a similar row size.
async fn plain_insert(b: &Bench, n: u64, conc: usize) -> anyhow::Result<f64> {
    let db = &b.app.db;
    let backend = db.get_database_backend();
    db.execute_unprepared(
        "CREATE TABLE mbench_scratch (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, recipient TEXT NOT NULL, \
         subject TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, message_id TEXT NOT NULL, created_at TEXT NOT NULL)",
    )
    .await?;
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (db, next) = (db.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None::<String>);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let st = Statement::from_sql_and_values(
                    backend,
                    "INSERT INTO mbench_scratch (id, tenant_id, recipient, subject, body, status, message_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    [
                        uuid::Uuid::now_v7().to_string().into(),
                        uuid::Uuid::new_v4().to_string().into(),
                        TO.into(),
                        format!("{SUBJECT} {i}").into(),
                        body_text().into(),
                        "QUEUED".into(),
                        format!("<{}@platform.example>", uuid::Uuid::new_v4().simple()).into(),
                        chrono::Utc::now().to_rfc3339().into(),
                    ],
                );
                match db.execute_raw(st).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e.to_string());
                    }
                }
            }
            (ok, failed, first)
        }));
    }
    let (ok, failed, first) = tally(tasks).await;
    let secs = t0.elapsed().as_secs_f64();
    let rate = ok as f64 / secs;
    println!(
        "  plain single-row INSERT (8 columns, ~1.1 KB row, autocommit) through the same pool, {conc} concurrent tasks: {rate:.0} rows/s — ok={ok} failed={failed} in {secs:.2} s{}",
        first.map(|e| format!(" first error: {e}")).unwrap_or_default()
    );
    Ok(rate)
}

async fn soak(b: &Bench, sink: &Sink, tenants: &[TenantId], minutes: u64) -> anyhow::Result<()> {
    let sink_before = sink.stats().await?;
    let w = start_worker(&b.app);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let enqueued = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // The worker's count of SENT outcomes written (see `end_to_end`); a count over the growing
    // table every 200 ms would itself slow the later minutes down.
    let sent_at_start = b.app.metrics.recorded_count(DeliveryStatus::Sent);
    let sent_seen = Arc::new(AtomicU64::new(sent_at_start));
    let mut producers = Vec::new();
    for _ in 0..16 {
        let (stop, enq, failed, sent_seen, d, caller, tenants) = (
            stop.clone(),
            enqueued.clone(),
            failed.clone(),
            sent_seen.clone(),
            b.app.deliveries.clone(),
            b.service.clone(),
            tenants.to_vec(),
        );
        producers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                // Keep at most 20,000 waiting so the queue stays busy but bounded.
                if enq.load(Relaxed) + sent_at_start > sent_seen.load(Relaxed) + 20_000 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                i += 1;
                match d
                    .enqueue(&caller, &request(tenants[(i as usize) % tenants.len()], i))
                    .await
                {
                    Ok(_) => enq.fetch_add(1, Relaxed),
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    let t0 = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let mut marks = Vec::new();
    let mut next_mark = Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = b.app.metrics.recorded_count(DeliveryStatus::Sent);
        sent_seen.store(s, Relaxed);
        if t0.elapsed() >= next_mark {
            let m = (t0.elapsed(), s - sent_at_start);
            println!(
                "  soak t={:>4.0}s sent={} enqueued={}",
                m.0.as_secs_f64(),
                m.1,
                enqueued.load(Relaxed)
            );
            marks.push(m);
            next_mark += Duration::from_secs(60);
        }
        if t0.elapsed() >= total {
            break;
        }
    }
    stop.store(true, Relaxed);
    for p in producers {
        let _ = p.await;
    }
    w.stop().await;
    let first = marks
        .first()
        .map(|m| m.1 as f64 / m.0.as_secs_f64())
        .unwrap_or(f64::NAN);
    let last = if marks.len() >= 2 {
        let (a, b2) = (marks[marks.len() - 2], marks[marks.len() - 1]);
        (b2.1 - a.1) as f64 / (b2.0 - a.0).as_secs_f64()
    } else {
        f64::NAN
    };
    let sink_d = sink.stats().await?.since(&sink_before);
    println!(
        "  soak {minutes} min: first minute {first:.0} deliveries/s, last minute {last:.0} deliveries/s; enqueued={} enqueue failures={} sink +{} msgs; counts {:?}",
        enqueued.load(Relaxed),
        failed.load(Relaxed),
        sink_d.messages,
        b.counts().await?
    );
    let r = last / first;
    println!("  soak last/first = {r:.2} (target >= 0.7): {}", verdict(r >= 0.7));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n", 10_000);
    let ntenants: usize = arg("--tenants", 1_000);
    let http_n: u64 = arg("--http-n", 10_000);
    let soak_minutes: u64 = arg("--soak-minutes", 0);
    let db_conns: u32 = arg("--db-conns", 16);
    let in_flight: usize = arg("--in-flight", 64);
    let per_tenant: usize = arg("--per-tenant", 8);
    let batch_size: u32 = arg("--batch-size", 32);
    let backends: String = arg("--backends", "sqlite,postgres".to_owned());
    // For profiling: only the one-tenant end-to-end run of each backend, no nodemailer.
    let only_one_tenant = flag("--only-one-tenant");
    println!("# mailbench delivery — command: {}", command_line());
    println!("# start: {}", load_note());
    println!(
        "# host: {} cores; in-process Mailgate (profile production), worker_max_in_flight={in_flight}, smtp_max_connections_per_tenant={per_tenant}, worker_batch_size={batch_size}, database_max_connections={db_conns}, send interval 0; plain SMTP sink in a separate process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sink = Sink::start(None)?;
    let port = sink.port;

    let before = sink.stats().await?;
    let cpu = CpuTimes::now();
    let (cmd, node) = if only_one_tenant {
        (String::new(), run_nodemailer(port, 1, 1, None)?.1)
    } else {
        run_nodemailer(port, n, 8, None)?
    };
    let cpu = CpuTimes::now().since(&cpu);
    let s = sink.stats().await?.since(&before);
    println!(
        "nodemailer {} pool:true maxConnections:8, plain, no durability: {:.0} msg/s — ok={} failed={} in {:.2} s (sink +{} msgs, {} B/msg; {cpu})",
        nodemailer_version(&nodemailer_dir()?),
        node.rate(),
        node.sent,
        node.failed,
        node.secs,
        s.messages,
        s.avg_bytes()
    );
    println!("  command: {cmd}");

    let mut verdicts = Vec::new();
    for be in backends.split(',') {
        let backend = match be.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => anyhow::bail!("unknown backend {other}"),
        };
        println!("[{backend:?}]");
        let b = build_with(backend, port, db_conns, in_flight, per_tenant, |c| {
            c.worker_batch_size = batch_size;
        })
        .await?;
        let one = vec![b.tenant(0, port).await?];
        let r1 = end_to_end(&b, &sink, &format!("1 tenant, {n} deliveries"), &one, n)
            .await?
            .delivered_per_sec;
        if only_one_tenant {
            b.finish().await;
            continue;
        }
        let t0 = Instant::now();
        let many = b.tenants(ntenants, port).await?;
        println!(
            "  (created {ntenants} tenants with settings in {:.1} s)",
            t0.elapsed().as_secs_f64()
        );
        let r2 = end_to_end(
            &b,
            &sink,
            &format!("{ntenants} tenants, {n} deliveries round-robin"),
            &many,
            n,
        )
        .await?
        .delivered_per_sec;
        // A restart (or a deploy): a new process on the same database, whose worker knows
        // nothing of its own yet, then the same 1,000 tenants again.
        let b = b.restart().await?;
        let r3 = end_to_end(
            &b,
            &sink,
            &format!("after a restart: {ntenants} tenants, {n} deliveries round-robin"),
            &many,
            n,
        )
        .await?
        .delivered_per_sec;
        let h = http_enqueue(&b, &many, http_n, 64).await?;
        let p = plain_insert(&b, http_n, 64).await?;
        verdicts.push(format!(
            "[{backend:?}] durable e2e 1 tenant / nodemailer = {:.2}x (target >= 3x): {}",
            r1 / node.rate(),
            verdict(r1 / node.rate() >= 3.0)
        ));
        verdicts.push(format!(
            "[{backend:?}] durable e2e {ntenants} tenants / nodemailer = {:.2}x (target >= 2x): {}",
            r2 / node.rate(),
            verdict(r2 / node.rate() >= 2.0)
        ));
        verdicts.push(format!(
            "[{backend:?}] durable e2e {ntenants} tenants / 1 tenant = {:.2}x (target >= 0.8x): {}",
            r2 / r1,
            verdict(r2 / r1 >= 0.8)
        ));
        verdicts.push(format!(
            "[{backend:?}] after a restart, {ntenants} tenants / 1 tenant = {:.2}x (target >= 0.8x): {}",
            r3 / r1,
            verdict(r3 / r1 >= 0.8)
        ));
        verdicts.push(format!(
            "[{backend:?}] HTTP enqueue / plain INSERT = {:.2}x (target >= 0.5x): {}",
            h / p,
            verdict(h / p >= 0.5)
        ));
        if soak_minutes > 0 && backend == Backend::Postgres {
            // Drain what the HTTP run left queued first, so the soak starts from an empty queue.
            let w = start_worker(&b.app);
            let left = b.counts().await?;
            let t = Instant::now();
            while b.counts().await?.get("Queued").copied().unwrap_or(0) > 0 && t.elapsed() < Duration::from_secs(300) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            w.stop().await;
            println!(
                "  (drained HTTP-enqueued backlog {left:?} in {:.1} s before the soak)",
                t.elapsed().as_secs_f64()
            );
            soak(&b, &sink, &many, soak_minutes).await?;
        }
        b.finish().await;
    }
    println!("# end: {}", load_note());
    println!("# targets");
    for v in verdicts {
        println!("{v}");
    }
    Ok(())
}
