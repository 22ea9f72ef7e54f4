//! Sending through a provider's HTTP mail API with a sign-in's access token: Microsoft
//! Graph `sendMail` with the raw MIME message (base64, `text/plain`; works when the
//! organisation keeps SMTP AUTH off) and Gmail `users.messages.send` (`{"raw": base64url}`,
//! the `gmail.send` scope). Sources: learn.microsoft.com/graph/api/user-sendmail ("send
//! mail in MIME format"), developers.google.com/gmail/api/reference/rest/v1/users.messages/send.
//!
//! The base URLs are operator configuration (tests point them at loopback fakes), so the
//! address guard lets internal addresses through here. The answer is read up to 16 KiB and
//! never shown: a failure carries the status and the API's error code only.
//!
//! An HTTP answer becomes the [`SendFailure`] the rest of Mailgate already reads (retry
//! policy, diagnosis, suspension): `401` is [`FailureKind::TokenRefused`]; the others are
//! written as the SMTP reply that means the same (`403`/`404` → `550 5.7.1`, the sender
//! or mailbox is not allowed; `413` → `552 5.3.4`; `429` → `451 4.7.0`; `5xx` → `451 4.3.0`;
//! another `4xx` → `554 5.6.0`), with the HTTP status and error code as the message.

use std::time::Duration;

use base64::Engine as _;
use secrecy::ExposeSecret as _;
use url::Url;

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::oauth::Transport;

use crate::guard::Guard;
use crate::http::{BodyCap, HttpError, HttpRequest, Method};
use crate::tls::TlsMaterial;

/// How much of an API's answer is read.
const MAX_ANSWER: usize = 16 * 1024;

/// Where the mail APIs are (operator configuration).
#[derive(Debug, Clone)]
pub struct MailApis {
    /// Microsoft Graph, `https://graph.microsoft.com`.
    pub graph: Url,
    /// The Gmail API, `https://gmail.googleapis.com`.
    pub gmail: Url,
}

/// The request for `transport`: its URL and body.
fn request_for(apis: &MailApis, transport: Transport, mime: &[u8]) -> Option<(Url, &'static str, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match transport {
        Transport::GraphSendMail => Some((
            apis.graph.join("v1.0/me/sendMail").ok()?,
            "text/plain",
            b64.encode(mime).into_bytes(),
        )),
        Transport::GmailApi => Some((
            apis.gmail.join("gmail/v1/users/me/messages/send").ok()?,
            "application/json",
            serde_json::json!({ "raw": b64url.encode(mime) })
                .to_string()
                .into_bytes(),
        )),
        Transport::Office365Smtp | Transport::TenantSmtp => None,
    }
}

/// Whether a refusal is about how much or how fast this mailbox sends: Gmail answers its
/// per-user and daily limits with 403 and `error.errors[].reason` `rateLimitExceeded`,
/// `userRateLimitExceeded`, `dailyLimitExceeded` or `quotaExceeded`
/// (developers.google.com/gmail/api/guides/handle-errors); Graph's `ErrorExceededMessageLimit`
/// and `MailboxConcurrency`-style codes say the same.
fn is_rate_limit(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let limit = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("ratelimit")
            || (s.contains("limit") && s.contains("exceeded"))
            || s.contains("quota")
            || s.contains("throttl")
    };
    let e = &v["error"];
    let reasons = e["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reason"].as_str());
    let code = e["code"].as_str().into_iter();
    reasons.chain(code).any(limit)
}

/// The API's own error code from its JSON body (Graph `error.code`, Gmail `error.status`),
/// if it is a short plain word.
fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let code = e
        .get("code")
        .and_then(|c| c.as_str())
        .or_else(|| e.get("status").and_then(|c| c.as_str()))?;
    (code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then(|| code.to_owned())
}

fn rejected(stage: SendStage, code: u16, enhanced: &str, status: u16, api_code: Option<String>) -> SendFailure {
    SendFailure {
        smtp_code: Some(code),
        enhanced_code: Some(enhanced.to_owned()),
        server_message: Some(format!(
            "{enhanced} HTTP {status}{}",
            api_code.map(|c| format!(" {c}")).unwrap_or_default()
        )),
        ..SendFailure::new(stage, FailureKind::Rejected)
    }
}

/// Sends `mime` through `transport`'s API as the token's user. `Ok` carries the status
/// and a short description for the receipt.
pub async fn send(
    guard: &Guard,
    tls: &TlsMaterial,
    apis: &MailApis,
    transport: Transport,
    token: &secrecy::SecretString,
    mime: &[u8],
    deadline: Duration,
) -> Result<(u16, String), SendFailure> {
    let (url, content_type, body) =
        request_for(apis, transport, mime).ok_or_else(|| SendFailure::new(SendStage::Connect, FailureKind::Network))?;
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(_) => url.host_str().unwrap_or_default().to_owned(),
        None => return Err(SendFailure::new(SendStage::Resolve, FailureKind::HostNotFound)),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let request = HttpRequest {
        method: Method::POST,
        https: url.scheme() == "https",
        host: &host,
        port,
        authority: url.authority(),
        target: &url[url::Position::BeforePath..url::Position::AfterQuery],
        headers: vec![
            ("authorization", format!("Bearer {}", token.expose_secret())),
            ("content-type", content_type.to_owned()),
            ("accept", "application/json".to_owned()),
        ],
        body,
    };
    let answer = crate::http::send(guard, tls, request, BodyCap::Truncate(MAX_ANSWER), deadline).await;
    let response = match answer {
        Ok(r) => r,
        Err(HttpError::Refused(kind)) => return Err(SendFailure::new(SendStage::Resolve, kind)),
        Err(HttpError::Connect) => return Err(SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused)),
        // The API is the operator's configuration, not the tenant's: a TLS failure there
        // is the platform's trouble, tried again later, never counted against the tenant.
        Err(HttpError::Tls) => return Err(SendFailure::new(SendStage::Tls, FailureKind::Network)),
        Err(HttpError::TimedOut) => return Err(SendFailure::new(SendStage::Timeout, FailureKind::TimedOut)),
        Err(HttpError::Protocol | HttpError::TooLarge) => {
            return Err(SendFailure::new(SendStage::Data, FailureKind::ProtocolViolation));
        }
    };
    let status = response.status;
    let api_code = error_code(&response.body);
    match status {
        200..=299 => Ok((status, format!("accepted by the mail API (HTTP {status})"))),
        401 => Err(SendFailure {
            server_message: Some(format!(
                "HTTP 401{}",
                api_code.map(|c| format!(" {c}")).unwrap_or_default()
            )),
            ..SendFailure::new(SendStage::Auth, FailureKind::TokenRefused)
        }),
        // A sending limit is the provider's "slow down", never the tenant's settings.
        403 if is_rate_limit(&response.body) => Err(rejected(SendStage::Data, 451, "4.7.0", status, api_code)),
        403 | 404 => Err(rejected(SendStage::MailFrom, 550, "5.7.1", status, api_code)),
        413 => Err(rejected(SendStage::Data, 552, "5.3.4", status, api_code)),
        429 => Err(rejected(SendStage::Data, 451, "4.7.0", status, api_code)),
        500..=599 => Err(rejected(SendStage::Data, 451, "4.3.0", status, api_code)),
        _ => Err(rejected(SendStage::Data, 554, "5.6.0", status, api_code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_api_requests_carry_the_raw_message_as_each_api_wants() {
        let apis = MailApis {
            graph: Url::parse("http://127.0.0.1:9/").unwrap(),
            gmail: Url::parse("http://127.0.0.1:9/base/").unwrap(),
        };
        let (url, ctype, body) = request_for(&apis, Transport::GraphSendMail, b"Subject: x\r\n\r\nhi").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/v1.0/me/sendMail");
        assert_eq!(ctype, "text/plain");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(&body).unwrap(),
            b"Subject: x\r\n\r\nhi"
        );
        let (url, ctype, body) = request_for(&apis, Transport::GmailApi, b"Subject: x\r\n\r\nhi?>").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/base/gmail/v1/users/me/messages/send");
        assert_eq!(ctype, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let raw = v["raw"].as_str().unwrap();
        assert!(!raw.contains('+') && !raw.contains('/') && !raw.contains('='));
        assert!(request_for(&apis, Transport::TenantSmtp, b"").is_none());
    }

    #[test]
    fn oauth_api_error_codes_are_read_only_when_plain() {
        assert_eq!(
            error_code(br#"{"error":{"code":"ErrorSendAsDenied","message":"x"}}"#).as_deref(),
            Some("ErrorSendAsDenied")
        );
        assert_eq!(
            error_code(br#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#).as_deref(),
            Some("UNAUTHENTICATED")
        );
        assert_eq!(error_code(br#"{"error":{"code":"<script>"}}"#), None);
        assert_eq!(error_code(b"not json"), None);
    }

    #[test]
    fn oauth_api_sending_limits_are_told_from_refusals_of_the_sender() {
        for limited in [
            r#"{"error":{"code":403,"errors":[{"reason":"userRateLimitExceeded"}],"status":"PERMISSION_DENIED"}}"#,
            r#"{"error":{"code":403,"errors":[{"reason":"dailyLimitExceeded"}]}}"#,
            r#"{"error":{"code":"ErrorExceededMessageLimit","message":"x"}}"#,
        ] {
            assert!(is_rate_limit(limited.as_bytes()), "{limited}");
        }
        for refused in [
            r#"{"error":{"code":"ErrorSendAsDenied","message":"x"}}"#,
            r#"{"error":{"code":403,"errors":[{"reason":"insufficientPermissions"}]}}"#,
            "not json",
        ] {
            assert!(!is_rate_limit(refused.as_bytes()), "{refused}");
        }
    }
}
