//! Every sentence Mailgate shows a person, one catalogue per language ([`en`], [`ja`]).
//! The domain returns codes and the values that go in a sentence; GraphQL and HTTP both
//! turn them into words here, in the caller's language, and nowhere else.

use std::borrow::Cow;

use domain::Role;
use domain::audit_value::AuditValue;
use domain::delivery::FailureCode;
use domain::discovery::Confidence;
use domain::error::FieldError;
use domain::mail::Hint;
use domain::probe::ProbeReport;
use domain::providers::ProviderHint;
use domain::sender::SenderReason;
use domain::sender_domain::{DomainFindings, DomainIssue, Verdict};
use domain::settings::SettingsWarning;
use domain::{Locale, Plan};

mod en;
mod ja;

/// Every input field a person may see named in a message, with its name in Japanese and
/// in English — the words the console's labels and the seed pages use. One list: the
/// catalogues read it, and a field missing here keeps its API name (a test lists the
/// fields the domain names and fails on one left out).
pub const FIELD_NAMES: &[(&str, &str, &str)] = &[
    ("serverKind", "サーバーの種類", "server type"),
    ("host", "ホスト名", "host name"),
    ("port", "サーバーのポート", "server port"),
    ("fromAddress", "送信元アドレス", "sender address"),
    ("fromName", "送信元の名前", "sender name"),
    ("encryption", "暗号化", "encryption"),
    ("smtpAuth", "SMTP認証", "SMTP authentication"),
    ("username", "ユーザー名", "user name"),
    ("password", "パスワード", "password"),
    ("localHostname", "ローカルホスト名", "local host name"),
    ("sendIntervalMs", "送信間隔", "send interval"),
    ("popBeforeSmtp.host", "POPホスト", "POP host"),
    ("popBeforeSmtp.port", "POPポート", "POP port"),
    ("popBeforeSmtp.username", "POPユーザー", "POP user"),
    ("popBeforeSmtp.password", "POPパスワード", "POP password"),
    ("popBeforeSmtp.tls", "POPのTLS", "POP TLS"),
    ("connectionId", "接続", "connection"),
    ("to", "宛先", "recipient"),
    ("code", "確認コード", "activation code"),
    ("name", "名前", "name"),
    ("nameContains", "名前で検索", "name search"),
    ("contactEmail", "連絡先メールアドレス", "contact address"),
    ("plan", "プラン", "plan"),
    ("url", "送信先URL", "URL"),
    ("description", "説明", "description"),
    ("eventTypes", "イベントの種類", "event types"),
    ("secret", "署名用シークレット", "signing secret"),
    ("overlapMinutes", "旧シークレットを受け付ける時間", "overlap"),
    ("perMinute", "1分あたりの上限", "limit per minute"),
    ("perDay", "1日あたりの上限", "limit per day"),
    ("mailbox", "メールボックス", "mailbox"),
    ("directoryId", "組織のテナントID", "directory (tenant) ID"),
    ("clientId", "クライアントID", "client ID"),
    ("clientSecret", "クライアントシークレット", "client secret"),
    ("tokenUrl", "トークンURL", "token URL"),
    ("scope", "スコープ", "scope"),
    ("tenantId", "テナント", "tenant"),
    ("subject", "件名", "subject"),
    ("text", "本文（テキスト）", "text body"),
    ("html", "本文（HTML）", "HTML body"),
    ("idempotencyKey", "冪等キー", "idempotency key"),
    ("kind", "種類", "kind"),
    ("locale", "言語", "language"),
    ("variables", "変数", "variables"),
    ("domain", "ドメイン", "domain"),
    ("input", "入力", "input"),
    // Arguments of paged lists.
    ("first", "表示件数", "page size"),
    ("after", "続きの位置", "cursor"),
    // Named in the audit trail.
    ("version", "設定のバージョン", "settings version"),
    ("provenBy", "確認の方法", "proven by"),
    ("result", "結果", "result"),
    ("stage", "失敗した段階", "stage that failed"),
    ("hintCode", "原因", "cause"),
    ("smtpCode", "SMTP応答コード", "SMTP reply code"),
    ("serverMessage", "サーバーの応答", "server's reply"),
    ("found", "見つかった組み合わせ", "what was found"),
    ("auth", "ログイン", "login"),
    (
        "recipientHash",
        "宛先（保存期間後の照合用）",
        "recipient (kept for matching only)",
    ),
];

/// What an audit entry's action did, in `locale`.
pub fn audit_action(action: domain::audit::AuditAction, locale: Locale) -> &'static str {
    use domain::audit::AuditAction as A;
    match (locale, action) {
        (Locale::Ja, A::TenantCreated) => "テナントを作成しました",
        (Locale::Ja, A::PlanChanged) => "プランを変更しました",
        (Locale::Ja, A::MailSettingsSaved) => "メールサーバーの設定を保存しました",
        (Locale::Ja, A::MailSettingsCleared) => "メールサーバーの設定をクリアしました",
        (Locale::Ja, A::TestMailSent) => "テストメールを送信しました",
        (Locale::Ja, A::MailSettingsLive) => "設定が有効になりました",
        (Locale::Ja, A::MailSettingsSuspended) => "送信の失敗が続いたため、設定を停止しました",
        (Locale::Ja, A::EnqueueQuotaChanged) => "送信受付の上限を変更しました",
        (Locale::Ja, A::MailServerProbed) => "メールサーバーを自動で確認しました",
        (Locale::Ja, A::TenantContactChanged) => "連絡先メールアドレスを変更しました",
        (Locale::En, A::TenantCreated) => "Created the tenant",
        (Locale::En, A::PlanChanged) => "Changed the plan",
        (Locale::En, A::MailSettingsSaved) => "Saved the mail server settings",
        (Locale::En, A::MailSettingsCleared) => "Cleared the mail server settings",
        (Locale::En, A::TestMailSent) => "Sent a test mail",
        (Locale::En, A::MailSettingsLive) => "The settings went live",
        (Locale::En, A::MailSettingsSuspended) => "Suspended the settings after repeated failures",
        (Locale::En, A::EnqueueQuotaChanged) => "Changed the enqueue quota",
        (Locale::En, A::MailServerProbed) => "Probed the mail server",
        (Locale::En, A::TenantContactChanged) => "Changed the contact address",
    }
}

/// The name of `field` in `locale` (its API name if it is not in [`FIELD_NAMES`]).
pub fn field_name(field: &str, locale: Locale) -> &str {
    FIELD_NAMES
        .iter()
        .find(|(api, _, _)| *api == field)
        .map_or(field, |(_, ja, en)| match locale {
            Locale::Ja => ja,
            Locale::En => en,
        })
}

/// Something to say.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    // The errors of the contract, by code.
    Unauthenticated,
    Forbidden,
    NotFound,
    ValidationFailed,
    VersionConflict,
    RateLimited,
    SettingsUnreadable,
    Overloaded,
    IdempotencyKeyReused,
    Timeout,
    Internal,
    /// An internal error, with the correlation id the log carries.
    InternalReference(&'a str),
    PlanForbidsCustomSender(Plan),
    /// One wrong field of an input.
    Field(&'a FieldError),
    // Arguments the API itself checks.
    PageSizeOutOfRange,
    CursorInvalid,
    LocaleInvalid,
    VariablesNotObject,
    // Requests refused before GraphQL runs.
    ContentTypeNotJson,
    BodyTooLarge,
    BodyNotGraphql,
    BatchSize,
    /// Anonymous callers send one operation per request.
    AnonymousBatch,
    /// An anonymous caller's response would be larger than the cap (KiB).
    AnonymousResponseTooLarge {
        kib: usize,
    },
    /// A GET of `/graphql` where GraphiQL is off.
    UsePost,
    // Values the domain decided.
    Hint(Hint),
    Warning(SettingsWarning),
    SenderReason(SenderReason),
    ProviderHint(ProviderHint),
    /// What a probe found, in one sentence.
    ProbeSummary(&'a ProbeReport),
    /// The sender-domain verdict, and one issue it found (with the findings it names).
    Verdict(Verdict),
    DomainIssue(DomainIssue, &'a DomainFindings),
    /// What a discovery step found.
    DiscoveryConfidence(Confidence),
    /// Why a delivery failed for good.
    Failure(FailureCode),
    /// A value in an audit entry's changes, in words.
    AuditValue(AuditValue<'a>),
    /// Who made an audit entry: the role and the token's subject, or the system itself.
    AuditActor {
        role: Role,
        subject: &'a str,
    },
}

/// `text` in `locale`.
pub fn say(text: Text<'_>, locale: Locale) -> Cow<'static, str> {
    match locale {
        Locale::En => en::text(text),
        Locale::Ja => ja::text(text),
    }
}

/// The plans that may send from the tenant's own server, in the plans' order (the plan
/// gate decides; a sentence never names them by hand).
fn permitting_plans() -> impl Iterator<Item = Plan> {
    Plan::ALL.into_iter().filter(|p| p.can_override_sender())
}

/// `587 + STARTTLS`, `465 + SSL`, `25` (no encryption).
fn pair_name(port: u16, encryption: domain::settings::Encryption) -> String {
    match encryption {
        domain::settings::Encryption::None => port.to_string(),
        e => format!("{port} + {}", e.code()),
    }
}

/// The working pair first, then each failed pair with a short reason, in `locale`'s words.
fn probe_summary(
    report: &ProbeReport,
    works: &str,
    none_works: &str,
    plain: &str,
    reason: fn(Hint) -> &'static str,
) -> String {
    let mut parts = Vec::new();
    match report.best() {
        Some(best) if best.encryption == domain::settings::Encryption::None => {
            parts.push(format!("{} {works} ({plain})", pair_name(best.port, best.encryption)));
        }
        Some(best) => parts.push(format!("{} {works}", pair_name(best.port, best.encryption))),
        None => parts.push(none_works.to_owned()),
    }
    for p in &report.pairs {
        if let Err(f) = &p.outcome {
            let hint = domain::mail::diagnose(f, None).hint;
            parts.push(format!("{}: {}", pair_name(p.port, p.encryption), reason(hint)));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string literal an error constructor is called with first, after `call` (in
    /// `source`), e.g. `host` in `FieldError::new("host", …)`.
    fn first_literals<'a>(source: &'a str, call: &str) -> Vec<&'a str> {
        source
            .match_indices(call)
            .filter_map(|(at, _)| {
                let rest = source[at + call.len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                let (literal, _) = rest.split_once('"')?;
                // A field's API name: `host`, `popBeforeSmtp.port` (not this test's text).
                let name = !literal.is_empty() && literal.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
                name.then_some(literal)
            })
            .collect()
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every field an error names by a literal anywhere in the workspace's crates has its
    /// words in both languages, so a Japanese message never names a field by its API name
    /// (「nameは必須です」). Fields named through a variable are listed where the variable
    /// is made (`perMinute`, `perDay`) and checked by the API suite's messages.
    #[test]
    fn every_field_an_error_names_has_its_words() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in std::fs::read_dir(&crates).expect("crates directory") {
            let src = krate.expect("crate").path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut files);
            }
        }
        let mut named = std::collections::BTreeSet::new();
        for file in &files {
            let source = std::fs::read_to_string(file).expect("readable source");
            for call in ["FieldError::new(", "validation_error("] {
                named.extend(first_literals(&source, call).into_iter().map(str::to_owned));
            }
        }
        assert!(named.len() > 20, "the scan found too few fields to be right: {named:?}");
        let missing: Vec<_> = named
            .iter()
            .filter(|f| !FIELD_NAMES.iter().any(|(api, _, _)| api == f))
            .collect();
        assert!(missing.is_empty(), "fields without words in FIELD_NAMES: {missing:?}");
        for (api, ja, en) in FIELD_NAMES {
            assert!(!ja.is_empty() && !en.is_empty(), "{api}");
            assert_ne!(ja, api, "{api} keeps its API name in Japanese");
            assert_eq!(field_name(api, Locale::Ja), *ja);
        }
    }
}
