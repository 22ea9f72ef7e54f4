//! Every sentence Mailgate shows a person, one catalogue per language ([`en`], [`ja`]).
//! The domain returns codes and the values that go in a sentence; GraphQL and HTTP both
//! turn them into words here, in the caller's language, and nowhere else.

use std::borrow::Cow;

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
