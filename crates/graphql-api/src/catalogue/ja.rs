//! The Japanese (日本語) catalogue: every sentence Mailgate shows a person in Japanese.

use std::borrow::Cow;

use domain::Plan;
use domain::Role;
use domain::audit_value::{AuditValue, Found, Limit, Outcome, Proof};
use domain::delivery::FailureCode;
use domain::discovery::Confidence;
use domain::error::FieldCode;
use domain::failure::SendStage;
use domain::mail::Hint;
use domain::providers::Provider;
use domain::providers::ProviderHint;
use domain::sender::SenderReason;
use domain::sender_domain::{DomainFindings, DomainIssue, Verdict};
use domain::server::{Encryption, ServerKind};
use domain::settings::SettingsWarning;
use domain::suspension::SYSTEM_ACTOR;

use super::Text;

/// The sentence for `text`.
pub(super) fn text(text: Text<'_>) -> Cow<'static, str> {
    match text {
        Text::Unauthenticated => "認証が必要です。有効なトークンを送信してください。".into(),
        Text::Forbidden => "この操作を行う権限がありません。".into(),
        Text::NotFound => "見つかりません。".into(),
        Text::ValidationFailed => "入力内容に誤りがあります。".into(),
        Text::VersionConflict => "設定が他の人によって変更されました。再読み込みしてからもう一度お試しください。".into(),
        Text::RateLimited => "リクエストが多すぎます。しばらくしてからお試しください。".into(),
        Text::IdempotencyKeyReused => "この冪等キーは内容の異なる別の通知（種類・宛先・言語・変数・本文のいずれか）に使用済みです。新しい通知には新しいキーを指定してください。".into(),
        Text::Overloaded => "サーバーが混み合っています。しばらくしてからもう一度お試しください。".into(),
        Text::Timeout => "処理に時間がかかりすぎたため中断しました。変更の操作だった場合は、反映されたかどうかを確認してからもう一度お試しください。".into(),
        Text::SettingsUnreadable => "保存されたメールサーバー設定を読み取れません（運営者にはログで通知されています）。パスワードを含むすべての設定を保存し直すか、設定をクリアするまで、メールは送信を待ちます。".into(),
        Text::Internal => "内部エラーが発生しました。".into(),
        Text::InternalReference(id) => format!("内部エラーが発生しました（参照番号 {id}）。").into(),
        Text::PlanForbidsCustomSender(plan) => format!(
            "{}では送信元メールアドレスを変更できません。メールサーバーと送信元を変更できるのは{}のみです。",
            plan_name(plan),
            permitting_plans()
        )
        .into(),
        Text::Field(f) => format!("{}{}。", super::field_name(f.field, domain::Locale::Ja), field(f.code)).into(),
        Text::PageSizeOutOfRange => "表示件数は1から100の間で指定してください。".into(),
        Text::CursorInvalid => "続きの位置（カーソル）が正しくありません。".into(),
        Text::LocaleInvalid => "言語は ja（日本語）または en（英語）にしてください。".into(),
        Text::VariablesNotObject => "変数はJSONオブジェクトにしてください。".into(),
        Text::ContentTypeNotJson => "Content-Type は application/json にしてください。".into(),
        Text::BodyTooLarge => "リクエスト本文が大きすぎます。".into(),
        Text::BodyNotGraphql => "本文がGraphQLリクエストではありません。\"query\" を含むJSONを送信してください。".into(),
        Text::BatchSize => "一度に送信できる操作の数を超えています。".into(),
        Text::AnonymousBatch => "複数の操作を一度に送信するにはサインインしてください。".into(),
        Text::AnonymousResponseTooLarge { kib } => {
            format!("応答が{kib} KiBを超えます。サインインするか、取得する項目を減らしてください。").into()
        }
        Text::UsePost => "GraphQLの操作はJSON本文付きのPOSTで送信してください。".into(),
        Text::Hint(h) => hint(h).into(),
        Text::Warning(w) => warning(w).into(),
        Text::SenderReason(r) => sender_reason(r).into(),
        Text::ProviderHint(h) => provider_hint(h).into(),
        Text::Verdict(v) => verdict(v).into(),
        Text::DomainIssue(i, f) => domain_issue(i, f).into(),
        Text::DiscoveryConfidence(c) => confidence(c).into(),
        Text::Failure(code) => failure(code).into(),
        Text::AuditValue(v) => audit_value(v),
        Text::AuditActor { role, subject } => audit_actor(role, subject).into(),
        Text::ProbeSummary(r) => super::probe_summary(r, "で送信できます", "使える組み合わせがありません", "暗号化なし", probe_reason).into(),
    }
}

/// What is wrong with a field (the field's name goes in front).
fn field(code: FieldCode) -> &'static str {
    match code {
        FieldCode::Required => "は必須です",
        FieldCode::TooLong => "が長すぎます",
        FieldCode::ControlCharacters => "に制御文字（改行・タブなど）は使えません",
        FieldCode::InvalidFormat => "の形式が正しくありません",
        FieldCode::OutOfRange => "が範囲外です",
        FieldCode::InvalidType => "の型が正しくありません",
        FieldCode::NotFailed => "は失敗した配信ではありません。再送できるのは失敗した配信のみです",
        FieldCode::PortNotAllowed => "は使用できないポートです（通常は25、465、587、2525）",
        FieldCode::PasswordReentryRequired => "はサーバーまたはユーザー名が変わったため、もう一度入力してください",
        FieldCode::AddressLiteral => "にはIPアドレスではなくドメイン名を指定してください",
        FieldCode::MaskedPassword => {
            "が伏せ字（********など）だけになっています。保存済みのパスワードを使う場合は空欄のままにし、変更する場合は実際のパスワードを入力してください"
        }
        FieldCode::ActivationCodeInvalid => {
            "が最後のテストメールのコードと一致しません。保存済みの設定でテストメールを送信し、届いたコードを入力してください"
        }
        FieldCode::ActivationCodeExpired => "の有効期限（30分）が切れています。テストメールをもう一度送信してください",
        FieldCode::AlreadyLive => "は不要です。保存済みの設定はすでに有効です",
        FieldCode::ContentRemoved => "は保存期間を過ぎて内容が削除されているため、再送できません",
        FieldCode::ForbiddenAddress => {
            "は内部アドレス（ループバック、プライベートネットワーク、リンクローカル、メタデータサービス）のため、送信先に使えません"
        }
        FieldCode::HostNotOfPreset => {
            "はこのサーバー種別のホストではありません。ホスト名のテンプレートの部分を埋めるか、サーバー種別に「カスタム」を選んでください"
        }
        FieldCode::UnknownTenant => "に該当するテナントがありません",
        FieldCode::NotWithConnection => {
            "は空にしてください。この設定は Microsoft または Google のサインインで認証するため、パスワードは使わず保存もしません"
        }
        FieldCode::UnknownConnection => "はこのテナントの接続ではありません。先にメールボックスを接続してください",
        FieldCode::ConnectionNotActive => "の接続は、もう一度サインインするまで送信できません。先に再接続してください",
        FieldCode::SignInNotConfigured => {
            "は使えません。プラットフォーム運営者がこのプロバイダーのサインインを設定していません"
        }
        FieldCode::SignInExpired => {
            "の有効期限が切れました（サインインは10分以内に完了する必要があります）。最初からやり直してください"
        }
        FieldCode::SignInInvalid => {
            "は、このテナントでお客様が開始したサインインではないか、すでに使われています。最初からやり直してください"
        }
        FieldCode::SignInRefused => {
            "はプロバイダーに拒否されました（サインインの取り消しまたは失敗）。最初からやり直してください"
        }
        FieldCode::ConsentRequired => {
            "には管理者の承認が必要です。管理者に管理者同意のリンクを送り、承認後にもう一度サインインしてください"
        }
        FieldCode::ReturnUrlNotAllowed => "は、プラットフォーム運営者が許可した戻り先ではありません",
        FieldCode::EncryptionRequired => {
            "は STARTTLS または SSL にしてください。サインインのトークンは暗号化なしでは送信しません"
        }
        FieldCode::OrganisationNotProven => {
            "の組織には、このサイトの管理者がまだサインインしていません。先にその組織のメールボックスを一度サインインで接続（「Microsoft で接続」「Google で接続」）してから、サインインなしの接続を設定してください"
        }
        FieldCode::OwnServerRequired => {
            "の前に、独自のメールサーバー（サーバーの種類「カスタム」、STARTTLS または SSL）を保存してください。トークンはそのサーバーに送られます"
        }
        FieldCode::MailboxUnknown => {
            "からサインインしたメールボックスがわかりませんでした。メールアドレスのあるアカウントでサインインしてください"
        }
    }
}

fn hint(hint: Hint) -> &'static str {
    match hint {
        Hint::WrongCredentials => {
            "ユーザー名またはパスワードが正しくありません。両方をご確認ください。多くのプロバイダーではユーザー名にメールアドレス全体を使います。"
        }
        Hint::GmailAppPassword => {
            "Gmailではアプリパスワードが必要です。Googleアカウントで2段階認証を有効にし、アプリパスワードを作成してパスワード欄に入力してください。"
        }
        Hint::Microsoft365SmtpAuthDisabled => {
            "Microsoft 365 がこのメールボックスの SMTP 認証を拒否しました（550 5.7.30 または 535 5.7.139）。2026年12月末から Microsoft は既定でパスワードを受け付けません。「Microsoft で接続」を選び、このメールボックスでサインインしてください（パスワードは保存されず、Microsoft Graph 経由なら SMTP 認証は無効のままで構いません）。または Microsoft 365 の管理者に `Set-CASMailbox -Identity <メールボックス> -SmtpClientAuthenticationDisabled $false` を実行してもらってください。"
        }
        Hint::SenderNotAllowed => {
            "このアカウントではこの送信元アドレスから送信できません。アカウントに属するアドレスを使うか、プロバイダー側で許可してください。"
        }
        Hint::PopBeforeSmtpSuggested => {
            "サーバーがメールの中継を拒否しました（Relay access denied）。送信元アドレスの問題ではなく、このサーバーは送信の前にログインを求めています。プロバイダーの案内に「POP before SMTP」とあれば、POP before SMTP の欄（POPサーバー、ユーザー名、パスワード）を入力してください。そうでなければ SMTP認証 をオンにして、ユーザー名とパスワードを入力してください。"
        }
        Hint::RecipientRejected => {
            "送信先アドレスが拒否されました。テスト用アドレス、またはサーバーが他ドメインへの中継を許可しているかをご確認ください。"
        }
        Hint::TlsModeMismatch => {
            "暗号化方式とポートが合っていません。ポート465ではSSL、ポート587ではSTARTTLS（tls）を選んでください。"
        }
        Hint::StartTlsNotOffered => {
            "サーバーがSTARTTLSに対応していないため、送信しませんでした。ポート465のサーバーならSSLを選ぶか、ポートをご確認ください。"
        }
        Hint::CertificateNameMismatch => {
            "サーバー証明書のホスト名が一致しません。プロバイダーの案内にあるホスト名を入力してください。"
        }
        Hint::CertificateUntrusted => "サーバー証明書が信頼できません（自己署名、期限切れ、または不明な認証局）。",
        Hint::ConnectionRefused => "このポートへの接続が拒否されました。ホスト名とポートをご確認ください。",
        Hint::TimedOut => {
            "サーバーから時間内に応答がありませんでした。ホスト名とポートをご確認ください。ポート465の場合はSSLを選んでください。"
        }
        Hint::PopLoginFailed => {
            "POP before SMTPのログインに失敗しました。POPサーバー、ポート、ユーザー名、パスワードをご確認ください。"
        }
        Hint::HostNotFound => "ホスト名が見つからないか、使用できないアドレスを指しています。綴りをご確認ください。",
        Hint::ForbiddenAddress => "このホストは内部ネットワークのアドレスを指しているため使用できません。",
        Hint::PortNotAllowed => "このポートは使用できません。25、465、587、2525のいずれかを使ってください。",
        Hint::AuthNotOffered => {
            "サーバーが利用可能な認証方式を提供していません。認証が不要ならSMTP認証をオフにし、必要なら暗号化を有効にしてください。"
        }
        Hint::TemporaryFailure => "サーバーで一時的な問題が発生しています。数分後にもう一度お試しください。",
        Hint::ProtocolViolation => {
            "サーバーの応答がSMTPの規則に合っていないため（許される長さを大きく超える応答、または送ってはならないデータ）、接続を終了しました。ホスト名とポートをご確認ください。メールサーバーの送信用ポートではない可能性があります。"
        }
        Hint::SmtpUtf8NotSupported => {
            "アドレスの @ より前に ASCII 以外の文字があり、このメールサーバーはそのようなアドレスを受け付けません（SMTPUTF8 に対応していません）。ASCII のアドレスを使うか、SMTPUTF8 に対応したサーバーを使ってください。"
        }
        Hint::ReconnectMailbox => {
            "Microsoft または Google が、このメールボックスへのサインインを受け付けなくなりました（アクセスの取り消し・期限切れ、パスワード変更、同意の取り消し）。「再接続」でもう一度サインインするまで、メールはプラットフォームのアドレスから、返信先をお客様のアドレスにして送信されます。"
        }
        Hint::TokenRefused => {
            "新しいトークンに替えても、サーバーがサインインのトークンを拒否しました。サインインしたアカウントにこのメールボックスから送信する権限（SendAs）があるか、Microsoft 365 の SMTP ならこのメールボックスの SMTP 認証が有効かをご確認ください。Microsoft Graph で接続し直す方法もあります。"
        }
        Hint::SignInSetup => {
            "Microsoft または Google が、プラットフォームのサインイン用アプリを拒否しています（クライアントシークレットの期限切れなど）。お客様の設定に問題はありません。プラットフォーム運営者が修正すると、待機中のメールは送信されます。"
        }
        Hint::ProviderThrottled => {
            "プロバイダーがこのメールボックスの送信速度を制限しているか、応答しませんでした。メールは待機し、あとで再送されます。Microsoft 365 はメールボックスあたり毎分約30通、Gmail は1日数百〜2,000通が目安です。"
        }
        Hint::Other => "サーバーがメールを拒否しました。上記のサーバー応答をご確認ください。",
    }
}

fn warning(warning: SettingsWarning) -> &'static str {
    match warning {
        SettingsWarning::Port465WithStartTls => "ポート465は通常SSL（暗黙のTLS）を使います。STARTTLSではありません。",
        SettingsWarning::Port587WithSsl => "ポート587は通常STARTTLS（tls）を使います。SSLではありません。",
        SettingsWarning::PasswordWithoutEncryption => {
            "パスワードが暗号化されずに送信されます。サーバーが対応していればSSLまたはSTARTTLSを選んでください。"
        }
        SettingsWarning::HostNotResolved => {
            "このホスト名は、送信に使えるメールサーバーとして見つかりませんでした。設定は保存されています（DNS の反映が遅れることがあります）。綴りを確認し、テストメールを送信してください。"
        }
        SettingsWarning::PopHostNotResolved => {
            "POP サーバーのホスト名が、使えるサーバーとして見つかりませんでした。設定は保存されています（DNS の反映が遅れることがあります）。綴りを確認し、テストメールを送信してください。"
        }
        SettingsWarning::SenderDomainAtRisk => {
            "送信元ドメインの SPF・DKIM・DMARC がこのサーバーを十分にカバーしていません。迷惑メールに振り分けられるおそれがあり、Gmail と Yahoo はこれらのない大量送信を拒否します。追加すべきレコードは送信元ドメインの確認で表示されます。"
        }
        SettingsWarning::SenderDomainWillFail => {
            "送信元ドメインの DMARC ポリシーにより、このサーバーからのメールは拒否または隔離されます（SPF も DKIM も合格しません）。このサーバーを使う前に、送信元ドメインの確認で表示されるレコードを追加してください。"
        }
        SettingsWarning::SenderNotSignedInMailbox => {
            "送信元アドレスがサインインしたメールボックスと異なります。そのアカウントにこのアドレスで送信する権限（共有メールボックス、SendAs）がある場合のみ送信できます。テストメールで確認できます。"
        }
        SettingsWarning::RecipientInSenderDomain => {
            "テストの宛先が送信元と同じドメインです。サーバー内で配送されるだけのことがあり、外部への送信の確認になりません。別のドメインのアドレス（フリーメールなど）を使ってください。"
        }
    }
}

fn sender_reason(reason: SenderReason) -> String {
    match reason {
        SenderReason::CustomSettingsActive(p) => format!("テナント独自のメールサーバーを使用しています（{}）", plan_name(p)),
        SenderReason::NoSettingsSaved => "メールサーバー設定が保存されていません".to_owned(),
        SenderReason::PendingVerification => "保存した設定は、その設定でのテストメール送信が成功するまで有効になりません。それまではこの既定のアドレスから送信されます".to_owned(),
        SenderReason::Suspended => "メールサーバーが保存済みの設定を繰り返し拒否したため、この既定のアドレスから送信し、返信先をテナントのアドレスにしています。設定を修正して保存し、テストメールを送信してください".to_owned(),
        SenderReason::PlanForbids {
            plan,
            settings_saved: false,
        } => format!("{}では送信元を変更できません", plan_name(plan)),
        SenderReason::PlanForbids {
            plan,
            settings_saved: true,
        } => format!("{}では送信元を変更できないため、保存済みの設定は無効になっています", plan_name(plan)),
        SenderReason::SettingsUnreadable => "保存済みの設定を読み取れないため、メールは送信されずに待機しています。パスワードを含めて保存し直すか、設定をクリアするとこの既定のアドレスから送信されます".to_owned(),
    }
}

fn provider_hint(hint: ProviderHint) -> &'static str {
    match hint {
        ProviderHint::AppPassword => {
            "このプロバイダーはSMTPでアカウントのパスワードを受け付けません。2段階認証を有効にしてアプリパスワードを作成し、それをパスワードに入力してください。"
        }
        ProviderHint::SmtpAuthPerMailbox => {
            "Microsoft 365 では SMTP AUTH が既定で無効です。管理者がこのメールボックスの「認証済み SMTP」を有効にする必要があります（Microsoft 365 管理センター > ユーザー > メール > メール アプリの管理）。"
        }
        ProviderHint::BasicAuthRetiring => {
            "Microsoft はパスワード（基本認証）による SMTP AUTH を廃止しつつあります。2027年以降に作成されたテナントと、管理者が再び有効にしていない既存のテナントは、550 5.7.30 または 535 5.7.139 でパスワードを拒否します。管理者にテナントとメールボックスの SMTP AUTH を許可してもらうか、別のサーバー（Amazon SES や SendGrid など）から送信してください。"
        }
        ProviderHint::PasswordLoginRemoved => {
            "Microsoft は 2024年9月に Outlook.com の SMTP でのパスワードによるログインを廃止しました。サーバーは OAuth2 によるログインしか受け付けず、この画面のパスワードでは送信できません。別のサーバー（独自ドメインのメールサーバー、Amazon SES、SendGrid など）から送信してください。"
        }
        ProviderHint::ApiKeyAsPassword => {
            "ユーザー名に apikey という語を、パスワードに「Mail Send」権限のある API キーを入力してください。先に送信者の認証（Single Sender またはドメイン認証）を済ませてください。"
        }
        ProviderHint::SesCredentialsAndSandbox => {
            "Amazon SES のコンソールでリージョンごとの SMTP 認証情報を作成してください（AWS のアクセスキーとは別物です）。新しいアカウントはサンドボックスにあり、本番利用が許可されるまで検証済みのアドレスにしか送信できません。"
        }
        ProviderHint::VerifiedSenderRequired => {
            "このプロバイダーから送信するには、送信元アドレスまたはそのドメインを事前にプロバイダーで認証しておく必要があります。"
        }
        ProviderHint::OutboundPort25Blocked => {
            "このプロバイダーのネットワーク外からの25番ポートは遮断されています（OP25B）。587番または465番ポートを使ってください。"
        }
        ProviderHint::FromMustBeMailbox => {
            "送信元アドレスはこのメールボックス自身のアドレス（または登録済みのエイリアス）である必要があります。それ以外のアドレスは拒否されるか書き換えられます。"
        }
    }
}

/// A short reason a probed pair failed.
fn probe_reason(hint: Hint) -> &'static str {
    match hint {
        Hint::ConnectionRefused => "接続拒否",
        Hint::TimedOut => "応答なし",
        Hint::TlsModeMismatch => "このポートと暗号化が合いません",
        Hint::StartTlsNotOffered => "STARTTLS 非対応",
        Hint::CertificateNameMismatch => "別名の証明書",
        Hint::CertificateUntrusted => "信頼できない証明書",
        Hint::PortNotAllowed => "利用できないポート",
        Hint::HostNotFound => "ホストが見つかりません",
        Hint::ForbiddenAddress => "内部アドレス",
        Hint::ProtocolViolation => "SMTP サーバーではありません",
        Hint::TemporaryFailure => "一時的なエラー",
        _ => "失敗",
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => {
            "SPF と DKIM がドメインと一致して合格し、DMARC も公開されています。受信側はこの送信元を信頼できます。"
        }
        Verdict::AtRisk => "おそらく受信されますが危険があります。受信側が確認する項目が欠けています（問題点を参照）。",
        Verdict::WillFail => {
            "受信側はこのメールを拒否または隔離します。ドメインの DMARC ポリシーが求める SPF・DKIM が合格しません。"
        }
        Verdict::Unknown => {
            "DNS が時間内に応答しなかったため、一部のレコードを調べられませんでした（「見つからない」とは限りません）。しばらくしてからもう一度確認してください。"
        }
    }
}

fn confidence(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "既知のプロバイダー情報",
        Confidence::Medium => "ドメインが公開している情報",
        Confidence::Low => "推定（ホスト名のうち、あなたしか知らない部分を入力してください）",
    }
}

fn domain_issue(issue: DomainIssue, f: &DomainFindings) -> String {
    let server = f.provider.unwrap_or("このサーバー");
    let d = &f.domain;
    match issue {
        DomainIssue::SpfMissing => format!(
            "{d} は SPF レコードを公開していないため、受信側は {server} が {d} のメールを送ってよいか判断できません。"
        ),
        DomainIssue::SpfNotAllowed => format!(
            "{d} の SPF レコードが {server} を許可していません。このメールの SPF は不合格（または neutral）になります。"
        ),
        DomainIssue::SpfError => format!(
            "{d} の SPF レコードを評価できません（構文の誤り、参照回数の超過、または DNS の障害）。受信側はエラーとして扱います。"
        ),
        DomainIssue::SpfNotAligned => format!(
            "{server} は独自のエンベロープドメインで送信するため、SPF は {d} ではなくそのドメインで合格します。{server} で {d} 配下のカスタム MAIL FROM（Return-Path）ドメインを設定するか、DKIM で合格させてください。"
        ),
        DomainIssue::DkimMissing => format!(
            "{d} に {server} の DKIM 公開鍵がありません（確認したセレクター: {}）。{server} で {d} の DKIM 署名を有効にし、表示されるレコードを公開してください。",
            f.dkim_selectors.join(", ")
        ),
        DomainIssue::DkimUnknown => format!(
            "{server} は既知のプロバイダーではないため、{d} の DKIM 鍵で署名するかは DNS からは分かりません。プロバイダーに確認してください。"
        ),
        DomainIssue::DmarcMissing => format!(
            "{d} は DMARC レコードを公開していません。Gmail と Yahoo は大量送信者に DMARC を求めています。まず p=none で公開してください。"
        ),
        DomainIssue::DmarcPolicyNone => {
            format!("{d} の DMARC ポリシーは p=none です。受信側に何も求めないため、{d} を騙るメールも止まりません。")
        }
        DomainIssue::DnsUnanswered => format!(
            "{d} の DNS が時間内に応答しなかったため、SPF・DKIM・DMARC の一部を調べられませんでした。レコードが無いという意味ではありません。しばらくしてからもう一度確認してください。"
        ),
        DomainIssue::DmarcWillFail => format!(
            "{d} の DMARC ポリシーは quarantine または reject で、{server} 経由のメールは SPF も DKIM もドメインと一致して合格しません。受信側は拒否するか迷惑メールにします。"
        ),
    }
}

/// Why a delivery failed for good (a refusal's stage, code and reply follow it).
fn failure(code: FailureCode) -> &'static str {
    match code {
        FailureCode::Expired => "再試行の期限まで送信できませんでした",
        FailureCode::TenantMissing => "送信元のサイトが削除されています",
        FailureCode::InvalidStoredData => "保存されたデータを読み取れませんでした",
        FailureCode::Abandoned => "送信を試みた処理が結果を残さずに何度も止まりました",
        FailureCode::Refused => "送信先のサーバーが受け付けませんでした",
    }
}

/// A plan's name as the seed page writes it.
pub(super) fn plan_name(plan: Plan) -> &'static str {
    match plan {
        Plan::Economy => "エコノミープラン",
        Plan::Basic => "ベーシックプラン",
        Plan::Pro => "プロプラン",
        Plan::Share => "シェアプラン",
        Plan::Biz => "SHARE info Biz（法人向け専用サーバープラン）",
    }
}

/// The plans that may use their own server, named and joined: 「シェアプランと…」.
fn permitting_plans() -> String {
    super::permitting_plans().map(plan_name).collect::<Vec<_>>().join("と")
}

/// A value of an audit entry's changes in words.
fn audit_value(value: AuditValue<'_>) -> Cow<'static, str> {
    match value {
        AuditValue::Plan(p) => plan_name(p).into(),
        AuditValue::Switch(true) => "オン".into(),
        AuditValue::Switch(false) => "オフ".into(),
        AuditValue::Encryption(e) => encryption(e).into(),
        AuditValue::ServerKind(ServerKind::Custom) => "カスタムサーバー".into(),
        AuditValue::ServerKind(kind) => Provider::of_kind(kind).map_or(kind.code(), |p| p.name).into(),
        AuditValue::Stage(s) => stage(s).into(),
        AuditValue::Hint(h) => hint(h).into(),
        AuditValue::IntervalMs(0) => "間隔なし".into(),
        AuditValue::IntervalMs(ms) if ms % 60_000 == 0 => format!("{}分", ms / 60_000).into(),
        AuditValue::IntervalMs(ms) if ms % 1000 == 0 => format!("{}秒", ms / 1000).into(),
        AuditValue::IntervalMs(ms) => format!("{ms}ミリ秒").into(),
        AuditValue::Proof(Proof::TestMail) => "テストメールの成功".into(),
        AuditValue::Proof(Proof::Code) => "確認コードの入力".into(),
        AuditValue::Outcome(Outcome::NotTried) => "試していません".into(),
        AuditValue::Outcome(Outcome::Succeeded) => "成功".into(),
        AuditValue::Outcome(Outcome::Failed { stage: s, smtp_code }) => {
            let at = s.map(|s| format!("{}の段階で", stage(s))).unwrap_or_default();
            let code = smtp_code.map(|c| format!("（応答コード {c}）")).unwrap_or_default();
            format!("{at}失敗{code}").into()
        }
        AuditValue::Found(Found(Some((port, e)))) => format!("ポート {port}・暗号化 {}", encryption(e)).into(),
        AuditValue::Found(Found(None)) => "使える組み合わせはありませんでした".into(),
        AuditValue::Limit(Limit(Some(n))) => format!("{n}通").into(),
        AuditValue::Limit(Limit(None)) => "既定の上限".into(),
        AuditValue::RemovedRecipient => "保存期間を過ぎたため削除済み".into(),
        AuditValue::Text(t) => t.to_owned().into(),
    }
}

/// Who made an audit entry.
fn audit_actor(role: Role, subject: &str) -> String {
    if role == Role::Service && subject == SYSTEM_ACTOR {
        return "システム（自動）".to_owned();
    }
    let role = match role {
        Role::Operator => "オペレーター",
        Role::TenantAdmin => "サイト管理者",
        Role::Service => "サービス",
    };
    format!("{role}（{subject}）")
}

fn encryption(e: Encryption) -> &'static str {
    match e {
        Encryption::None => "なし",
        Encryption::Ssl => "SSL",
        Encryption::StartTls => "TLS（STARTTLS）",
    }
}

/// Where in the conversation with the server a send stopped.
fn stage(s: SendStage) -> &'static str {
    match s {
        SendStage::Resolve => "名前解決",
        SendStage::Connect => "接続",
        SendStage::Greeting => "サーバーの挨拶",
        SendStage::Tls => "暗号化（TLS）",
        SendStage::Ehlo => "EHLO",
        SendStage::PopLogin => "POPログイン",
        SendStage::Auth => "認証",
        SendStage::MailFrom => "送信元の指定",
        SendStage::RcptTo => "宛先の指定",
        SendStage::Data => "本文の送信",
        SendStage::Timeout => "時間切れ",
    }
}
