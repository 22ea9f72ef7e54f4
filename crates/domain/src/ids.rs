//! Typed identifiers of the delivery queue, each parsed once: a delivery's id, the name a
//! worker holds leases under, a mail's `Message-ID`, and a caller's idempotency key. A
//! raw `Uuid` or `String` can no longer stand in for the wrong one.

use std::fmt;

use crate::values::{ValueError, has_control_chars};

/// Declares an id that is a UUID (version 7, so ids sort by creation time), written only
/// in the canonical hyphenated form, so one thing has one spelling.
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::values::ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err($crate::values::ValueError::InvalidFormat);
                }
                uuid::Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| $crate::values::ValueError::InvalidFormat)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id! {
    /// An OAuth connection's id (`oauth::MailConnection`); also the associated data its
    /// sealed refresh token is bound to. Here rather than in `oauth` so that settings,
    /// which name the connection they use, need nothing else of it.
    ConnectionId
}

uuid_id! {
    /// A delivery's id.
    DeliveryId
}

/// Checks a short identifier-like text: present, at most `max_chars`, no control
/// characters.
fn bounded_text(raw: &str, max_chars: usize) -> Result<(), ValueError> {
    if raw.is_empty() {
        return Err(ValueError::Required);
    }
    if raw.chars().count() > max_chars {
        return Err(ValueError::TooLong);
    }
    if has_control_chars(raw) {
        return Err(ValueError::ControlCharacters);
    }
    Ok(())
}

/// The name a worker holds its leases under: unique per process, readable in the
/// database (host name and a random part), 1–200 characters without controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, Self::MAX_CHARS)?;
        Ok(Self(raw.to_owned()))
    }

    /// `<prefix>-<random>`, with the prefix cut to fit and controls replaced.
    pub fn unique(prefix: &str) -> Self {
        let prefix: String = prefix
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .take(Self::MAX_CHARS - 33)
            .collect();
        Self(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mail's `Message-ID` (`<local@domain>`), one for every attempt of a delivery so a
/// receiver can tell a repeat from a new mail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// RFC 5322 allows 998 octets for a header line; the id stays well under it.
    pub const MAX_LEN: usize = 900;

    /// A fresh id in `domain` (the platform sender's domain).
    pub fn generate(domain: &str) -> Self {
        Self(format!("<{}@{domain}>", uuid::Uuid::new_v4().simple()))
    }

    /// An id read back: angle brackets around `local@domain`, printable ASCII without
    /// spaces, at most [`MessageId::MAX_LEN`].
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.is_empty() {
            return Err(ValueError::Required);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ValueError::TooLong);
        }
        let inner = raw
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .ok_or(ValueError::InvalidFormat)?;
        let printable = inner.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
        match inner.split_once('@') {
            Some((local, domain)) if printable && !local.is_empty() && !domain.is_empty() => Ok(Self(raw.to_owned())),
            _ => Err(ValueError::InvalidFormat),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A caller's idempotency key: the same key for the same tenant means the same
/// delivery. 1–200 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, Self::MAX_CHARS)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_once_and_refuse_what_they_are_not() {
        let id = DeliveryId::generate();
        assert_eq!(id.to_string().parse::<DeliveryId>(), Ok(id));
        assert_eq!("nope".parse::<DeliveryId>(), Err(ValueError::InvalidFormat));
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(simple.parse::<DeliveryId>(), Err(ValueError::InvalidFormat));

        let m = MessageId::generate("example.com");
        assert_eq!(MessageId::parse(m.as_str()), Ok(m));
        for bad in ["", "abc@example.com", "<abc>", "<a b@c>", "<@c>", "<a@>"] {
            assert!(MessageId::parse(bad).is_err(), "{bad:?}");
        }

        assert_eq!(IdempotencyKey::parse(""), Err(ValueError::Required));
        assert_eq!(IdempotencyKey::parse(&"k".repeat(201)), Err(ValueError::TooLong));
        assert_eq!(IdempotencyKey::parse("a\nb"), Err(ValueError::ControlCharacters));
        assert_eq!(IdempotencyKey::parse("order-1").unwrap().as_str(), "order-1");

        let owner = LeaseOwner::unique("host\nname");
        assert!(owner.as_str().starts_with("host_name-"));
        assert!(LeaseOwner::parse(owner.as_str()).is_ok());
        assert_eq!(LeaseOwner::parse(""), Err(ValueError::Required));
    }
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`, lower-case hex), carried from
/// the request that handed a notification in to its delivery attempts, so one trace shows
/// a mail's whole life. Only version `00`, non-zero ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        match parts.as_slice() {
            [version, trace, parent, flags]
                if *version == "00"
                    && hex(trace, 32)
                    && hex(parent, 16)
                    && hex(flags, 2)
                    && !zero(trace)
                    && !zero(parent) =>
            {
                Some(Self(raw.to_owned()))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod trace_tests {
    use super::TraceParent;

    #[test]
    fn only_well_formed_traceparents() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceParent::parse(ok).map(|t| t.as_str().to_owned()),
            Some(ok.to_owned())
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }
}
