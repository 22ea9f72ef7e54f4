//! Every sentence Mailgate shows a person, one catalogue per language ([`en`], [`ja`]).
//! The domain returns codes and the values that go in a sentence; GraphQL and HTTP both
//! turn them into words here, in the caller's language, and nowhere else.

use std::borrow::Cow;

use domain::error::FieldError;
use domain::mail::Hint;
use domain::sender::SenderReason;
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
    /// A GET of `/graphql` where GraphiQL is off.
    UsePost,
    // Values the domain decided.
    Hint(Hint),
    Warning(SettingsWarning),
    SenderReason(SenderReason),
}

/// `text` in `locale`.
pub fn say(text: Text<'_>, locale: Locale) -> Cow<'static, str> {
    match locale {
        Locale::En => en::text(text),
        Locale::Ja => ja::text(text),
    }
}
