//! One HTTPS GET to a host a tenant's domain names: resolved and checked by the address
//! guard (a name that resolves to an internal address is not fetched), TLS checked
//! against the trusted roots, HTTP/1.1 by hyper, no redirect followed, the headers and
//! the body capped, the whole under one deadline.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use domain::values::Host;
use mailer::guard::Guard;
use mailer::tls::TlsMaterial;

/// Why a fetch gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The name does not resolve (or resolves to an internal address: told apart only
    /// in the log), or the server answered other than 200.
    NotFound,
    /// Connecting, TLS or HTTP failed, or the deadline passed.
    Failed,
    /// The answer was larger than the cap.
    TooLarge,
}

/// GETs `https://{host}:{port}{path}`; the body, at most `cap` bytes.
pub async fn get(
    guard: &Guard,
    tls: &TlsMaterial,
    host: &str,
    port: u16,
    path: &str,
    cap: usize,
    deadline: Duration,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(deadline, fetch(guard, tls, host, port, path, cap, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Failed),
    }
}

async fn fetch(
    guard: &Guard,
    tls: &TlsMaterial,
    host: &str,
    port: u16,
    path: &str,
    cap: usize,
    deadline: Duration,
) -> Result<Vec<u8>, FetchError> {
    let name = Host::parse(host).map_err(|_| FetchError::NotFound)?;
    let addrs = guard.resolve(&name, port, deadline).await.map_err(|f| {
        tracing::debug!(host, kind = ?f.kind, "autoconfig host not fetched");
        FetchError::NotFound
    })?;
    let mut tcp = None;
    for addr in &addrs {
        if let Ok(stream) = TcpStream::connect(addr).await {
            tcp = Some(stream);
            break;
        }
    }
    let tcp = tcp.ok_or(FetchError::Failed)?;
    let stream = tls.connect(host, tcp).await.map_err(|_| FetchError::Failed)?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(16 * 1024)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|_| FetchError::Failed)?;
    let driver = tokio::spawn(conn);
    let result = async {
        let request = hyper::Request::get(path)
            .header(
                hyper::header::HOST,
                if port == 443 {
                    host.to_owned()
                } else {
                    format!("{host}:{port}")
                },
            )
            .header(hyper::header::USER_AGENT, "Mailgate setup assistant")
            .header(hyper::header::ACCEPT, "application/xml, text/xml")
            .body(Empty::<Bytes>::new())
            .map_err(|_| FetchError::Failed)?;
        let response = sender.send_request(request).await.map_err(|_| FetchError::Failed)?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::NotFound);
        }
        let announced = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if announced.is_some_and(|n| n > cap) {
            return Err(FetchError::TooLarge);
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| FetchError::Failed)?;
            if let Some(chunk) = frame.data_ref() {
                if bytes.len() + chunk.len() > cap {
                    return Err(FetchError::TooLarge);
                }
                bytes.extend_from_slice(chunk);
            }
        }
        Ok(bytes)
    }
    .await;
    driver.abort();
    result
}
