//! Webhooks by the Standard Webhooks specification: the events the platform can subscribe
//! to, the endpoints operators register (URL, secret, event types, optionally one tenant),
//! and what a message to an endpoint looks like. Which change causes which event is
//! decided in [`event`]; when a failed message is tried again, in [`retry`].

pub mod event;
pub mod retry;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{FieldCode, FieldError};
use crate::tenant::TenantId;

crate::ids::uuid_id! {
    /// A registered endpoint's id.
    EndpointId
}

crate::ids::uuid_id! {
    /// One event's message to one endpoint.
    MessageId
}

crate::coded_enum! {
    /// What happened, as the event's `type` says it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum EventType {
        /// The server took a delivery.
        DeliverySent = "delivery.sent",
        /// A delivery failed for good.
        DeliveryFailed = "delivery.failed",
        /// A delivery will be tried again (its first retry only).
        DeliveryRetrying = "delivery.retrying",
        /// A time-critical delivery goes through the platform default after its tenant's
        /// server kept failing.
        DeliveryFellBack = "delivery.fell_back",
        MailSettingsSaved = "mail_settings.saved",
        MailSettingsCleared = "mail_settings.cleared",
        /// A saved version was proven and carries the mail.
        MailSettingsLive = "mail_settings.live",
        /// A version was suspended after repeated configuration failures.
        MailSettingsSuspended = "mail_settings.suspended",
        TenantCreated = "tenant.created",
        TenantPlanChanged = "tenant.plan_changed",
    }
}

impl EventType {
    /// Whether a delivery's change causes it (the rest come from the audit entries of
    /// tenant and settings changes). Every type says which, so a new one cannot be left
    /// out of the store's check for wanted delivery events.
    pub fn of_delivery(self) -> bool {
        match self {
            Self::DeliverySent | Self::DeliveryFailed | Self::DeliveryRetrying | Self::DeliveryFellBack => true,
            Self::MailSettingsSaved
            | Self::MailSettingsCleared
            | Self::MailSettingsLive
            | Self::MailSettingsSuspended
            | Self::TenantCreated
            | Self::TenantPlanChanged => false,
        }
    }
}

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2000;
/// The longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 200;
/// Secrets shorter or longer than this (in bytes, after base64) are refused.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's URL: `http` or `https`, a host, no user name or password, no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(url::Url);

impl EndpointUrl {
    pub fn parse(text: &str) -> Result<Self, FieldCode> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldCode::Required);
        }
        if text.len() > MAX_URL_LEN {
            return Err(FieldCode::TooLong);
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(FieldCode::ControlCharacters);
        }
        let url = url::Url::parse(text).map_err(|_| FieldCode::InvalidFormat)?;
        let plain = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none();
        if !plain {
            return Err(FieldCode::InvalidFormat);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The host as it is connected to (an IPv6 address without brackets).
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// The path and query, as sent in the request line.
    pub fn request_target(&self) -> String {
        match self.0.query() {
            Some(q) => format!("{}?{q}", self.0.path()),
            None => self.0.path().to_owned(),
        }
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let host = match self.0.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        match self.0.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// A signing secret: `whsec_` and the base64 of 24 to 64 random bytes. Never shown after
/// it was handed out.
#[derive(Clone)]
pub struct WebhookSecret(SecretString);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, FieldCode> {
        use base64::Engine as _;
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldCode::Required);
        }
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(FieldCode::InvalidFormat)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| FieldCode::InvalidFormat)?;
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(FieldCode::OutOfRange);
        }
        Ok(Self(SecretString::from(text.to_owned())))
    }

    /// A new secret of 32 random bytes.
    pub fn generate() -> Self {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let text = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        Self(SecretString::from(text))
    }

    /// The text form (`whsec_…`), to store sealed or hand out once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The key HMAC signs with: the bytes after the prefix.
    pub fn key_bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self.expose().strip_prefix(SECRET_PREFIX).unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default()
    }
}

/// The secrets an endpoint signs with: the current one and, during a rotation's overlap,
/// the previous one until it expires (both signatures are sent meanwhile).
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    pub current: WebhookSecret,
    pub previous: Option<(WebhookSecret, DateTime<Utc>)>,
}

impl EndpointSecrets {
    /// The secrets to sign with at `at`.
    pub fn signing(&self, at: DateTime<Utc>) -> Vec<&WebhookSecret> {
        let mut keys = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && at < *until
        {
            keys.push(previous);
        }
        keys
    }
}

/// A registered endpoint, as operators see it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: EndpointId,
    pub url: EndpointUrl,
    pub description: String,
    /// Only this tenant's events; `None`: every tenant's.
    pub tenant_id: Option<TenantId>,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Until when the previous secret still signs (a rotation's overlap).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl WebhookEndpoint {
    /// Whether this endpoint wants `kind` of `tenant`.
    pub fn wants(&self, kind: EventType, tenant: TenantId) -> bool {
        self.enabled && self.event_types.contains(&kind) && self.tenant_id.is_none_or(|t| t == tenant)
    }
}

/// What an operator sends to register or change an endpoint, parsed field by field.
#[derive(Debug, Clone, Default)]
pub struct EndpointDraft {
    pub url: Option<String>,
    pub description: Option<String>,
    pub tenant_id: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub enabled: Option<bool>,
    pub secret: Option<String>,
}

/// An endpoint's fields once every one is valid.
#[derive(Debug, Clone)]
pub struct EndpointFields {
    pub url: EndpointUrl,
    pub description: String,
    pub tenant_id: Option<TenantId>,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
}

impl EndpointDraft {
    /// The fields of a new endpoint, or of `current` with this draft's changes; every
    /// wrong field at once.
    pub fn validate(&self, current: Option<&WebhookEndpoint>) -> Result<EndpointFields, Vec<FieldError>> {
        let mut errors = Vec::new();
        let url = match (&self.url, current) {
            (Some(text), _) => EndpointUrl::parse(text)
                .map_err(|c| errors.push(FieldError::new("url", c)))
                .ok(),
            (None, Some(c)) => Some(c.url.clone()),
            (None, None) => {
                errors.push(FieldError::new("url", FieldCode::Required));
                None
            }
        };
        let description = match (&self.description, current) {
            (Some(text), _) => {
                let text = text.trim();
                if text.chars().count() > MAX_DESCRIPTION_LEN {
                    errors.push(FieldError::new("description", FieldCode::TooLong));
                } else if text.chars().any(char::is_control) {
                    errors.push(FieldError::new("description", FieldCode::ControlCharacters));
                }
                text.to_owned()
            }
            (None, Some(c)) => c.description.clone(),
            (None, None) => String::new(),
        };
        let tenant_id = match (&self.tenant_id, current) {
            (Some(text), _) if text.trim().is_empty() => None,
            (Some(text), _) => text
                .trim()
                .parse::<TenantId>()
                .map_err(|_| errors.push(FieldError::new("tenantId", FieldCode::InvalidFormat)))
                .ok(),
            (None, Some(c)) => c.tenant_id,
            (None, None) => None,
        };
        let event_types = match (&self.event_types, current) {
            (Some(kinds), _) => {
                let mut unique: Vec<EventType> = Vec::new();
                for k in kinds {
                    if !unique.contains(k) {
                        unique.push(*k);
                    }
                }
                if unique.is_empty() {
                    errors.push(FieldError::new("eventTypes", FieldCode::Required));
                }
                unique
            }
            (None, Some(c)) => c.event_types.clone(),
            (None, None) => {
                errors.push(FieldError::new("eventTypes", FieldCode::Required));
                Vec::new()
            }
        };
        if let Some(secret) = &self.secret
            && let Err(code) = WebhookSecret::parse(secret)
        {
            errors.push(FieldError::new("secret", code));
        }
        let enabled = self.enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
        match (url, errors.is_empty()) {
            (Some(url), true) => Ok(EndpointFields {
                url,
                description,
                tenant_id,
                event_types,
                enabled,
            }),
            _ => Err(errors),
        }
    }
}

crate::coded_enum! {
    /// Where a message to one endpoint stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum MessageStatus {
        Pending = "PENDING",
        Sending = "SENDING",
        Delivered = "DELIVERED",
        /// Every retry of the schedule failed; an operator can replay it.
        Failed = "FAILED",
    }
}

crate::coded_enum! {
    /// Why an attempt did not get a 2xx answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AttemptError {
        /// The endpoint answered with a status other than 2xx (see the status code).
        HttpStatus = "HTTP_STATUS",
        /// The host does not resolve (or resolves to an internal address, which the log
        /// tells apart).
        HostNotFound = "HOST_NOT_FOUND",
        /// An internal address typed as such, refused by the address guard.
        ForbiddenAddress = "FORBIDDEN_ADDRESS",
        ConnectFailed = "CONNECT_FAILED",
        TlsFailed = "TLS_FAILED",
        /// No full answer within the attempt's deadline.
        TimedOut = "TIMED_OUT",
        /// The answer was not HTTP/1.1, or its headers were larger than the cap.
        ProtocolError = "PROTOCOL_ERROR",
    }
}

/// One POST to an endpoint and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<AttemptError>,
    pub duration_ms: u32,
    /// The start of the answer's body (at most [`RESPONSE_EXCERPT`] characters).
    pub response_excerpt: Option<String>,
}

/// Characters of an endpoint's answer kept with the attempt.
pub const RESPONSE_EXCERPT: usize = 200;

impl WebhookAttempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMessage {
    pub id: MessageId,
    /// The `webhook-id` header: the same for every endpoint and every attempt.
    pub event_id: String,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    pub tenant_id: TenantId,
    pub status: MessageStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body as sent (`type`, `timestamp`, `data`).
    pub body: String,
    /// Most recent first; loaded for one message or a page of them.
    pub recent_attempts: Vec<WebhookAttempt>,
}

/// A message a dispatcher claimed, with what sending it needs.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub message: WebhookMessage,
    pub url: EndpointUrl,
    pub secrets: EndpointSecrets,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = EndpointUrl::parse("https://hooks.example.com:8443/in?x=1").unwrap();
        assert_eq!(u.host(), "hooks.example.com");
        assert_eq!(u.port(), 8443);
        assert_eq!(u.request_target(), "/in?x=1");
        assert_eq!(u.authority(), "hooks.example.com:8443");
        let v6 = EndpointUrl::parse("http://[::1]/h").unwrap();
        assert_eq!(
            (v6.host().as_str(), v6.port(), v6.authority().as_str()),
            ("::1", 80, "[::1]")
        );
        for bad in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://x.example/#f",
            "x.example",
            "https://",
        ] {
            assert_eq!(EndpointUrl::parse(bad), Err(FieldCode::InvalidFormat), "{bad}");
        }
        assert_eq!(EndpointUrl::parse(" "), Err(FieldCode::Required));
        assert_eq!(
            EndpointUrl::parse("https://x.example/a b"),
            Err(FieldCode::ControlCharacters)
        );
    }

    #[test]
    fn secrets() {
        let s = WebhookSecret::generate();
        assert!(s.expose().starts_with(SECRET_PREFIX));
        assert_eq!(s.key_bytes().len(), 32);
        assert!(WebhookSecret::parse(s.expose()).is_ok());
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ=").err(),
            Some(FieldCode::OutOfRange)
        );
        assert_eq!(WebhookSecret::parse("secret").err(), Some(FieldCode::InvalidFormat));
        assert_eq!(WebhookSecret::parse("whsec_***").err(), Some(FieldCode::InvalidFormat));
        assert!(!format!("{s:?}").contains(s.expose()));
    }

    #[test]
    fn draft_reports_every_field() {
        let draft = EndpointDraft {
            url: Some("nope".into()),
            tenant_id: Some("x".into()),
            event_types: Some(vec![]),
            secret: Some("whsec_".into()),
            description: Some("d".repeat(201)),
            ..Default::default()
        };
        let errors = draft.validate(None).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["url", "description", "tenantId", "eventTypes", "secret"]);
    }
}
