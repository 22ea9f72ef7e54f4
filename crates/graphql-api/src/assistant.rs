//! GraphQL for the setup assistant: the presets of the server types (host or host
//! template, port, encryption, what the user name is, the published limit and the
//! interval that keeps under it, what to know before sending), discovery from the sender
//! address, the probe, and the sender-domain check.

use async_graphql::{Context, Enum, ID, SimpleObject};

use domain::Locale;
use domain::discovery::Discovery;
use domain::mail::{SendFailure, diagnose};
use domain::probe::ProbeReport;
use domain::providers::{HostSpec, PROVIDERS, Provider};
use domain::sender_domain::{DomainCheck, Verdict};
use domain::services::assistant::AssistantService;

use crate::catalogue::{Text, say};
use crate::error::ResultExt as _;
use crate::mail_settings::{MailEncryption, MailServerKind, MailSettingsInput, TestMailStage};
use crate::values::{caller_and, int, locale, parse_tenant_id};

/// What the part in braces of a preset's host template stands for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::providers::TemplateInput")]
pub enum PresetHostInput {
    /// The account or initial-domain name the provider assigned.
    Account,
    /// A cloud region, e.g. `ap-northeast-1`.
    Region,
    /// The number of the server the contract is on.
    Server,
}

/// What goes into the user-name field for a preset.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::providers::UsernameKind")]
pub enum PresetUsername {
    /// The whole sender address.
    Address,
    /// The part of the sender address before the `@`.
    LocalPart,
    /// A separate ID the provider issued.
    AccountId,
    /// The word `apikey`; the password is the API key.
    #[graphql(name = "APIKEY")]
    ApiKey,
    /// SMTP credentials generated in the provider's console.
    SmtpCredentials,
}

/// A provider's published sending limit.
#[derive(SimpleObject, Debug)]
pub struct SendLimit {
    pub count: i32,
    /// `MINUTE`, `HOUR` or `DAY`.
    pub period: String,
}

/// Something to know before a provider accepts mail from Mailgate.
#[derive(SimpleObject, Debug)]
pub struct PresetHint {
    /// `APP_PASSWORD`, `SMTP_AUTH_PER_MAILBOX`, `BASIC_AUTH_RETIRING`, …
    pub code: String,
    pub message: String,
}

/// A preset that fills the server fields of the settings form.
#[derive(SimpleObject, Debug)]
pub struct MailServerPreset {
    pub kind: MailServerKind,
    /// The provider's name as people know it.
    pub name: String,
    /// The SMTP host; for a preset with `hostTemplate`, the template itself.
    pub host: String,
    /// Set when the host has a part to fill in, e.g. `{account}.sakura.ne.jp`: the form
    /// asks for `hostInput` and sends the filled-in name as `host`.
    pub host_template: Option<String>,
    pub host_input: Option<PresetHostInput>,
    pub port: i32,
    pub encryption: MailEncryption,
    pub smtp_auth: bool,
    pub username: PresetUsername,
    /// Address domains the provider hosts (`gmail.com`); empty for services that send for
    /// any domain.
    pub address_domains: Vec<String>,
    /// The provider's published limit, when it publishes one.
    pub send_limit: Option<SendLimit>,
    /// The smallest `sendIntervalMs` that keeps under `sendLimit`.
    pub send_interval_ms: Option<i32>,
    pub hints: Vec<PresetHint>,
    /// The SPF mechanism a sender domain adds to allow this provider.
    pub spf_include: Option<String>,
    /// Where these facts come from.
    pub source: String,
}

pub(crate) fn preset_of(p: &Provider, l: Locale) -> MailServerPreset {
    let (host, host_template, host_input) = match p.host {
        HostSpec::Fixed(name) => (name.to_owned(), None, None),
        HostSpec::Template { template, input } => (template.to_owned(), Some(template.to_owned()), Some(input.into())),
    };
    MailServerPreset {
        kind: p.kind.into(),
        name: p.name.to_owned(),
        host,
        host_template,
        host_input,
        port: i32::from(p.port),
        encryption: p.encryption.into(),
        smtp_auth: p.smtp_auth,
        username: p.username.into(),
        address_domains: p.address_domains.iter().map(|d| (*d).to_owned()).collect(),
        send_limit: p.limit.map(|s| SendLimit {
            count: i32::try_from(s.count).unwrap_or(i32::MAX),
            period: s.period.code().to_owned(),
        }),
        send_interval_ms: p.send_interval_ms().map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)),
        hints: p
            .hints
            .iter()
            .map(|h| PresetHint {
                code: h.code().to_owned(),
                message: say(Text::ProviderHint(*h), l).into_owned(),
            })
            .collect(),
        spf_include: p.spf_include.map(str::to_owned),
        source: p.source.to_owned(),
    }
}

/// `Query.mailServerPresets`.
pub(crate) fn presets(ctx: &Context<'_>) -> Vec<MailServerPreset> {
    let l = locale(ctx);
    PROVIDERS.iter().map(|p| preset_of(p, l)).collect()
}

/// Why one pair of a probe did not work, or why its login failed.
#[derive(SimpleObject, Debug)]
pub struct ProbeFailure {
    pub stage: TestMailStage,
    pub smtp_code: Option<i32>,
    pub enhanced_code: Option<String>,
    /// The server's reply, with anything secret removed.
    pub server_message: Option<String>,
    /// A plain-language fix, in the caller's language.
    pub hint: String,
    /// A stable code for the hint, e.g. `CONNECTION_REFUSED`, `TLS_MODE_MISMATCH`.
    pub hint_code: String,
    /// The form field to look at.
    pub field: Option<String>,
}

impl ProbeFailure {
    fn of(f: &SendFailure, l: Locale) -> Self {
        let d = diagnose(f, None);
        Self {
            stage: f.stage.into(),
            smtp_code: f.smtp_code.map(i32::from),
            enhanced_code: f.enhanced_code.clone(),
            server_message: f.server_message.clone(),
            hint: say(Text::Hint(d.hint), l).into_owned(),
            hint_code: d.hint.code().to_owned(),
            field: d.field.map(str::to_owned),
        }
    }
}

/// One port and encryption tried, and what it offered (up to EHLO; no credentials sent).
#[derive(SimpleObject, Debug)]
pub struct ProbePair {
    pub port: i32,
    pub encryption: MailEncryption,
    pub works: bool,
    /// The pair the form named.
    pub typed: bool,
    /// Login methods offered: `PLAIN`, `LOGIN`, `XOAUTH2` (Mailgate logs in with the first two).
    pub auth_mechanisms: Vec<String>,
    /// STARTTLS offered (on a pair without encryption).
    pub starttls_offered: bool,
    pub smtputf8: bool,
    /// Why it did not work; null when it works.
    pub failure: Option<ProbeFailure>,
}

/// Settings the form can save as they are: the best working pair.
#[derive(SimpleObject, Debug)]
pub struct ProbeSuggestion {
    pub host: String,
    pub port: i32,
    pub encryption: MailEncryption,
    /// Log in: the pair offers a login method (and, when one was tried, it succeeded).
    pub smtp_auth: bool,
}

/// What `probeMailServer` found.
#[derive(SimpleObject, Debug)]
pub struct ProbeResult {
    /// Working pairs first, best first; then those that failed.
    pub pairs: Vec<ProbePair>,
    pub suggestion: Option<ProbeSuggestion>,
    /// One sentence, e.g. "587 + STARTTLS works; 465 + SSL: refused".
    pub summary: String,
    /// Whether a login was tried (one, on the suggested pair, when a password was given).
    pub auth_tried: bool,
    /// The login worked; null when none was tried.
    pub auth_ok: Option<bool>,
    pub auth_failure: Option<ProbeFailure>,
    pub elapsed_ms: i32,
}

impl ProbeResult {
    fn of(report: &ProbeReport, host: &str, l: Locale) -> Self {
        let pairs = report
            .pairs
            .iter()
            .map(|p| {
                let offer = p.outcome.as_ref().ok();
                ProbePair {
                    port: i32::from(p.port),
                    encryption: p.encryption.into(),
                    works: p.works(),
                    typed: p.typed,
                    auth_mechanisms: offer.map(|o| o.auth_mechanisms.clone()).unwrap_or_default(),
                    starttls_offered: offer.is_some_and(|o| o.starttls),
                    smtputf8: offer.is_some_and(|o| o.smtputf8),
                    failure: p.outcome.as_ref().err().map(|f| ProbeFailure::of(f, l)),
                }
            })
            .collect();
        let suggestion = report.best().map(|best| ProbeSuggestion {
            host: host.to_owned(),
            port: i32::from(best.port),
            encryption: best.encryption.into(),
            smtp_auth: best.outcome.as_ref().is_ok_and(|o| o.password_auth()) && !matches!(report.auth, Some(Err(_))),
        });
        Self {
            pairs,
            suggestion,
            summary: say(Text::ProbeSummary(report), l).into_owned(),
            auth_tried: report.auth.is_some(),
            auth_ok: report.auth.as_ref().map(Result::is_ok),
            auth_failure: report
                .auth
                .as_ref()
                .and_then(|a| a.as_ref().err())
                .map(|f| ProbeFailure::of(f, l)),
            elapsed_ms: int(report.elapsed.as_millis()),
        }
    }
}

/// `Mutation.probeMailServer`.
pub(crate) async fn probe(
    ctx: &Context<'_>,
    tenant_id: ID,
    settings: MailSettingsInput,
) -> async_graphql::Result<ProbeResult> {
    let (caller, service, l) = caller_and::<AssistantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let draft = settings.into_draft();
    let report = service.probe_mail_server(caller, id, &draft).await.gql(l)?;
    let host = report_host(&draft);
    Ok(ProbeResult::of(&report, &host, l))
}

/// The host the probe went to: the preset's fixed one, else the form's.
fn report_host(draft: &domain::settings::MailSettingsDraft) -> String {
    match draft.server_kind.and_then(Provider::of_kind).map(|p| p.host) {
        Some(HostSpec::Fixed(name)) => name.to_owned(),
        _ => draft.host.as_deref().unwrap_or("").trim().to_owned(),
    }
}

/// A server discovery suggests, ready for the form.
#[derive(SimpleObject, Debug)]
pub struct DiscoveredServer {
    pub server_kind: MailServerKind,
    /// The host; for a preset with a template, the template (`hostTemplate` of the preset).
    pub host: String,
    pub port: i32,
    pub encryption: MailEncryption,
    pub smtp_auth: bool,
    /// What the user name is, when known.
    pub username: Option<PresetUsername>,
    /// `BUNDLED`, `MX`, `SRV` or `AUTOCONFIG`.
    pub source: String,
    /// `HIGH`, `MEDIUM` or `LOW`.
    pub confidence: String,
    /// What the confidence means, in the caller's language.
    pub confidence_text: String,
    /// What it is based on: the domain, the MX host, the SRV record or the URL.
    pub evidence: String,
    /// The preset of `serverKind` (hints, limits), when it is one.
    pub preset: Option<MailServerPreset>,
    /// `MICROSOFT` or `GOOGLE` when this mailbox can be connected by signing in instead
    /// of a password (`connectMailbox`), which the assistant proposes first: Microsoft
    /// 365 stops taking passwords by default at the end of December 2026.
    pub sign_in: Option<crate::connections::MailProvider>,
}

/// One step discovery took.
#[derive(SimpleObject, Debug)]
pub struct DiscoveryStepInfo {
    /// `BUNDLED`, `MX`, `SRV` or `AUTOCONFIG`.
    pub source: String,
    /// The domain, record name or URL asked.
    pub asked: String,
    /// `FOUND`, `NOT_FOUND`, `FAILED` (DNS or the web server failed or was slow) or
    /// `REFUSED` (too large).
    pub outcome: String,
}

/// What `discoverMailServer` found for a sender address.
#[derive(SimpleObject, Debug)]
pub struct MailServerDiscovery {
    pub domain: String,
    /// Best first.
    pub candidates: Vec<DiscoveredServer>,
    pub steps: Vec<DiscoveryStepInfo>,
}

impl MailServerDiscovery {
    fn of(d: &Discovery, l: Locale) -> Self {
        Self {
            domain: d.domain.clone(),
            candidates: d
                .candidates
                .iter()
                .map(|c| DiscoveredServer {
                    server_kind: c.kind.into(),
                    host: c.host.clone(),
                    port: i32::from(c.port),
                    encryption: c.encryption.into(),
                    smtp_auth: c.smtp_auth,
                    username: c.username.map(Into::into),
                    source: c.source.code().to_owned(),
                    confidence: c.confidence.code().to_owned(),
                    confidence_text: say(Text::DiscoveryConfidence(c.confidence), l).into_owned(),
                    evidence: c.evidence.clone(),
                    preset: Provider::of_kind(c.kind).map(|p| preset_of(p, l)),
                    sign_in: domain::oauth::Provider::for_server(c.kind).map(Into::into),
                })
                .collect(),
            steps: d
                .steps
                .iter()
                .map(|s| DiscoveryStepInfo {
                    source: s.source.code().to_owned(),
                    asked: s.asked.clone(),
                    outcome: s.outcome.code().to_owned(),
                })
                .collect(),
        }
    }
}

/// `Query.discoverMailServer`.
pub(crate) async fn discover(
    ctx: &Context<'_>,
    tenant_id: ID,
    from_address: String,
) -> async_graphql::Result<MailServerDiscovery> {
    let (caller, service, l) = caller_and::<AssistantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let d = service.discover_mail_server(caller, id, &from_address).await.gql(l)?;
    Ok(MailServerDiscovery::of(&d, l))
}

/// The verdict of a sender-domain check.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SenderDomainVerdict {
    Pass,
    AtRisk,
    WillFail,
    /// DNS did not answer for a record the verdict needs: try again later (not "missing").
    Unknown,
}

/// SPF of the sender domain for the server.
#[derive(SimpleObject, Debug)]
pub struct SpfCheck {
    /// `PASS`, `NOT_ALLOWED`, `MISSING`, `ERROR` or `UNANSWERED` (DNS did not answer).
    pub result: String,
    pub record: Option<String>,
    /// The mechanism that allows the provider, when it is known.
    pub include: Option<String>,
    /// Whether a pass counts for the From domain (false when the provider sends with its
    /// own envelope domain).
    pub aligned: bool,
}

/// DKIM of the sender domain for the server's provider.
#[derive(SimpleObject, Debug)]
pub struct DkimCheck {
    /// `PUBLISHED`, `MISSING`, `UNKNOWN` (a provider Mailgate does not know) or
    /// `UNANSWERED` (no key found, and DNS did not answer for a selector).
    pub result: String,
    pub selectors: Vec<String>,
    pub found: Vec<String>,
}

/// DMARC of the sender domain.
#[derive(SimpleObject, Debug)]
pub struct DmarcCheck {
    /// `MISSING`, `NONE`, `QUARANTINE`, `REJECT` or `UNANSWERED` (DNS did not answer).
    pub policy: String,
    pub record: Option<String>,
    /// The domain whose record applies (the sender's or its organisational domain).
    pub domain: Option<String>,
}

/// One thing the check found, explained.
#[derive(SimpleObject, Debug)]
pub struct SenderDomainIssue {
    /// e.g. `SPF_NOT_ALLOWED`, `DKIM_MISSING`, `DMARC_WILL_FAIL`.
    pub code: String,
    pub message: String,
}

/// A DNS record to publish.
#[derive(SimpleObject, Debug)]
pub struct DnsRecordFix {
    pub name: String,
    #[graphql(name = "type")]
    pub record_type: String,
    pub value: String,
    /// The record it replaces, when there is one (SPF: one record per domain).
    pub replaces: Option<String>,
}

/// What `checkSenderDomain` found.
#[derive(SimpleObject, Debug)]
pub struct SenderDomainCheck {
    pub domain: String,
    /// The provider of the server, when Mailgate knows it.
    pub provider: Option<String>,
    pub verdict: SenderDomainVerdict,
    /// The verdict in the caller's language.
    pub summary: String,
    pub spf: SpfCheck,
    pub dkim: DkimCheck,
    pub dmarc: DmarcCheck,
    pub issues: Vec<SenderDomainIssue>,
    pub fixes: Vec<DnsRecordFix>,
}

impl SenderDomainCheck {
    fn of(c: &DomainCheck, l: Locale) -> Self {
        let f = &c.findings;
        Self {
            domain: f.domain.clone(),
            provider: f.provider.map(str::to_owned),
            verdict: match c.verdict {
                Verdict::Pass => SenderDomainVerdict::Pass,
                Verdict::AtRisk => SenderDomainVerdict::AtRisk,
                Verdict::WillFail => SenderDomainVerdict::WillFail,
                Verdict::Unknown => SenderDomainVerdict::Unknown,
            },
            summary: say(Text::Verdict(c.verdict), l).into_owned(),
            spf: SpfCheck {
                result: f.spf.code().to_owned(),
                record: f.spf_record.clone(),
                include: f.spf_include.map(str::to_owned),
                aligned: f.spf_aligns,
            },
            dkim: DkimCheck {
                result: f.dkim.code().to_owned(),
                selectors: f.dkim_selectors.clone(),
                found: f.dkim_found.clone(),
            },
            dmarc: DmarcCheck {
                policy: f.dmarc.code().to_owned(),
                record: f.dmarc_record.clone(),
                domain: f.dmarc_domain.clone(),
            },
            issues: c
                .issues
                .iter()
                .map(|i| SenderDomainIssue {
                    code: i.code().to_owned(),
                    message: say(Text::DomainIssue(*i, f), l).into_owned(),
                })
                .collect(),
            fixes: c
                .fixes
                .iter()
                .map(|x| DnsRecordFix {
                    name: x.name.clone(),
                    record_type: x.record_type.to_owned(),
                    value: x.value.clone(),
                    replaces: x.replaces.clone(),
                })
                .collect(),
        }
    }
}

/// `Query.checkSenderDomain`.
pub(crate) async fn check_domain(
    ctx: &Context<'_>,
    tenant_id: ID,
    from_address: String,
    settings: Option<MailSettingsInput>,
) -> async_graphql::Result<SenderDomainCheck> {
    let (caller, service, l) = caller_and::<AssistantService>(ctx)?;
    let id = parse_tenant_id(&tenant_id).gql(l)?;
    let draft = settings.map(MailSettingsInput::into_draft);
    let c = service
        .check_sender_domain(caller, id, &from_address, draft.as_ref())
        .await
        .gql(l)?;
    Ok(SenderDomainCheck::of(&c, l))
}
