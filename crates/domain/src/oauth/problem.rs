//! What a refusal means: a token endpoint's error (RFC 6749 §5.2, with Microsoft's
//! `AADSTS` codes) and a send refused for its token. The server's text is read here and
//! never shown: the caller gets a code.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The longest `Retry-After` believed.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What a failed token request means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantProblem {
    /// The grant is gone (revoked, expired, password changed): an admin signs in again.
    /// The settings are suspended with their own hint.
    NeedsReconnect,
    /// The organisation has not consented (or blocks user consent): an admin must
    /// approve Mailgate, then reconnect.
    ConsentRequired,
    /// Too many requests: wait (`None`: the server did not say how long).
    Throttled { retry_after: Option<Duration> },
    /// Our request or app registration is refused (client id or secret, app unknown in
    /// that directory, a grant or scope the app may not use): the operator's or the
    /// admin's setup, not a reconnect.
    Misconfigured,
    /// The server had a problem, or answered something we cannot read: try again later.
    Temporary,
}

impl GrantProblem {
    /// Classifies a token endpoint's refusal: its HTTP `status`, its `Retry-After`
    /// header if any, its body, received at `now`.
    pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Self {
        if status == 429 {
            return Self::Throttled {
                retry_after: retry_after.and_then(|r| parse_retry_after(r, now)),
            };
        }
        let parsed: Option<Value> = (body.len() <= super::token::MAX_TOKEN_RESPONSE)
            .then(|| serde_json::from_slice(body).ok())
            .flatten();
        let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k));
        let error = field("error").and_then(Value::as_str).unwrap_or("");
        let mut aadsts: Vec<u64> = field("error_codes")
            .and_then(Value::as_array)
            .map(|codes| codes.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if let Some(description) = field("error_description").and_then(Value::as_str) {
            aadsts.extend(aadsts_codes(description));
        }
        // Microsoft's codes first: they say more than `error`. Sources: facts §1
        // ("refresh tokens": 700082 inactive, 50173 revoked; issue 25 lists 65001), and
        // learn.microsoft.com/entra/identity-platform/reference-error-codes (7000215
        // invalid client secret, 700016 application not found in the directory).
        for code in &aadsts {
            match code {
                65001 => return Self::ConsentRequired,
                700082 | 50173 => return Self::NeedsReconnect,
                7000215 | 700016 => return Self::Misconfigured,
                _ => {}
            }
        }
        match error {
            // RFC 6749 §5.2; Google answers `invalid_grant` "Token has been expired or
            // revoked." (facts §2).
            "invalid_grant" => Self::NeedsReconnect,
            // OpenID Connect Core §3.1.2.6.
            "consent_required" => Self::ConsentRequired,
            "invalid_client"
            | "unauthorized_client"
            | "invalid_request"
            | "invalid_scope"
            | "unsupported_grant_type" => Self::Misconfigured,
            "temporarily_unavailable" | "server_error" => Self::Temporary,
            _ if status == 503 && retry_after.is_some() => Self::Throttled {
                retry_after: retry_after.and_then(|r| parse_retry_after(r, now)),
            },
            _ => Self::Temporary,
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped at
/// [`MAX_RETRY_AFTER`]; a date in the past is zero.
impl GrantProblem {
    /// Classifies a refusal of a grant no one signs in for — Microsoft's client
    /// credentials for an organisation, Google's JWT bearer for a Workspace domain — where
    /// the same answers mean something else than for a sign-in's refresh:
    /// - the operator's ([`GrantProblem::Misconfigured`]): Mailgate's own client secret or
    ///   request (`invalid_client`, `invalid_request`, `invalid_scope`,
    ///   `unsupported_grant_type`, AADSTS 7000215), or its service account's key or clock
    ///   (Google: "Invalid JWT Signature", "Invalid JWT: Token must be a short-lived token");
    /// - the organisation's ([`GrantProblem::NeedsReconnect`]: its admin must set it up
    ///   again): consent or delegation withdrawn or never given (`unauthorized_client`,
    ///   `consent_required`, AADSTS 65001, 7000229 no service principal, 700016 the app is
    ///   not in its directory, 90002 no such directory), an unknown mailbox
    ///   (`invalid_grant`);
    /// - throttling and server trouble as [`GrantProblem::classify`] says.
    pub fn classify_app_only(status: u16, retry_after: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Self {
        let general = Self::classify(status, retry_after, body, now);
        if matches!(general, Self::Throttled { .. } | Self::Temporary) {
            return general;
        }
        let parsed: Option<Value> = (body.len() <= super::token::MAX_TOKEN_RESPONSE)
            .then(|| serde_json::from_slice(body).ok())
            .flatten();
        let text = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let error = text("error");
        let description = text("error_description");
        let mut codes: Vec<u64> = parsed
            .as_ref()
            .and_then(|v| v.get("error_codes"))
            .and_then(Value::as_array)
            .map(|c| c.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        codes.extend(aadsts_codes(&description));
        // Microsoft names the organisation's trouble by code, whatever `error` says.
        if codes.iter().any(|c| matches!(c, 65001 | 7000229 | 700016 | 90002)) {
            return Self::NeedsReconnect;
        }
        let description = description.to_ascii_lowercase();
        let operators_key_or_clock = description.contains("invalid jwt");
        let operators_client = matches!(
            error.as_str(),
            "invalid_client" | "invalid_request" | "invalid_scope" | "unsupported_grant_type"
        ) || codes.contains(&7000215);
        if operators_key_or_clock || operators_client {
            Self::Misconfigured
        } else {
            Self::NeedsReconnect
        }
    }
}

pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The numbers after `AADSTS` in a description (`AADSTS700082: The refresh token…`).
fn aadsts_codes(description: &str) -> impl Iterator<Item = u64> + '_ {
    description.match_indices("AADSTS").filter_map(move |(i, _)| {
        let digits: String = description[i + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(9)
            .collect();
        digits.parse().ok()
    })
}

/// What a transport saw when it presented the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAnswer<'a> {
    /// An SMTP reply during or after `AUTH XOAUTH2`.
    Smtp { code: u16, enhanced: Option<&'a str> },
    /// The SMTP client's own error text (lettre).
    SmtpClient(&'a str),
    /// An HTTP status from Graph `sendMail` or Gmail `messages/send`.
    Http { status: u16 },
}

/// Whether a send was refused for its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// Drop the cached access token, refresh, and try once more; a second refusal with
    /// a fresh token is a configuration failure.
    TokenRefused,
    /// Not about the token: the mail module's diagnosis applies (`535 5.7.139` and
    /// `550 5.7.30` are the password-era codes it already knows).
    Other,
}

impl SendRefusal {
    pub fn classify(answer: SendAnswer<'_>) -> Self {
        let refused = match answer {
            // `535 5.7.3` when XOAUTH2 fails at Exchange Online (facts §1); `535 5.7.8`
            // is RFC 4954's "authentication credentials invalid"; `5.7.139` is SMTP AUTH
            // off for the mailbox, not the token. `334`: Gmail's base64-JSON error
            // challenge (facts §2, xoauth2-protocol).
            SendAnswer::Smtp { code: 535, enhanced } => enhanced != Some("5.7.139"),
            SendAnswer::Smtp { code: 334, .. } => true,
            SendAnswer::Smtp { .. } => false,
            // lettre 0.11 reports Gmail's challenge as this client error (facts §4).
            SendAnswer::SmtpClient(text) => text.contains("This mechanism does not expect a challenge"),
            SendAnswer::Http { status } => status == 401,
        };
        if refused { Self::TokenRefused } else { Self::Other }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn classify(status: u16, body: &str) -> GrantProblem {
        GrantProblem::classify(status, None, body.as_bytes(), now())
    }

    #[test]
    fn revoked_and_expired_grants_need_a_reconnect() {
        for body in [
            r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082]}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked."}"#,
            r#"{"error":"invalid_grant","error_codes":[50173]}"#,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ] {
            assert_eq!(classify(400, body), GrantProblem::NeedsReconnect, "{body}");
        }
    }

    #[test]
    fn oauth_app_only_refusals_are_told_apart_by_whose_setup_they_are() {
        let app = |status: u16, body: &str| GrantProblem::classify_app_only(status, None, body.as_bytes(), now());
        // The operator's: its secret, its request, its key or clock.
        for body in [
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
            r#"{"error":"invalid_scope"}"#,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."}"#,
        ] {
            assert_eq!(app(400, body), GrantProblem::Misconfigured, "{body}");
        }
        // The organisation's: consent, delegation, directory, mailbox.
        for body in [
            r#"{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}"#,
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'."}"#,
            r#"{"error":"invalid_request","error_codes":[90002],"error_description":"AADSTS90002: Tenant 'x' not found."}"#,
            r#"{"error":"invalid_grant","error_description":"Invalid email or User ID"}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: not consented"}"#,
        ] {
            assert_eq!(app(400, body), GrantProblem::NeedsReconnect, "{body}");
        }
        assert_eq!(app(429, "{}"), GrantProblem::Throttled { retry_after: None });
        assert_eq!(app(503, "{}"), GrantProblem::Temporary);
    }

    #[test]
    fn missing_consent_asks_for_an_admin() {
        for body in [
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application","error_codes":[65001]}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: not consented"}"#,
            r#"{"error":"consent_required"}"#,
        ] {
            assert_eq!(classify(400, body), GrantProblem::ConsentRequired, "{body}");
        }
    }

    #[test]
    fn bad_app_setup_is_misconfigured() {
        for body in [
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'."}"#,
            r#"{"error":"unauthorized_client"}"#,
            r#"{"error":"invalid_scope"}"#,
            r#"{"error":"invalid_client"}"#,
        ] {
            assert_eq!(classify(401, body), GrantProblem::Misconfigured, "{body}");
        }
    }

    #[test]
    fn throttling_and_server_trouble_wait() {
        let at = |h: &str| GrantProblem::classify(429, Some(h), b"", now());
        assert_eq!(
            at("120"),
            GrantProblem::Throttled {
                retry_after: Some(Duration::from_secs(120))
            }
        );
        assert_eq!(
            at("Fri, 15 Jan 2027 08:02:00 GMT"),
            GrantProblem::Throttled {
                retry_after: parse_retry_after("Fri, 15 Jan 2027 08:02:00 GMT", now())
            }
        );
        assert_eq!(at("soon"), GrantProblem::Throttled { retry_after: None });
        assert_eq!(
            at("999999999999999999999"),
            GrantProblem::Throttled {
                retry_after: Some(MAX_RETRY_AFTER)
            }
        );
        assert_eq!(
            classify(503, r#"{"error":"temporarily_unavailable"}"#),
            GrantProblem::Temporary
        );
        assert_eq!(classify(500, "<html>oops</html>"), GrantProblem::Temporary);
        assert_eq!(classify(400, r#"{"error":"something_new"}"#), GrantProblem::Temporary);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let n = now(); // 2027-01-15T08:00:00Z
        assert_eq!(parse_retry_after("0", n), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 30 ", n), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Fri, 15 Jan 2027 08:02:00 GMT", n),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:00 GMT", n),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", n), None);
        assert_eq!(parse_retry_after("", n), None);
    }

    #[test]
    fn sends_refused_for_the_token_are_retried_once_and_others_are_not() {
        use SendAnswer::*;
        for a in [
            Smtp {
                code: 535,
                enhanced: Some("5.7.3"),
            },
            Smtp {
                code: 535,
                enhanced: Some("5.7.8"),
            },
            Smtp {
                code: 334,
                enhanced: None,
            },
            SmtpClient("internal client error: This mechanism does not expect a challenge"),
            Http { status: 401 },
        ] {
            assert_eq!(SendRefusal::classify(a), SendRefusal::TokenRefused, "{a:?}");
        }
        for a in [
            Smtp {
                code: 535,
                enhanced: Some("5.7.139"),
            },
            Smtp {
                code: 550,
                enhanced: Some("5.7.30"),
            },
            Smtp {
                code: 550,
                enhanced: Some("5.7.1"),
            },
            SmtpClient("connection reset"),
            Http { status: 403 },
            Http { status: 429 },
            Http { status: 202 },
        ] {
            assert_eq!(SendRefusal::classify(a), SendRefusal::Other, "{a:?}");
        }
    }
}
