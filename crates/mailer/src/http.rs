//! One HTTP/1.1 request to a host that a tenant or an operator named: resolved and
//! checked by the address guard (connecting only to the addresses it checked, so a name
//! cannot be re-pointed between the check and the connection), TLS checked against the
//! trusted roots for `https`, no redirect followed, the answer's headers and body capped,
//! the whole under one deadline. Used by the setup assistant (autoconfig documents) and
//! the webhook dispatcher.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use domain::failure::FailureKind;
use domain::values::Host;

use crate::guard::Guard;
use crate::tls::TlsMaterial;

pub use hyper::Method;

/// The largest answer header block read.
const MAX_HEADERS: usize = 16 * 1024;

/// What to send.
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: hyper::Method,
    pub https: bool,
    /// The host to resolve and, for `https`, the name the certificate must carry.
    pub host: &'a str,
    pub port: u16,
    /// The `Host` header.
    pub authority: &'a str,
    /// Path and query.
    pub target: &'a str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What the answer's body may be.
#[derive(Debug, Clone, Copy)]
pub enum BodyCap {
    /// A larger body (announced or read) is [`HttpError::TooLarge`].
    Refuse(usize),
    /// The first bytes are kept, the rest is not read.
    Truncate(usize),
}

/// An answer: its status, its `Retry-After` header (for 429 and 503) and (the start
/// of) its body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The `Retry-After` header's value, if it is there and is text.
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The guard refused the host or it does not resolve: `HostNotFound` (a name,
    /// whatever the reason: the log tells them apart) or `ForbiddenAddress` (an internal
    /// address typed as such).
    Refused(FailureKind),
    Connect,
    Tls,
    /// Not an HTTP/1.1 answer, or headers larger than the cap.
    Protocol,
    TimedOut,
    TooLarge,
}

/// Sends `request` and reads the answer, all within `deadline`.
pub async fn send(
    guard: &Guard,
    tls: &TlsMaterial,
    request: HttpRequest<'_>,
    cap: BodyCap,
    deadline: Duration,
) -> Result<HttpResponse, HttpError> {
    match tokio::time::timeout(deadline, exchange(guard, tls, request, cap, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::TimedOut),
    }
}

async fn exchange(
    guard: &Guard,
    tls: &TlsMaterial,
    request: HttpRequest<'_>,
    cap: BodyCap,
    deadline: Duration,
) -> Result<HttpResponse, HttpError> {
    let name = Host::parse(request.host).map_err(|_| HttpError::Refused(FailureKind::HostNotFound))?;
    let addrs = guard
        .resolve(&name, request.port, deadline)
        .await
        .map_err(|f| HttpError::Refused(f.kind))?;
    let mut tcp = None;
    for addr in &addrs {
        if let Ok(stream) = TcpStream::connect(addr).await {
            tcp = Some(stream);
            break;
        }
    }
    let tcp = tcp.ok_or(HttpError::Connect)?;
    if request.https {
        let stream = tls.connect(request.host, tcp).await.map_err(|_| HttpError::Tls)?;
        over(stream, request, cap).await
    } else {
        over(tcp, request, cap).await
    }
}

/// The request and its answer over an open connection.
async fn over<IO>(io: IO, request: HttpRequest<'_>, cap: BodyCap) -> Result<HttpResponse, HttpError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEADERS)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|_| HttpError::Protocol)?;
    let driver = tokio::spawn(conn);
    let result = async {
        let mut builder = hyper::Request::builder()
            .method(request.method)
            .uri(request.target)
            .header(hyper::header::HOST, request.authority);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let req = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|_| HttpError::Protocol)?;
        let response = sender.send_request(req).await.map_err(|_| HttpError::Protocol)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let announced = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let (limit, refuse) = match cap {
            BodyCap::Refuse(n) => (n, true),
            BodyCap::Truncate(n) => (n, false),
        };
        if refuse && announced.is_some_and(|n| n > limit) {
            return Err(HttpError::TooLarge);
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| HttpError::Protocol)?;
            if let Some(chunk) = frame.data_ref() {
                if bytes.len() + chunk.len() > limit {
                    if refuse {
                        return Err(HttpError::TooLarge);
                    }
                    let room = limit - bytes.len();
                    bytes.extend_from_slice(&chunk[..room]);
                    break;
                }
                bytes.extend_from_slice(chunk);
            }
        }
        Ok(HttpResponse {
            status,
            retry_after,
            body: bytes,
        })
    }
    .await;
    // Whatever is left of the answer is not read: the connection goes.
    driver.abort();
    result
}
