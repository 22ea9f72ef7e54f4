//! The domain's errors: every way an operation can be refused (each with the stable code
//! the API reports), and the ways storage can fail. Nothing here depends on a port; the
//! ports depend on these.

use crate::plan::{Plan, PlanForbidsCustomSender};
use crate::values::ValueError;

crate::coded_enum! {
    /// Why a field was refused (`extensions.fields[].code`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FieldCode {
        Required = "REQUIRED",
        TooLong = "TOO_LONG",
        ControlCharacters = "CONTROL_CHARACTERS",
        InvalidFormat = "INVALID_FORMAT",
        OutOfRange = "OUT_OF_RANGE",
        /// A value of the wrong type (e.g. a template variable).
        InvalidType = "INVALID_TYPE",
        /// Only a failed delivery can be retried.
        NotFailed = "NOT_FAILED",
        /// A port the operator does not open to tenants.
        PortNotAllowed = "PORT_NOT_ALLOWED",
        /// The server or user name changed, so the stored password cannot be kept.
        PasswordReentryRequired = "PASSWORD_REENTRY_REQUIRED",
        /// An address whose domain is an IP address (`[10.0.0.5]`, `10.0.0.5`).
        AddressLiteral = "ADDRESS_LITERAL",
        /// A password made only of mask characters (`********`): a form sent back the
        /// placeholder it showed. Leave the password empty to keep the stored one.
        MaskedPassword = "MASKED_PASSWORD",
        /// Not the activation code the last test mail carried (or none is waiting).
        ActivationCodeInvalid = "ACTIVATION_CODE_INVALID",
        /// The activation code is older than 30 minutes: send a new test mail.
        ActivationCodeExpired = "ACTIVATION_CODE_EXPIRED",
        /// The saved settings are live already: there is nothing to activate.
        AlreadyLive = "ALREADY_LIVE",
        /// An internal address (loopback, private, link-local, metadata) or `localhost`,
        /// which tenants' mail may not go to.
        ForbiddenAddress = "FORBIDDEN_ADDRESS",
        /// Retention removed the delivery's content, so it cannot be sent again.
        ContentRemoved = "CONTENT_REMOVED",
        /// The host is not one of the preset's servers (`{account}.sakura.ne.jp`): fill in
        /// the template's part, or choose the custom server type.
        HostNotOfPreset = "HOST_NOT_OF_PRESET",
        /// No tenant has this id.
        UnknownTenant = "UNKNOWN_TENANT",
        /// A password given together with a connection (a sign-in authenticates instead).
        NotWithConnection = "NOT_WITH_CONNECTION",
        /// The tenant has no connection with this id.
        UnknownConnection = "UNKNOWN_CONNECTION",
        /// The connection cannot send until an admin signs in again (or its setup is
        /// fixed): reconnect first.
        ConnectionNotActive = "CONNECTION_NOT_ACTIVE",
        /// The operator has not set up sign-in with this provider.
        SignInNotConfigured = "SIGN_IN_NOT_CONFIGURED",
        /// The sign-in took longer than 10 minutes: start again.
        SignInExpired = "SIGN_IN_EXPIRED",
        /// The sign-in is not one this caller started for this tenant, or it was used
        /// already: start again.
        SignInInvalid = "SIGN_IN_INVALID",
        /// The provider refused the sign-in (the user cancelled, or the code was refused).
        SignInRefused = "SIGN_IN_REFUSED",
        /// The organisation has not approved Mailgate: an administrator must consent first.
        ConsentRequired = "CONSENT_REQUIRED",
        /// The return URL is not on the operator's list.
        ReturnUrlNotAllowed = "RETURN_URL_NOT_ALLOWED",
        /// The signed-in account has no e-mail address we could read.
        MailboxUnknown = "MAILBOX_UNKNOWN",
        /// A sign-in's token never crosses the network unencrypted: choose STARTTLS or SSL.
        EncryptionRequired = "ENCRYPTION_REQUIRED",
        /// App-only access for an organisation (directory or domain) that no admin of this
        /// tenant proved to belong to: sign in once with an account of it first.
        OrganisationNotProven = "ORGANISATION_NOT_PROVEN",
        /// Generic XOAUTH2 sends to the tenant's own server: save it (custom, with STARTTLS
        /// or SSL) first.
        OwnServerRequired = "OWN_SERVER_REQUIRED",
    }
}

impl From<ValueError> for FieldCode {
    fn from(e: ValueError) -> Self {
        match e {
            ValueError::Required => FieldCode::Required,
            ValueError::TooLong => FieldCode::TooLong,
            ValueError::ControlCharacters => FieldCode::ControlCharacters,
            ValueError::InvalidFormat => FieldCode::InvalidFormat,
            ValueError::OutOfRange => FieldCode::OutOfRange,
            ValueError::AddressLiteral => FieldCode::AddressLiteral,
            ValueError::MaskedPassword => FieldCode::MaskedPassword,
        }
    }
}

/// One wrong field of an input, with a stable reason code. The sentence for it is the
/// API's (its catalogues), not the domain's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The input field as the API names it, e.g. `fromAddress` or `popBeforeSmtp.host`.
    pub field: &'static str,
    pub code: FieldCode,
}

impl FieldError {
    pub fn new(field: &'static str, code: impl Into<FieldCode>) -> Self {
        Self {
            field,
            code: code.into(),
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
    /// A lookup on the caller's behalf (DNS) did not finish within its deadline; nothing
    /// was changed.
    #[error("the lookup did not finish in time")]
    TimedOut,
    /// The tenant's enqueue quota for this minute or day is used up; try again after
    /// `retry_after_secs`.
    #[error("the tenant's enqueue quota is used up (retry after {retry_after_secs} s)")]
    QuotaExceeded { retry_after_secs: u64 },
    /// The idempotency key already names another notification (`existing`) with a
    /// different payload.
    #[error("the idempotency key was used for another notification")]
    IdempotencyKeyReused { existing: crate::ids::DeliveryId },
    /// Settings are saved (this version) but cannot be read back; saving new ones or
    /// clearing works without them.
    #[error("the saved settings (version {version}) cannot be read")]
    SettingsUnreadable { version: i64 },
    #[error(transparent)]
    Internal(#[from] StoreError),
}

impl From<PlanForbidsCustomSender> for Error {
    fn from(e: PlanForbidsCustomSender) -> Self {
        Error::PlanForbidsCustomSender(e.0)
    }
}

impl Error {
    pub fn validation(field: &'static str, code: impl Into<FieldCode>) -> Self {
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
