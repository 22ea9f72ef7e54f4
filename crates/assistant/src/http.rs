//! One HTTPS GET of an autoconfig document at a host a tenant's domain names, through the
//! mailer's guarded client (`mailer::http`): a name that resolves to an internal address
//! is not fetched, no redirect is followed, the body is capped, all under one deadline.

use std::time::Duration;

use mailer::guard::Guard;
use mailer::http::{BodyCap, HttpError, HttpRequest};
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
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let request = HttpRequest {
        method: hyper::Method::GET,
        https: true,
        host,
        port,
        authority: &authority,
        target: path,
        headers: vec![
            ("user-agent", "Mailgate setup assistant".to_owned()),
            ("accept", "application/xml, text/xml".to_owned()),
        ],
        body: Vec::new(),
    };
    match mailer::http::send(guard, tls, request, BodyCap::Refuse(cap), deadline).await {
        Ok(response) if response.status == 200 => Ok(response.body),
        Ok(_) => Err(FetchError::NotFound),
        Err(HttpError::Refused(kind)) => {
            tracing::debug!(host, ?kind, "autoconfig host not fetched");
            Err(FetchError::NotFound)
        }
        Err(HttpError::TooLarge) => Err(FetchError::TooLarge),
        Err(HttpError::Connect | HttpError::Tls | HttpError::Protocol | HttpError::TimedOut) => Err(FetchError::Failed),
    }
}
