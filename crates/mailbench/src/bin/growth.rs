//! Growth: a year of mail in the deliveries table. For each backend, on an empty table and
//! again once it holds a year of finished rows (10 million on PostgreSQL, 1 million on
//! SQLite by default, with one attempt each, half of them the measured tenant's): the
//! enqueue rate, the end-to-end rate, and what `tenant.deliveries` costs over HTTP
//! (a first page, a page 20 deep, a page filtered by a rare status, the counts); then how
//! fast the history horizon deletes the oldest rows. Prints each ratio to the empty
//! table's.
//!
//! cargo build --release -p mailbench, then from the repo root:
//! target/release/growth [--backends sqlite,postgres] [--rows-sqlite 1000000]
//!     [--rows-postgres 10000000] [--n 10000] [--tenants 200] [--horizon-seconds 30]

/// The same allocator as the `mailgate` binary, so the in-process service is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::delivery::retention::HISTORY_BATCH;
use domain::{Role, TenantId};
use mailbench::inprocess::*;
use mailbench::*;
use mailgate::http::RunningServer;
use sea_orm::{ConnectionTrait as _, DbBackend};

/// What one measurement gives.
#[derive(Debug, Clone, Copy)]
struct Figures {
    enqueue: f64,
    delivered: f64,
    first_page_ms: f64,
    deep_page_ms: f64,
    rare_status_ms: f64,
    counts_ms: f64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Enqueue and end to end for the busy tenant, then its list over HTTP; its counts must
/// add up to `total` (every delivery it has by then).
async fn measure(b: &Bench, sink: &Sink, label: &str, busy: TenantId, n: u64, total: u64) -> anyhow::Result<Figures> {
    let run = end_to_end(b, sink, &format!("{label}: 1 tenant, {n} deliveries"), &[busy], n).await?;
    let server = RunningServer::start(b.app.clone()).await?;
    let url = format!("http://{}/graphql", server.addr);
    let token = b.token("bench-operator", Role::Operator)?;
    let client = reqwest::Client::new();
    let page = |after: Option<String>, status: Option<&'static str>, counts: bool| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let fields = if counts {
                "counts { status count }"
            } else {
                "edges { node { id status } } pageInfo { hasNextPage endCursor }"
            };
            let q = format!(
                "query($t: ID!, $after: String, $s: DeliveryStatus) {{ tenant(id: $t) {{ deliveries(first: 50, after: $after, status: $s) {{ {fields} }} }} }}"
            );
            let body =
                serde_json::json!({ "query": q, "variables": { "t": busy.to_string(), "after": after, "s": status } });
            let t0 = Instant::now();
            let v: serde_json::Value = client
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            let took = t0.elapsed();
            anyhow::ensure!(v.get("errors").is_none(), "deliveries answered {v}");
            let d = &v["data"]["tenant"]["deliveries"];
            // Before the table grew, the measured tenant has no FAILED delivery.
            let may_be_empty = counts || status.is_some();
            anyhow::ensure!(
                may_be_empty || d["edges"].as_array().is_some_and(|e| !e.is_empty()),
                "an empty page: {v}"
            );
            if counts {
                let sum: u64 = d["counts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["count"].as_u64())
                    .sum();
                anyhow::ensure!(sum == total, "counts add up to {sum}, not {total}: {v}");
            }
            Ok::<_, anyhow::Error>((took, d["pageInfo"]["endCursor"].as_str().map(str::to_owned)))
        }
    };
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64() * 1000.0
    };
    let mut first = Vec::new();
    for _ in 0..21 {
        first.push(page(None, None, false).await?.0);
    }
    // Twenty pages along the cursors, five times: the time of the twentieth.
    let mut deep = Vec::new();
    for _ in 0..5 {
        let mut after = None;
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            let (took, next) = page(after, None, false).await?;
            (last, after) = (took, next);
        }
        deep.push(last);
    }
    let mut rare = Vec::new();
    for _ in 0..11 {
        rare.push(page(None, Some("FAILED"), false).await?.0);
    }
    let mut counts = Vec::new();
    for _ in 0..5 {
        counts.push(page(None, None, true).await?.0);
    }
    server.stop().await?;
    let f = Figures {
        enqueue: run.enqueued_per_sec,
        delivered: run.delivered_per_sec,
        first_page_ms: median(first),
        deep_page_ms: median(deep),
        rare_status_ms: median(rare),
        counts_ms: median(counts),
    };
    println!(
        "  {label}: tenant.deliveries(first: 50) over HTTP, median: first page {:.2} ms, 20th page {:.2} ms, status FAILED {:.2} ms, counts {:.2} ms",
        f.first_page_ms, f.deep_page_ms, f.rare_status_ms, f.counts_ms
    );
    Ok(f)
}

/// Writes `rows` finished deliveries spread evenly over the last 365 days (one attempt
/// each, one in twenty FAILED, the rest SENT), half of them `busy`'s and the rest spread
/// over `others`; those older than the retention window hold no content, as retention
/// would have left them. Ids are UUIDv7 of their time, as the service writes them.
async fn seed(b: &Bench, rows: u64, busy: TenantId, others: &[TenantId]) -> anyhow::Result<()> {
    let db = &b.app.db;
    let backend = db.get_database_backend();
    let t0 = Instant::now();
    db.execute_unprepared("CREATE TABLE growth_tenants (n INTEGER PRIMARY KEY, id TEXT NOT NULL)")
        .await?;
    let values: Vec<String> = std::iter::once(busy)
        .chain(others.iter().copied())
        .enumerate()
        .map(|(i, t)| format!("({i}, '{t}')"))
        .collect();
    db.execute_unprepared(&format!(
        "INSERT INTO growth_tenants (n, id) VALUES {}",
        values.join(", ")
    ))
    .await?;
    let now_ms = Utc::now().timestamp_millis();
    let start_ms = now_ms - 365 * DAY_MS;
    let step_ms = (365 * DAY_MS / i64::try_from(rows.max(1))?).max(1);
    let content_until_ms = now_ms - 30 * DAY_MS;
    let k = others.len().max(1);
    // Per backend: the row number `g` counting up, its time `ms`, a random hex `r`, the
    // time as the column type, and a boolean literal.
    let (series, hex_ms, random_hex, ts, ts_plus, f) = match backend {
        DbBackend::Postgres => (
            format!(
                "(SELECT g FROM generate_series(0::bigint, {}) g)",
                rows.saturating_sub(1)
            ),
            "lpad(to_hex(ms), 12, '0')",
            "md5(g::text)",
            "to_timestamp(ms / 1000.0)",
            "to_timestamp(ms / 1000.0 + 1)",
            "false",
        ),
        _ => (
            "s".to_owned(),
            "printf('%012x', ms)",
            "lower(hex(randomblob(12)))",
            "strftime('%Y-%m-%dT%H:%M:%f', ms / 1000.0, 'unixepoch') || '+00:00'",
            "strftime('%Y-%m-%dT%H:%M:%f', ms / 1000.0 + 1, 'unixepoch') || '+00:00'",
            "0",
        ),
    };
    let prefix = match backend {
        DbBackend::Postgres => String::new(),
        _ => format!("WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < {rows}) "),
    };
    let sql = format!(
        "{prefix}INSERT INTO deliveries (id, tenant_id, kind, to_address, locale, subject, text_body, html_body, \
         message_id, idempotency_key, status, retries, retried_before, next_attempt_at_ms, lease_owner, \
         lease_until_ms, created_at, updated_at, sent_at, failure_code, failure_detail, failure_reason, claims, \
         via_platform, content_removed_at, recipient_hash, trace_parent, payload_hash) \
         SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12), \
         t.id, 'CUSTOM', \
         CASE WHEN ms < {content_until_ms} THEN 'removed@content-removed.invalid' ELSE 'customer' || g || '@example.com' END, \
         'ja', \
         CASE WHEN ms < {content_until_ms} THEN '(removed)' ELSE 'ご注文ありがとうございます #' || g END, \
         CASE WHEN ms < {content_until_ms} THEN '' ELSE '{body}' END, NULL, \
         '<seed-' || r || '@platform.example>', NULL, \
         CASE WHEN g % 20 = 0 THEN 'FAILED' ELSE 'SENT' END, 0, {f}, ms, NULL, NULL, \
         {ts}, {ts_plus}, CASE WHEN g % 20 = 0 THEN NULL ELSE {ts_plus} END, \
         CASE WHEN g % 20 = 0 THEN 'EXPIRED' ELSE NULL END, NULL, NULL, 0, {f}, \
         CASE WHEN ms < {content_until_ms} THEN {ts_plus} ELSE NULL END, \
         CASE WHEN ms < {content_until_ms} THEN r || r ELSE NULL END, NULL, NULL \
         FROM (SELECT g, ms, {hex_ms} AS h, {random_hex} AS r \
               FROM (SELECT g, {start_ms} + g * {step_ms} AS ms FROM {series} AS x) AS y) AS z \
         JOIN growth_tenants t ON t.n = CASE WHEN g % 2 = 0 THEN 0 ELSE 1 + (g / 2) % {k} END",
        body = "本文です。".repeat(40),
    );
    db.execute_unprepared(&sql).await?;
    let attempt_id = match backend {
        DbBackend::Postgres => "substr(id, 1, 19) || substr(md5(id), 1, 4) || '-' || substr(md5(id), 5, 12)",
        _ => "substr(id, 1, 19) || lower(hex(randomblob(2))) || '-' || lower(hex(randomblob(6)))",
    };
    db.execute_unprepared(&format!(
        "INSERT INTO delivery_attempts (id, delivery_id, at, outcome, stage, smtp_code, enhanced_code, \
         server_message, sender_address, sender_source) \
         SELECT {attempt_id}, id, updated_at, status, NULL, CASE WHEN status = 'SENT' THEN 250 ELSE NULL END, \
         NULL, NULL, 'shop@example.com', 'CUSTOM' FROM deliveries WHERE message_id LIKE '<seed-%'"
    ))
    .await?;
    db.execute_unprepared("DROP TABLE growth_tenants").await?;
    // The count marks over the cleared rows, as retention would have moved them.
    migration::fill_count_marks(db).await?;
    let seeded = t0.elapsed().as_secs_f64();
    // What a table that grew over a year looks like to the planner: vacuumed and
    // analysed (autovacuum on PostgreSQL; SQLite plans from its indexes alone).
    // The seeding's gigabytes of new pages are written out now (a checkpoint), not in
    // the middle of the measurement: a table that grew over a year has no such backlog.
    if backend == DbBackend::Postgres {
        db.execute_unprepared("VACUUM ANALYZE deliveries").await?;
        db.execute_unprepared("VACUUM ANALYZE delivery_attempts").await?;
        db.execute_unprepared("CHECKPOINT").await?;
    }
    println!(
        "  (seeded {rows} finished deliveries with an attempt each, over 365 days, half of them one tenant's, in {seeded:.1} s; vacuumed and checkpointed in {:.1} s)",
        t0.elapsed().as_secs_f64() - seeded
    );
    // What a delivery takes on disk, with its attempt and every index of both tables.
    let bytes = match backend {
        DbBackend::Postgres => {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    backend,
                    "SELECT (pg_total_relation_size('deliveries') + pg_total_relation_size('delivery_attempts'))::bigint AS n",
                ))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no size"))?;
            row.try_get::<i64>("", "n")?
        }
        _ => {
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            i64::try_from(std::fs::metadata(b.data_dir.join("mailgate.db"))?.len())?
        }
    };
    println!(
        "  (on disk: {:.0} MB, {:.0} bytes per delivery with its attempt and the indexes of both tables)",
        bytes as f64 / 1e6,
        bytes as f64 / rows as f64
    );
    Ok(())
}

/// Deletes rows past a horizon (the oldest 10 % of the year) through the queue's own
/// method, for at most `limit`; the rate.
async fn horizon(b: &Bench, limit: Duration) -> anyhow::Result<f64> {
    let before = Utc::now() - chrono::Duration::days(330);
    let t0 = Instant::now();
    let mut removed = 0u64;
    loop {
        let n = b
            .app
            .delivery_queue
            .remove_old_rows(before, HISTORY_BATCH)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        removed += n;
        if n < HISTORY_BATCH || t0.elapsed() > limit {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = removed as f64 / secs;
    println!(
        "  history horizon: deleted {removed} deliveries (and their attempts) past 330 days in {secs:.1} s: {rate:.0} rows/s, {HISTORY_BATCH} per statement"
    );
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n", 10_000);
    let ntenants: usize = arg("--tenants", 200);
    let rows_sqlite: u64 = arg("--rows-sqlite", 1_000_000);
    let rows_postgres: u64 = arg("--rows-postgres", 10_000_000);
    let horizon_secs: u64 = arg("--horizon-seconds", 30);
    let backends: String = arg("--backends", "sqlite,postgres".to_owned());
    println!("# mailbench growth — command: {}", command_line());
    println!("# start: {}", load_note());
    let sink = Sink::start(None)?;
    let port = sink.port;
    let mut verdicts = Vec::new();
    for be in backends.split(',') {
        let (backend, rows) = match be.trim() {
            "sqlite" => (Backend::Sqlite, rows_sqlite),
            "postgres" => (Backend::Postgres, rows_postgres),
            other => anyhow::bail!("unknown backend {other}"),
        };
        println!("[{backend:?}]");
        let b = build(backend, port, 16, 64, 8).await?;
        let busy = b.tenant(0, port).await?;
        let others = b.tenants(ntenants, port).await?;
        // A first run warms the pools, the sink's connections and the caches, so that the
        // empty table's figures are not those of a cold start.
        end_to_end(&b, &sink, "warm-up (not counted)", &[busy], n / 5).await?;
        let empty = measure(&b, &sink, "empty table", busy, n, n / 5 + n).await?;
        seed(&b, rows, busy, &others).await?;
        // The seeded rows with an even number are the busy tenant's.
        let grown_total = n / 5 + n + rows.div_ceil(2) + n;
        let grown = measure(&b, &sink, &format!("{rows} rows"), busy, n, grown_total).await?;
        horizon(&b, Duration::from_secs(horizon_secs)).await?;
        b.finish().await;
        let ratio = |what: &str, grown: f64, empty: f64| {
            let r = grown / empty;
            format!(
                "[{backend:?}] {what} with {rows} rows / empty = {r:.2}x (target >= 0.9x): {}",
                verdict(r >= 0.9)
            )
        };
        verdicts.push(ratio("enqueue", grown.enqueue, empty.enqueue));
        verdicts.push(ratio("end to end", grown.delivered, empty.delivered));
        verdicts.push(format!(
            "[{backend:?}] tenant.deliveries with {rows} rows: first page {:.2} ms (empty {:.2}), 20th page {:.2} ms (empty {:.2}), FAILED only {:.2} ms (empty {:.2}), counts {:.2} ms (empty {:.2})",
            grown.first_page_ms,
            empty.first_page_ms,
            grown.deep_page_ms,
            empty.deep_page_ms,
            grown.rare_status_ms,
            empty.rare_status_ms,
            grown.counts_ms,
            empty.counts_ms
        ));
    }
    println!("# end: {}", load_note());
    println!("# targets");
    for v in verdicts {
        println!("{v}");
    }
    Ok(())
}
