//! The English catalogue: every sentence Mailgate shows a person in English.

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
        Text::Unauthenticated => "Authentication required: send a valid bearer token.".into(),
        Text::Forbidden => "You are not allowed to do this.".into(),
        Text::NotFound => "Not found.".into(),
        Text::ValidationFailed => "Some fields are not valid.".into(),
        Text::VersionConflict => "The settings were changed by someone else. Reload them and try again.".into(),
        Text::RateLimited => "Too many requests. Try again later.".into(),
        Text::IdempotencyKeyReused => "This idempotency key was already used for a different notification (other kind, recipient, language, variables or content). Use a new key for a new notification.".into(),
        Text::Overloaded => "The server is busy. Try again in a moment.".into(),
        Text::Timeout => "The request took too long and was stopped. If it was a change, check whether it was made before trying again.".into(),
        Text::SettingsUnreadable => "The saved mail server settings cannot be read (the operator has been told in the log). Mail on this route waits until you save all the settings again, password included, or clear them.".into(),
        Text::Internal => "An internal error occurred.".into(),
        Text::InternalReference(id) => format!("An internal error occurred (reference {id}).").into(),
        Text::PlanForbidsCustomSender(plan) => format!(
            "The {} does not allow a custom sender. Only the {} can change the mail server and sender address.",
            plan_name(plan),
            permitting_plans()
        )
        .into(),
        Text::Field(f) => {
            let name = super::field_name(f.field, domain::Locale::En);
            let mut sentence = format!("{name} {}.", field(f.code));
            // A sentence starts with a capital (names are in lower case mid-sentence).
            if let Some(first) = sentence.get(..1) {
                sentence.replace_range(..1, &first.to_uppercase());
            }
            sentence.into()
        }
        Text::PageSizeOutOfRange => "first must be between 1 and 100.".into(),
        Text::CursorInvalid => "after is not a cursor from this list.".into(),
        Text::LocaleInvalid => "locale must be ja or en.".into(),
        Text::VariablesNotObject => "variables must be a JSON object.".into(),
        Text::ContentTypeNotJson => "Content-Type must be application/json.".into(),
        Text::BodyTooLarge => "The request body is too large.".into(),
        Text::BodyNotGraphql => "The body is not a GraphQL request: send JSON with a \"query\" string.".into(),
        Text::BatchSize => "Too many (or no) operations in one batch.".into(),
        Text::AnonymousBatch => "Sign in to send several operations in one request.".into(),
        Text::AnonymousResponseTooLarge { kib } => {
            format!("The answer would be larger than {kib} KiB; sign in or ask for less.").into()
        }
        Text::UsePost => "Use POST with a JSON body for GraphQL operations.".into(),
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
        Text::ProbeSummary(r) => super::probe_summary(r, "works", "no pair works", "no encryption", probe_reason).into(),
    }
}

/// What is wrong with a field (the field's name goes in front).
fn field(code: FieldCode) -> &'static str {
    match code {
        FieldCode::Required => "is required",
        FieldCode::TooLong => "is too long",
        FieldCode::ControlCharacters => "must not contain control characters (line breaks, tabs, …)",
        FieldCode::InvalidFormat => "is not in a valid format",
        FieldCode::OutOfRange => "is out of range",
        FieldCode::InvalidType => "has the wrong type",
        FieldCode::NotFailed => "is not a failed delivery; only failed deliveries can be retried",
        FieldCode::PortNotAllowed => "is not a port open to tenants (usually 25, 465, 587 or 2525)",
        FieldCode::PasswordReentryRequired => "must be entered again because the server or user name changed",
        FieldCode::AddressLiteral => "must have a domain name, not an IP address",
        FieldCode::MaskedPassword => {
            "is only mask characters (such as ********): leave it empty to keep the stored password, or enter the real one"
        }
        FieldCode::ActivationCodeInvalid => {
            "is not the code of the last test mail: send a test mail of the saved settings and enter the code it carries"
        }
        FieldCode::ActivationCodeExpired => "has expired (codes are valid for 30 minutes): send a new test mail",
        FieldCode::AlreadyLive => "is not needed: the saved settings are already in force",
        FieldCode::ContentRemoved => {
            "has no content any more (removed after the retention period), so it cannot be sent again"
        }
        FieldCode::ForbiddenAddress => {
            "is an internal address (loopback, private network, link-local or a metadata service) that mail may not go to"
        }
        FieldCode::HostNotOfPreset => {
            "is not one of this server type's hosts: fill in the part of the host template, or choose the custom server type"
        }
        FieldCode::UnknownTenant => "names no tenant",
        FieldCode::NotWithConnection => {
            "must be empty: these settings sign in with Microsoft or Google, so no password is used or stored"
        }
        FieldCode::UnknownConnection => "names no connection of this tenant: connect the mailbox first",
        FieldCode::ConnectionNotActive => {
            "names a connection that cannot send until someone signs in again: reconnect it first"
        }
        FieldCode::SignInNotConfigured => {
            "cannot be used: the platform operator has not set up sign-in with this provider"
        }
        FieldCode::SignInExpired => "has expired (a sign-in must finish within 10 minutes): start again",
        FieldCode::SignInInvalid => "is not a sign-in you started for this tenant, or it was used already: start again",
        FieldCode::SignInRefused => "was refused by the provider (the sign-in was cancelled or failed): start again",
        FieldCode::ConsentRequired => {
            "needs an administrator's approval: send the administrator the admin-consent link, then sign in again"
        }
        FieldCode::ReturnUrlNotAllowed => "is not one of the return addresses the platform operator allows",
        FieldCode::EncryptionRequired => {
            "must be STARTTLS or SSL: a sign-in's token never crosses the network unencrypted"
        }
        FieldCode::OrganisationNotProven => {
            "is of an organisation none of this site's admins has signed in with: connect a mailbox of it by signing in once (\"Connect with Microsoft / Google\"), then set up access without a sign-in"
        }
        FieldCode::OwnServerRequired => {
            "needs your own mail server saved first (server type \"custom\", with STARTTLS or SSL): the tokens are sent to it"
        }
        FieldCode::MailboxUnknown => {
            "did not tell which mailbox signed in: sign in with an account that has an e-mail address"
        }
    }
}

fn hint(hint: Hint) -> &'static str {
    match hint {
        Hint::WrongCredentials => {
            "The server refused the user name or password. Check both; many providers want the full e-mail address as the user name."
        }
        Hint::GmailAppPassword => {
            "Gmail needs an app password: turn on 2-step verification for the Google account, create an app password, and enter it as the password."
        }
        Hint::Microsoft365SmtpAuthDisabled => {
            "Microsoft 365 refused SMTP AUTH for this mailbox (550 5.7.30 or 535 5.7.139). From the end of December 2026 Microsoft no longer takes passwords by default: choose \"Connect with Microsoft\" and sign in as this mailbox (no password is stored, and through Microsoft Graph SMTP AUTH may stay off). Or ask the Microsoft 365 administrator to run `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false`."
        }
        Hint::SenderNotAllowed => {
            "The server does not let this account send from this sender address. Use an address that belongs to the account, or allow it at the provider."
        }
        Hint::PopBeforeSmtpSuggested => {
            "The server refused to relay the mail (Relay access denied). The sender address is not the problem: this server wants a login before it sends. If the provider's guide says \"POP before SMTP\", fill in the POP before SMTP fields (POP server, user name, password); otherwise turn SMTP authentication on and enter the user name and password."
        }
        Hint::RecipientRejected => {
            "The server refused the recipient. Check the test address, or whether the server relays to other domains."
        }
        Hint::TlsModeMismatch => {
            "The encryption does not match the port: use SSL with port 465, and STARTTLS (\"tls\") with port 587."
        }
        Hint::StartTlsNotOffered => {
            "The server does not offer STARTTLS, so nothing was sent. Choose SSL if the server uses port 465, or check the port."
        }
        Hint::CertificateNameMismatch => {
            "The server's certificate is for a different host name. Enter the host name written in the provider's instructions."
        }
        Hint::CertificateUntrusted => {
            "The server's certificate is not trusted (self-signed, expired or from an unknown authority)."
        }
        Hint::ConnectionRefused => "The server refused the connection on this port. Check the host name and port.",
        Hint::TimedOut => {
            "The server did not answer in time. Check the host name and port; if the port is 465, choose SSL."
        }
        Hint::PopLoginFailed => "The POP login before SMTP failed. Check the POP server, port, user name and password.",
        Hint::HostNotFound => {
            "The host name does not exist, or points to an address that may not be used. Check its spelling."
        }
        Hint::ForbiddenAddress => "This host points to a private or internal network address, which is not allowed.",
        Hint::PortNotAllowed => "This port is not allowed. Use 25, 465, 587 or 2525.",
        Hint::AuthNotOffered => {
            "The server offers no login method we can use. Turn SMTP authentication off if the server does not need it, or use encryption so it offers login."
        }
        Hint::TemporaryFailure => "The server reported a temporary problem. Try again in a few minutes.",
        Hint::ProtocolViolation => {
            "The server does not speak SMTP as it must (a reply far longer than SMTP allows, or data sent where none may come), so the session was ended. Check the host name and port: this is probably not a mail server's submission port."
        }
        Hint::SmtpUtf8NotSupported => {
            "The address has characters other than ASCII before the @, and this mail server does not accept such addresses (it does not offer SMTPUTF8). Use an ASCII address, or a server that supports SMTPUTF8."
        }
        Hint::ReconnectMailbox => {
            "Microsoft or Google no longer accepts the sign-in for this mailbox (access revoked or expired, password changed, or consent withdrawn). Mail goes out from the platform's address with yours as Reply-To until you choose \"Reconnect\" and sign in again."
        }
        Hint::TokenRefused => {
            "The server refused the sign-in's token even after a fresh one. Check that the signed-in account may send from this mailbox (send-as rights), and for Microsoft 365 SMTP that SMTP AUTH is on for it, or connect with Microsoft Graph instead."
        }
        Hint::SignInSetup => {
            "Microsoft or Google refuses the platform's sign-in app (for example its client secret expired). Nothing is wrong with your settings: the mail waits and is sent once the platform operator has fixed it."
        }
        Hint::ProviderThrottled => {
            "The provider limits how fast this mailbox may send, or did not answer; the mail waits and is tried again. Microsoft 365 takes about 30 messages a minute per mailbox; Gmail a few hundred to 2,000 a day."
        }
        Hint::Other => "The server refused the mail. Its reply is shown above.",
    }
}

fn warning(warning: SettingsWarning) -> &'static str {
    match warning {
        SettingsWarning::Port465WithStartTls => "Port 465 normally uses SSL (implicit TLS), not STARTTLS.",
        SettingsWarning::Port587WithSsl => "Port 587 normally uses STARTTLS (\"tls\"), not SSL.",
        SettingsWarning::PasswordWithoutEncryption => {
            "The password is sent without encryption. Choose SSL or STARTTLS if the server supports it."
        }
        SettingsWarning::HostNotResolved => {
            "This host name could not be found as a mail server that may be used. It was saved (DNS can be late); check the spelling, and send a test mail."
        }
        SettingsWarning::PopHostNotResolved => {
            "The POP server's host name could not be found as a server that may be used. It was saved (DNS can be late); check the spelling, and send a test mail."
        }
        SettingsWarning::SenderDomainAtRisk => {
            "The sender domain's SPF, DKIM or DMARC does not fully cover this server: mail may land in spam, and Gmail and Yahoo refuse bulk mail without them. checkSenderDomain shows what to add."
        }
        SettingsWarning::SenderDomainWillFail => {
            "The sender domain's DMARC policy rejects or quarantines mail from this server: neither SPF nor DKIM will pass for it. Add the records checkSenderDomain shows before relying on this server."
        }
        SettingsWarning::SenderNotSignedInMailbox => {
            "The sender is not the mailbox that signed in: mail goes out only if that account may send as this address (a shared mailbox, or send-as rights). The test mail will tell."
        }
        SettingsWarning::RecipientInSenderDomain => {
            "The test recipient is in the sender's own domain: the server may deliver it locally, which proves little about mail to the outside. Use an address at another domain (for example a free mail address)."
        }
    }
}

fn sender_reason(reason: SenderReason) -> String {
    match reason {
        SenderReason::CustomSettingsActive(p) => format!("the tenant's own mail server is used ({})", plan_name(p)),
        SenderReason::NoSettingsSaved => "no settings saved".to_owned(),
        SenderReason::PendingVerification => "the saved settings are not in force until a test mail through them succeeds; until then mail goes out from this default address".to_owned(),
        SenderReason::Suspended => "the tenant's mail server kept refusing the saved settings (see the settings' health), so mail goes out from this default address with replies to the tenant's address; save corrected settings and send a test mail".to_owned(),
        SenderReason::PlanForbids {
            plan,
            settings_saved: false,
        } => format!("the {} does not allow a custom sender", plan_name(plan)),
        SenderReason::PlanForbids {
            plan,
            settings_saved: true,
        } => format!(
            "the {} does not allow a custom sender; the saved settings are inactive",
            plan_name(plan)
        ),
        SenderReason::SettingsUnreadable => "the saved settings cannot be read, so mail waits and is not sent; save them again (password included), or clear them to send from this default address".to_owned(),
    }
}

fn provider_hint(hint: ProviderHint) -> &'static str {
    match hint {
        ProviderHint::AppPassword => {
            "This provider refuses the account password for SMTP: turn on 2-step verification and create an app password (app-specific password), then enter it as the password."
        }
        ProviderHint::SmtpAuthPerMailbox => {
            "SMTP AUTH is off by default in Microsoft 365: the administrator must enable \"Authenticated SMTP\" for this mailbox (Microsoft 365 admin center > Users > Mail > Manage email apps)."
        }
        ProviderHint::BasicAuthRetiring => {
            "Microsoft is retiring password (basic) SMTP AUTH: tenants created from 2027 on, and existing tenants whose administrator has not re-enabled it, refuse the password with 550 5.7.30 or 535 5.7.139. Ask the administrator to allow SMTP AUTH for the tenant and the mailbox, or send through another server (for example Amazon SES or SendGrid)."
        }
        ProviderHint::PasswordLoginRemoved => {
            "Microsoft turned off password login for Outlook.com SMTP in September 2024: the server accepts only OAuth2 logins, so a password cannot send through it. Send through another server (your domain's mail server, Amazon SES, SendGrid, …)."
        }
        ProviderHint::ApiKeyAsPassword => {
            "Enter the word apikey as the user name and an API key with the \"Mail Send\" permission as the password; verify the sender (Single Sender or domain authentication) first."
        }
        ProviderHint::SesCredentialsAndSandbox => {
            "Create SMTP credentials for the region in the Amazon SES console (they are not your AWS access keys). New accounts are in the sandbox and may only send to verified addresses until production access is granted."
        }
        ProviderHint::VerifiedSenderRequired => {
            "The sender address or its domain must be verified with the provider before it accepts mail from it."
        }
        ProviderHint::OutboundPort25Blocked => {
            "Port 25 from outside this provider's network is blocked (Outbound Port 25 Blocking): use port 587 or 465."
        }
        ProviderHint::FromMustBeMailbox => {
            "The sender address must be this mailbox's own address (or an alias registered for it); other addresses are refused or rewritten."
        }
    }
}

/// A short reason a probed pair failed.
fn probe_reason(hint: Hint) -> &'static str {
    match hint {
        Hint::ConnectionRefused => "refused",
        Hint::TimedOut => "no answer in time",
        Hint::TlsModeMismatch => "wrong encryption for this port",
        Hint::StartTlsNotOffered => "no STARTTLS",
        Hint::CertificateNameMismatch => "certificate for another name",
        Hint::CertificateUntrusted => "untrusted certificate",
        Hint::PortNotAllowed => "port not open to tenants",
        Hint::HostNotFound => "host not found",
        Hint::ForbiddenAddress => "internal address",
        Hint::ProtocolViolation => "not an SMTP server",
        Hint::TemporaryFailure => "temporary failure",
        _ => "failed",
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "SPF and DKIM should pass aligned and DMARC is published: receivers can trust this sender.",
        Verdict::AtRisk => {
            "Mail will probably be accepted but is at risk: something receivers check is missing (see the issues)."
        }
        Verdict::WillFail => {
            "Receivers will reject or quarantine this mail: the domain's DMARC policy demands SPF or DKIM that will not pass."
        }
        Verdict::Unknown => {
            "DNS did not answer in time, so some records could not be looked up (which does not mean they are missing). Check again in a while."
        }
    }
}

fn confidence(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "known provider data",
        Confidence::Medium => "published by the domain",
        Confidence::Low => "a guess: fill in the part of the host only you know",
    }
}

fn domain_issue(issue: DomainIssue, f: &DomainFindings) -> String {
    let server = f.provider.unwrap_or("this server");
    let d = &f.domain;
    match issue {
        DomainIssue::SpfMissing => {
            format!("{d} publishes no SPF record, so receivers cannot tell that {server} may send for it.")
        }
        DomainIssue::SpfNotAllowed => {
            format!("The SPF record of {d} does not allow {server}: SPF fails or is neutral for its mail.")
        }
        DomainIssue::SpfError => format!(
            "The SPF record of {d} cannot be evaluated (a syntax error, too many lookups, or DNS failing): receivers treat it as an error."
        ),
        DomainIssue::SpfNotAligned => format!(
            "{server} sends with its own envelope domain, so SPF passes for that domain, not for {d}: set up a custom MAIL FROM (return path) domain under {d} at {server}, or rely on DKIM."
        ),
        DomainIssue::DkimMissing => format!(
            "No DKIM key of {server} is published for {d} (selectors looked up: {}): turn on DKIM signing for {d} at {server} and publish the record it gives.",
            f.dkim_selectors.join(", ")
        ),
        DomainIssue::DkimUnknown => format!(
            "{server} is not a known provider, so whether it signs with a DKIM key of {d} cannot be told from DNS: ask the provider."
        ),
        DomainIssue::DmarcMissing => {
            format!("{d} publishes no DMARC record; Gmail and Yahoo require one of bulk senders. Start with p=none.")
        }
        DomainIssue::DmarcPolicyNone => format!(
            "The DMARC policy of {d} is p=none: receivers are asked to take no action, so forged mail in its name is not stopped either."
        ),
        DomainIssue::DnsUnanswered => format!(
            "The DNS of {d} did not answer in time, so part of SPF, DKIM and DMARC could not be looked up. That does not mean the records are missing: check again in a while."
        ),
        DomainIssue::DmarcWillFail => format!(
            "The DMARC policy of {d} is quarantine or reject, and neither SPF nor DKIM will pass aligned for mail through {server}: receivers will reject or junk it."
        ),
    }
}

/// Why a delivery failed for good (a refusal's stage, code and reply follow it).
fn failure(code: FailureCode) -> &'static str {
    match code {
        FailureCode::Expired => "It could not be sent before its retry time ran out",
        FailureCode::TenantMissing => "Its site no longer exists",
        FailureCode::InvalidStoredData => "Its stored data could not be read",
        FailureCode::Abandoned => "Every try to send it stopped before an outcome was recorded",
        FailureCode::Refused => "The receiving server refused it",
    }
}

/// A plan's name in a sentence: "Share plan".
pub(super) fn plan_name(plan: Plan) -> String {
    format!("{} plan", plan.display_name())
}

/// The plans that may use their own server, named and joined: "Share plan and Biz plan".
fn permitting_plans() -> String {
    super::permitting_plans()
        .map(plan_name)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A value of an audit entry's changes in words.
fn audit_value(value: AuditValue<'_>) -> Cow<'static, str> {
    match value {
        AuditValue::Plan(p) => plan_name(p).into(),
        AuditValue::Switch(true) => "on".into(),
        AuditValue::Switch(false) => "off".into(),
        AuditValue::Encryption(e) => encryption(e).into(),
        AuditValue::ServerKind(ServerKind::Custom) => "custom server".into(),
        AuditValue::ServerKind(kind) => Provider::of_kind(kind).map_or(kind.code(), |p| p.name).into(),
        AuditValue::Stage(s) => stage(s).into(),
        AuditValue::Hint(h) => hint(h).into(),
        AuditValue::IntervalMs(0) => "no interval".into(),
        AuditValue::IntervalMs(ms) if ms % 60_000 == 0 => format!("{} min", ms / 60_000).into(),
        AuditValue::IntervalMs(ms) if ms % 1000 == 0 => format!("{} s", ms / 1000).into(),
        AuditValue::IntervalMs(ms) => format!("{ms} ms").into(),
        AuditValue::Proof(Proof::TestMail) => "a successful test mail".into(),
        AuditValue::Proof(Proof::Code) => "the activation code".into(),
        AuditValue::Outcome(Outcome::NotTried) => "not tried".into(),
        AuditValue::Outcome(Outcome::Succeeded) => "succeeded".into(),
        AuditValue::Outcome(Outcome::Failed { stage: s, smtp_code }) => {
            let at = s.map(|s| format!(" at {}", stage(s))).unwrap_or_default();
            let code = smtp_code.map(|c| format!(" (reply code {c})")).unwrap_or_default();
            format!("failed{at}{code}").into()
        }
        AuditValue::Found(Found(Some((port, e)))) => format!("port {port}, encryption {}", encryption(e)).into(),
        AuditValue::Found(Found(None)) => "no combination worked".into(),
        AuditValue::Limit(Limit(Some(n))) => format!("{n} mails").into(),
        AuditValue::Limit(Limit(None)) => "the default limit".into(),
        AuditValue::RemovedRecipient => "removed after the retention period".into(),
        AuditValue::Text(t) => t.to_owned().into(),
    }
}

/// Who made an audit entry.
fn audit_actor(role: Role, subject: &str) -> String {
    if role == Role::Service && subject == SYSTEM_ACTOR {
        return "the system (automatic)".to_owned();
    }
    let role = match role {
        Role::Operator => "operator",
        Role::TenantAdmin => "site admin",
        Role::Service => "service",
    };
    format!("{role} ({subject})")
}

fn encryption(e: Encryption) -> &'static str {
    match e {
        Encryption::None => "none",
        Encryption::Ssl => "SSL",
        Encryption::StartTls => "STARTTLS",
    }
}

/// Where in the conversation with the server a send stopped.
fn stage(s: SendStage) -> &'static str {
    match s {
        SendStage::Resolve => "name lookup",
        SendStage::Connect => "connecting",
        SendStage::Greeting => "the server's greeting",
        SendStage::Tls => "encryption (TLS)",
        SendStage::Ehlo => "EHLO",
        SendStage::PopLogin => "POP login",
        SendStage::Auth => "authentication",
        SendStage::MailFrom => "the sender address",
        SendStage::RcptTo => "the recipient",
        SendStage::Data => "sending the message",
        SendStage::Timeout => "timeout",
    }
}
