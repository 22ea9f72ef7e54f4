//! Notifications and their delivery: what a platform service hands in, the built-in
//! templates (rendered once, at enqueue time, so a template change never alters a queued
//! mail), the states a delivery goes through, and the retry policy.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::FieldError;
use crate::i18n::Locale;
use crate::mail::{FailureKind, SendFailure, Subject};
use crate::sender::SenderSource;
use crate::tenant::TenantId;
use crate::values::{EmailAddress, ValueError};

/// What kind of notification it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    RegistrationCompleted,
    PasswordReset,
    Custom,
}

impl NotificationKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::RegistrationCompleted => "REGISTRATION_COMPLETED",
            Self::PasswordReset => "PASSWORD_RESET",
            Self::Custom => "CUSTOM",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        [Self::RegistrationCompleted, Self::PasswordReset, Self::Custom]
            .into_iter()
            .find(|k| k.code() == s)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [Self::Queued, Self::Sending, Self::Sent, Self::Retrying, Self::Failed];

    pub fn code(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sending => "SENDING",
            Self::Sent => "SENT",
            Self::Retrying => "RETRYING",
            Self::Failed => "FAILED",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == s)
    }
}

/// A template variable's value, as handed in (JSON without the framework).
#[derive(Debug, Clone, PartialEq)]
pub enum VariableValue {
    Text(String),
    Integer(i64),
    Number(f64),
    Bool(bool),
    Null,
    /// Lists and objects: never valid for the built-in templates.
    Structured,
}

/// What a platform service hands in.
#[derive(Debug, Clone)]
pub struct NotificationRequest {
    pub tenant_id: TenantId,
    pub kind: NotificationKind,
    pub to: String,
    pub locale: Locale,
    pub variables: BTreeMap<String, VariableValue>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A rendered message, stored with the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    pub subject: Subject,
    pub text: String,
    pub html: Option<String>,
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Reason code: a variable of the wrong type.
pub const INVALID_TYPE: &str = "INVALID_TYPE";

struct Vars<'a> {
    vars: &'a BTreeMap<String, VariableValue>,
    errors: Vec<FieldError>,
}

impl<'a> Vars<'a> {
    fn text(&mut self, name: &'static str, field: &'static str) -> String {
        match self.vars.get(name) {
            Some(VariableValue::Text(s)) if !s.trim().is_empty() => {
                if s.chars().any(|c| c.is_control() && c != '\n') {
                    self.errors
                        .push(FieldError::new(field, ValueError::ControlCharacters.code()));
                } else if s.chars().count() > 2000 {
                    self.errors.push(FieldError::new(field, ValueError::TooLong.code()));
                }
                s.clone()
            }
            None | Some(VariableValue::Null) => {
                self.errors.push(FieldError::new(field, ValueError::Required.code()));
                String::new()
            }
            Some(VariableValue::Text(_)) => {
                self.errors.push(FieldError::new(field, ValueError::Required.code()));
                String::new()
            }
            Some(_) => {
                self.errors.push(FieldError::new(field, INVALID_TYPE));
                String::new()
            }
        }
    }

    fn url(&mut self, name: &'static str, field: &'static str) -> String {
        let s = self.text(name, field);
        let web_url = s.starts_with("https://") || s.starts_with("http://");
        if !s.is_empty() && (!web_url || s.contains(char::is_whitespace)) {
            self.errors
                .push(FieldError::new(field, ValueError::InvalidFormat.code()));
        }
        s
    }

    fn positive_int(&mut self, name: &'static str, field: &'static str) -> i64 {
        match self.vars.get(name) {
            Some(VariableValue::Integer(n)) if *n > 0 => *n,
            Some(VariableValue::Integer(_)) => {
                self.errors.push(FieldError::new(field, ValueError::OutOfRange.code()));
                0
            }
            None | Some(VariableValue::Null) => {
                self.errors.push(FieldError::new(field, ValueError::Required.code()));
                0
            }
            Some(_) => {
                self.errors.push(FieldError::new(field, INVALID_TYPE));
                0
            }
        }
    }
}

/// Renders a notification into the message that will be stored and sent.
pub fn render(req: &NotificationRequest) -> Result<RenderedMessage, Vec<FieldError>> {
    let mut v = Vars {
        vars: &req.variables,
        errors: Vec::new(),
    };
    let (subject, text, html) = match req.kind {
        NotificationKind::RegistrationCompleted => {
            let name = v.text("name", "variables.name");
            let site = v.text("siteName", "variables.siteName");
            let login = v.url("loginUrl", "variables.loginUrl");
            let (n, s, l) = (escape_html(&name), escape_html(&site), escape_html(&login));
            match req.locale {
                Locale::En => (
                    format!("Welcome to {site}"),
                    format!(
                        "Hello {name},\r\n\r\nyour registration at {site} is complete.\r\nSign in here: {login}\r\n\r\n{site}\r\n"
                    ),
                    Some(format!(
                        "<p>Hello {n},</p><p>your registration at {s} is complete.</p><p><a href=\"{l}\">Sign in</a></p><p>{s}</p>"
                    )),
                ),
                Locale::Ja => (
                    format!("【{site}】会員登録が完了しました"),
                    format!(
                        "{name} 様\r\n\r\n{site} への会員登録が完了しました。\r\nログインはこちら: {login}\r\n\r\n{site}\r\n"
                    ),
                    Some(format!(
                        "<p>{n} 様</p><p>{s} への会員登録が完了しました。</p><p><a href=\"{l}\">ログインはこちら</a></p><p>{s}</p>"
                    )),
                ),
            }
        }
        NotificationKind::PasswordReset => {
            let name = v.text("name", "variables.name");
            let site = v.text("siteName", "variables.siteName");
            let reset = v.url("resetUrl", "variables.resetUrl");
            let minutes = v.positive_int("expiresInMinutes", "variables.expiresInMinutes");
            let (n, s, r) = (escape_html(&name), escape_html(&site), escape_html(&reset));
            match req.locale {
                Locale::En => (
                    format!("Reset your {site} password"),
                    format!(
                        "Hello {name},\r\n\r\nto choose a new password, open this link within {minutes} minutes:\r\n{reset}\r\n\r\nIf you did not ask for this, ignore this mail.\r\n{site}\r\n"
                    ),
                    Some(format!(
                        "<p>Hello {n},</p><p>to choose a new password, open <a href=\"{r}\">this link</a> within {minutes} minutes.</p><p>If you did not ask for this, ignore this mail.</p><p>{s}</p>"
                    )),
                ),
                Locale::Ja => (
                    format!("【{site}】パスワード再設定のご案内"),
                    format!(
                        "{name} 様\r\n\r\n{minutes}分以内に次のリンクから新しいパスワードを設定してください。\r\n{reset}\r\n\r\nお心当たりのない場合は、このメールを破棄してください。\r\n{site}\r\n"
                    ),
                    Some(format!(
                        "<p>{n} 様</p><p>{minutes}分以内に<a href=\"{r}\">こちらのリンク</a>から新しいパスワードを設定してください。</p><p>お心当たりのない場合は、このメールを破棄してください。</p><p>{s}</p>"
                    )),
                ),
            }
        }
        NotificationKind::Custom => {
            let subject = req.subject.clone().unwrap_or_default();
            let text = req.text.clone().unwrap_or_default();
            if subject.trim().is_empty() {
                v.errors.push(FieldError::new("subject", ValueError::Required.code()));
            }
            if text.trim().is_empty() {
                v.errors.push(FieldError::new("text", ValueError::Required.code()));
            }
            if text.len() > 1_000_000 || req.html.as_ref().is_some_and(|h| h.len() > 1_000_000) {
                v.errors.push(FieldError::new("text", ValueError::TooLong.code()));
            }
            (subject, text, req.html.clone())
        }
    };
    let subject = match Subject::parse(&subject) {
        Ok(s) => Some(s),
        Err(e) => {
            if v.errors.is_empty() {
                v.errors.push(FieldError::new("subject", e.code()));
            }
            None
        }
    };
    match (v.errors.is_empty(), subject) {
        (true, Some(subject)) => Ok(RenderedMessage { subject, text, html }),
        _ => Err(v.errors),
    }
}

/// One try at sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// `SENT`, `RETRY`, `DEFERRED`, `FAILED`.
    pub outcome: AttemptOutcome,
    pub stage: Option<String>,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub server_message: Option<String>,
    pub sender_address: Option<String>,
    pub sender_source: Option<SenderSource>,
}

/// What an attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Sent,
    Retry,
    Deferred,
    Failed,
}

impl AttemptOutcome {
    pub fn code(self) -> &'static str {
        match self {
            Self::Sent => "SENT",
            Self::Retry => "RETRY",
            Self::Deferred => "DEFERRED",
            Self::Failed => "FAILED",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        [Self::Sent, Self::Retry, Self::Deferred, Self::Failed]
            .into_iter()
            .find(|k| k.code() == s)
    }
}

/// A notification on its way.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub kind: NotificationKind,
    pub to: EmailAddress,
    pub locale: Locale,
    pub message: RenderedMessage,
    /// One for all attempts.
    pub message_id: String,
    pub idempotency_key: Option<String>,
    pub status: DeliveryStatus,
    /// Error retries used (rate-limit deferrals do not count).
    pub retries: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it failed for good (`expired`, the server's reply, …).
    pub failure_reason: Option<String>,
    pub attempts: Vec<Attempt>,
}

/// How failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry delay; doubled each time.
    pub base: Duration,
    /// Longest delay between tries.
    pub max_delay: Duration,
    /// After this age a delivery that still fails is `FAILED` with reason `expired`.
    pub max_age: Duration,
    /// Delay after a rate-limit reply.
    pub defer: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(3 * 24 * 3600),
            defer: Duration::from_secs(60),
        }
    }
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDecision {
    /// Try again after this delay; uses up one error retry.
    Retry(Duration),
    /// The server asked us to slow down: try again after this delay, no retry used.
    Defer(Duration),
    /// Never retried.
    Fail,
    /// Too old to retry.
    Expire,
}

/// Whether a reply says "slow down" rather than "error".
pub fn is_rate_limit(failure: &SendFailure) -> bool {
    let Some(code) = failure.smtp_code else {
        return false;
    };
    let text = failure.server_message.as_deref().unwrap_or("").to_ascii_lowercase();
    let enhanced = failure.enhanced_code.as_deref().unwrap_or("");
    code == 421
        || (matches!(code, 450 | 451 | 452 | 454)
            && (enhanced.starts_with("4.7.") || text.contains("rate") || text.contains("too many")))
}

impl RetryPolicy {
    /// Exponential backoff with ±20 % jitter (`jitter` in 0..1).
    pub fn backoff(&self, retries: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(retries.min(20)));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }

    /// Decides what follows a failure of a delivery created at `created_at`.
    pub fn decide(
        &self,
        failure: &SendFailure,
        retries: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> FailureDecision {
        let transient = failure.is_transient() || is_rate_limit(failure);
        if !transient || failure.kind == FailureKind::InvalidMessage {
            return FailureDecision::Fail;
        }
        let age = (now - created_at).to_std().unwrap_or_default();
        if age >= self.max_age {
            return FailureDecision::Expire;
        }
        if is_rate_limit(failure) {
            return FailureDecision::Defer(self.defer.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)));
        }
        FailureDecision::Retry(self.backoff(retries, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::SendStage;

    fn req(kind: NotificationKind, locale: Locale, vars: &[(&str, VariableValue)]) -> NotificationRequest {
        NotificationRequest {
            tenant_id: TenantId::generate(),
            kind,
            to: "a@example.com".into(),
            locale,
            variables: vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            subject: None,
            text: None,
            html: None,
            idempotency_key: None,
        }
    }

    #[test]
    fn templates_render_and_escape() {
        let r = render(&req(
            NotificationKind::RegistrationCompleted,
            Locale::Ja,
            &[
                ("name", VariableValue::Text("<b>山田</b>".into())),
                ("siteName", VariableValue::Text("さくら".into())),
                (
                    "loginUrl",
                    VariableValue::Text("https://sakura.example/login?a=1&b=2".into()),
                ),
            ],
        ))
        .unwrap();
        assert_eq!(r.subject.as_str(), "【さくら】会員登録が完了しました");
        assert!(r.text.contains("<b>山田</b> 様"));
        let html = r.html.unwrap();
        assert!(html.contains("&lt;b&gt;山田&lt;/b&gt; 様") && !html.contains("<b>山田"));
        assert!(html.contains("a=1&amp;b=2"));
    }

    #[test]
    fn missing_and_mistyped_variables_are_named() {
        let errs = render(&req(
            NotificationKind::PasswordReset,
            Locale::En,
            &[
                ("name", VariableValue::Integer(3)),
                ("resetUrl", VariableValue::Text("javascript:alert(1)".into())),
                ("expiresInMinutes", VariableValue::Text("30".into())),
            ],
        ))
        .unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(
            got,
            vec![
                ("variables.name", INVALID_TYPE),
                ("variables.siteName", "REQUIRED"),
                ("variables.resetUrl", "INVALID_FORMAT"),
                ("variables.expiresInMinutes", INVALID_TYPE)
            ]
        );
    }

    #[test]
    fn retry_decisions() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let reply = |code: u16, enh: &str, text: &str| SendFailure {
            smtp_code: Some(code),
            enhanced_code: Some(enh.into()),
            server_message: Some(text.into()),
            ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
        };
        assert!(matches!(
            p.decide(&reply(451, "4.3.0", "try later"), 0, now, now, 0.5),
            FailureDecision::Retry(_)
        ));
        assert_eq!(
            p.decide(&reply(550, "5.1.1", "no such user"), 0, now, now, 0.5),
            FailureDecision::Fail
        );
        assert!(matches!(
            p.decide(&reply(421, "4.7.0", "slow down"), 0, now, now, 0.5),
            FailureDecision::Defer(_)
        ));
        assert!(matches!(
            p.decide(&reply(450, "4.2.1", "Too many messages"), 0, now, now, 0.5),
            FailureDecision::Defer(_)
        ));
        let old = now - chrono::Duration::days(4);
        assert_eq!(
            p.decide(&reply(451, "4.3.0", ""), 3, old, now, 0.5),
            FailureDecision::Expire
        );
        let net = SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused);
        assert!(matches!(p.decide(&net, 0, now, now, 0.5), FailureDecision::Retry(_)));
        assert_eq!(p.backoff(0, 0.5), Duration::from_secs(30));
        assert_eq!(p.backoff(30, 0.5), Duration::from_secs(3600));
    }
}
