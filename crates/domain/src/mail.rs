//! Outgoing mail and what can happen to it: the message (free of anything that could
//! inject headers or commands), the stages of an SMTP conversation, the ways a send
//! fails, and the diagnosis a tenant admin reads after a failed test mail.

use std::time::Duration;

pub use crate::failure::{FailureKind, Hint, SendStage};
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

    /// A subject written into Mailgate's own code (a notice): checked by the tests that
    /// send it, not at run time.
    pub(crate) fn fixed(subject: &'static str) -> Self {
        debug_assert!(Self::parse(subject).is_ok(), "{subject}");
        Self(subject.to_owned())
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
    /// Through the platform default whatever the tenant's route, with the tenant's own
    /// address as Reply-To when it has one (a time-critical fallback, a notice).
    pub via_platform: bool,
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
            | FailureKind::HostBusy
            | FailureKind::SignInUnavailable
            | FailureKind::SignInMisconfigured => true,
            _ => false,
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
        FailureKind::SmtpUtf8NotOffered => d(Hint::SmtpUtf8NotSupported, Some("to")),
        FailureKind::SignInRevoked => d(Hint::ReconnectMailbox, Some("connectionId")),
        FailureKind::SignInMisconfigured => d(Hint::SignInSetup, None),
        FailureKind::SignInUnavailable => d(Hint::ProviderThrottled, None),
        FailureKind::TokenRefused => {
            if smtp_auth_off(enhanced, &text) {
                d(Hint::Microsoft365SmtpAuthDisabled, Some("connectionId"))
            } else {
                d(Hint::TokenRefused, Some("connectionId"))
            }
        }
        FailureKind::Rejected => {
            if enhanced == "5.7.9" || (code == 534 && text.contains("application-specific")) {
                d(Hint::GmailAppPassword, Some("password"))
            } else if smtp_auth_off(enhanced, &text) {
                // With a password the result also offers a Microsoft sign-in
                // (`offers_microsoft_sign_in`); with a sign-in, SMTP AUTH is off for the
                // mailbox (or send through Graph).
                let field = match settings.and_then(MailSettings::connection) {
                    None => "username",
                    Some(_) => "connectionId",
                };
                d(Hint::Microsoft365SmtpAuthDisabled, Some(field))
            } else if failure.stage == SendStage::Auth && (code == 535 || code == 534 || enhanced.starts_with("5.7.8"))
            {
                d(Hint::WrongCredentials, Some("password"))
            } else if relay_denied(failure.stage, &text)
                && settings.is_some_and(|s| s.pop_before_smtp().is_none() && !s.smtp_auth())
            {
                // `554 5.7.1 Relay access denied` to settings with neither SMTP AUTH nor
                // POP before SMTP: the server relays only for clients that logged in first,
                // which is what POP before SMTP is for (the seed's providers use it). Not
                // the sender address's fault.
                d(Hint::PopBeforeSmtpSuggested, Some("popBeforeSmtp.host"))
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

impl crate::health::SettingsFailure {
    /// The failure as the tenant's settings remember it, with its hint.
    pub fn of(failure: &SendFailure, settings: Option<&MailSettings>, at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            at,
            stage: failure.stage,
            smtp_code: failure.smtp_code,
            enhanced_code: failure.enhanced_code.clone(),
            server_message: failure.server_message.clone(),
            hint: diagnose(failure, settings).hint,
        }
    }
}

/// A refusal to relay (Postfix `554 5.7.1 <to>: Relay access denied`, Sendmail `550 5.7.1
/// Relaying denied`, Exim `550 relay not permitted`), at MAIL FROM or RCPT TO.
fn relay_denied(stage: SendStage, lowercase_text: &str) -> bool {
    matches!(stage, SendStage::MailFrom | SendStage::RcptTo)
        && (lowercase_text.contains("relay access denied")
            || lowercase_text.contains("relaying denied")
            || lowercase_text.contains("relay not permitted")
            || lowercase_text.contains("relaying not permitted")
            || lowercase_text.contains("relaying not allowed"))
}

/// Exchange Online's refusals of password (or any) SMTP AUTH: `550 5.7.30 Basic
/// authentication is not supported for Client Submission`, `535 5.7.139 … SmtpClientAuthentication
/// is disabled` (facts §1).
fn smtp_auth_off(enhanced: &str, lowercase_text: &str) -> bool {
    enhanced == "5.7.139"
        || enhanced == "5.7.30"
        || lowercase_text.contains("smtpclientauthentication is disabled")
        || lowercase_text.contains("basic authentication is not supported")
}

/// Whether a failure says Microsoft no longer takes the password these settings use:
/// the tenant is offered "Connect with Microsoft" (issue 25, the move off passwords).
pub fn offers_microsoft_sign_in(failure: &SendFailure, settings: Option<&MailSettings>) -> bool {
    settings.is_some_and(|s| s.connection().is_none())
        && diagnose(failure, settings).hint == Hint::Microsoft365SmtpAuthDisabled
}

/// Whether a failure ends the settings version at once rather than after a few in a
/// row: a sign-in that is gone cannot come back by itself.
pub fn suspends_at_once(failure: &SendFailure) -> bool {
    failure.kind == FailureKind::SignInRevoked
}

/// Whether a failure on the tenant's own server says its settings are wrong (rather than
/// that one mail, one recipient or the network had a problem): a permanent refusal of the
/// credentials or of the sender, or a certificate that does not verify. Such failures
/// count towards suspending the version; they never fail the mail.
pub fn is_configuration_failure(failure: &SendFailure) -> bool {
    if matches!(
        failure.kind,
        FailureKind::CertificateUntrusted
            | FailureKind::CertificateNameMismatch
            | FailureKind::TokenRefused
            | FailureKind::SignInRevoked
    ) {
        return true;
    }
    if failure.kind != FailureKind::Rejected {
        return false;
    }
    let Some(code) = failure.smtp_code else {
        return false;
    };
    let enhanced = failure.enhanced_code.as_deref().unwrap_or("");
    let text = failure.server_message.as_deref().unwrap_or("").to_ascii_lowercase();
    let basic_auth_off = enhanced == "5.7.30" || text.contains("basic authentication is not supported");
    let auth_refused = matches!(code, 535 | 534)
        || (code == 530 && enhanced.starts_with("5.7."))
        || matches!(enhanced, "5.7.8" | "5.7.9" | "5.7.139")
        || basic_auth_off;
    match failure.stage {
        SendStage::Auth => code >= 500 && auth_refused,
        SendStage::MailFrom => {
            (code == 530 && enhanced.starts_with("5.7."))
                || basic_auth_off
                || (matches!(code, 550 | 553 | 554) && enhanced == "5.7.1")
        }
        _ => false,
    }
}

/// Removes anything secret from a server reply before it is shown or stored: the
/// password and its base64 forms, and AUTH challenge payloads.
/// (Secrets sent as is; the mailer's sessions use [`crate::redact::Secrets`] with every
/// encoding of what they sent.)
pub fn redact_server_message(message: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .fold(crate::redact::Secrets::new(), |all, s| all.secret(s))
        .redact(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(stage: SendStage, code: u16, enhanced: &str, text: &str) -> SendFailure {
        SendFailure {
            smtp_code: Some(code),
            enhanced_code: (!enhanced.is_empty()).then(|| enhanced.to_owned()),
            server_message: Some(text.into()),
            ..SendFailure::new(stage, FailureKind::Rejected)
        }
    }

    #[test]
    fn configuration_failures_are_the_permanent_credential_sender_and_certificate_ones() {
        use SendStage::*;
        for f in [
            reply(Auth, 535, "5.7.8", "Authentication credentials invalid"),
            reply(Auth, 534, "5.7.9", "Application-specific password required"),
            reply(
                Auth,
                535,
                "5.7.139",
                "Authentication unsuccessful, SmtpClientAuthentication is disabled",
            ),
            reply(
                Auth,
                550,
                "5.7.30",
                "Basic authentication is not supported for Client Submission",
            ),
            reply(Auth, 530, "5.7.0", "Authentication required"),
            reply(MailFrom, 530, "5.7.0", "Authentication required"),
            reply(
                MailFrom,
                550,
                "5.7.1",
                "Client does not have permissions to send as this sender",
            ),
            reply(MailFrom, 553, "5.7.1", "Sender address rejected: not owned by user"),
            reply(MailFrom, 554, "5.7.1", "Relay access denied"),
            SendFailure::new(Tls, FailureKind::CertificateUntrusted),
            SendFailure::new(Tls, FailureKind::CertificateNameMismatch),
        ] {
            assert!(is_configuration_failure(&f), "{f:?}");
        }
        for f in [
            reply(Auth, 454, "4.7.0", "Temporary authentication failure"),
            reply(RcptTo, 550, "5.1.1", "No such user"),
            reply(MailFrom, 451, "4.3.0", "try later"),
            reply(Data, 554, "5.7.1", "Message rejected as spam"),
            reply(MailFrom, 550, "5.1.0", "Sender unknown"),
            SendFailure::new(Connect, FailureKind::ConnectionRefused),
            SendFailure::new(Greeting, FailureKind::TimedOut),
        ] {
            assert!(!is_configuration_failure(&f), "{f:?}");
        }
    }

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
                rejected(
                    SendStage::Auth,
                    550,
                    "5.7.30",
                    "Basic authentication is not supported for Client Submission",
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

    fn settings(smtp_auth: bool, pop: bool) -> MailSettings {
        let draft = crate::settings::MailSettingsDraft {
            host: Some("smtp.example.jp".into()),
            port: Some(587),
            from_address: Some("shop@example.jp".into()),
            from_name: Some("Shop".into()),
            smtp_auth: Some(smtp_auth),
            username: smtp_auth.then(|| "shop".into()),
            password: smtp_auth.then(|| "pw".to_owned().into()),
            encryption: Some(Encryption::StartTls),
            pop_before_smtp: pop.then(|| crate::settings::PopBeforeSmtpDraft {
                host: Some("pop.example.jp".into()),
                port: Some(110),
                username: Some("shop".into()),
                password: Some("pw".to_owned().into()),
                tls: Some(false),
            }),
            ..Default::default()
        };
        MailSettings::validate(&draft, None).expect("valid settings")
    }

    #[test]
    fn a_relay_refusal_suggests_pop_before_smtp_only_to_settings_without_a_login() {
        let postfix = rejected(
            SendStage::RcptTo,
            554,
            "5.7.1",
            "<a@elsewhere.example>: Relay access denied",
        );
        let at_mail_from = rejected(SendStage::MailFrom, 554, "5.7.1", "Relay access denied");
        let sendmail = rejected(
            SendStage::RcptTo,
            550,
            "5.7.1",
            "<a@elsewhere.example>... Relaying denied",
        );
        let suggested = Diagnosis {
            hint: Hint::PopBeforeSmtpSuggested,
            field: Some("popBeforeSmtp.host"),
        };
        let bare = settings(false, false);
        for f in [&postfix, &at_mail_from, &sendmail] {
            assert_eq!(diagnose(f, Some(&bare)), suggested, "{f:?}");
        }
        // A refusal at RCPT TO is not counted toward suspending the settings: recipients
        // are chosen by strangers, and a server may refuse to relay to some domains only
        // (Exchange's per-domain connectors) for settings that log in.
        assert!(is_configuration_failure(&at_mail_from));
        assert!(!is_configuration_failure(&postfix));
        assert!(!is_configuration_failure(&sendmail));
        // Settings that log in already (SMTP AUTH, or POP before SMTP) are not told to.
        assert_eq!(
            diagnose(&at_mail_from, Some(&settings(true, false))).hint,
            Hint::SenderNotAllowed
        );
        assert_eq!(
            diagnose(&at_mail_from, Some(&settings(false, true))).hint,
            Hint::SenderNotAllowed
        );
        assert_eq!(
            diagnose(&postfix, Some(&settings(false, true))).hint,
            Hint::RecipientRejected
        );
        // A refused recipient that is not a relay refusal stays the recipient's.
        let unknown = rejected(SendStage::RcptTo, 550, "5.1.1", "No such user");
        assert_eq!(diagnose(&unknown, Some(&bare)).hint, Hint::RecipientRejected);
        assert!(!is_configuration_failure(&unknown));
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
