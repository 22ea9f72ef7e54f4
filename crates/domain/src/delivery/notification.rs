//! Notifications: what a platform service hands in, and the built-in templates (rendered
//! once, at enqueue time, so a template change never alters a queued mail).

use std::collections::BTreeMap;

use crate::error::{FieldCode, FieldError};
use crate::i18n::Locale;
use crate::mail::Subject;
use crate::tenant::TenantId;
use crate::values::ValueError;

crate::coded_enum! {
    /// What kind of notification it is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum NotificationKind {
        RegistrationCompleted = "REGISTRATION_COMPLETED",
        PasswordReset = "PASSWORD_RESET",
        Custom = "CUSTOM",
    }
}

impl NotificationKind {
    /// Mail a person is waiting for right now (a sign-up, a password reset): when the
    /// tenant's server does not take it in time it goes through the platform default.
    pub fn is_time_critical(self) -> bool {
        matches!(self, Self::RegistrationCompleted | Self::PasswordReset)
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

/// Largest `text` or `html` of a CUSTOM notification, in bytes (after line ends are
/// made CRLF).
pub const MAX_CUSTOM_BODY_BYTES: usize = 1_000_000;

/// A CUSTOM body as it may go on the wire: every line end (CRLF, a bare CR, a bare LF)
/// becomes CRLF, so no bare CR or LF reaches the server (the SMTP-smuggling class: a
/// `\r.\r\n` the server might take for the end of the message), and NUL or any other C0
/// control than tab, CR and LF (or DEL) is refused.
pub fn custom_body(raw: &str) -> Result<String, ValueError> {
    if raw
        .chars()
        .any(|c| (c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n')) || c == '\u{7f}')
    {
        return Err(ValueError::ControlCharacters);
    }
    let mut out = String::with_capacity(raw.len() + raw.len() / 32);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    if out.len() > MAX_CUSTOM_BODY_BYTES {
        return Err(ValueError::TooLong);
    }
    Ok(out)
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

struct Vars<'a> {
    vars: &'a BTreeMap<String, VariableValue>,
    errors: Vec<FieldError>,
}

impl<'a> Vars<'a> {
    fn text(&mut self, name: &'static str, field: &'static str) -> String {
        match self.vars.get(name) {
            Some(VariableValue::Text(s)) if !s.trim().is_empty() => {
                if s.chars().any(|c| c.is_control() && c != '\n') {
                    self.errors.push(FieldError::new(field, ValueError::ControlCharacters));
                } else if s.chars().count() > 2000 {
                    self.errors.push(FieldError::new(field, ValueError::TooLong));
                }
                s.clone()
            }
            None | Some(VariableValue::Null) => {
                self.errors.push(FieldError::new(field, ValueError::Required));
                String::new()
            }
            Some(VariableValue::Text(_)) => {
                self.errors.push(FieldError::new(field, ValueError::Required));
                String::new()
            }
            Some(_) => {
                self.errors.push(FieldError::new(field, FieldCode::InvalidType));
                String::new()
            }
        }
    }

    /// A value that goes into the subject: one line (a line break is reported on the
    /// variable, not on the subject it would have broken).
    fn line(&mut self, name: &'static str, field: &'static str) -> String {
        let errors = self.errors.len();
        let s = self.text(name, field);
        if self.errors.len() == errors && s.contains('\n') {
            self.errors.push(FieldError::new(field, ValueError::ControlCharacters));
        }
        s
    }

    fn url(&mut self, name: &'static str, field: &'static str) -> String {
        let s = self.text(name, field);
        let web_url = s.starts_with("https://") || s.starts_with("http://");
        if !s.is_empty() && (!web_url || s.contains(char::is_whitespace)) {
            self.errors.push(FieldError::new(field, ValueError::InvalidFormat));
        }
        s
    }

    fn positive_int(&mut self, name: &'static str, field: &'static str) -> i64 {
        match self.vars.get(name) {
            Some(VariableValue::Integer(n)) if *n > 0 => *n,
            Some(VariableValue::Integer(_)) => {
                self.errors.push(FieldError::new(field, ValueError::OutOfRange));
                0
            }
            None | Some(VariableValue::Null) => {
                self.errors.push(FieldError::new(field, ValueError::Required));
                0
            }
            Some(_) => {
                self.errors.push(FieldError::new(field, FieldCode::InvalidType));
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
            let site = v.line("siteName", "variables.siteName");
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
            let site = v.line("siteName", "variables.siteName");
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
            if subject.trim().is_empty() {
                v.errors.push(FieldError::new("subject", ValueError::Required));
            }
            let text = match custom_body(req.text.as_deref().unwrap_or("")) {
                Ok(t) if t.trim().is_empty() => {
                    v.errors.push(FieldError::new("text", ValueError::Required));
                    t
                }
                Ok(t) => t,
                Err(e) => {
                    v.errors.push(FieldError::new("text", e));
                    String::new()
                }
            };
            let html = match req.html.as_deref().map(custom_body).transpose() {
                Ok(h) => h,
                Err(e) => {
                    v.errors.push(FieldError::new("html", e));
                    None
                }
            };
            (subject, text, html)
        }
    };
    let subject = match Subject::parse(&subject) {
        Ok(s) => Some(s),
        Err(e) => {
            if v.errors.is_empty() {
                v.errors.push(FieldError::new("subject", e));
            }
            None
        }
    };
    match (v.errors.is_empty(), subject) {
        (true, Some(subject)) => Ok(RenderedMessage { subject, text, html }),
        _ => Err(v.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                ("variables.name", FieldCode::InvalidType),
                ("variables.siteName", FieldCode::Required),
                ("variables.resetUrl", FieldCode::InvalidFormat),
                ("variables.expiresInMinutes", FieldCode::InvalidType)
            ]
        );
    }

    #[test]
    fn a_line_break_in_the_site_name_is_reported_on_the_variable() {
        for kind in [NotificationKind::RegistrationCompleted, NotificationKind::PasswordReset] {
            let errs = render(&req(
                kind,
                Locale::En,
                &[
                    ("name", VariableValue::Text("Yamada".into())),
                    ("siteName", VariableValue::Text("Sakura\nBcc: x@evil.example".into())),
                    ("loginUrl", VariableValue::Text("https://sakura.example/login".into())),
                    ("resetUrl", VariableValue::Text("https://sakura.example/reset".into())),
                    ("expiresInMinutes", VariableValue::Integer(30)),
                ],
            ))
            .unwrap_err();
            let got: Vec<_> = errs.iter().map(|e| (e.field, e.code)).collect();
            assert_eq!(
                got,
                vec![("variables.siteName", FieldCode::ControlCharacters)],
                "{kind:?}"
            );
        }
    }

    #[test]
    fn custom_bodies_get_crlf_line_ends_and_no_controls() {
        assert_eq!(custom_body("a\rb\nc\r\nd\r\r\n").unwrap(), "a\r\nb\r\nc\r\nd\r\n\r\n");
        assert_eq!(
            custom_body("x\r.\r\nMAIL FROM:<e@evil.example>\r\n").unwrap(),
            "x\r\n.\r\nMAIL FROM:<e@evil.example>\r\n"
        );
        assert_eq!(custom_body("tab\there").unwrap(), "tab\there");
        for bad in ["nul\u{0}", "bell\u{7}", "esc\u{1b}[0m", "del\u{7f}"] {
            assert_eq!(custom_body(bad), Err(ValueError::ControlCharacters), "{bad:?}");
        }
        assert_eq!(
            custom_body(&"a".repeat(MAX_CUSTOM_BODY_BYTES)).map(|s| s.len()),
            Ok(MAX_CUSTOM_BODY_BYTES)
        );
        assert_eq!(
            custom_body(&"a".repeat(MAX_CUSTOM_BODY_BYTES + 1)),
            Err(ValueError::TooLong)
        );
        // Line ends count once made CRLF.
        assert_eq!(
            custom_body(&"\n".repeat(MAX_CUSTOM_BODY_BYTES / 2 + 1)),
            Err(ValueError::TooLong)
        );
    }
}
