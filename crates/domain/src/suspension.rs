//! What suspending a settings version writes besides its new state, decided here and
//! written by the store in the same transaction: the audit entry
//! (`MAIL_SETTINGS_SUSPENDED`, by Mailgate itself) and the notice mail that tells the
//! tenant what failed and how to fix it, in Japanese and English (a tenant has no
//! language of its own).
//!
//! The notice goes out through the platform's own sender (`via_platform`), so it goes
//! only to an address proven to be the tenant's: the contact address an operator set
//! ([`Tenant::contact_email`]). Never to the settings' sender address — any admin of a
//! plan that allows its own server types that one, and could aim the platform's sender
//! at a stranger. Without a contact address no notice is mailed (the audit entry and
//! its webhook event remain). The notice never quotes what the server said: the stage,
//! the reply codes and our own hint only, so a hostile server cannot word a mail that
//! leaves from the platform's address.

use chrono::{DateTime, Utc};

use crate::access::Role;
use crate::audit::{AuditAction, AuditEntry};
use crate::change::ChangeRecord;
use crate::delivery::{Delivery, NotificationKind, RenderedMessage};
use crate::failure::Hint;
use crate::health::SettingsFailure;
use crate::i18n::Locale;
use crate::ids::MessageId;
use crate::mail::Subject;
use crate::settings::{FieldChange, MailSettings};
use crate::tenant::Tenant;
use crate::values::EmailAddress;

/// The subject the audit trail names for what Mailgate does by itself.
pub const SYSTEM_ACTOR: &str = "mailgate";

/// The writes that go with a version's suspension.
#[derive(Debug, Clone)]
pub struct Suspension {
    /// Its entry in the trail, the `mail_settings.suspended` event, its announcement.
    pub change: ChangeRecord,
    /// The notice to the tenant's contact address; `None` when the tenant has none.
    pub notice: Option<Delivery>,
}

/// The suspension of `tenant`'s settings `version` (`settings`) after `failure`.
pub fn suspension(
    tenant: &Tenant,
    settings: &MailSettings,
    version: i64,
    failure: &SettingsFailure,
    at: DateTime<Utc>,
) -> Suspension {
    let value = |field: &str, after: String| FieldChange::Value {
        field: field.into(),
        before: None,
        after: Some(after),
    };
    let mut changes = vec![
        value("version", version.to_string()),
        value("stage", failure.stage.code().to_owned()),
        value("hintCode", failure.hint.code().to_owned()),
    ];
    if let Some(code) = failure.smtp_code {
        changes.push(value("smtpCode", code.to_string()));
    }
    if let Some(message) = &failure.server_message {
        changes.push(value("serverMessage", message.clone()));
    }
    let audit = AuditEntry {
        id: uuid::Uuid::now_v7(),
        tenant_id: tenant.id,
        actor_subject: SYSTEM_ACTOR.to_owned(),
        actor_role: Role::Service,
        action: AuditAction::MailSettingsSuspended,
        changes,
        at,
    };
    let notice = tenant
        .contact_email
        .as_ref()
        .map(|to| notice(tenant, settings, failure, to.clone(), at));
    Suspension {
        change: ChangeRecord::of(audit),
        notice,
    }
}

/// The notice mail to `to` (the tenant's contact address).
fn notice(
    tenant: &Tenant,
    settings: &MailSettings,
    failure: &SettingsFailure,
    to: EmailAddress,
    at: DateTime<Utc>,
) -> Delivery {
    let domain = to.ascii_domain();
    Delivery::queued(
        tenant.id,
        NotificationKind::Custom,
        to,
        Locale::Ja,
        notice_message(tenant, settings, failure),
        MessageId::generate(&domain),
        at,
    )
    .via_platform()
}

/// The reply codes a notice names: the SMTP code and the enhanced code (`535 5.7.8`),
/// each once, and nothing of the server's text. An enhanced code that is not of the form
/// `class.subject.detail` is left out rather than quoted.
pub fn reply_codes(failure: &SettingsFailure) -> String {
    let enhanced = failure.enhanced_code.as_deref().filter(|code| {
        let parts: Vec<&str> = code.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let codes: Vec<String> = [failure.smtp_code.map(|c| c.to_string()), enhanced.map(str::to_owned)]
        .into_iter()
        .flatten()
        .collect();
    if codes.is_empty() {
        "-".to_owned()
    } else {
        codes.join(" ")
    }
}

/// What is likely wrong, for the hints a configuration failure gets.
fn cause(hint: Hint) -> (&'static str, &'static str) {
    match hint {
        Hint::WrongCredentials => (
            "ユーザー名またはパスワードが拒否されました。プロバイダー側でパスワードが変更された可能性があります。",
            "The user name or password was refused; it may have been changed at the provider.",
        ),
        Hint::GmailAppPassword => (
            "Gmail ではアプリパスワードが必要です（通常のパスワードやアプリパスワードの取り消し）。",
            "Gmail needs an app password (a normal password was used, or the app password was revoked).",
        ),
        Hint::Microsoft365SmtpAuthDisabled => (
            "Microsoft 365 でこのメールボックスの SMTP 認証が無効です。管理者に「認証済み SMTP」を有効にしてもらってください。",
            "Microsoft 365 has SMTP AUTH turned off for this mailbox; ask its administrator to enable Authenticated SMTP.",
        ),
        Hint::SenderNotAllowed => (
            "サーバーがこの送信元アドレスからの送信を許可していません。",
            "The server does not allow sending from this sender address.",
        ),
        Hint::PopBeforeSmtpSuggested => (
            "サーバーがメールの中継を拒否しました。送信の前のログイン（POP before SMTP または SMTP認証）が求められています。",
            "The server refused to relay: it wants a login first (POP before SMTP or SMTP authentication).",
        ),
        Hint::ReconnectMailbox => (
            "Microsoft または Google が、このメールボックスへのサインインを受け付けなくなりました（アクセスの取り消し・期限切れ・パスワード変更）。メールサーバーの画面で「再接続」してください。",
            "Microsoft or Google no longer accepts the sign-in for this mailbox (access revoked or expired, or the password changed). Choose \"Reconnect\" on the mail-server screen.",
        ),
        Hint::TokenRefused => (
            "サーバーがサインインのトークンを拒否しました。送信の権限、または組織によるアプリの承認をご確認のうえ、再接続してください。",
            "The server refused the sign-in's token. Check the mailbox's send rights or the organisation's approval of the app, then reconnect.",
        ),
        Hint::CertificateUntrusted | Hint::CertificateNameMismatch => (
            "サーバーの証明書を検証できなくなりました（期限切れ、またはホスト名との不一致）。",
            "The server's certificate no longer verifies (expired, or not for this host name).",
        ),
        _ => (
            "サーバーが認証または送信元を拒否しました。",
            "The server refused the authentication or the sender.",
        ),
    }
}

fn notice_message(tenant: &Tenant, settings: &MailSettings, failure: &SettingsFailure) -> RenderedMessage {
    let server = format!("{}:{}", settings.host().as_str(), settings.port().get());
    let reply = reply_codes(failure);
    let (ja, en) = cause(failure.hint);
    let name = tenant.name.as_str();
    let stage = failure.stage.code();
    let text = format!(
        "{name} のメールサーバー設定（{server}）で実際のメール送信が続けて失敗したため、この設定の使用を停止しました。\r\n\
         \r\n\
         失敗した段階: {stage}\r\n\
         応答コード: {reply}\r\n\
         考えられる原因: {ja}\r\n\
         \r\n\
         メールは失われていません。現在はプラットフォームの既定の送信元アドレスから送信しており、返信は停止した設定の送信元アドレスに届きます。\r\n\
         直し方: 「設定 > メールサーバー」で設定を修正して保存し、テストメールを送信してください。テストが成功すると、再びこの設定から送信されます。サーバーの応答全文もその画面で確認できます。\r\n\
         \r\n\
         このメールは、プラットフォームの運営者がこのサイトの連絡先として登録したアドレスに送信しています。\r\n\
         \r\n\
         ----\r\n\
         \r\n\
         Real deliveries through the mail server settings of {name} ({server}) kept failing, so they are no longer used.\r\n\
         \r\n\
         Stage: {stage}\r\n\
         Reply codes: {reply}\r\n\
         Likely cause: {en}\r\n\
         \r\n\
         No mail is lost: it now goes out from the platform's default sender address, and replies come to the sender address of the suspended settings.\r\n\
         To fix it: correct the settings under Settings > Mail server, save them and send a test mail. Once the test succeeds, mail goes out through them again. The server's full reply is shown on that screen.\r\n\
         \r\n\
         This mail goes to the address the platform's operators registered as this site's contact.\r\n"
    );
    RenderedMessage {
        subject: Subject::fixed("【重要】メールサーバー設定を停止しました / Your mail server settings were suspended"),
        text,
        html: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::SendStage;
    use crate::settings::MailSettingsDraft;

    fn tenant(contact: Option<&str>) -> Tenant {
        let at = Utc::now();
        Tenant {
            id: crate::tenant::TenantId::generate(),
            name: crate::tenant::TenantName::parse("Sakura").unwrap(),
            plan: crate::plan::Plan::Biz,
            contact_email: contact.map(|c| EmailAddress::parse(c).unwrap()),
            created_at: at,
            updated_at: at,
        }
    }

    fn settings() -> MailSettings {
        MailSettings::validate(
            &MailSettingsDraft {
                host: Some("smtp.example.jp".into()),
                port: Some(587),
                // Anyone's address: the admin typed it, nobody proved it.
                from_address: Some("stranger@victim.example".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap()
    }

    /// A 535 whose text is a phishing line, led by the enhanced code as servers write it.
    fn phishing_failure() -> SettingsFailure {
        SettingsFailure {
            at: Utc::now(),
            stage: SendStage::Auth,
            smtp_code: Some(535),
            enhanced_code: Some("5.7.8".into()),
            server_message: Some("5.7.8 Verify your bank details at https://phish.example/login".into()),
            hint: Hint::WrongCredentials,
        }
    }

    #[test]
    fn the_notice_goes_to_the_contact_through_the_platform_and_names_what_failed() {
        let tenant = tenant(Some("it@sakura.example"));
        let failure = phishing_failure();
        let s = suspension(&tenant, &settings(), 4, &failure, failure.at);
        assert_eq!(s.change.audit.action, AuditAction::MailSettingsSuspended);
        assert_eq!(s.change.audit.actor_subject, SYSTEM_ACTOR);
        let notice = s.notice.expect("a contact address gets the notice");
        assert!(notice.via_platform);
        assert_eq!(
            notice.to.as_str(),
            "it@sakura.example",
            "the contact, never the sender address"
        );
        assert_eq!(notice.tenant_id, tenant.id);
        let text = &notice.message.text;
        for needle in ["AUTH", "535 5.7.8", "smtp.example.jp:587", "パスワード", "password"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "CRLF line ends only");
    }

    #[test]
    fn the_notice_quotes_no_server_text_and_names_the_enhanced_code_once() {
        let failure = phishing_failure();
        let s = suspension(&tenant(Some("it@sakura.example")), &settings(), 4, &failure, failure.at);
        let text = s.notice.unwrap().message.text;
        for words in ["Verify", "bank", "phish.example", "https://", "stranger@victim.example"] {
            assert!(!text.contains(words), "{words}: {text}");
        }
        assert!(!text.contains("5.7.8 5.7.8"), "{text}");
        assert_eq!(text.matches("5.7.8").count(), 2, "once per language: {text}");
        // The audit entry keeps the reply for the tenant's screens.
        assert!(
            s.change
                .audit
                .changes
                .iter()
                .any(|c| matches!(c, FieldChange::Value { field, .. } if field == "serverMessage"))
        );
        // A malformed enhanced code is left out, not quoted.
        let odd = SettingsFailure {
            enhanced_code: Some("Verify-now".into()),
            ..phishing_failure()
        };
        assert_eq!(reply_codes(&odd), "535");
        let none = SettingsFailure {
            smtp_code: None,
            enhanced_code: None,
            ..phishing_failure()
        };
        assert_eq!(reply_codes(&none), "-");
    }

    #[test]
    fn without_a_contact_address_no_notice_is_mailed() {
        let failure = phishing_failure();
        let s = suspension(&tenant(None), &settings(), 4, &failure, failure.at);
        assert!(s.notice.is_none());
        assert_eq!(
            s.change.audit.action,
            AuditAction::MailSettingsSuspended,
            "the audit entry remains"
        );
    }
}
