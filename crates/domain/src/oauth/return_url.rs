//! Where the browser goes after the sign-in: only to an address on the operator's
//! allow-list, so the callback cannot be turned into an open redirect.
//!
//! The raw text is checked before it is parsed, because a URL parser repairs what a
//! browser would read differently (`\` as `/`, tabs and newlines dropped, `///host`).

use url::{Host, Url};

/// The longest return URL accepted.
pub const MAX_RETURN_URL_LEN: usize = 2048;

/// Why a return URL (or an allow-list entry) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlError {
    #[error("the return URL is not a well-formed absolute URL")]
    Malformed,
    #[error("the return URL must use https (http only on loopback)")]
    InsecureScheme,
    #[error("the return URL may not carry a user name, password or fragment")]
    ForbiddenPart,
    #[error("the return URL is not on the allow-list")]
    NotAllowed,
}

/// A return URL that passed [`ReturnUrlAllowList::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnUrl(Url);

impl ReturnUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// One allowed place: an exact origin and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedPlace {
    scheme: String,
    host: Host<String>,
    port: u16,
    /// Ends with `/`.
    path_prefix: String,
}

/// The operator's allow-list (configuration), e.g. `https://console.example.com/`,
/// `https://app.example.com/settings/mail`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReturnUrlAllowList(Vec<AllowedPlace>);

impl ReturnUrlAllowList {
    /// Parses the configured entries; an entry takes the same rules as a return URL and
    /// may not have a query. A prefix `/a` allows `/a` and `/a/…`, never `/ab`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ReturnUrlError> {
        let mut places = Vec::new();
        for entry in entries {
            let url = parse_strict(entry)?;
            if url.query().is_some() {
                return Err(ReturnUrlError::Malformed);
            }
            let (scheme, host, port) = origin(&url)?;
            let mut path_prefix = url.path().to_owned();
            if !path_prefix.ends_with('/') {
                path_prefix.push('/');
            }
            places.push(AllowedPlace {
                scheme,
                host,
                port,
                path_prefix,
            });
        }
        Ok(Self(places))
    }

    /// Accepts `raw` only if it passes the strict syntax rules and lies under one entry
    /// (same scheme, host and port; path equal to or under the prefix).
    pub fn check(&self, raw: &str) -> Result<ReturnUrl, ReturnUrlError> {
        let url = parse_strict(raw)?;
        let (scheme, host, port) = origin(&url)?;
        let path = url.path();
        let allowed = self.0.iter().any(|p| {
            p.scheme == scheme
                && p.host == host
                && p.port == port
                && (path.starts_with(&p.path_prefix) || format!("{path}/") == p.path_prefix)
        });
        if allowed {
            Ok(ReturnUrl(url))
        } else {
            Err(ReturnUrlError::NotAllowed)
        }
    }
}

/// The syntax rules shared by entries and return URLs.
fn parse_strict(raw: &str) -> Result<Url, ReturnUrlError> {
    if raw.is_empty()
        || raw.len() > MAX_RETURN_URL_LEN
        || raw.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(ReturnUrlError::Malformed);
    }
    if raw.contains('#') {
        return Err(ReturnUrlError::ForbiddenPart);
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or(ReturnUrlError::InsecureScheme)?;
    // `https:///evil.example` and friends: the authority must start right away.
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(ReturnUrlError::Malformed);
    }
    if authority.contains('@') {
        return Err(ReturnUrlError::ForbiddenPart);
    }
    let path = &rest[authority.len()..];
    let path = path.split('?').next().unwrap_or("");
    let lower = path.to_ascii_lowercase();
    // A doubled slash reads as a new authority to some routers; encoded slashes,
    // backslashes and dots are decoded by others after our prefix check.
    if path.contains("//") || ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e)) {
        return Err(ReturnUrlError::Malformed);
    }
    let url = Url::parse(raw).map_err(|_| ReturnUrlError::Malformed)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ReturnUrlError::ForbiddenPart);
    }
    if url.fragment().is_some() {
        return Err(ReturnUrlError::ForbiddenPart);
    }
    // Dot segments were removed by the parser; the path we compare is the one a
    // browser requests. Refuse anything the parser had to change in the path.
    if url.path() != path && !(path.is_empty() && url.path() == "/") {
        return Err(ReturnUrlError::Malformed);
    }
    match url.scheme() {
        "https" => {}
        "http" if url.host().is_some_and(|h| is_loopback(&h)) => {}
        _ => return Err(ReturnUrlError::InsecureScheme),
    }
    Ok(url)
}

fn origin(url: &Url) -> Result<(String, Host<String>, u16), ReturnUrlError> {
    let host = url.host().ok_or(ReturnUrlError::Malformed)?.to_owned();
    let port = url.port_or_known_default().ok_or(ReturnUrlError::Malformed)?;
    Ok((url.scheme().to_owned(), host, port))
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> ReturnUrlAllowList {
        ReturnUrlAllowList::parse([
            "https://console.example.com/",
            "https://app.example.com/settings/mail",
            "http://localhost:8080/console",
        ])
        .unwrap()
    }

    #[test]
    fn accepts_addresses_under_an_entry() {
        let l = list();
        for ok in [
            "https://console.example.com/",
            "https://console.example.com",
            "https://console.example.com/tenants/1?tab=mail",
            "https://CONSOLE.example.com:443/x",
            "https://app.example.com/settings/mail",
            "https://app.example.com/settings/mail/done",
            "http://localhost:8080/console/x",
        ] {
            assert!(l.check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_nasty_inputs() {
        use ReturnUrlError::*;
        let l = list();
        for (bad, why) in [
            ("https://evil.example/", NotAllowed),
            ("https://console.example.com.evil.example/", NotAllowed),
            ("https://console.example.com:8443/", NotAllowed),
            ("https://app.example.com/settings/mailbox", NotAllowed),
            ("https://app.example.com/settings/", NotAllowed),
            ("https://app.example.com/settings/mail/../../admin", Malformed),
            ("https://app.example.com/settings/mail/%2e%2e/%2e%2e/admin", Malformed),
            ("https://app.example.com/settings/mail/..%2f..%2fadmin", Malformed),
            ("http://console.example.com/", InsecureScheme),
            ("javascript:alert(1)", InsecureScheme),
            ("//evil.example/", InsecureScheme),
            ("/relative", InsecureScheme),
            ("HTTPS://console.example.com/", InsecureScheme),
            ("https://console.example.com@evil.example/", ForbiddenPart),
            ("https://user:pw@console.example.com/", ForbiddenPart),
            ("https://console.example.com/#@evil.example", ForbiddenPart),
            ("https://console.example.com\\@evil.example/", Malformed),
            ("https:\\\\evil.example/", Malformed),
            ("https:///evil.example/", Malformed),
            ("https://console.example.com//evil.example/", Malformed),
            ("https://console.example.com/\t/evil", Malformed),
            ("https://console.example.com/\n", Malformed),
            ("https://console.example.com/ x", Malformed),
            ("https://console.example.com/%5cevil", Malformed),
            ("http://localhost.evil.example:8080/console", InsecureScheme),
            ("http://localhost:8080/consoled", NotAllowed),
            ("", Malformed),
        ] {
            assert_eq!(l.check(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            l.check(&format!(
                "https://console.example.com/{}",
                "a".repeat(MAX_RETURN_URL_LEN)
            )),
            Err(Malformed)
        );
    }

    #[test]
    fn loopback_may_use_http_and_entries_follow_the_same_rules() {
        let l = ReturnUrlAllowList::parse(["http://127.0.0.1:3000/", "http://[::1]:3000/"]).unwrap();
        assert!(l.check("http://127.0.0.1:3000/cb").is_ok());
        assert!(l.check("http://[::1]:3000/cb").is_ok());
        assert_eq!(l.check("http://127.0.0.2:3000/cb"), Err(ReturnUrlError::NotAllowed));
        assert_eq!(
            ReturnUrlAllowList::parse(["http://console.example.com/"]),
            Err(ReturnUrlError::InsecureScheme)
        );
        assert_eq!(
            ReturnUrlAllowList::parse(["https://console.example.com/?a=1"]),
            Err(ReturnUrlError::Malformed)
        );
        assert_eq!(
            ReturnUrlAllowList::default().check("https://x.example/"),
            Err(ReturnUrlError::NotAllowed)
        );
    }
}
