//! What suspending a settings version writes besides its new state, decided here and
//! written by the store in the same transaction: the audit entry
//! (`MAIL_SETTINGS_SUSPENDED`, by Mailgate itself) and the notice mail that tells the
//! tenant what failed and how to fix it. The notice goes to the tenant's own sender
//! address through the platform default (`via_platform`), in Japanese and English (a
//! tenant has no language of its own).

use chrono::{DateTime, Utc};

use crate::access::Role;
use crate::audit::{AuditAction, AuditEntry};
use crate::delivery::{Delivery, DeliveryStatus, NotificationKind, RenderedMessage};
use crate::failure::Hint;
use crate::health::SettingsFailure;
use crate::i18n::Locale;
use crate::ids::{DeliveryId, MessageId};
use crate::mail::Subject;
use crate::settings::{FieldChange, MailSettings};
use crate::tenant::Tenant;

/// The subject the audit trail names for what Mailgate does by itself.
pub const SYSTEM_ACTOR: &str = "mailgate";

/// The writes that go with a version's suspension.
#[derive(Debug, Clone)]
pub struct Suspension {
    pub audit: AuditEntry,
    pub notice: Delivery,
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
    let to = settings.from_address().clone();
    let domain = to
        .as_str()
        .rsplit_once('@')
        .map_or("mailgate.invalid", |(_, d)| d)
        .to_owned();
    let notice = Delivery {
        id: DeliveryId::generate(),
        tenant_id: tenant.id,
        kind: NotificationKind::Custom,
        to,
        locale: Locale::Ja,
        message: notice_message(tenant, settings, failure),
        message_id: MessageId::generate(&domain),
        idempotency_key: None,
        status: DeliveryStatus::Queued,
        retries: 0,
        next_attempt_at: at,
        created_at: at,
        sent_at: None,
        failure_reason: None,
        claims: 0,
        via_platform: true,
        content_removed_at: None,
        recipient_hash: None,
        trace_parent: None,
        attempts: Vec::new(),
    };
    Suspension { audit, notice }
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
    let mut reply = String::new();
    for part in [
        failure.smtp_code.map(|c| c.to_string()),
        failure.enhanced_code.clone(),
        failure.server_message.clone(),
    ]
    .into_iter()
    .flatten()
    {
        if !reply.is_empty() {
            reply.push(' ');
        }
        reply.push_str(&part);
    }
    if reply.is_empty() {
        reply.push('-');
    }
    let (ja, en) = cause(failure.hint);
    let name = tenant.name.as_str();
    let stage = failure.stage.code();
    let from = settings.from_address().as_str();
    let text = format!(
        "{name} のメールサーバー設定（{server}）で実際のメール送信が続けて失敗したため、この設定の使用を停止しました。\r\n\
         \r\n\
         失敗した段階: {stage}\r\n\
         サーバーの応答: {reply}\r\n\
         考えられる原因: {ja}\r\n\
         \r\n\
         メールは失われていません。現在はプラットフォームの既定の送信元アドレスから送信しており、返信はこのアドレス（{from}）に届きます。\r\n\
         直し方: 「設定 > メールサーバー」で設定を修正して保存し、テストメールを送信してください。テストが成功すると、再びこの設定から送信されます。\r\n\
         \r\n\
         ----\r\n\
         \r\n\
         Real deliveries through the mail server settings of {name} ({server}) kept failing, so Mailgate stopped using them.\r\n\
         \r\n\
         Stage: {stage}\r\n\
         Server reply: {reply}\r\n\
         Likely cause: {en}\r\n\
         \r\n\
         No mail is lost: it now goes out from the platform's default sender address, and replies come to this address ({from}).\r\n\
         To fix it: correct the settings under Settings > Mail server, save them and send a test mail. Once the test succeeds, mail goes out through them again.\r\n"
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

    #[test]
    fn the_notice_goes_to_the_tenant_through_the_platform_and_names_what_failed() {
        let at = Utc::now();
        let tenant = Tenant {
            id: crate::tenant::TenantId::generate(),
            name: crate::tenant::TenantName::parse("Sakura").unwrap(),
            plan: crate::plan::Plan::Biz,
            created_at: at,
            updated_at: at,
        };
        let settings = MailSettings::validate(
            &MailSettingsDraft {
                host: Some("smtp.example.jp".into()),
                port: Some(587),
                from_address: Some("shop@example.jp".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let failure = SettingsFailure {
            at,
            stage: SendStage::Auth,
            smtp_code: Some(535),
            enhanced_code: Some("5.7.8".into()),
            server_message: Some("Authentication credentials invalid".into()),
            hint: Hint::WrongCredentials,
        };
        let s = suspension(&tenant, &settings, 4, &failure, at);
        assert_eq!(s.audit.action, AuditAction::MailSettingsSuspended);
        assert_eq!(s.audit.actor_subject, SYSTEM_ACTOR);
        assert!(s.notice.via_platform);
        assert_eq!(s.notice.to.as_str(), "shop@example.jp");
        assert_eq!(s.notice.tenant_id, tenant.id);
        let text = &s.notice.message.text;
        for needle in [
            "AUTH",
            "535 5.7.8 Authentication credentials invalid",
            "smtp.example.jp:587",
            "パスワード",
            "password",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "CRLF line ends only");
    }
}
