//! "Real SMTP" benchmark: Mailgate's mailer against one loopback sink (STARTTLS + AUTH),
//! next to nodemailer (pool) and Python smtplib (one connection).
//!
//! cargo run --release -p mailbench --bin smtp -- [--n 20000] [--n-new 2000] [--n-one 10000] [--tenants 1000]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::mail::OutgoingMail;
use domain::mail::Subject;
use domain::plan::sender_override_permit;
use domain::ports::{MailTransport, TenantRecord};
use domain::settings::{Encryption, MailSettings, MailSettingsDraft, PortPolicy, StoredMailSettings};
use domain::values::{EmailAddress, LocalHostname};
use domain::{Plan, PlatformSender, Tenant, TenantId, TenantName};
use mailbench::*;
use mailer::pool::PoolLimits;
use mailer::{Mailer, MailerConfig, PlatformRelay};
use secrecy::SecretString;

fn mailer(port: u16, ca: &[u8], max_connections: usize) -> anyhow::Result<Mailer> {
    Ok(Mailer::new(
        MailerConfig {
            platform_sender: PlatformSender::parse("Platform <noreply@platform.example>")
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            relay: PlatformRelay::Files(std::env::temp_dir().join("mailbench-eml")),
            allow_private_hosts: true,
            dns_servers: Vec::new(),
            ports: PortPolicy {
                smtp: vec![port],
                pop: vec![110],
            },
            extra_ca_pem: Some(ca.to_vec()),
            ehlo_name: LocalHostname::parse("bench.example").map_err(|e| anyhow::anyhow!("{e:?}"))?,
            timeouts: Default::default(),
            pool: PoolLimits {
                max_connections,
                // Every tenant here stands for a tenant with a server of its own (they
                // share one sink only because the bench has one): no cap per host.
                max_connections_per_host: 100_000,
                ..PoolLimits::default()
            },
            cache_capacity: 10_000,
            cache_idle: Duration::from_secs(600),
            send_timeout: Duration::from_secs(120),
        },
        None,
    )?)
}

fn settings(port: u16, user: &str) -> anyhow::Result<MailSettings> {
    MailSettings::validate(
        &MailSettingsDraft {
            host: Some("localhost".into()),
            port: Some(i64::from(port)),
            from_address: Some(FROM.into()),
            from_name: Some("Sakura".into()),
            smtp_auth: Some(true),
            username: Some(user.into()),
            password: Some(SecretString::from("bench-password")),
            encryption: Some(Encryption::StartTls),
            send_interval_ms: Some(0),
            ..Default::default()
        },
        None,
    )
    .map_err(|e| anyhow::anyhow!("settings invalid: {e:?}"))
}

fn record(port: u16, user: &str) -> anyhow::Result<TenantRecord> {
    let now = Utc::now();
    Ok(TenantRecord::new(
        Tenant {
            id: TenantId::generate(),
            name: TenantName::parse("Sakura").map_err(|e| anyhow::anyhow!("{e:?}"))?,
            plan: Plan::Share,
            contact_email: None,
            created_at: now,
            updated_at: now,
        },
        Some(StoredMailSettings {
            settings: settings(port, user)?,
            version: 1,
            updated_at: now,
            health: domain::health::SettingsHealth::live(now),
        }),
    ))
}

fn mail() -> anyhow::Result<OutgoingMail> {
    Ok(OutgoingMail {
        to: EmailAddress::parse(TO).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        subject: Subject::parse(SUBJECT).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        text: body_text(),
        html: None,
        message_id: None,
        via_platform: false,
    })
}

struct Run {
    ok: u64,
    failed: u64,
    secs: f64,
    lat: Vec<Duration>,
    first_error: Option<String>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn print(&self, label: &str, sink: &SinkStats) {
        println!(
            "{label}: {:.0} msg/s  ok={} failed={}  p50={:.3} ms p99={:.3} ms  ({:.2} s; sink: +{} msgs, +{} conns, +{} TLS, +{} AUTH, {} B/msg)",
            self.rate(),
            self.ok,
            self.failed,
            pct_ms(&self.lat, 50.0),
            pct_ms(&self.lat, 99.0),
            self.secs,
            sink.messages,
            sink.connections,
            sink.tls,
            sink.auths,
            sink.avg_bytes()
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}

/// `callers` tasks share `n` sends; `send(i)` sends message i.
async fn drive<F, Fut>(n: u64, callers: usize, send: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (send, next) = (send.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let t0 = Instant::now();
                match send(i).await {
                    Ok(()) => {
                        ok += 1;
                        lat.push(t0.elapsed());
                    }
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert(e);
                    }
                }
            }
            (ok, failed, lat, first)
        }));
    }
    let mut run = Run {
        ok: 0,
        failed: 0,
        secs: 0.0,
        lat: Vec::new(),
        first_error: None,
    };
    for t in tasks {
        if let Ok((ok, failed, lat, first)) = t.await {
            run.ok += ok;
            run.failed += failed;
            run.lat.extend(lat);
            if run.first_error.is_none() {
                run.first_error = first;
            }
        }
    }
    run.secs = started.elapsed().as_secs_f64();
    run.lat.sort();
    run
}

fn describe(f: &domain::mail::SendFailure) -> String {
    format!(
        "{:?}/{:?} code={:?} msg={:?}",
        f.stage, f.kind, f.smtp_code, f.server_message
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = arg("--n", 20_000);
    let n_one: u64 = arg("--n-one", 10_000);
    let n_new: u64 = arg("--n-new", 2_000);
    let n_peer: u64 = arg("--n-peer", n);
    let tenants: u64 = arg("--tenants", 1_000);
    println!("# mailbench smtp — command: {}", command_line());
    println!("# start: {}", load_note());
    println!(
        "# host: {} cores; sink = separate process (crates/mailbench/src/bin/sink.rs) on 127.0.0.1/::1, STARTTLS (RSA-2048 cert from a test CA made with openssl) + AUTH",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let certs = make_certs()?;
    let ca = std::fs::read(&certs.ca)?;
    let sink = Sink::start(Some(&certs))?;
    let port = sink.port;
    println!("# sink port {port}; message body {} bytes of text", body_text().len());
    let mail = Arc::new(mail()?);

    // (a) cached pool, 8 connections, 8 callers.
    let m = mailer(port, &ca, 8)?;
    let rec = Arc::new(record(port, "tenant-a@example.jp")?);
    let before = sink.stats().await?;
    let a = {
        let (m, rec, mail) = (m.clone(), rec.clone(), mail.clone());
        drive(n, 8, move |_| {
            let (m, rec, mail) = (m.clone(), rec.clone(), mail.clone());
            async move { m.send(&rec, &mail).await.map(|_| ()).map_err(|f| describe(&f)) }
        })
        .await
    };
    a.print(
        &format!("(a) Mailgate Mailer::send, cached pool max_connections=8, 8 callers, {n} msgs"),
        &sink.stats().await?.since(&before),
    );
    drop(m);

    // (a1) one connection, one caller.
    let m = mailer(port, &ca, 1)?;
    let rec1 = Arc::new(record(port, "tenant-a1@example.jp")?);
    let before = sink.stats().await?;
    let a1 = {
        let (m, rec, mail) = (m.clone(), rec1.clone(), mail.clone());
        drive(n_one, 1, move |_| {
            let (m, rec, mail) = (m.clone(), rec.clone(), mail.clone());
            async move { m.send(&rec, &mail).await.map(|_| ()).map_err(|f| describe(&f)) }
        })
        .await
    };
    a1.print(
        &format!("(a1) Mailgate Mailer::send, cached pool max_connections=1, 1 caller, {n_one} msgs"),
        &sink.stats().await?.since(&before),
    );

    // (b) a new connection per message: MailTransport::send_test (fresh session, STARTTLS + AUTH + QUIT each time).
    let permit = sender_override_permit(Plan::Share).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let s_b = Arc::new(settings(port, "tenant-b@example.jp")?);
    let before = sink.stats().await?;
    let b = {
        let (m, s_b, mail) = (m.clone(), s_b.clone(), mail.clone());
        let tid = TenantId::generate();
        drive(n_new, 8, move |_| {
            let (m, s_b, mail) = (m.clone(), s_b.clone(), mail.clone());
            async move {
                m.send_test(permit, tid, &s_b, &mail, Duration::from_secs(20))
                    .await
                    .map(|_| ())
                    .map_err(|f| describe(&f))
            }
        })
        .await
    };
    b.print(
        &format!(
            "(b) Mailgate send_test = new connection (TCP+STARTTLS+AUTH+QUIT) per message, 8 callers, {n_new} msgs"
        ),
        &sink.stats().await?.since(&before),
    );
    drop(m);

    // (c) peers.
    let before = sink.stats().await?;
    let (cmd, node) = run_nodemailer(port, n_peer, 8, Some(&certs))?;
    let s = sink.stats().await?.since(&before);
    let ver = nodemailer_version(&nodemailer_dir()?);
    println!(
        "(c1) nodemailer {ver} pool:true maxConnections:8 maxMessages:Infinity, requireTLS+AUTH, 64 concurrent sendMail: {:.0} msg/s  ok={} failed={} ({:.2} s; sink: +{} msgs, +{} conns, {} B/msg)",
        node.rate(),
        node.sent,
        node.failed,
        node.secs,
        s.messages,
        s.connections,
        s.avg_bytes()
    );
    println!("  command: {cmd}");
    let before = sink.stats().await?;
    let (cmd, py) = run_smtplib(port, n_peer, Some(&certs))?;
    let s = sink.stats().await?.since(&before);
    let pyver = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "(c2) {pyver} smtplib, one reused connection, starttls+login, sequential: {:.0} msg/s  ok={} failed={} ({:.2} s; sink: +{} msgs, +{} conns, {} B/msg)",
        py.rate(),
        py.sent,
        py.failed,
        py.secs,
        s.messages,
        s.connections,
        s.avg_bytes()
    );
    println!("  command: {cmd}");

    // (d) many tenants, one message each.
    let m = mailer(port, &ca, 8)?;
    let records: Arc<Vec<TenantRecord>> = Arc::new(
        (0..tenants)
            .map(|i| record(port, &format!("tenant-{i}@example.jp")))
            .collect::<anyhow::Result<_>>()?,
    );
    // Warm the allocator and the code paths on a tenant outside the measured set.
    let warm = record(port, "warm@example.jp")?;
    m.send(&warm, &mail).await.map_err(|f| anyhow::anyhow!(describe(&f)))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cached_before = m.cached_transports().await;
    let rss_before = rss_kib();
    let before = sink.stats().await?;
    let d = {
        let (m, records, mail) = (m.clone(), records.clone(), mail.clone());
        drive(tenants, 8, move |i| {
            let (m, records, mail) = (m.clone(), records.clone(), mail.clone());
            async move {
                m.send(&records[i as usize], &mail)
                    .await
                    .map(|_| ())
                    .map_err(|f| describe(&f))
            }
        })
        .await
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = rss_kib();
    let cached_after = m.cached_transports().await;
    d.print(
        &format!("(d) {tenants} tenants (own settings, distinct usernames), one message each round-robin, 8 callers"),
        &sink.stats().await?.since(&before),
    );
    let added = cached_after - cached_before;
    println!(
        "(d) cached_transports: {cached_before} -> {cached_after} (+{added}); VmRSS {rss_before} KiB -> {rss_after} KiB = +{} KiB; per cached tenant transport (incl. its open idle STARTTLS session): {:.1} KiB",
        rss_after as i64 - rss_before as i64,
        (rss_after as f64 - rss_before as f64) / added.max(1) as f64
    );

    // Targets.
    println!("# end: {}", load_note());
    println!("# targets");
    let r1 = a.rate() / node.rate();
    println!("(a)/nodemailer = {r1:.2}x (target >= 4x): {}", verdict(r1 >= 4.0));
    let r2 = a1.rate() / py.rate();
    println!(
        "(a1 one connection)/smtplib = {r2:.2}x (target >= 0.8x): {}",
        verdict(r2 >= 0.8)
    );
    let r3 = a.rate() / b.rate();
    println!("(a)/(b) = {r3:.2}x (target >= 5x): {}", verdict(r3 >= 5.0));
    let failures = a.failed + a1.failed + b.failed + node.failed + py.failed + d.failed;
    println!("# total failed sends across all runs: {failures}");
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}
