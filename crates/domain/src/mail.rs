//! Outgoing mail and what can happen to it: the message (free of anything that could
//! inject headers or commands), the stages of an SMTP conversation, the ways a send
//! fails, and the diagnosis a tenant admin reads after a failed test mail.

use std::time::Duration;

use crate::sender::SenderSource;
use crate::settings::{Encryption, MailSettings};
use crate::values::{EmailAddress, SenderName, ValueError, has_control_chars};

/// A subject line: at most 255 characters, no control characters (so no header
/// injection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if has_control_chars(raw) {
            return Err(ValueError::ControlCharacters);
        }
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValueError::Required);
        }
        if s.chars().count() > 255 {
            return Err(ValueError::TooLong);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message to deliver. The sender is not part of it: the mailer decides it.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: EmailAddress,
    pub subject: Subject,
    pub text: String,
    pub html: Option<String>,
    /// Kept across attempts so a retried delivery has one `Message-ID`; the mailer
    /// makes one when absent.
    pub message_id: Option<String>,
}

/// The sender a message went (or tried to go) out from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderUsed {
    pub address: EmailAddress,
    pub name: Option<SenderName>,
    pub source: SenderSource,
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct SendReceipt {
    pub message_id: String,
    pub sender: SenderUsed,
    pub smtp_code: Option<u16>,
    pub server_message: Option<String>,
    pub elapsed: Duration,
}

/// Where in the conversation a send stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStage {
    Resolve,
    Connect,
    Greeting,
    Tls,
    Ehlo,
    PopLogin,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Timeout,
}

impl SendStage {
    pub fn code(self) -> &'static str {
        match self {
            Self::Resolve => "RESOLVE",
            Self::Connect => "CONNECT",
            Self::Greeting => "GREETING",
            Self::Tls => "TLS",
            Self::Ehlo => "EHLO",
            Self::PopLogin => "POP_LOGIN",
            Self::Auth => "AUTH",
            Self::MailFrom => "MAIL_FROM",
            Self::RcptTo => "RCPT_TO",
            Self::Data => "DATA",
            Self::Timeout => "TIMEOUT",
        }
    }
}

/// What went wrong, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The host name does not resolve.
    HostNotFound,
    /// The host resolves to a loopback, private, link-local, … address.
    ForbiddenAddress,
    /// The port is not open to tenants.
    PortNotAllowed,
    ConnectionRefused,
    /// No answer within the deadline.
    TimedOut,
    /// A TLS handshake met a plain-text server, or the reverse.
    TlsModeMismatch,
    /// The certificate is not valid for the host name.
    CertificateNameMismatch,
    /// The certificate is not signed by a trusted authority (or expired).
    CertificateUntrusted,
    /// Encryption is STARTTLS but the server does not offer it.
    StartTlsNotOffered,
    /// The server offers no authentication we can use (or none at all).
    AuthNotOffered,
    /// The server answered with an SMTP error reply (see code and message).
    Rejected,
    /// The POP3 login before SMTP failed.
    PopLoginFailed,
    /// The connection broke.
    Network,
    /// The server broke the protocol in a way that could harm us: a reply line or reply
    /// longer than SMTP allows (or a POP line over 512 octets), or plain text sent after
    /// its STARTTLS reply. The session is ended at once.
    ProtocolViolation,
    /// The message could not be built from the stored data.
    InvalidMessage,
    /// The tenant's saved settings cannot be read back; nothing was sent. Passes once
    /// they are saved again or cleared.
    SettingsUnreadable,
    /// Every connection this process may open to the destination host (across tenants)
    /// is in use, and none came free in time; nothing was sent. Tried again later like a
    /// "slow down" reply.
    HostBusy,
}

/// A failed send: where, why, and what the server said (secrets removed).
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub stage: SendStage,
    pub kind: FailureKind,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub server_message: Option<String>,
    pub elapsed: Duration,
    pub sender: Option<SenderUsed>,
}

impl SendFailure {
    pub fn new(stage: SendStage, kind: FailureKind) -> Self {
        Self {
            stage,
            kind,
            smtp_code: None,
            enhanced_code: None,
            server_message: None,
            elapsed: Duration::ZERO,
            sender: None,
        }
    }

    /// Whether trying again later can help (4xx replies, network trouble, time-outs).
    pub fn is_transient(&self) -> bool {
        match self.kind {
            FailureKind::Rejected => self.smtp_code.is_some_and(|c| (400..500).contains(&c)),
            FailureKind::TimedOut
            | FailureKind::Network
            | FailureKind::ProtocolViolation
            | FailureKind::ConnectionRefused
            | FailureKind::HostNotFound
            | FailureKind::SettingsUnreadable
            | FailureKind::HostBusy => true,
            _ => false,
        }
    }
}

/// A plain-language fix for a failed test mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    WrongCredentials,
    GmailAppPassword,
    Microsoft365SmtpAuthDisabled,
    SenderNotAllowed,
    RecipientRejected,
    TlsModeMismatch,
    StartTlsNotOffered,
    CertificateNameMismatch,
    CertificateUntrusted,
    ConnectionRefused,
    TimedOut,
    PopLoginFailed,
    HostNotFound,
    ForbiddenAddress,
    PortNotAllowed,
    AuthNotOffered,
    TemporaryFailure,
    /// The server does not speak SMTP (or POP3) as it must.
    ProtocolViolation,
    Other,
}

impl Hint {
    pub fn code(self) -> &'static str {
        match self {
            Self::WrongCredentials => "WRONG_CREDENTIALS",
            Self::GmailAppPassword => "GMAIL_APP_PASSWORD",
            Self::Microsoft365SmtpAuthDisabled => "M365_SMTP_AUTH_DISABLED",
            Self::SenderNotAllowed => "SENDER_NOT_ALLOWED",
            Self::RecipientRejected => "RECIPIENT_REJECTED",
            Self::TlsModeMismatch => "TLS_MODE_MISMATCH",
            Self::StartTlsNotOffered => "STARTTLS_NOT_OFFERED",
            Self::CertificateNameMismatch => "CERTIFICATE_NAME_MISMATCH",
            Self::CertificateUntrusted => "CERTIFICATE_UNTRUSTED",
            Self::ConnectionRefused => "CONNECTION_REFUSED",
            Self::TimedOut => "TIMED_OUT",
            Self::PopLoginFailed => "POP_LOGIN_FAILED",
            Self::HostNotFound => "HOST_NOT_FOUND",
            Self::ForbiddenAddress => "FORBIDDEN_ADDRESS",
            Self::PortNotAllowed => "PORT_NOT_ALLOWED",
            Self::AuthNotOffered => "AUTH_NOT_OFFERED",
            Self::TemporaryFailure => "TEMPORARY_FAILURE",
            Self::ProtocolViolation => "PROTOCOL_VIOLATION",
            Self::Other => "OTHER",
        }
    }
}

/// What to tell the tenant admin, and which form field to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnosis {
    pub hint: Hint,
    pub field: Option<&'static str>,
}

/// Turns a failure into a hint and a field, using the settings that were tried.
pub fn diagnose(failure: &SendFailure, settings: Option<&MailSettings>) -> Diagnosis {
    let enhanced = failure.enhanced_code.as_deref().unwrap_or("");
    let text = failure.server_message.as_deref().unwrap_or("").to_ascii_lowercase();
    let code = failure.smtp_code.unwrap_or(0);
    let d = |hint, field| Diagnosis { hint, field };
    if failure.stage == SendStage::PopLogin {
        return match failure.kind {
            FailureKind::HostNotFound => d(Hint::HostNotFound, Some("popBeforeSmtp.host")),
            FailureKind::ForbiddenAddress => d(Hint::ForbiddenAddress, Some("popBeforeSmtp.host")),
            FailureKind::PortNotAllowed => d(Hint::PortNotAllowed, Some("popBeforeSmtp.port")),
            FailureKind::ConnectionRefused => d(Hint::ConnectionRefused, Some("popBeforeSmtp.port")),
            FailureKind::TimedOut => d(Hint::TimedOut, Some("popBeforeSmtp.port")),
            FailureKind::CertificateNameMismatch => d(Hint::CertificateNameMismatch, Some("popBeforeSmtp.host")),
            FailureKind::CertificateUntrusted => d(Hint::CertificateUntrusted, Some("popBeforeSmtp.host")),
            FailureKind::TlsModeMismatch => d(Hint::TlsModeMismatch, Some("popBeforeSmtp.tls")),
            FailureKind::ProtocolViolation => d(Hint::ProtocolViolation, Some("popBeforeSmtp.port")),
            _ => d(Hint::PopLoginFailed, Some("popBeforeSmtp.password")),
        };
    }
    match failure.kind {
        FailureKind::HostNotFound => d(Hint::HostNotFound, Some("host")),
        FailureKind::ForbiddenAddress => d(Hint::ForbiddenAddress, Some("host")),
        FailureKind::PortNotAllowed => d(Hint::PortNotAllowed, Some("port")),
        FailureKind::ConnectionRefused => d(Hint::ConnectionRefused, Some("port")),
        FailureKind::TlsModeMismatch => d(Hint::TlsModeMismatch, Some("encryption")),
        FailureKind::CertificateNameMismatch => d(Hint::CertificateNameMismatch, Some("host")),
        FailureKind::CertificateUntrusted => d(Hint::CertificateUntrusted, Some("host")),
        FailureKind::StartTlsNotOffered => d(Hint::StartTlsNotOffered, Some("encryption")),
        FailureKind::AuthNotOffered => d(Hint::AuthNotOffered, Some("smtpAuth")),
        FailureKind::PopLoginFailed => d(Hint::PopLoginFailed, Some("popBeforeSmtp.password")),
        FailureKind::ProtocolViolation => d(Hint::ProtocolViolation, Some("port")),
        FailureKind::TimedOut => {
            // A silent server on the implicit-TLS port is the classic mistake.
            let mismatch = settings.is_some_and(|s| {
                (s.port().get() == 465 && s.encryption() != Encryption::Ssl)
                    || (s.encryption() == Encryption::Ssl && s.port().get() != 465)
            });
            if failure.stage == SendStage::Greeting || mismatch {
                d(
                    if mismatch {
                        Hint::TlsModeMismatch
                    } else {
                        Hint::TimedOut
                    },
                    Some(if mismatch { "encryption" } else { "port" }),
                )
            } else {
                d(Hint::TimedOut, Some("host"))
            }
        }
        FailureKind::Network | FailureKind::InvalidMessage | FailureKind::SettingsUnreadable => d(Hint::Other, None),
        FailureKind::HostBusy => d(Hint::TemporaryFailure, None),
        FailureKind::Rejected => {
            if enhanced == "5.7.9" || (code == 534 && text.contains("application-specific")) {
                d(Hint::GmailAppPassword, Some("password"))
            } else if enhanced == "5.7.139" || text.contains("smtpclientauthentication is disabled") {
                d(Hint::Microsoft365SmtpAuthDisabled, Some("username"))
            } else if failure.stage == SendStage::Auth && (code == 535 || code == 534 || enhanced.starts_with("5.7.8"))
            {
                d(Hint::WrongCredentials, Some("password"))
            } else if failure.stage == SendStage::MailFrom
                && (code == 550 || code == 553 || code == 554 || enhanced == "5.7.1")
            {
                d(Hint::SenderNotAllowed, Some("fromAddress"))
            } else if failure.stage == SendStage::RcptTo && code >= 500 {
                d(Hint::RecipientRejected, Some("to"))
            } else if (400..500).contains(&code) {
                d(Hint::TemporaryFailure, None)
            } else {
                d(Hint::Other, None)
            }
        }
    }
}

/// Removes anything secret from a server reply before it is shown or stored: the
/// password and its base64 forms, and AUTH challenge payloads.
pub fn redact_server_message(message: &str, secrets: &[&str]) -> String {
    let mut out: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret, "[redacted]");
    }
    out.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(stage: SendStage, code: u16, enhanced: &str, text: &str) -> SendFailure {
        SendFailure {
            smtp_code: Some(code),
            enhanced_code: Some(enhanced.into()),
            server_message: Some(text.into()),
            ..SendFailure::new(stage, FailureKind::Rejected)
        }
    }

    #[test]
    fn diagnoses_the_listed_replies() {
        let cases = [
            (
                rejected(SendStage::Auth, 535, "5.7.8", "Authentication credentials invalid"),
                Hint::WrongCredentials,
                Some("password"),
            ),
            (
                rejected(SendStage::Auth, 534, "5.7.9", "Application-specific password required"),
                Hint::GmailAppPassword,
                Some("password"),
            ),
            (
                rejected(
                    SendStage::Auth,
                    535,
                    "5.7.139",
                    "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
                ),
                Hint::Microsoft365SmtpAuthDisabled,
                Some("username"),
            ),
            (
                rejected(SendStage::MailFrom, 553, "5.7.1", "Sender address rejected"),
                Hint::SenderNotAllowed,
                Some("fromAddress"),
            ),
            (
                rejected(SendStage::MailFrom, 550, "5.7.1", "not owned by user"),
                Hint::SenderNotAllowed,
                Some("fromAddress"),
            ),
            (
                rejected(SendStage::Data, 451, "4.3.0", "try later"),
                Hint::TemporaryFailure,
                None,
            ),
        ];
        for (failure, hint, field) in cases {
            assert_eq!(diagnose(&failure, None), Diagnosis { hint, field }, "{failure:?}");
        }
        assert!(rejected(SendStage::Data, 451, "4.3.0", "").is_transient());
        assert!(!rejected(SendStage::Data, 550, "5.1.1", "").is_transient());
    }

    #[test]
    fn redacts_secrets() {
        assert_eq!(
            redact_server_message("535 bad pw hunter2\r\n", &["hunter2"]),
            "535 bad pw [redacted]  "
        );
    }

    #[test]
    fn subjects_refuse_injection() {
        assert_eq!(Subject::parse("Hi\r\nBcc: x@y.z"), Err(ValueError::ControlCharacters));
        assert!(Subject::parse("ご登録ありがとうございます").is_ok());
    }
}
