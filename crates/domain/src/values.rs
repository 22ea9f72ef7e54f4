//! Values with rules, each a newtype with a private field and one constructor, so a
//! value that exists is valid. Text is trimmed of surrounding white space first.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a value was refused. The code is stable and reaches API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("a value is required")]
    Required,
    #[error("the value is too long")]
    TooLong,
    #[error("the value contains control characters")]
    ControlCharacters,
    #[error("the value is not in a valid format")]
    InvalidFormat,
    #[error("the value is out of range")]
    OutOfRange,
    /// An address whose domain is an IP address (`user@[10.0.0.5]`, `user@10.0.0.5`).
    #[error("the address's domain is an IP address")]
    AddressLiteral,
    /// A password made only of mask characters (`*`, `•`, `●`): the placeholder a form
    /// showed, sent back.
    #[error("the password is only mask characters")]
    MaskedPassword,
}

/// True for C0/C1 controls, DEL and the Unicode line/paragraph separators: anything
/// that could end a header or SMTP line, or hide in one.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Trims surrounding spaces; a control character anywhere (even a trailing newline,
/// which trimming would hide) is refused.
fn required_text(raw: &str) -> Result<&str, ValueError> {
    if has_control_chars(raw) {
        return Err(ValueError::ControlCharacters);
    }
    let s = raw.trim();
    if s.is_empty() {
        return Err(ValueError::Required);
    }
    Ok(s)
}

const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// A dot-atom local part; UTF-8 beyond ASCII is allowed (RFC 6531, sent with SMTPUTF8),
/// never a control or white-space character.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '.'
                || ATEXT_SPECIALS.contains(c)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        })
}

/// Converts a (possibly internationalised) DNS name to its ASCII form and checks the
/// host-name rules: letters, digits and hyphens, labels of 1–63, at most 253 in all, a
/// top-level label that is not all digits (so `127.1` is not a name).
fn ascii_dns_name(s: &str) -> Result<String, ValueError> {
    if s.chars().count() > 253 {
        return Err(ValueError::TooLong);
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    let ascii = idna::domain_to_ascii_strict(s).map_err(|_| ValueError::InvalidFormat)?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(if ascii.is_empty() {
            ValueError::InvalidFormat
        } else {
            ValueError::TooLong
        });
    }
    for label in ascii.split('.') {
        let ok = (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ValueError::InvalidFormat);
        }
    }
    let tld = ascii.rsplit('.').next().unwrap_or("");
    if tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(ValueError::InvalidFormat);
    }
    Ok(ascii)
}

/// An e-mail address (RFC 5321 addr-spec): an ASCII dot-atom local part of at most 64
/// characters, and a domain that is a fully qualified DNS name (internationalised names
/// accepted) or an address literal. At most 254 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

/// Whether a domain is an IP address written without brackets: it parses as one, or its
/// last label is all digits (no top-level domain is), e.g. `10.0.0.5`, `0x7f.1`.
fn is_ip_like(domain: &str) -> bool {
    let d = domain.trim_end_matches('.');
    d.parse::<std::net::IpAddr>().is_ok()
        || d.rsplit('.').next().is_some_and(|last| {
            !last.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit())
                    || (last.len() > 2
                        && last[..2].eq_ignore_ascii_case("0x")
                        && last[2..].bytes().all(|b| b.is_ascii_hexdigit())))
        })
}

impl EmailAddress {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = required_text(raw)?;
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(ValueError::InvalidFormat)?;
        if local.len() > 64 || !is_dot_atom(local) {
            return Err(ValueError::InvalidFormat);
        }
        // A domain that is an IP address would have the platform relay (or the tenant's
        // server) connect to that address: never for mail Mailgate sends or sends from.
        if domain.starts_with('[') || is_ip_like(domain) {
            return Err(ValueError::AddressLiteral);
        }
        {
            let ascii = ascii_dns_name(domain)?;
            if !ascii.contains('.') {
                return Err(ValueError::InvalidFormat);
            }
            if local.len() + 1 + ascii.len() > Self::MAX_CHARS {
                return Err(ValueError::TooLong);
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the address can only go on the wire with SMTPUTF8 (RFC 6531): its local
    /// part is not ASCII. (An internationalised domain goes as its A-label.)
    pub fn needs_smtputf8(&self) -> bool {
        self.0.rsplit_once('@').is_some_and(|(local, _)| !local.is_ascii())
    }

    /// The domain in ASCII (punycode), lower case, without a trailing dot: what DNS is
    /// asked about.
    pub fn ascii_domain(&self) -> String {
        let domain = self.0.rsplit_once('@').map_or("", |(_, d)| d);
        ascii_dns_name(domain)
            .unwrap_or_else(|_| domain.to_owned())
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(l, _)| l)
    }

    /// The address with its domain in ASCII (punycode), as it goes on the wire.
    pub fn to_ascii(&self) -> String {
        match self.0.rsplit_once('@') {
            Some((local, domain)) if !domain.starts_with('[') => match ascii_dns_name(domain) {
                Ok(ascii) => format!("{local}@{ascii}"),
                Err(_) => self.0.clone(),
            },
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for EmailAddress {
    // Addresses are personal data: debug output shows only the domain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("", |(_, d)| d);
        write!(f, "EmailAddress(…@{domain})")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The display name mail is sent under: at most 100 characters of any script, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderName(String);

impl SenderName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = required_text(raw)?;
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An address literal as used in EHLO and addresses: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressLiteral(IpAddr);

impl AddressLiteral {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or(ValueError::InvalidFormat)?;
        if let Some(v6) = inner.strip_prefix("IPv6:") {
            return v6
                .parse::<Ipv6Addr>()
                .map(|a| Self(IpAddr::V6(a)))
                .map_err(|_| ValueError::InvalidFormat);
        }
        inner
            .parse::<Ipv4Addr>()
            .map(|a| Self(IpAddr::V4(a)))
            .map_err(|_| ValueError::InvalidFormat)
    }

    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for AddressLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "[{a}]"),
            IpAddr::V6(a) => write!(f, "[IPv6:{a}]"),
        }
    }
}

/// An SMTP or POP server: a DNS host name (internationalised names accepted, stored in
/// ASCII) or an IP address (`192.0.2.1`, `2001:db8::1` or `[2001:db8::1]`). No scheme,
/// port, path, spaces or control characters; at most 253 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host(String);

impl Host {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = required_text(raw)?;
        if s.chars().count() > 253 {
            return Err(ValueError::TooLong);
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Self(v4.to_string()));
        }
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(v6) = bare.parse::<Ipv6Addr>() {
            return Ok(Self(v6.to_string()));
        }
        ascii_dns_name(s).map(|a| Self(a.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, when the host is an IP literal rather than a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

impl Port {
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        u16::try_from(raw)
            .ok()
            .filter(|p| *p != 0)
            .map(Self)
            .ok_or(ValueError::OutOfRange)
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// The wait between the starts of two sends through one tenant's server, 0–3,600,000 ms.
/// A provider that allows 12 mails a minute needs 5000 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendInterval(u32);

impl SendInterval {
    pub const MAX_MS: i64 = 3_600_000;

    pub fn parse(raw_ms: i64) -> Result<Self, ValueError> {
        if (0..=Self::MAX_MS).contains(&raw_ms) {
            Ok(Self(u32::try_from(raw_ms).map_err(|_| ValueError::OutOfRange)?))
        } else {
            Err(ValueError::OutOfRange)
        }
    }

    pub fn as_millis(self) -> u32 {
        self.0
    }

    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.0))
    }
}

/// The name sent in EHLO/HELO: a fully qualified host name (at least two labels) or an
/// address literal such as `[192.0.2.1]`. Nothing else reaches the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHostname(String);

impl LocalHostname {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = required_text(raw)?;
        if s.chars().count() > 253 {
            return Err(ValueError::TooLong);
        }
        if s.starts_with('[') {
            return AddressLiteral::parse(s).map(|lit| Self(lit.to_string()));
        }
        let ascii = ascii_dns_name(s)?;
        if !ascii.contains('.') {
            return Err(ValueError::InvalidFormat);
        }
        Ok(Self(ascii.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login name at a mail provider (the full address, the part before `@`, or an id):
/// 1–256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = required_text(raw)?;
        if s.chars().count() > 256 {
            return Err(ValueError::TooLong);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a password as entered: 1–1024 characters, no control characters (a CR or LF
/// in a POP3 `PASS` line would be a command injection). Not trimmed.
pub fn check_password(raw: &str) -> Result<(), ValueError> {
    if raw.is_empty() {
        return Err(ValueError::Required);
    }
    if raw.chars().count() > 1024 {
        return Err(ValueError::TooLong);
    }
    if has_control_chars(raw) {
        return Err(ValueError::ControlCharacters);
    }
    if raw.chars().all(|c| matches!(c, '*' | '•' | '●')) {
        return Err(ValueError::MaskedPassword);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_passwords_are_refused() {
        for masked in ["********", "●●●●", "•••", "*"] {
            assert_eq!(check_password(masked), Err(ValueError::MaskedPassword), "{masked}");
        }
        for real in ["*a*", "pa**word", "●1"] {
            assert_eq!(check_password(real), Ok(()), "{real}");
        }
    }

    #[test]
    fn email_addresses() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.jp",
            "info@日本語.jp",
            "  a@example.com ",
            "a@1password.example",
            "a@example.123abc",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", ValueError::Required),
            ("plain", ValueError::InvalidFormat),
            ("a@localhost", ValueError::InvalidFormat),
            ("a..b@example.com", ValueError::InvalidFormat),
            (".a@example.com", ValueError::InvalidFormat),
            ("a b@example.com", ValueError::InvalidFormat),
            ("a@exa mple.com", ValueError::InvalidFormat),
            ("a@example.com\r\nRCPT TO:<x@y.z>", ValueError::ControlCharacters),
            ("a@-example.com", ValueError::InvalidFormat),
            // A domain that is an IP address: the relay would connect to it.
            ("a@127.1", ValueError::AddressLiteral),
            ("x@[192.0.2.1]", ValueError::AddressLiteral),
            ("user@[10.0.0.5]", ValueError::AddressLiteral),
            ("user@[IPv6:::1]", ValueError::AddressLiteral),
            ("user@10.0.0.5", ValueError::AddressLiteral),
            ("user@169.254.169.254.", ValueError::AddressLiteral),
            ("user@0x7f.0x1", ValueError::AddressLiteral),
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(why), "{bad:?}");
        }
        let long = format!(
            "{}@{}.com",
            "a".repeat(64),
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(63)
        );
        assert_eq!(EmailAddress::parse(&long), Err(ValueError::TooLong));
        assert_eq!(
            EmailAddress::parse("info@日本語.jp").unwrap().to_ascii(),
            "info@xn--wgv71a119e.jp"
        );
        // UTF-8 before the @ (RFC 6531): accepted, and it needs SMTPUTF8 on the wire; an
        // internationalised domain alone does not (it goes as its A-label).
        let utf8 = EmailAddress::parse("山田@日本語.jp").unwrap();
        assert!(utf8.needs_smtputf8());
        assert_eq!(utf8.to_ascii(), "山田@xn--wgv71a119e.jp");
        assert!(!EmailAddress::parse("info@日本語.jp").unwrap().needs_smtputf8());
        assert!(EmailAddress::parse("josé.müller@example.de").is_ok());
        for bad in [
            "山 田@example.jp",
            "山田\u{3000}@example.jp",
            "\u{200b}\u{85}@example.jp",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        // 64 octets at most before the @, counted in UTF-8 (22 × 3 = 66).
        assert_eq!(
            EmailAddress::parse(&format!("{}@example.jp", "山".repeat(22))),
            Err(ValueError::InvalidFormat)
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(Host::parse("SMTP.Example.com").unwrap().as_str(), "smtp.example.com");
        assert_eq!(Host::parse("[::1]").unwrap().as_str(), "::1");
        assert_eq!(Host::parse("192.0.2.1").unwrap().as_str(), "192.0.2.1");
        assert!(Host::parse("メール.example.jp").is_ok());
        for bad in [
            "smtp://example.com",
            "example.com:587",
            "example.com/x",
            "exa mple.com",
            "127.1",
            "a_b.example.com",
            "-a.com",
        ] {
            assert_eq!(Host::parse(bad), Err(ValueError::InvalidFormat), "{bad}");
        }
        assert_eq!(Host::parse(&"a.".repeat(127)), Err(ValueError::TooLong));
        assert_eq!(Host::parse("a\n.com"), Err(ValueError::ControlCharacters));
        assert_eq!(Host::parse("smtp.example.com\n"), Err(ValueError::ControlCharacters));
    }

    #[test]
    fn ports_and_intervals() {
        assert!(Port::parse(0).is_err());
        assert!(Port::parse(65536).is_err());
        assert_eq!(Port::parse(587).unwrap().get(), 587);
        assert!(SendInterval::parse(-1).is_err());
        assert!(SendInterval::parse(3_600_001).is_err());
        assert_eq!(SendInterval::parse(5000).unwrap().as_millis(), 5000);
    }

    #[test]
    fn ehlo_names() {
        assert!(LocalHostname::parse("mail.example.com").is_ok());
        assert_eq!(LocalHostname::parse("[192.0.2.1]").unwrap().as_str(), "[192.0.2.1]");
        assert!(LocalHostname::parse("[IPv6:2001:db8::1]").is_ok());
        for bad in [
            "localhost",
            "mail example.com",
            "[300.1.1.1]",
            "host\r\nMAIL FROM:<a@b.c>",
            "192.0.2.1",
        ] {
            assert!(LocalHostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sender_names() {
        assert!(SenderName::parse("株式会社サンプル 通知").is_ok());
        assert_eq!(SenderName::parse("a\tb"), Err(ValueError::ControlCharacters));
        assert_eq!(SenderName::parse(&"あ".repeat(101)), Err(ValueError::TooLong));
        assert!(SenderName::parse(&"あ".repeat(100)).is_ok());
    }
}
