//! What a document costs before anything runs, by its size: the time of the linear
//! pre-check (`graphql_api::Shape::of`), and of a whole request through the real server
//! (parse, check, refusal or validation by the engine), with `/healthz`'s latency while
//! such requests arrive back to back. A regression that makes a check super-linear again
//! shows as a column that grows faster than the document.
//!
//! Documents: the fan-out of fragments that each spread the next twice (1 KB expanding
//! to 2^n), a chain of fragments, and the largest documents the limits admit (aliases
//! up to the selection limit, anonymous and signed in), up to the 64 KiB body limit.
//!
//! ```text
//! cargo run --release -p bench --bin validation [-- --rounds 20]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::Role;
use mailgate::app::App;
use mailgate::config::{Config, Profile};
use mailgate::http::RunningServer;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fan_out(levels: usize) -> String {
    let mut q = String::from("query { __typename ...F0 }");
    for i in 0..levels {
        q.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
    }
    q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
    q
}

fn chain(n: usize) -> String {
    let mut q = String::from("{ ...C0 }");
    for i in 0..n {
        q.push_str(&format!(" fragment C{i} on Query {{ ...C{} }}", i + 1));
    }
    q.push_str(&format!(" fragment C{n} on Query {{ __typename }}"));
    q
}

fn aliases(n: usize) -> String {
    format!(
        "{{ {} }}",
        (0..n)
            .map(|i| format!("a{i}: plans {{ code }}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// One HTTP/1.1 request on a fresh connection; the status line and the time it took.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(String, Duration)> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let status = text.lines().next().unwrap_or("").to_owned();
    let refused = if text.contains("VALIDATION_FAILED") {
        " refused"
    } else {
        ""
    };
    Ok((format!("{status}{refused}"), started.elapsed()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|r| r.parse())
        .transpose()
        .context("--rounds N")?
        .unwrap_or(20);
    let data_dir = std::env::temp_dir().join(format!("mailgate-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut config = Config {
        profile: Profile::Production,
        data_dir: data_dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        jwt_secret: Some(SecretString::from(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))),
        secret_key: Some(persistence::crypto::generate_key_base64()),
        default_from: "Platform <noreply@platform.example>".into(),
        ..Config::default()
    };
    config.database_url = Some(format!("sqlite://{}?mode=rwc", data_dir.join("mailgate.db").display()));
    config.validate_and_prepare().context("configuration")?;
    let app = App::build(config).await.context("building the app")?;
    let server = RunningServer::start(app.clone()).await?;
    let addr = server.addr;
    let claims = app.verifier.claims("bench", Role::Operator, None, 3600);
    let token = app
        .verifier
        .mint(&claims, None)
        .map_err(|e| anyhow::anyhow!("token: {e}"))?;

    let documents: Vec<(String, String)> = [10, 24, 30, 60, 240, 1_500]
        .into_iter()
        .map(|n| (format!("fan-out {n} levels"), fan_out(n)))
        .chain(
            [30, 500, 1_500]
                .into_iter()
                .map(|n| (format!("chain of {n} fragments"), chain(n))),
        )
        .chain([300, 2_500].into_iter().map(|n| (format!("{n} aliases"), aliases(n))))
        .filter(|(_, q)| q.len() < 60 * 1024)
        .collect();
    println!(
        "{:<26} {:>7} {:>12} {:>10} {:>14} {:>14}  answer (anonymous / operator)",
        "document", "bytes", "selections", "check µs", "anonymous ms", "operator ms"
    );
    for (name, query) in &documents {
        let doc = async_graphql::parser::parse_query(query).context("parses")?;
        let started = Instant::now();
        let mut shape = graphql_api::Shape::of(&doc);
        for _ in 1..rounds {
            shape = graphql_api::Shape::of(&doc);
        }
        let check = started.elapsed() / rounds as u32;
        let body = serde_json::json!({ "query": query }).to_string();
        let (mut anon, mut op) = (Vec::new(), Vec::new());
        let (mut anon_status, mut op_status) = (String::new(), String::new());
        for _ in 0..rounds {
            let (s, t) = request(addr, "POST", "/graphql", None, &body).await?;
            anon.push(t);
            anon_status = s;
            let (s, t) = request(addr, "POST", "/graphql", Some(&token), &body).await?;
            op.push(t);
            op_status = s;
        }
        println!(
            "{:<26} {:>7} {:>12} {:>10.1} {:>14.2} {:>14.2}  {} / {}",
            name,
            query.len(),
            if shape.selections == usize::MAX {
                "saturated".to_owned()
            } else {
                shape.selections.to_string()
            },
            check.as_secs_f64() * 1e6,
            median(anon).as_secs_f64() * 1e3,
            median(op).as_secs_f64() * 1e3,
            anon_status.trim_start_matches("HTTP/1.1 "),
            op_status.trim_start_matches("HTTP/1.1 "),
        );
    }

    // /healthz while the heaviest documents arrive back to back from four clients.
    let heavy: Vec<String> = documents
        .iter()
        .map(|(_, q)| serde_json::json!({ "query": q }).to_string())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (heavy, stop, token) = (heavy.clone(), stop.clone(), token.clone());
        load.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for body in &heavy {
                    let _ = request(addr, "POST", "/graphql", Some(&token), body).await;
                    sent += 1;
                }
            }
            sent
        }));
    }
    let mut health = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        health.push(request(addr, "GET", "/healthz", None, "").await?.1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for l in load {
        sent += l.await?;
    }
    health.sort();
    println!(
        "/healthz under {sent} heavy requests in 3 s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} probes)",
        health[health.len() / 2].as_secs_f64() * 1e3,
        health[health.len() * 99 / 100].as_secs_f64() * 1e3,
        health[health.len() - 1].as_secs_f64() * 1e3,
        health.len()
    );
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
