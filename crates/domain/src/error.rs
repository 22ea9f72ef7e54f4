//! The domain's errors: every way an operation can be refused (each with the stable code
//! the API reports), and the ways storage can fail. Nothing here depends on a port; the
//! ports depend on these.

use crate::i18n::Locale;
use crate::plan::{Plan, PlanForbidsCustomSender};

/// One wrong field of an input, with a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The input field as the API names it, e.g. `fromAddress` or `popBeforeSmtp.host`.
    pub field: &'static str,
    /// `REQUIRED`, `TOO_LONG`, `CONTROL_CHARACTERS`, `INVALID_FORMAT`, `OUT_OF_RANGE`,
    /// `PASSWORD_REENTRY_REQUIRED`, `PORT_NOT_ALLOWED`.
    pub code: &'static str,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str) -> Self {
        Self { field, code }
    }

    /// A sentence a person can act on.
    pub fn message(&self, locale: Locale) -> String {
        let what = match self.code {
            "REQUIRED" => locale.pick("is required", "は必須です"),
            "TOO_LONG" => locale.pick("is too long", "が長すぎます"),
            "CONTROL_CHARACTERS" => locale.pick(
                "must not contain control characters (line breaks, tabs, …)",
                "に制御文字（改行・タブなど）は使えません",
            ),
            "INVALID_FORMAT" => locale.pick("is not in a valid format", "の形式が正しくありません"),
            "OUT_OF_RANGE" => locale.pick("is out of range", "が範囲外です"),
            "INVALID_TYPE" => locale.pick("has the wrong type", "の型が正しくありません"),
            "NOT_FAILED" => locale.pick(
                "is not a failed delivery; only failed deliveries can be retried",
                "は失敗した配信ではありません。再送できるのは失敗した配信のみです",
            ),
            "PORT_NOT_ALLOWED" => locale.pick(
                "is not a port open to tenants (usually 25, 465, 587 or 2525)",
                "は使用できないポートです（通常は25、465、587、2525）",
            ),
            "PASSWORD_REENTRY_REQUIRED" => locale.pick(
                "must be entered again because the server or user name changed",
                "はサーバーまたはユーザー名が変わったため、もう一度入力してください",
            ),
            _ => locale.pick("is not valid", "が正しくありません"),
        };
        match locale {
            Locale::En => format!("{} {what}.", self.field),
            Locale::Ja => format!("{}{what}。", self.field),
        }
    }
}

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication required")]
    Unauthenticated,
    #[error("not allowed for this role")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("plan {0} does not allow a custom sender")]
    PlanForbidsCustomSender(Plan),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("the settings were changed by someone else (current version {current})")]
    VersionConflict { current: i64 },
    #[error("too many requests")]
    RateLimited,
    #[error(transparent)]
    Internal(#[from] StoreError),
}

impl From<PlanForbidsCustomSender> for Error {
    fn from(e: PlanForbidsCustomSender) -> Self {
        Error::PlanForbidsCustomSender(e.0)
    }
}

impl Error {
    pub fn validation(field: &'static str, code: &'static str) -> Self {
        Error::Validation(vec![FieldError::new(field, code)])
    }
}

/// A storage failure. Its text is for logs only; clients get `INTERNAL` and an id.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("a stored secret could not be decrypted: {0}")]
    Crypto(String),
}

/// Why a conditional write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("tenant not found")]
    NotFound,
    /// Someone else saved or cleared first; `current` is the version now stored (0: none).
    #[error("version conflict (current {current})")]
    VersionConflict { current: i64 },
    /// The plan was changed by someone else first.
    #[error("plan changed concurrently")]
    PlanChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
