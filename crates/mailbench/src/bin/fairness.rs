//! Fairness beside bad neighbours: one tenant's delivery rate alone, then beside N tenants
//! whose own servers are black-holed (accept the connection, never answer), tarpitted
//! (one byte every few seconds, never a whole line) or paced at one mail an hour, each
//! with hundreds of mails queued before the measured tenant's — on SQLite and PostgreSQL,
//! with 1, 10 and 100 bad tenants. Prints both rates and the ratio (target ≥ 0.9).
//!
//! One worker runs throughout (what it learned of each server stays, as in a running
//! service): the measured tenant sends a warm-up first, then `--n` mails alone; then, in
//! each of `--rounds` rounds, the bad tenants' mail is enqueued, `--settle-secs` pass
//! (their first attempts end at our deadlines, 10 s by default), the measured tenant
//! sends `--n` mails beside them, the bad tenants' mail is deleted and the measured tenant
//! sends `--n` mails alone again. The retry base is 5 s, so the broken servers are probed
//! again and again during the measurement. A rate is the measured tenant's `n` mails over
//! the time from its first enqueue to its last SENT (enqueue and sending overlap, the same
//! in every run). A round's ratio is its rate beside over the mean of the runs alone just
//! before and just after it (the machine's speed drifts by a fifth within minutes here,
//! and the table grows); the verdict is on the median of the rounds' ratios, and every
//! round is printed.
//!
//! cargo run --release -p mailbench --bin fairness -- [--n 30000] [--bad 1,10,100]
//!     [--queued 300] [--backends sqlite,postgres] [--settle-secs 12] [--rounds 3]

/// The same allocator as the `mailgate` binary, so the in-process service is measured as shipped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use domain::{TenantId, TenantScope};
use mailbench::inprocess::*;
use mailbench::*;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// A server that accepts connections and never says anything; it keeps them open.
async fn black_hole() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    Ok(port)
}

/// A server that sends one byte of a greeting every three seconds and never ends the line.
async fn tarpit() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                for byte in b"220 tarpit.example ESMTP".iter().cycle() {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Enqueues `n` for `tenant` (the worker is running) and waits until they are all SENT:
/// the rate, n over the time from the first enqueue to the last SENT.
async fn deliver(b: &Bench, tenant: TenantId, n: u64) -> anyhow::Result<f64> {
    let before = b.sent_in(TenantScope::One(tenant)).await?;
    let t0 = Instant::now();
    let (ok, failed, _, first) = b.enqueue(&[tenant], n, 64).await;
    anyhow::ensure!(failed == 0, "enqueue failures: {failed}, first: {first:?}");
    loop {
        if b.sent_in(TenantScope::One(tenant)).await? >= before + ok {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "not all sent within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(ok as f64 / t0.elapsed().as_secs_f64())
}

/// Deletes the bad tenants' mail (and attempts), so the last run alone meets a table of
/// about the size the run beside them met.
async fn forget(b: &Bench, tenants: &[TenantId]) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait as _;
    let list = tenants.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let db = &b.app.db;
    db.execute_unprepared(&format!(
        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE tenant_id IN ({list}))"
    ))
    .await?;
    db.execute_unprepared(&format!("DELETE FROM deliveries WHERE tenant_id IN ({list})"))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n", 30_000);
    let queued: u64 = arg("--queued", 300);
    let settle: u64 = arg("--settle-secs", 12);
    let rounds: usize = arg("--rounds", 3usize).max(1);
    let bads: Vec<usize> = arg("--bad", "1,10,100".to_owned())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let backends: String = arg("--backends", "sqlite,postgres".to_owned());
    println!("# mailbench fairness — command: {}", command_line());
    println!("# start: {}", load_note());
    println!(
        "# host: {} cores; in-process Mailgate (profile production, default worker and pool limits, retry base 5 s); plain SMTP sink in a separate process; black hole and tarpit in this process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sink = Sink::start(None)?;
    let (hole, pit) = (black_hole().await?, tarpit().await?);
    let mut verdicts = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = format!("{backend:?}").to_lowercase();
        if !backends.contains(name.as_str()) {
            continue;
        }
        for &bad in &bads {
            let ports = vec![sink.port, hole, pit];
            let b = build_with(backend, sink.port, 16, 64, 4, |c| {
                c.smtp_allowed_ports = ports;
                c.retry_base_secs = 5;
            })
            .await?;
            let good = b.tenant(0, sink.port).await?;
            let worker = start_worker(&b.app);
            deliver(&b, good, 500).await?;
            let mut alone = deliver(&b, good, n).await?;

            let mut bad_tenants = Vec::new();
            for i in 0..bad {
                let t = match i % 3 {
                    0 => b.tenant_with(i + 1, hole, 0).await?,
                    1 => b.tenant_with(i + 1, pit, 0).await?,
                    _ => b.tenant_with(i + 1, sink.port, 3_600_000).await?,
                };
                bad_tenants.push(t);
            }
            let mut ratios = Vec::with_capacity(rounds);
            for round in 1..=rounds {
                let (ok, failed, secs, _) = b.enqueue(&bad_tenants, bad as u64 * queued, 64).await;
                anyhow::ensure!(failed == 0, "enqueueing the bad tenants' mail failed");
                tokio::time::sleep(Duration::from_secs(settle)).await;
                let beside = deliver(&b, good, n).await?;
                let counts = b.counts().await?;
                let postponed = b.app.metrics.postponed_count();
                forget(&b, &bad_tenants).await?;
                let alone_after = deliver(&b, good, n).await?;
                let ratio = beside / ((alone + alone_after) / 2.0);
                println!(
                    "[{backend:?}] {bad:>3} bad tenants, round {round}/{rounds} ({} black-holed, {} tarpitted, {} paced at 1/h; {ok} mails queued in {secs:.1} s): alone {alone:.0} before and {alone_after:.0} after, beside {beside:.0} deliveries/s, ratio {ratio:.2} — queue then {counts:?}, postponed so far {postponed}",
                    bad.div_ceil(3),
                    (bad + 1) / 3,
                    bad / 3,
                );
                ratios.push(ratio);
                alone = alone_after;
            }
            ratios.sort_by(f64::total_cmp);
            let mid = ratios.len() / 2;
            let median = if ratios.len() % 2 == 0 {
                (ratios[mid - 1] + ratios[mid]) / 2.0
            } else {
                ratios[mid]
            };
            let spread = format!("{:.2}–{:.2}", ratios[0], ratios[ratios.len() - 1]);
            println!(
                "[{backend:?}] {bad:>3} bad tenants: median ratio of {rounds} rounds {median:.2} (rounds {spread}; target >= 0.9): {}",
                verdict(median >= 0.9),
            );
            verdicts.push(format!(
                "[{backend:?}] {bad} bad tenants: beside/alone = {median:.2}, median of {rounds} rounds ({spread}) (target >= 0.9): {}",
                verdict(median >= 0.9)
            ));
            worker.stop().await;
            b.finish().await;
        }
    }
    println!("# targets");
    for v in verdicts {
        println!("{v}");
    }
    Ok(())
}
