//! Deliveries: a notification on its way, the states it goes through, and the one place
//! that decides each change of state ([`DeliveryUpdate`]). Storage applies the updates it
//! is handed; it never decides a status, a retry count or a reason itself.
//!
//! - [`notification`]: what a platform service hands in and the built-in templates;
//! - [`retry`]: the retry policy (backoff, rate-limit deferral, expiry);
//! - [`update`]: the state changes (sent, after a failure, released, requeued, …);
//! - [`retention`]: what is kept of a delivery once its content is removed;
//! - [`postpone`]: when a tenant's waiting mail is moved to a later time (its turn under
//!   pacing, or the end of its server's backoff).

pub mod notification;
pub mod postpone;
pub mod retention;
pub mod retry;
pub mod update;

use chrono::{DateTime, Utc};

use crate::i18n::Locale;
use crate::ids::{DeliveryId, IdempotencyKey, MessageId};
use crate::sender::SenderSource;
use crate::tenant::TenantId;
use crate::values::EmailAddress;

pub use notification::{NotificationKind, NotificationRequest, RenderedMessage, VariableValue, escape_html, render};
pub use postpone::Postponement;
pub use retry::{FailureDecision, RetryPolicy, is_rate_limit, is_server_wide};
pub use update::{DeliveryUpdate, NotFailed};

crate::coded_enum! {
    /// Where a delivery stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum DeliveryStatus {
        Queued = "QUEUED",
        Sending = "SENDING",
        Sent = "SENT",
        Retrying = "RETRYING",
        Failed = "FAILED",
    }
}

crate::coded_enum! {
    /// What an attempt led to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AttemptOutcome {
        Sent = "SENT",
        Retry = "RETRY",
        Deferred = "DEFERRED",
        Failed = "FAILED",
    }
}

/// One try at sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    pub stage: Option<String>,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<String>,
    pub server_message: Option<String>,
    pub sender_address: Option<String>,
    pub sender_source: Option<SenderSource>,
}

crate::coded_enum! {
    /// Why a delivery failed for good, as a code (stored, in the API and in webhooks);
    /// the words for it are in the API's catalogue, in the caller's language.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FailureCode {
        /// It still failed after the retry policy's maximum age.
        Expired = "EXPIRED",
        /// Its tenant no longer exists.
        TenantMissing = "TENANT_MISSING",
        /// Its stored row could not be read back.
        InvalidStoredData = "INVALID_STORED_DATA",
        /// Every process that tried to send it stopped before recording an outcome.
        Abandoned = "ABANDONED",
        /// The server (or the network) refused it for good.
        Refused = "REFUSED",
    }
}

/// The fixed texts of the codes other than a refusal, as releases before the code
/// stored them (the migration that added the code converts them alike).
const LEGACY_TEXTS: [(FailureCode, &str); 4] = [
    (FailureCode::Expired, "expired"),
    (FailureCode::TenantMissing, "tenant not found"),
    (FailureCode::InvalidStoredData, "invalid stored data"),
    (
        FailureCode::Abandoned,
        "abandoned: every try ended with its process before an outcome",
    ),
];

/// Why a delivery failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// It still failed after the retry policy's maximum age.
    Expired,
    /// Its tenant no longer exists.
    TenantMissing,
    /// Its stored row could not be read back.
    InvalidStoredData,
    /// Claimed [`MAX_CLAIMS_WITHOUT_OUTCOME`] times in a row without an outcome: every
    /// process that tried to send it stopped before recording one.
    Abandoned,
    /// The server (or the network) refused it for good: stage, reply code and the
    /// server's (redacted) reply, as one line (the detail).
    Refused(String),
}

impl FailureReason {
    /// Its code.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::Expired => FailureCode::Expired,
            Self::TenantMissing => FailureCode::TenantMissing,
            Self::InvalidStoredData => FailureCode::InvalidStoredData,
            Self::Abandoned => FailureCode::Abandoned,
            Self::Refused(_) => FailureCode::Refused,
        }
    }

    /// What the code alone does not say: a refusal's stage, reply code and reply.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Refused(detail) => Some(detail),
            _ => None,
        }
    }

    /// The text releases before the code stored as the reason, and the API's
    /// `failureReason` still answers for programs that read it: the code's fixed text, or
    /// a refusal's detail.
    pub fn legacy_text(&self) -> &str {
        match self {
            Self::Expired => LEGACY_TEXTS[0].1,
            Self::TenantMissing => LEGACY_TEXTS[1].1,
            Self::InvalidStoredData => LEGACY_TEXTS[2].1,
            Self::Abandoned => LEGACY_TEXTS[3].1,
            Self::Refused(detail) => detail,
        }
    }

    /// A reason stored as text by a release before the code (read only where a row has
    /// no code: a delivery such a release finished during a rolling upgrade).
    pub fn from_legacy_text(text: &str) -> Self {
        match LEGACY_TEXTS.iter().find(|(_, t)| *t == text) {
            Some((code, _)) => Self::from_parts(*code, None),
            None => Self::Refused(text.to_owned()),
        }
    }

    /// A reason read back from its code and detail (a refusal without one keeps an empty
    /// detail).
    pub fn from_parts(code: FailureCode, detail: Option<&str>) -> Self {
        match code {
            FailureCode::Expired => Self::Expired,
            FailureCode::TenantMissing => Self::TenantMissing,
            FailureCode::InvalidStoredData => Self::InvalidStoredData,
            FailureCode::Abandoned => Self::Abandoned,
            FailureCode::Refused => Self::Refused(detail.unwrap_or_default().to_owned()),
        }
    }
}

/// A notification on its way.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub kind: NotificationKind,
    pub to: EmailAddress,
    pub locale: Locale,
    pub message: RenderedMessage,
    /// One for all attempts.
    pub message_id: MessageId,
    pub idempotency_key: Option<IdempotencyKey>,
    pub status: DeliveryStatus,
    /// Error retries used (rate-limit deferrals do not count).
    pub retries: u32,
    /// An attempt of it was already a retry or a deferral (which `retries` does not
    /// count), so the next one is not its first retry (`delivery.retrying` is sent once).
    pub retried_before: bool,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<FailureReason>,
    /// Claims in a row that ended without an outcome, the current one included when the
    /// delivery was just claimed (1: its first claim since the last outcome).
    pub claims: u32,
    /// Goes out through the platform default whatever the tenant's route: time-critical
    /// mail its server did not take in time, or a notice to the tenant about its settings.
    pub via_platform: bool,
    /// When retention removed its content (recipient, subject, bodies, reply texts);
    /// `to` and `message` are then placeholders (see [`retention`]).
    pub content_removed_at: Option<DateTime<Utc>>,
    /// The recipient's hash, kept once the address is removed.
    pub recipient_hash: Option<String>,
    /// The hash of what its idempotency key stood for ([`retention::payload_hash`]), kept
    /// once the content is removed, so the key still tells another payload apart.
    pub payload_hash: Option<String>,
    /// The trace of the request that handed it in (W3C `traceparent`), if it had one.
    pub trace_parent: Option<crate::ids::TraceParent>,
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    /// A new delivery waiting for its first attempt at `at`: no key, no attempts, through
    /// the tenant's route. The one place a delivery is made from nothing (the enqueue, a
    /// suspension notice, tests); [`Delivery::with_key`] and [`Delivery::via_platform`]
    /// add the rest.
    pub fn queued(
        tenant_id: TenantId,
        kind: NotificationKind,
        to: EmailAddress,
        locale: Locale,
        message: RenderedMessage,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: DeliveryId::generate(),
            tenant_id,
            kind,
            to,
            locale,
            message,
            message_id,
            idempotency_key: None,
            status: DeliveryStatus::Queued,
            retries: 0,
            retried_before: false,
            next_attempt_at: at,
            created_at: at,
            sent_at: None,
            failure_reason: None,
            claims: 0,
            via_platform: false,
            content_removed_at: None,
            recipient_hash: None,
            payload_hash: None,
            trace_parent: None,
            attempts: Vec::new(),
        }
    }

    /// The same delivery under the caller's idempotency key.
    pub fn with_key(mut self, key: Option<IdempotencyKey>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// The same delivery sent through the platform default whatever the tenant's route.
    pub fn via_platform(mut self) -> Self {
        self.via_platform = true;
        self
    }

    /// The same delivery carrying the trace of the request that handed it in.
    pub fn traced(mut self, trace_parent: Option<crate::ids::TraceParent>) -> Self {
        self.trace_parent = trace_parent;
        self
    }
}

/// A delivery claimed more often than this in a row without an outcome (each claim ended
/// with its process) is failed instead of tried again.
pub const MAX_CLAIMS_WITHOUT_OUTCOME: u32 = 5;
