//! Our own SPF evaluation (RFC 7208 `check_host`, a subset) for the sender-domain check,
//! so that every name the tenant's record makes us look up goes through the address
//! guard's rule ([`Guarded`]): a name under a private-use domain, or one that resolves to
//! an address tenants may not reach, reads exactly like a name that does not exist. (With
//! mail-auth's `check_host`, `a:db.corp.internal/0` answered PASS when that name existed
//! and NOT_ALLOWED when it did not.)
//!
//! What is evaluated: `ip4`, `ip6`, `a`, `mx`, `include`, `exists` and `all` with their
//! qualifiers and dual CIDR lengths, and `redirect=`. `ptr` never matches (§5.5: SHOULD NOT
//! be used); `exp=` is never looked up (it only explains a failure). A record with a macro
//! in a mechanism or in `redirect=` is a permanent error: macros would make us look up
//! names built from the client's address. At most 10 terms that query DNS (§4.6.4), at
//! most 2 of them finding nothing, at most 10 exchanges per `mx`. Records are parsed by
//! mail-auth's `Spf::parse`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};
use mailer::guard::{is_forbidden, is_private_use_name};
use mailer::resolver::{LookupError, Resolver};

/// Terms that query DNS, at most (RFC 7208 §4.6.4).
const MAX_LOOKUPS: u8 = 10;
/// Lookups that find nothing, at most (RFC 7208 §4.6.4).
const MAX_VOID_LOOKUPS: u8 = 2;
/// Exchanges of one `mx` term, at most (RFC 7208 §4.6.4).
const MAX_MX_EXCHANGES: usize = 10;

/// The result of [`check_host`] (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    /// The domain publishes no SPF record.
    None,
    TempError,
    PermError,
}

/// The DNS lookups an evaluation makes. [`Guarded`] puts the address guard's rule on any
/// of them; [`ResolverDns`] asks the mailer's resolver.
#[async_trait::async_trait]
pub(crate) trait SpfDns: Sync {
    /// The TXT records of `name`.
    async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError>;
    /// The A and AAAA records of `name`.
    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError>;
    /// The exchanges of `name`'s MX records, lowest preference first.
    async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError>;
}

/// The mailer's resolver, as it answers.
pub(crate) struct ResolverDns<'a>(pub &'a Resolver);

#[async_trait::async_trait]
impl SpfDns for ResolverDns<'_> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.0.txt(name).await
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        self.0.addresses(name).await
    }

    async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .0
            .mx(name)
            .await?
            .into_iter()
            .map(|(_, exchange)| exchange)
            .collect())
    }
}

/// Lookups under the address guard's rule, for names a tenant's record chose: unless
/// internal hosts are allowed (development), a name under a private-use domain is not
/// looked up, and a name that resolves to any address tenants may not reach
/// ([`is_forbidden`]) has no records of any type — both read exactly like a name that does
/// not exist (`NotFound`). The log says which it was.
pub(crate) struct Guarded<D> {
    pub raw: D,
    pub allow_private: bool,
}

impl<D: SpfDns> Guarded<D> {
    /// Whether `name` must read as nonexistent.
    async fn hidden(&self, name: &str) -> bool {
        if self.allow_private {
            return false;
        }
        if is_private_use_name(name) {
            tracing::debug!(name, "SPF: a name under a private-use domain reads as not found");
            return true;
        }
        let internal = matches!(self.raw.addresses(name).await,
            Ok(addrs) if addrs.iter().any(|ip| is_forbidden(*ip)));
        if internal {
            tracing::warn!(
                name,
                "SPF: a name that resolves to an internal address reads as not found"
            );
        }
        internal
    }
}

#[async_trait::async_trait]
impl<D: SpfDns> SpfDns for Guarded<D> {
    async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        if self.hidden(name).await {
            return Err(LookupError::NotFound);
        }
        self.raw.txt(name).await
    }

    async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        if self.allow_private {
            return self.raw.addresses(name).await;
        }
        if is_private_use_name(name) {
            tracing::debug!(name, "SPF: a name under a private-use domain reads as not found");
            return Err(LookupError::NotFound);
        }
        let addrs = self.raw.addresses(name).await?;
        if addrs.iter().any(|ip| is_forbidden(*ip)) {
            tracing::warn!(
                name,
                "SPF: a name that resolves to an internal address reads as not found"
            );
            return Err(LookupError::NotFound);
        }
        Ok(addrs)
    }

    async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
        if self.hidden(name).await {
            return Err(LookupError::NotFound);
        }
        self.raw.mx(name).await
    }
}

/// The SPF record of `domain` (RFC 7208 §4.5): `None` when it has none, `PermError` when it
/// has more than one, `TempError` when DNS failed.
pub(crate) async fn spf_record<D: SpfDns + ?Sized>(dns: &D, domain: &str) -> Result<Option<String>, SpfResult> {
    let records = match dns.txt(domain).await {
        Ok(records) => records,
        Err(LookupError::NotFound) => return Ok(None),
        Err(LookupError::Failed) => return Err(SpfResult::TempError),
    };
    let mut spf = records.into_iter().filter(|r| is_spf_record(r));
    match (spf.next(), spf.next()) {
        (None, _) => Ok(None),
        (Some(record), None) => Ok(Some(record)),
        (Some(_), Some(_)) => Err(SpfResult::PermError),
    }
}

/// `v=spf1` alone or followed by a space (RFC 7208 §4.5), any case.
fn is_spf_record(record: &str) -> bool {
    let bytes = record.as_bytes();
    bytes.len() >= 6 && bytes[..6].eq_ignore_ascii_case(b"v=spf1") && (bytes.len() == 6 || bytes[6] == b' ')
}

/// Whether `ip` may send for `domain` by its SPF record (RFC 7208 `check_host`, the
/// subset in the module's header).
pub(crate) async fn check_host<D: SpfDns>(dns: &D, ip: IpAddr, domain: &str) -> SpfResult {
    // An IPv4-mapped IPv6 address is evaluated as the IPv4 address (§5).
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut budget = Budget { lookups: 0, voids: 0 };
    match valid_name(domain) {
        Some(domain) => evaluate(dns, ip, domain, &mut budget).await,
        None => SpfResult::None,
    }
}

/// What one evaluation has spent of its limits.
struct Budget {
    lookups: u8,
    voids: u8,
}

impl Budget {
    /// One more term that queries DNS; `PermError` past the limit.
    fn lookup(&mut self) -> Result<(), SpfResult> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            Err(SpfResult::PermError)
        } else {
            Ok(())
        }
    }

    /// One more lookup that found nothing; `PermError` past the limit.
    fn void(&mut self) -> Result<(), SpfResult> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            Err(SpfResult::PermError)
        } else {
            Ok(())
        }
    }
}

type Evaluation<'a> = Pin<Box<dyn Future<Output = SpfResult> + Send + 'a>>;

/// `check_host` for `domain` (a valid name), with the limits shared across includes and
/// redirects.
fn evaluate<'a, D: SpfDns>(dns: &'a D, ip: IpAddr, domain: String, budget: &'a mut Budget) -> Evaluation<'a> {
    Box::pin(async move {
        let record = match spf_record(dns, &domain).await {
            Ok(Some(record)) => record,
            Ok(None) => return SpfResult::None,
            Err(result) => return result,
        };
        let Ok(spf) = Spf::parse(record.as_bytes()) else {
            return SpfResult::PermError;
        };
        match evaluate_record(dns, ip, &domain, &spf, budget).await {
            Ok(result) | Err(result) => result,
        }
    })
}

/// The directives of `spf` (the record of `domain`) in order, then its redirect; `Err` for
/// a result that ends the evaluation at once (an error).
async fn evaluate_record<D: SpfDns>(
    dns: &D,
    ip: IpAddr,
    domain: &str,
    spf: &Spf,
    budget: &mut Budget,
) -> Result<SpfResult, SpfResult> {
    // Every name the record names, checked before anything is looked up: a macro anywhere
    // (but `exp=`) or a name that is not a domain name makes the record unusable.
    let mut targets = Vec::with_capacity(spf.directives.len());
    for directive in spf.directives.iter() {
        let target = match &directive.mechanism {
            Mechanism::A { macro_string, .. }
            | Mechanism::Mx { macro_string, .. }
            | Mechanism::Include { macro_string }
            | Mechanism::Exists { macro_string } => Some(target(macro_string, domain)?),
            Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } | Mechanism::Ptr { .. } => None,
        };
        targets.push(target);
    }
    let redirect = match &spf.redirect {
        Some(m) => Some(target(m, domain)?),
        None => None,
    };
    for (directive, name) in spf.directives.iter().zip(targets) {
        let name = name.as_deref().unwrap_or(domain);
        let matched = match &directive.mechanism {
            Mechanism::All => true,
            Mechanism::Ip4 { addr, mask } => match ip {
                IpAddr::V4(v4) => u32::from(v4) & mask == u32::from(*addr) & mask,
                IpAddr::V6(_) => false,
            },
            Mechanism::Ip6 { addr, mask } => match ip {
                IpAddr::V6(v6) => u128::from(v6) & mask == u128::from(*addr) & mask,
                IpAddr::V4(_) => false,
            },
            Mechanism::A { ip4_mask, ip6_mask, .. } => {
                budget.lookup()?;
                match addresses_match(dns, name, ip, *ip4_mask, *ip6_mask).await? {
                    Some(matched) => matched,
                    None => {
                        budget.void()?;
                        false
                    }
                }
            }
            Mechanism::Mx { ip4_mask, ip6_mask, .. } => {
                budget.lookup()?;
                match dns.mx(name).await {
                    Ok(exchanges) => {
                        // A null MX (`.`, RFC 7505) names no exchange.
                        let exchanges: Vec<String> = exchanges.into_iter().filter(|e| !e.is_empty()).collect();
                        if exchanges.len() > MAX_MX_EXCHANGES {
                            return Err(SpfResult::PermError);
                        }
                        let mut matched = false;
                        for exchange in &exchanges {
                            if addresses_match(dns, exchange, ip, *ip4_mask, *ip6_mask).await? == Some(true) {
                                matched = true;
                                break;
                            }
                        }
                        matched
                    }
                    Err(LookupError::NotFound) => {
                        budget.void()?;
                        false
                    }
                    Err(LookupError::Failed) => return Err(SpfResult::TempError),
                }
            }
            Mechanism::Include { .. } => {
                budget.lookup()?;
                // §5.2: only a pass matches; an error, or no record there, is an error here.
                match evaluate(dns, ip, name.to_owned(), budget).await {
                    SpfResult::Pass => true,
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => false,
                    SpfResult::TempError => return Err(SpfResult::TempError),
                    SpfResult::PermError | SpfResult::None => return Err(SpfResult::PermError),
                }
            }
            Mechanism::Exists { .. } => {
                budget.lookup()?;
                // §5.7: an A lookup whatever the client's address family.
                match dns.addresses(name).await {
                    Ok(addrs) if addrs.iter().any(IpAddr::is_ipv4) => true,
                    Ok(_) | Err(LookupError::NotFound) => {
                        budget.void()?;
                        false
                    }
                    Err(LookupError::Failed) => return Err(SpfResult::TempError),
                }
            }
            Mechanism::Ptr { .. } => {
                // Counted like any DNS term, never looked up, never a match.
                budget.lookup()?;
                false
            }
        };
        if matched {
            return Ok(match directive.qualifier {
                Qualifier::Pass => SpfResult::Pass,
                Qualifier::Fail => SpfResult::Fail,
                Qualifier::SoftFail => SpfResult::SoftFail,
                Qualifier::Neutral => SpfResult::Neutral,
            });
        }
    }
    if let Some(name) = redirect {
        budget.lookup()?;
        // §6.1: a target without a record is a permanent error.
        return Ok(match evaluate(dns, ip, name, budget).await {
            SpfResult::None => SpfResult::PermError,
            result => result,
        });
    }
    Ok(SpfResult::Neutral)
}

/// Whether an address of `name` in `ip`'s family matches `ip` under the CIDR masks:
/// `None` when `name` has no address of that family (a void lookup for `a`).
async fn addresses_match<D: SpfDns>(
    dns: &D,
    name: &str,
    ip: IpAddr,
    ip4_mask: u32,
    ip6_mask: u128,
) -> Result<Option<bool>, SpfResult> {
    let addrs = match dns.addresses(name).await {
        Ok(addrs) => addrs,
        Err(LookupError::NotFound) => return Ok(None),
        Err(LookupError::Failed) => return Err(SpfResult::TempError),
    };
    let mut same_family = false;
    for addr in addrs {
        let matched = match (ip, addr) {
            (IpAddr::V4(ip), IpAddr::V4(addr)) => u32::from(ip) & ip4_mask == u32::from(addr) & ip4_mask,
            (IpAddr::V6(ip), IpAddr::V6(addr)) => u128::from(ip) & ip6_mask == u128::from(addr) & ip6_mask,
            _ => continue,
        };
        same_family = true;
        if matched {
            return Ok(Some(true));
        }
    }
    Ok(same_family.then_some(false))
}

/// The name a term names: the current domain when it names none, its literal name, or
/// `PermError` for a macro or what is not a domain name.
fn target(m: &Macro, domain: &str) -> Result<String, SpfResult> {
    match m {
        Macro::None => Ok(domain.to_owned()),
        Macro::Literal(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(valid_name)
            .ok_or(SpfResult::PermError),
        Macro::Variable { .. } | Macro::List(_) => Err(SpfResult::PermError),
    }
}

/// `name` in lower case without a trailing dot, when it is a domain name of at least two
/// labels (RFC 7208 §7.1 `domain-end`), each of 1 to 63 characters, 253 at most in all.
fn valid_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        });
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A zone in memory: TXT, addresses and MX by name; `failing` names answer `Failed`
    /// to every question. Every question is written down.
    #[derive(Default)]
    struct Zone {
        txt: HashMap<String, Vec<String>>,
        addresses: HashMap<String, Vec<IpAddr>>,
        mx: HashMap<String, Vec<String>>,
        failing: Vec<String>,
        asked: Mutex<Vec<String>>,
    }

    impl Zone {
        fn txt(mut self, name: &str, record: &str) -> Self {
            self.txt.entry(name.to_owned()).or_default().push(record.to_owned());
            self
        }

        fn a(mut self, name: &str, ip: &str) -> Self {
            self.addresses
                .entry(name.to_owned())
                .or_default()
                .push(ip.parse().unwrap());
            self
        }

        fn mx(mut self, name: &str, exchange: &str) -> Self {
            self.mx.entry(name.to_owned()).or_default().push(exchange.to_owned());
            self
        }

        fn failing(mut self, name: &str) -> Self {
            self.failing.push(name.to_owned());
            self
        }

        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }

        fn answer<T: Clone>(
            &self,
            kind: &str,
            name: &str,
            map: &HashMap<String, Vec<T>>,
        ) -> Result<Vec<T>, LookupError> {
            self.asked.lock().unwrap().push(format!("{kind} {name}"));
            if self.failing.iter().any(|f| f == name) {
                return Err(LookupError::Failed);
            }
            map.get(name).cloned().ok_or(LookupError::NotFound)
        }
    }

    #[async_trait::async_trait]
    impl SpfDns for Zone {
        async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
            self.answer("TXT", name, &self.txt)
        }

        async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
            self.answer("A", name, &self.addresses)
        }

        async fn mx(&self, name: &str) -> Result<Vec<String>, LookupError> {
            self.answer("MX", name, &self.mx)
        }
    }

    const CLIENT: &str = "203.0.114.7";
    const CLIENT6: &str = "2a00:1450:4001::7";

    async fn check(zone: &Zone, record: &str) -> SpfResult {
        check_from(zone, record, CLIENT).await
    }

    /// `record` published at `sender.example`, evaluated for `ip`, unguarded.
    async fn check_from(zone: &Zone, record: &str, ip: &str) -> SpfResult {
        let mut zone_with = Zone {
            txt: zone.txt.clone(),
            addresses: zone.addresses.clone(),
            mx: zone.mx.clone(),
            failing: zone.failing.clone(),
            asked: Mutex::new(Vec::new()),
        };
        zone_with.txt.insert("sender.example".into(), vec![record.to_owned()]);
        check_host(&zone_with, ip.parse().unwrap(), "sender.example").await
    }

    /// The same, under the guard (internal hosts not allowed).
    async fn guarded(zone: Zone, record: &str) -> SpfResult {
        let zone = zone.txt("sender.example", record);
        let dns = Guarded {
            raw: zone,
            allow_private: false,
        };
        check_host(&dns, CLIENT.parse().unwrap(), "sender.example").await
    }

    #[tokio::test]
    async fn addresses_with_qualifiers_and_cidr_lengths() {
        let zone = Zone::default();
        use SpfResult::*;
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.114.7 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.114.0/24 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.115.0/24 -all").await, Fail);
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.115.0/24 ~all").await, SoftFail);
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.115.0/24 ?all").await, Neutral);
        assert_eq!(check(&zone, "v=spf1 ip4:203.0.115.0/24").await, Neutral);
        assert_eq!(check(&zone, "v=spf1 -ip4:203.0.114.7 +all").await, Fail);
        assert_eq!(check(&zone, "V=SPF1 ip4:203.0.114.7 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 ip6:2a00:1450::/32 -all").await, Fail);
        assert_eq!(check_from(&zone, "v=spf1 ip6:2a00:1450::/32 -all", CLIENT6).await, Pass);
        assert_eq!(check_from(&zone, "v=spf1 ip4:203.0.114.7 -all", CLIENT6).await, Fail);
        // An IPv4-mapped client is its IPv4 address.
        assert_eq!(
            check_from(&zone, "v=spf1 ip4:203.0.114.7 -all", "::ffff:203.0.114.7").await,
            Pass
        );
    }

    #[tokio::test]
    async fn a_and_mx_with_dual_cidr_lengths() {
        use SpfResult::*;
        let zone = Zone::default()
            .a("sender.example", "203.0.114.200")
            .a("mail.other.example", "203.0.114.9")
            .a("mail.other.example", "2a00:1450:4001::1")
            .mx("other.example", "mail.other.example")
            .mx("sender.example", "mail.other.example");
        assert_eq!(check(&zone, "v=spf1 a -all").await, Fail);
        assert_eq!(check(&zone, "v=spf1 a/24 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 a:mail.other.example -all").await, Fail);
        assert_eq!(check(&zone, "v=spf1 a:mail.other.example/28 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 mx -all").await, Fail);
        assert_eq!(check(&zone, "v=spf1 mx/24 -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 mx:other.example/24 -all").await, Pass);
        assert_eq!(
            check_from(&zone, "v=spf1 mx:other.example/24 -all", CLIENT6).await,
            Fail
        );
        assert_eq!(
            check_from(&zone, "v=spf1 mx:other.example/24//48 -all", CLIENT6).await,
            Pass
        );
        assert_eq!(
            check_from(&zone, "v=spf1 a:mail.other.example//48 -all", CLIENT6).await,
            Pass
        );
    }

    #[tokio::test]
    async fn include_redirect_and_exists() {
        use SpfResult::*;
        let zone = Zone::default()
            .txt("_spf.provider.example", "v=spf1 ip4:203.0.114.0/24 -all")
            .txt("_spf.elsewhere.example", "v=spf1 ip4:198.51.99.0/24 -all")
            .txt("_spf.neutral.example", "v=spf1 ?all")
            .txt("_spf.broken.example", "v=spf1 redirect=a.example redirect=b.example")
            .a("allowed.exists.example", "127.0.0.2")
            .failing("_spf.down.example");
        assert_eq!(check(&zone, "v=spf1 include:_spf.provider.example -all").await, Pass);
        assert_eq!(
            check(&zone, "v=spf1 ~include:_spf.provider.example -all").await,
            SoftFail
        );
        assert_eq!(check(&zone, "v=spf1 include:_spf.elsewhere.example -all").await, Fail);
        assert_eq!(check(&zone, "v=spf1 include:_spf.neutral.example ~all").await, SoftFail);
        assert_eq!(
            check(&zone, "v=spf1 include:_spf.nowhere.example -all").await,
            PermError
        );
        assert_eq!(check(&zone, "v=spf1 include:_spf.broken.example -all").await, PermError);
        assert_eq!(check(&zone, "v=spf1 include:_spf.down.example -all").await, TempError);
        assert_eq!(check(&zone, "v=spf1 redirect=_spf.provider.example").await, Pass);
        assert_eq!(check(&zone, "v=spf1 redirect=_spf.elsewhere.example").await, Fail);
        assert_eq!(check(&zone, "v=spf1 redirect=_spf.nowhere.example").await, PermError);
        // `all` anywhere: the redirect is never followed.
        assert_eq!(
            check(&zone, "v=spf1 ?all redirect=_spf.provider.example").await,
            Neutral
        );
        assert_eq!(check(&zone, "v=spf1 exists:allowed.exists.example -all").await, Pass);
        assert_eq!(check(&zone, "v=spf1 exists:denied.exists.example -all").await, Fail);
    }

    #[tokio::test]
    async fn ptr_never_matches_and_macros_are_permanent_errors() {
        use SpfResult::*;
        let zone = Zone::default();
        assert_eq!(check(&zone, "v=spf1 ptr ?all").await, Neutral);
        assert_eq!(check(&zone, "v=spf1 ptr:sender.example -all").await, Fail);
        for record in [
            "v=spf1 ip4:203.0.114.7 exists:%{i}._spf.sender.example -all",
            "v=spf1 include:%{d}.provider.example -all",
            "v=spf1 a:%{l}.sender.example -all",
            "v=spf1 -all redirect=%{d}._spf.example",
        ] {
            assert_eq!(check(&zone, record).await, PermError, "{record}");
        }
        // Nothing was looked up but the record itself.
        assert!(zone.asked().is_empty());
        // `exp=` is never looked up, macros or not.
        assert_eq!(check(&zone, "v=spf1 -all exp=explain.%{d}").await, Fail);
    }

    #[tokio::test]
    async fn records_none_several_and_broken() {
        use SpfResult::*;
        let two = Zone::default()
            .txt("sender.example", "v=spf1 -all")
            .txt("sender.example", "v=spf1 +all");
        assert_eq!(
            check_host(&two, CLIENT.parse().unwrap(), "sender.example").await,
            PermError
        );
        let other_txt = Zone::default()
            .txt("sender.example", "google-site-verification=abc")
            .txt("sender.example", "v=spf10 +all");
        assert_eq!(
            check_host(&other_txt, CLIENT.parse().unwrap(), "sender.example").await,
            None
        );
        let down = Zone::default().failing("sender.example");
        assert_eq!(
            check_host(&down, CLIENT.parse().unwrap(), "sender.example").await,
            TempError
        );
        assert_eq!(check(&Zone::default(), "v=spf1 ip4 -all").await, PermError);
    }

    #[tokio::test]
    async fn ten_dns_terms_at_most_and_two_void_lookups() {
        use SpfResult::*;
        let mut zone = Zone::default();
        for i in 0..11 {
            zone = zone.a(&format!("h{i}.sender.example"), "198.51.99.1");
        }
        let terms = |n: usize| {
            (0..n)
                .map(|i| format!("a:h{i}.sender.example"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(check(&zone, &format!("v=spf1 {} ?all", terms(10))).await, Neutral);
        assert_eq!(check(&zone, &format!("v=spf1 {} ?all", terms(11))).await, PermError);
        // Includes count, and their own terms count against the same limit.
        let zone = zone.txt("_spf.five.example", &format!("v=spf1 {}", terms(5)));
        assert_eq!(
            check(&zone, &format!("v=spf1 include:_spf.five.example {} ?all", terms(4))).await,
            Neutral
        );
        assert_eq!(
            check(&zone, &format!("v=spf1 include:_spf.five.example {} ?all", terms(5))).await,
            PermError
        );
        // An include loop ends at the limit.
        let looping = Zone::default().txt("loop.example", "v=spf1 include:loop.example -all");
        assert_eq!(check(&looping, "v=spf1 include:loop.example -all").await, PermError);
        let voids = "v=spf1 a:v1.sender.example a:v2.sender.example";
        assert_eq!(check(&zone, &format!("{voids} ?all")).await, Neutral);
        assert_eq!(
            check(&zone, &format!("{voids} exists:v3.sender.example ?all")).await,
            PermError
        );
        assert_eq!(
            check(&zone, &format!("{voids} mx:v3.sender.example ?all")).await,
            PermError
        );
    }

    /// The rule this module exists for: under the guard, each term naming a name that
    /// resolves to an internal address gives exactly the result of naming one that does
    /// not exist, and never the result the internal address would give.
    #[tokio::test]
    async fn under_the_guard_internal_names_read_like_missing_ones() {
        let zone = || {
            Zone::default()
                .a("db.corp.example", "10.1.2.3")
                .a("spf.corp.example", "10.1.2.3")
                .txt("spf.corp.example", "v=spf1 +all")
                .a("mixed.corp.example", "203.0.114.7")
                .a("mixed.corp.example", "fd00::1")
                .mx("mx.corp.example", "db.corp.example")
                .a("mx-host.corp.example", "192.168.0.1")
                .mx("mx-host.corp.example", "mail.public.example")
                .a("mail.public.example", "203.0.114.7")
        };
        for (internal, missing) in [
            (
                "v=spf1 a:db.corp.example/0 -all",
                "v=spf1 a:nothing.corp.example/0 -all",
            ),
            ("v=spf1 a:mixed.corp.example -all", "v=spf1 a:nothing.corp.example -all"),
            (
                "v=spf1 mx:mx.corp.example/0 -all",
                "v=spf1 mx:nothing.corp.example/0 -all",
            ),
            (
                "v=spf1 mx:mx-host.corp.example -all",
                "v=spf1 mx:nothing.corp.example -all",
            ),
            (
                "v=spf1 include:spf.corp.example -all",
                "v=spf1 include:nothing.corp.example -all",
            ),
            (
                "v=spf1 redirect=spf.corp.example",
                "v=spf1 redirect=nothing.corp.example",
            ),
            (
                "v=spf1 exists:db.corp.example -all",
                "v=spf1 exists:nothing.corp.example -all",
            ),
            (
                "v=spf1 a:db.corp.internal/0 -all",
                "v=spf1 a:nothing.corp.example/0 -all",
            ),
        ] {
            let hidden = guarded(zone(), internal).await;
            assert_eq!(hidden, guarded(zone(), missing).await, "{internal}");
            assert_ne!(hidden, SpfResult::Pass, "{internal}");
            // Without the guard (development) the internal name is used.
            let dns = Guarded {
                raw: zone().txt("sender.example", internal),
                allow_private: true,
            };
            if !internal.contains(".internal") {
                assert_eq!(
                    check_host(&dns, CLIENT.parse().unwrap(), "sender.example").await,
                    SpfResult::Pass,
                    "{internal}"
                );
            }
        }
        // Names under private-use domains are never asked.
        let zone = zone()
            .txt("sender.example", "v=spf1 a:db.corp.internal include:x.home.arpa -all")
            .a("db.corp.internal", "203.0.114.7");
        let dns = Guarded {
            raw: zone,
            allow_private: false,
        };
        assert_eq!(
            check_host(&dns, CLIENT.parse().unwrap(), "sender.example").await,
            SpfResult::PermError
        );
        assert!(
            dns.raw
                .asked()
                .iter()
                .all(|q| !q.contains(".internal") && !q.contains(".arpa")),
            "{:?}",
            dns.raw.asked()
        );
    }
}
