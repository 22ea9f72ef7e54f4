//! One attempt of one message: signed with the endpoint's secrets at the attempt's time,
//! POSTed through the mailer's guarded HTTP client (the host checked on every send, so a
//! name re-pointed at an internal address after the endpoint was saved is not reached),
//! the answer's body read only up to a small cap, all within the attempt's deadline.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::failure::FailureKind;
use domain::webhook::{AttemptError, ClaimedMessage, RESPONSE_EXCERPT, WebhookAttempt};
use mailer::guard::Guard;
use mailer::http::{BodyCap, HttpError, HttpRequest};
use mailer::tls::TlsMaterial;

use crate::sign::signature_header;

/// Bytes of an answer read at most (the rest is not read).
const ANSWER_CAP: usize = 4096;

/// The `user-agent` of every POST.
const USER_AGENT: &str = concat!("Mailgate-Webhooks/", env!("CARGO_PKG_VERSION"));

/// POSTs `claimed` once; what came of it.
pub async fn attempt(guard: &Guard, tls: &TlsMaterial, claimed: &ClaimedMessage, deadline: Duration) -> WebhookAttempt {
    let at = Utc::now();
    let started = Instant::now();
    let message = &claimed.message;
    let timestamp = at.timestamp();
    let body = message.body.as_bytes();
    let signature = signature_header(&claimed.secrets.signing(at), &message.event_id, timestamp, body);
    let (host, authority, target) = (
        claimed.url.host(),
        claimed.url.authority(),
        claimed.url.request_target(),
    );
    let request = HttpRequest {
        method: mailer::http::Method::POST,
        https: claimed.url.is_https(),
        host: &host,
        port: claimed.url.port(),
        authority: &authority,
        target: &target,
        headers: vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", USER_AGENT.to_owned()),
            ("webhook-id", message.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ],
        body: body.to_vec(),
    };
    let result = mailer::http::send(guard, tls, request, BodyCap::Truncate(ANSWER_CAP), deadline).await;
    let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    match result {
        Ok(answer) => {
            let ok = (200..300).contains(&answer.status);
            WebhookAttempt {
                at,
                status_code: Some(answer.status),
                error: (!ok).then_some(AttemptError::HttpStatus),
                duration_ms,
                response_excerpt: excerpt(&answer.body),
            }
        }
        Err(e) => {
            if let HttpError::Refused(kind) = e {
                tracing::warn!(endpoint = %message.endpoint_id, ?kind, "webhook endpoint host refused or not found");
            }
            WebhookAttempt {
                at,
                status_code: None,
                error: Some(attempt_error(e)),
                duration_ms,
                response_excerpt: None,
            }
        }
    }
}

fn attempt_error(e: HttpError) -> AttemptError {
    match e {
        HttpError::Refused(FailureKind::ForbiddenAddress) => AttemptError::ForbiddenAddress,
        HttpError::Refused(FailureKind::TimedOut) | HttpError::TimedOut => AttemptError::TimedOut,
        HttpError::Refused(_) => AttemptError::HostNotFound,
        HttpError::Connect => AttemptError::ConnectFailed,
        HttpError::Tls => AttemptError::TlsFailed,
        HttpError::Protocol | HttpError::TooLarge => AttemptError::ProtocolError,
    }
}

/// The start of an answer, as text without control characters.
fn excerpt(body: &[u8]) -> Option<String> {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(RESPONSE_EXCERPT)
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
