//! Retention: a delivery that is done (`SENT` or `FAILED`) keeps its content — recipient,
//! subject, bodies (password-reset links, personal names) and the servers' reply texts —
//! only for the retention window. Then the content is removed; what stays is the row's
//! status, times, stage and codes, and a hash of the recipient, enough for support ("was
//! a mail to this address sent on that day?") and for metrics, and a hash of the whole
//! payload, enough to tell whether an idempotency key comes back with the same one.

use sha2::{Digest, Sha256};

use super::{FailureReason, NotificationKind, RenderedMessage};
use crate::i18n::Locale;
use crate::values::EmailAddress;

/// The recipient a delivery whose content was removed reads back with.
pub const REMOVED_RECIPIENT: &str = "removed@content-removed.invalid";

/// The subject it reads back with.
pub const REMOVED_SUBJECT: &str = "(removed)";

/// Deliveries cleared per batch (one transaction each).
pub const RETENTION_BATCH: u64 = 100;

/// Deliveries past the history horizon deleted per batch (one statement each).
pub const HISTORY_BATCH: u64 = 1_000;

/// The hash kept for a recipient: SHA-256 (hex) of the address in lower case. Support
/// hashes the address a customer gives and compares.
pub fn recipient_hash(to: &EmailAddress) -> String {
    Sha256::digest(to.to_ascii().to_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash kept for what an idempotency key stood for: SHA-256 (hex) of the kind, the
/// recipient, the language and the rendered message, each part length-prefixed (so no
/// two payloads share an encoding). Two enqueues carry the same payload exactly when
/// these agree — what `DeliveryService::enqueue` compares while the
/// content is still there.
pub fn payload_hash(kind: NotificationKind, to: &EmailAddress, locale: Locale, message: &RenderedMessage) -> String {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(b"payload-v1");
    part(kind.code().as_bytes());
    part(to.as_str().as_bytes());
    part(locale.code().as_bytes());
    part(message.subject.as_str().as_bytes());
    part(message.text.as_bytes());
    match &message.html {
        Some(html) => {
            part(b"html");
            part(html.as_bytes());
        }
        None => part(b"no-html"),
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A failure reason without the server's reply text (which may name the recipient):
/// the stage and the reply code stay.
pub fn reason_without_reply(reason: &FailureReason) -> FailureReason {
    match reason {
        FailureReason::Refused(text) => {
            let mut kept: Vec<&str> = Vec::new();
            for (i, word) in text.split_whitespace().enumerate() {
                let stage = i == 0 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                let code = i == 1 && word.len() == 3 && word.chars().all(|c| c.is_ascii_digit());
                if stage || code {
                    kept.push(word);
                } else {
                    break;
                }
            }
            FailureReason::Refused(kept.join(" "))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Subject;

    #[test]
    fn the_hash_ignores_case_and_the_reason_keeps_stage_and_code_only() {
        let a = EmailAddress::parse("Yamada@Example.JP").unwrap();
        let b = EmailAddress::parse("yamada@example.jp").unwrap();
        assert_eq!(recipient_hash(&a), recipient_hash(&b));
        assert_eq!(recipient_hash(&a).len(), 64);
        assert!(!recipient_hash(&a).contains("yamada"));
        let refused = FailureReason::Refused("RCPT_TO 550 5.1.1 <yamada@example.jp>: no such user".into());
        assert_eq!(
            reason_without_reply(&refused),
            FailureReason::Refused("RCPT_TO 550".into())
        );
        let kind = FailureReason::Refused("TLS CertificateUntrusted".into());
        assert_eq!(reason_without_reply(&kind), FailureReason::Refused("TLS".into()));
        assert_eq!(reason_without_reply(&FailureReason::Expired), FailureReason::Expired);
        // The placeholders read back through the same checks as any stored value.
        assert_eq!(
            EmailAddress::parse(REMOVED_RECIPIENT).unwrap().as_str(),
            REMOVED_RECIPIENT
        );
        assert_eq!(Subject::parse(REMOVED_SUBJECT).unwrap().as_str(), REMOVED_SUBJECT);
    }

    #[test]
    fn the_payload_hash_changes_with_every_part_of_the_payload() {
        let to = EmailAddress::parse("yamada@example.jp").unwrap();
        let message = |text: &str, html: Option<&str>| RenderedMessage {
            subject: Subject::parse("Hello").unwrap(),
            text: text.into(),
            html: html.map(Into::into),
        };
        let base = payload_hash(NotificationKind::Custom, &to, Locale::En, &message("t", None));
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            payload_hash(NotificationKind::Custom, &to, Locale::En, &message("t", None))
        );
        let other_to = EmailAddress::parse("suzuki@example.jp").unwrap();
        for other in [
            payload_hash(NotificationKind::PasswordReset, &to, Locale::En, &message("t", None)),
            payload_hash(NotificationKind::Custom, &other_to, Locale::En, &message("t", None)),
            payload_hash(NotificationKind::Custom, &to, Locale::Ja, &message("t", None)),
            payload_hash(NotificationKind::Custom, &to, Locale::En, &message("u", None)),
            payload_hash(NotificationKind::Custom, &to, Locale::En, &message("t", Some(""))),
            // The boundary between two parts cannot move unnoticed.
            payload_hash(NotificationKind::Custom, &to, Locale::En, &message("", Some("t"))),
        ] {
            assert_ne!(base, other);
        }
    }
}
