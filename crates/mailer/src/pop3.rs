//! POP-before-SMTP: a POP3 login (USER/PASS, POP3S when `tls` is on) and QUIT, which
//! some providers require before they relay mail from the same address. The session
//! ends with QUIT whether the login worked or was refused (`-ERR`); only one that broke
//! or timed out is dropped without.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::redact::Secrets;
use domain::settings::PopBeforeSmtp;

use crate::guard::Guard;
use crate::tls::{TlsMaterial, classify_tls};
use crate::wire::MAX_POP_LINE;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn pop_failure(kind: FailureKind) -> SendFailure {
    SendFailure::new(SendStage::PopLogin, kind)
}

/// Reads one line of at most [`MAX_POP_LINE`] octets: a longer one ends the session (a
/// server streaming without a line end cannot grow our buffer).
async fn read_line(reader: &mut BufReader<Box<dyn Stream>>, line: &mut String) -> Result<usize, SendFailure> {
    let limit = u64::try_from(MAX_POP_LINE).unwrap_or(u64::MAX);
    let n = reader
        .take(limit)
        .read_line(line)
        .await
        .map_err(|_| pop_failure(FailureKind::Network))?;
    if n >= MAX_POP_LINE && !line.ends_with('\n') {
        return Err(pop_failure(FailureKind::ProtocolViolation));
    }
    Ok(n)
}

async fn expect_ok(reader: &mut BufReader<Box<dyn Stream>>, secrets: &Secrets) -> Result<(), SendFailure> {
    let mut line = String::new();
    if read_line(reader, &mut line).await? == 0 {
        return Err(pop_failure(FailureKind::Network));
    }
    if line.starts_with("+OK") {
        Ok(())
    } else if line.starts_with("-ERR") {
        Err(SendFailure {
            server_message: Some(secrets.redact(line.trim_end())),
            ..pop_failure(FailureKind::PopLoginFailed)
        })
    } else {
        // Not a POP3 reply: another service, whose bytes are never echoed.
        Err(pop_failure(FailureKind::ProtocolViolation))
    }
}

/// Logs in and out once, within `deadline` per step.
pub async fn login(
    pop: &PopBeforeSmtp,
    tls: &TlsMaterial,
    guard: &Guard,
    deadline: Duration,
) -> Result<(), SendFailure> {
    let addrs = guard
        .resolve(pop.host(), pop.port().get(), deadline)
        .await
        .map_err(|f| SendFailure {
            stage: SendStage::PopLogin,
            ..f
        })?;
    let mut tcp = None;
    let mut last = pop_failure(FailureKind::ConnectionRefused);
    for addr in &addrs {
        match tokio::time::timeout(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(_)) => last = pop_failure(FailureKind::Network),
            Err(_) => last = pop_failure(FailureKind::TimedOut),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if pop.tls() {
        let s = tokio::time::timeout(deadline, tls.connect(pop.host().as_str(), tcp))
            .await
            .map_err(|_| pop_failure(FailureKind::TimedOut))?
            .map_err(|e| pop_failure(classify_tls(&e).unwrap_or(FailureKind::TlsModeMismatch)))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let password = pop.password().expose_secret();
    // `PASS` goes as is; its base64 forms are hidden too (a server may echo anything).
    let secrets = Secrets::new().secret(password);
    let mut reader = BufReader::new(stream);
    let conversation = async {
        let logged_in = log_in(&mut reader, pop.username().as_str(), password, &secrets).await;
        // Logged in, or refused with `-ERR`: the conversation stands, so it ends politely.
        let stands = match &logged_in {
            Ok(()) => true,
            Err(f) => f.kind == FailureKind::PopLoginFailed,
        };
        if stands {
            let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
            let mut bye = String::new();
            if read_line(&mut reader, &mut bye).await.is_err() {
                tracing::debug!("POP3 QUIT went unanswered");
            }
        }
        logged_in
    };
    match tokio::time::timeout(deadline * 3, conversation).await {
        Ok(r) => r,
        Err(_) => Err(pop_failure(FailureKind::TimedOut)),
    }
}

/// Greeting, USER and PASS, each answered `+OK`.
async fn log_in(
    reader: &mut BufReader<Box<dyn Stream>>,
    user: &str,
    password: &str,
    secrets: &Secrets,
) -> Result<(), SendFailure> {
    expect_ok(reader, secrets).await?;
    // Username and password were validated: no CR, LF or other control characters.
    reader
        .get_mut()
        .write_all(format!("USER {user}\r\n").as_bytes())
        .await
        .map_err(|_| pop_failure(FailureKind::Network))?;
    expect_ok(reader, secrets).await?;
    reader
        .get_mut()
        .write_all(format!("PASS {password}\r\n").as_bytes())
        .await
        .map_err(|_| pop_failure(FailureKind::Network))?;
    expect_ok(reader, secrets).await
}
