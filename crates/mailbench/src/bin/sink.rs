//! A fast SMTP sink on loopback: plain, STARTTLS (with --cert/--key), AUTH PLAIN/LOGIN,
//! PIPELINING offered (RFC 2920, as mail servers commonly offer it; commands are read one
//! line at a time, so pipelined ones are answered in order), replies 250 to everything
//! else, counts messages. Prints `PORT <n>` first. `MAILBENCH_PIPELINING=off` leaves
//! PIPELINING out (to measure what it buys).
//! `XCOUNT` answers `250 <messages> <bytes> <connections> <tls> <auths>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Stats {
    messages: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    tls: AtomicU64,
    auths: AtomicU64,
}

/// Whether EHLO offers PIPELINING (`MAILBENCH_PIPELINING=off` leaves it out).
fn pipelining() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MAILBENCH_PIPELINING").map_or(true, |v| v != "off"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |n: &str| args.iter().position(|a| a == n).and_then(|i| args.get(i + 1)).cloned();
    let acceptor = match (get("--cert"), get("--key")) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(&cert)
                .context("cert")?
                .collect::<Result<Vec<_>, _>>()
                .context("cert pem")?;
            let key = PrivateKeyDer::from_pem_file(&key).context("key pem")?;
            let config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()?
                    .with_no_client_auth()
                    .with_single_cert(certs, key)?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        _ => None,
    };
    let stats = Arc::new(Stats::default());
    let v4 = TcpListener::bind("127.0.0.1:0").await?;
    let port = v4.local_addr()?.port();
    let mut listeners = vec![v4];
    // `localhost` may resolve to ::1 first: listen there too when possible.
    if let Ok(v6) = TcpListener::bind(("::1", port)).await {
        listeners.push(v6);
    }
    println!("PORT {port}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut tasks = Vec::new();
    for l in listeners {
        let (acceptor, stats) = (acceptor.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let _ = s.set_nodelay(true);
                let (acceptor, stats) = (acceptor.clone(), stats.clone());
                tokio::spawn(async move {
                    stats.connections.fetch_add(1, Relaxed);
                    handle(s, acceptor, stats).await;
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn handle(s: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>, stats: Arc<Stats>) {
    match serve(s, true, acceptor.is_some(), &stats).await {
        Ok(Some(tcp)) => {
            let Some(acc) = acceptor else { return };
            match acc.accept(tcp).await {
                Ok(tls) => {
                    stats.tls.fetch_add(1, Relaxed);
                    let _ = serve(tls, false, false, &stats).await;
                }
                Err(e) => eprintln!("sink: TLS handshake failed: {e}"),
            }
        }
        Ok(None) => {}
        Err(_) => {}
    }
}

/// Talks SMTP; returns the raw stream when the client asked for STARTTLS.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    greet: bool,
    offer_tls: bool,
    stats: &Stats,
) -> std::io::Result<Option<S>> {
    let mut r = BufReader::with_capacity(16 * 1024, s);
    if greet {
        r.get_mut().write_all(b"220 localhost ESMTP mailbench sink\r\n").await?;
    }
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                let mut reply = String::from("250-localhost\r\n");
                if pipelining() {
                    reply.push_str("250-PIPELINING\r\n");
                }
                reply.push_str("250-8BITMIME\r\n250-SMTPUTF8\r\n");
                if offer_tls {
                    reply.push_str("250-STARTTLS\r\n");
                }
                reply.push_str("250 AUTH PLAIN LOGIN\r\n");
                r.get_mut().write_all(reply.as_bytes()).await?;
            }
            "HELO" => r.get_mut().write_all(b"250 localhost\r\n").await?,
            "STARTTLS" if offer_tls => {
                r.get_mut().write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                r.get_mut().flush().await?;
                return Ok(Some(r.into_inner()));
            }
            "AUTH" => {
                let mech = words.next().unwrap_or("").to_ascii_uppercase();
                let initial = words.next().is_some();
                let mut buf = Vec::new();
                match (mech.as_str(), initial) {
                    ("PLAIN", false) => {
                        r.get_mut().write_all(b"334 \r\n").await?;
                        r.read_until(b'\n', &mut buf).await?;
                    }
                    ("LOGIN", true) => {
                        r.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        r.read_until(b'\n', &mut buf).await?;
                    }
                    ("LOGIN", false) => {
                        r.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        r.read_until(b'\n', &mut buf).await?;
                        r.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        r.read_until(b'\n', &mut buf).await?;
                    }
                    _ => {}
                }
                stats.auths.fetch_add(1, Relaxed);
                r.get_mut()
                    .write_all(b"235 2.7.0 Authentication successful\r\n")
                    .await?;
            }
            "DATA" => {
                r.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut total = 0u64;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(None);
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    total += line.len() as u64;
                }
                stats.bytes.fetch_add(total, Relaxed);
                stats.messages.fetch_add(1, Relaxed);
                r.get_mut().write_all(b"250 2.0.0 OK queued\r\n").await?;
            }
            "QUIT" => {
                r.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                let _ = r.get_mut().shutdown().await;
                return Ok(None);
            }
            "XCOUNT" => {
                let reply = format!(
                    "250 {} {} {} {} {}\r\n",
                    stats.messages.load(Relaxed),
                    stats.bytes.load(Relaxed),
                    stats.connections.load(Relaxed),
                    stats.tls.load(Relaxed),
                    stats.auths.load(Relaxed)
                );
                r.get_mut().write_all(reply.as_bytes()).await?;
            }
            _ => r.get_mut().write_all(b"250 2.0.0 OK\r\n").await?,
        }
    }
}
