//! Where tenants' connections may go. Host names that tenants enter are resolved once,
//! every address is checked, and the connection goes to a checked address (no second
//! lookup). Loopback, private, link-local, carrier-grade NAT, multicast, unspecified,
//! reserved and cloud-metadata addresses are refused, IPv4-mapped and other embedded
//! IPv4 forms included, and every block of the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries ([`IPV4_SPECIAL_PURPOSE`], [`IPV6_SPECIAL_PURPOSE`], each entry checked by a
//! test).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::values::Host;

use crate::resolver::{LookupError, Resolver, Srv};

/// Whether an IPv4 address is one tenants must not reach.
fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()                      // 127/8
        || ip.is_private()                // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()             // 169.254/16, incl. 169.254.169.254 metadata
        || ip.is_multicast()              // 224/4
        || ip.is_broadcast()
        || ip.is_unspecified()
        || a == 0                         // 0/8 "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT (incl. 100.100.100.200 metadata)
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 31 && c == 196) // AS112-v4 anycast
        || (a == 192 && b == 52 && c == 193) // AMT relays
        || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
        || (a == 192 && b == 175 && c == 48) // direct delegation AS112
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 240 // reserved
}

/// Whether an IPv6 address is one tenants must not reach (embedded IPv4 checked too).
fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let seg = ip.segments();
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed IPv4.
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return forbidden_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    // SIIT "IPv4-translated" (::ffff:0:a.b.c.d, RFC 2765/6052/7915): what it reaches
    // depends on a translator on the way; never a tenant's server.
    if seg[..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        return true;
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): a translator of the operator's own.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return true;
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return forbidden_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x2002 {
        return forbidden_v4(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (incl. fd00:ec2::254 metadata)
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x2001 && seg[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo, ORCHID, AS112, …)
        || (seg[0] == 0x2620 && seg[1] == 0x004f && seg[2] == 0x8000) // direct delegation AS112
        || (seg[0] == 0x3fff && seg[1] < 0x1000) // 3fff::/20 documentation
        || seg[0] == 0x5f00 // SRv6 segment identifiers
        || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] // discard-only
}

/// What the guard does with a block of a special-purpose registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialVerdict {
    /// Every address in it is refused.
    Refused,
    /// The address carries an IPv4 address, and gets that address's verdict.
    FollowsEmbeddedIpv4,
}

/// One entry of an IANA special-purpose address registry and the guard's verdict.
#[derive(Debug, Clone, Copy)]
pub struct SpecialBlock {
    pub block: &'static str,
    pub name: &'static str,
    pub rfc: &'static str,
    /// The registry's "Globally Reachable" (`N/A` read as false).
    pub globally_reachable: bool,
    pub verdict: SpecialVerdict,
}

const fn refused(block: &'static str, name: &'static str, rfc: &'static str, globally_reachable: bool) -> SpecialBlock {
    SpecialBlock {
        block,
        name,
        rfc,
        globally_reachable,
        verdict: SpecialVerdict::Refused,
    }
}

/// The IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry), every
/// entry as of 2024. Written from the registry (the copy searchable here showed only its
/// header) and the RFCs named. Entries that are globally reachable are anycast
/// infrastructure (PCP, TURN, AS112 DNS sinks, AMT relays), never a tenant's SMTP, POP
/// or web server: they are refused anyway, which costs no tenant anything.
pub const IPV4_SPECIAL_PURPOSE: &[SpecialBlock] = &[
    refused("0.0.0.0/8", "This network", "RFC 791 §3.2", false),
    refused("0.0.0.0/32", "This host on this network", "RFC 1122 §3.2.1.3", false),
    refused("10.0.0.0/8", "Private-Use", "RFC 1918", false),
    refused("100.64.0.0/10", "Shared Address Space", "RFC 6598", false),
    refused("127.0.0.0/8", "Loopback", "RFC 1122 §3.2.1.3", false),
    refused("169.254.0.0/16", "Link Local", "RFC 3927", false),
    refused("172.16.0.0/12", "Private-Use", "RFC 1918", false),
    refused("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 §2.1", false),
    refused("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", false),
    refused("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", false),
    refused("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", true),
    refused(
        "192.0.0.10/32",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        true,
    ),
    refused(
        "192.0.0.170/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880, RFC 7050 §2.2",
        false,
    ),
    refused(
        "192.0.0.171/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880, RFC 7050 §2.2",
        false,
    ),
    refused("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", false),
    refused("192.31.196.0/24", "AS112-v4", "RFC 7535", true),
    refused("192.52.193.0/24", "AMT", "RFC 7450", true),
    // Deprecated (RFC 7526): the 6to4 relays are gone; refused.
    refused("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", false),
    refused("192.168.0.0/16", "Private-Use", "RFC 1918", false),
    refused("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", true),
    refused("198.18.0.0/15", "Benchmarking", "RFC 2544", false),
    refused("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", false),
    refused("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", false),
    refused("240.0.0.0/4", "Reserved", "RFC 1112 §4", false),
    refused("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 §7", false),
];

/// The IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry), every
/// entry as of its 2024-10-22 update, written like the IPv4 table. The three blocks that
/// embed an IPv4 address follow that address (`::ffff:8.8.8.8` is 8.8.8.8); every other
/// block is refused, the globally reachable ones too (anycast services, ORCHID and drone
/// identifiers, AMT and AS112: no tenant's server lives there).
pub const IPV6_SPECIAL_PURPOSE: &[SpecialBlock] = &[
    refused("::1/128", "Loopback Address", "RFC 4291", false),
    refused("::/128", "Unspecified Address", "RFC 4291", false),
    SpecialBlock {
        block: "::ffff:0:0/96",
        name: "IPv4-mapped Address",
        rfc: "RFC 4291",
        globally_reachable: false,
        verdict: SpecialVerdict::FollowsEmbeddedIpv4,
    },
    SpecialBlock {
        block: "64:ff9b::/96",
        name: "IPv4-IPv6 Translat.",
        rfc: "RFC 6052",
        globally_reachable: true,
        verdict: SpecialVerdict::FollowsEmbeddedIpv4,
    },
    refused("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", false),
    refused("100::/64", "Discard-Only Address Block", "RFC 6666", false),
    refused("2001::/23", "IETF Protocol Assignments", "RFC 2928", false),
    refused("2001::/32", "TEREDO", "RFC 4380, RFC 8190", false),
    refused("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", true),
    refused(
        "2001:1::2/128",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        true,
    ),
    refused(
        "2001:1::3/128",
        "DNS-SD Service Registration Protocol Anycast",
        "RFC 9665",
        true,
    ),
    refused("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", false),
    refused("2001:3::/32", "AMT", "RFC 7450", true),
    refused("2001:4:112::/48", "AS112-v6", "RFC 7535", true),
    refused("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", false),
    refused("2001:20::/28", "ORCHIDv2", "RFC 7343", true),
    refused(
        "2001:30::/28",
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
        "RFC 9374",
        true,
    ),
    refused("2001:db8::/32", "Documentation", "RFC 3849", false),
    SpecialBlock {
        block: "2002::/16",
        name: "6to4",
        rfc: "RFC 3056",
        globally_reachable: false,
        verdict: SpecialVerdict::FollowsEmbeddedIpv4,
    },
    refused("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", true),
    refused("3fff::/20", "Documentation", "RFC 9637", false),
    refused("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", false),
    refused("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", false),
    refused("fe80::/10", "Link-Local Unicast", "RFC 4291", false),
];

/// Whether tenants must not reach this address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// The address guard: the resolver tenants' names go through, and whether internal
/// addresses are allowed (development, tests). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    pub allow_private: bool,
    pub resolver: Resolver,
}

impl Guard {
    /// Resolves `host` and returns the addresses to connect to, all of them checked.
    /// Any forbidden address refuses the whole host (a name that resolves to a public and a
    /// private address is not used at all). A *name* that resolves to a forbidden address
    /// fails exactly like a name that does not resolve (`HostNotFound`), so a tenant cannot
    /// learn which internal names exist; the log tells operators which it was. A name under
    /// a private-use domain ([`PRIVATE_USE_DOMAINS`]) is not looked up at all and reads the
    /// same (unless internal hosts are allowed). An address
    /// typed as such (`10.0.0.1`, `[::1]`) is `ForbiddenAddress`: it reveals nothing.
    pub async fn resolve(&self, host: &Host, port: u16, deadline: Duration) -> Result<Vec<SocketAddr>, SendFailure> {
        let addrs: Vec<SocketAddr> = match host.ip() {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None if !self.allow_private && is_private_use_name(host.as_str()) => {
                tracing::debug!(host = %host, "a tenant host under a private-use domain reads as not found");
                return Err(SendFailure::new(SendStage::Resolve, FailureKind::HostNotFound));
            }
            None => match self.resolver.lookup_host(host.as_str(), port, deadline).await {
                Ok(list) => list,
                Err(LookupError::NotFound) => {
                    return Err(SendFailure::new(SendStage::Resolve, FailureKind::HostNotFound));
                }
                Err(LookupError::Failed) => return Err(SendFailure::new(SendStage::Resolve, FailureKind::TimedOut)),
            },
        };
        if addrs.is_empty() {
            return Err(SendFailure::new(SendStage::Resolve, FailureKind::HostNotFound));
        }
        if !self.allow_private && addrs.iter().any(|a| is_forbidden(a.ip())) {
            tracing::warn!(host = %host, "refused a tenant host that resolves to a private address");
            let kind = if host.ip().is_some() {
                FailureKind::ForbiddenAddress
            } else {
                FailureKind::HostNotFound
            };
            return Err(SendFailure::new(SendStage::Resolve, kind));
        }
        Ok(addrs)
    }

    /// What a save should do with `host`: refuse an internal address typed as such and
    /// `localhost` (RFC 6761 names), store anything else, with a warning when it does not
    /// resolve to reachable addresses now (a name resolving to an internal address gets the
    /// same answer as one that does not resolve).
    pub async fn check_on_save(&self, host: &Host, port: u16) -> domain::ports::HostCheck {
        use domain::ports::HostCheck;
        if !self.allow_private && is_localhost(host.as_str()) {
            return HostCheck::Forbidden;
        }
        match self.resolve(host, port, SAVE_LOOKUP_DEADLINE).await {
            Ok(_) => HostCheck::Reachable,
            Err(f) if f.kind == FailureKind::ForbiddenAddress => HostCheck::Forbidden,
            Err(_) => HostCheck::Unresolved,
        }
    }

    /// The MX records of a name a tenant gave (their From domain): a name under a
    /// private-use domain ([`PRIVATE_USE_DOMAINS`]) reads as not found without asking DNS.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, LookupError> {
        self.public_name(name)?;
        self.resolver.mx(name).await
    }

    /// The SRV records of a name a tenant gave, like [`Guard::mx`].
    pub async fn srv(&self, name: &str) -> Result<Vec<Srv>, LookupError> {
        self.public_name(name)?;
        self.resolver.srv(name).await
    }

    /// The TXT records of a name a tenant gave, like [`Guard::mx`].
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.public_name(name)?;
        self.resolver.txt(name).await
    }

    /// `NotFound` for a name under a private-use domain (unless internal hosts are allowed).
    fn public_name(&self, name: &str) -> Result<(), LookupError> {
        if !self.allow_private && is_private_use_name(name) {
            tracing::debug!(
                name,
                "a tenant-given name under a private-use domain reads as not found"
            );
            return Err(LookupError::NotFound);
        }
        Ok(())
    }
}

/// Domains that never name a tenant's public server: special-use names (RFC 6761
/// `localhost` and `invalid`, RFC 6762 `local`, RFC 8375 `home.arpa`), ICANN's private-use
/// TLD `internal` (2024), and TLDs widely used inside networks that are not delegated in
/// the public DNS (`lan`, `intranet`, `corp`, `private`). A lookup of a name under one of
/// them on a tenant's behalf reads exactly like NXDOMAIN, without asking DNS. `test` and
/// `example` (RFC 2606) are left out on purpose: the tests' DNS fixtures use them.
pub const PRIVATE_USE_DOMAINS: &[&str] = &[
    "internal",
    "local",
    "localhost",
    "home.arpa",
    "invalid",
    "lan",
    "intranet",
    "corp",
    "private",
];

/// Whether `name` is one of [`PRIVATE_USE_DOMAINS`] or below one (any case, trailing dot
/// or not).
pub fn is_private_use_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    PRIVATE_USE_DOMAINS
        .iter()
        .any(|d| name == *d || name.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
}

/// `localhost` and its subdomains (RFC 6761), which always mean this machine.
pub fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// How long a save waits for DNS before it stores the host with a warning.
pub const SAVE_LOOKUP_DEADLINE: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow_private: bool) -> Guard {
        Guard {
            allow_private,
            resolver: Resolver::new(&[]),
        }
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip} must be forbidden");
        }
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    /// The first and last address of a CIDR block, and one in the middle.
    fn samples(block: &str) -> [IpAddr; 3] {
        let (base, len) = block.split_once('/').unwrap();
        let len: u32 = len.parse().unwrap();
        match base.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => {
                let first = u32::from(v4);
                let span = u32::MAX.checked_shr(len).unwrap_or(0);
                let last = first | span;
                [first, first + span / 2, last].map(|n| IpAddr::V4(Ipv4Addr::from(n)))
            }
            IpAddr::V6(v6) => {
                let first = u128::from(v6);
                let span = u128::MAX.checked_shr(len).unwrap_or(0);
                let last = first | span;
                [first, first + span / 2, last].map(|n| IpAddr::V6(Ipv6Addr::from(n)))
            }
        }
    }

    #[test]
    fn every_special_purpose_block_of_both_registries_is_refused_or_follows_its_ipv4() {
        for entry in IPV4_SPECIAL_PURPOSE.iter().chain(IPV6_SPECIAL_PURPOSE) {
            assert!(entry.rfc.starts_with("RFC "), "{entry:?} names its RFC");
            match entry.verdict {
                SpecialVerdict::Refused => {
                    for ip in samples(entry.block) {
                        assert!(
                            is_forbidden(ip),
                            "{ip} in {} ({}, {})",
                            entry.block,
                            entry.name,
                            entry.rfc
                        );
                    }
                }
                SpecialVerdict::FollowsEmbeddedIpv4 => {
                    // Each embeds 10.1.2.3 (refused) and 8.8.8.8 (allowed) its own way.
                    let (internal, public) = match entry.block {
                        "::ffff:0:0/96" => ("::ffff:10.1.2.3", "::ffff:8.8.8.8"),
                        "64:ff9b::/96" => ("64:ff9b::10.1.2.3", "64:ff9b::8.8.8.8"),
                        "2002::/16" => ("2002:a01:203::1", "2002:808:808::1"),
                        other => panic!("no samples for {other}"),
                    };
                    assert!(is_forbidden(internal.parse().unwrap()), "{internal}");
                    assert!(!is_forbidden(public.parse().unwrap()), "{public}");
                    // The block's own first address embeds 0.0.0.0: refused.
                    assert!(is_forbidden(samples(entry.block)[0]), "{}", entry.block);
                }
            }
        }
        // Not in the registries, refused all the same: multicast, site-local, SIIT.
        for ip in [
            "224.0.0.1",
            "239.255.255.255",
            "ff0e::1",
            "fec0::1",
            "::ffff:0:808:808",
            "::ffff:0:a01:203",
            "64:ff9b:1::808:808",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        // Ordinary public addresses next to the blocks stay allowed.
        for ip in [
            "192.0.1.255",
            "192.31.197.1",
            "192.88.98.1",
            "2001:200::1",
            "2001:db9::1",
            "2620:4f:8001::1",
            "3fff:1000::1",
            "5f01::1",
            "64:ff9b:2::1",
            "2a00:1450:4001::1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[tokio::test]
    async fn a_save_refuses_internal_addresses_and_localhost_and_warns_on_the_rest() {
        use domain::ports::HostCheck;
        for internal in [
            "127.0.0.1",
            "[::1]",
            "10.0.0.1",
            "169.254.169.254",
            "localhost",
            "LocalHost.",
            "smtp.localhost",
        ] {
            let host = Host::parse(internal).unwrap();
            assert_eq!(
                guard(false).check_on_save(&host, 25).await,
                HostCheck::Forbidden,
                "{internal}"
            );
        }
        let nowhere = Host::parse("no-such-host.invalid").unwrap();
        assert_eq!(guard(false).check_on_save(&nowhere, 25).await, HostCheck::Unresolved);
        let public = Host::parse("93.184.216.34").unwrap();
        assert_eq!(guard(false).check_on_save(&public, 25).await, HostCheck::Reachable);
        // Development: internal servers are fine.
        let loopback = Host::parse("127.0.0.1").unwrap();
        assert_eq!(guard(true).check_on_save(&loopback, 25).await, HostCheck::Reachable);
    }

    #[test]
    fn private_use_domains_and_names_below_them() {
        for name in [
            "internal",
            "db.corp.internal",
            "DB.Corp.Internal.",
            "printer.local",
            "smtp.localhost",
            "nas.home.arpa",
            "x.invalid",
            "router.lan",
            "wiki.intranet",
            "mail.corp",
            "vault.private",
        ] {
            assert!(is_private_use_name(name), "{name}");
        }
        for name in [
            "shop.test",
            "example.com",
            "internal.example.com",
            "mylocal",
            "corp.example",
            "notlan",
            "arpa",
            "home.arpa.example",
        ] {
            assert!(!is_private_use_name(name), "{name}");
        }
    }

    #[tokio::test]
    async fn names_under_private_use_domains_read_as_not_found_without_dns() {
        // The only DNS server answers nothing (the discard port): asking it would end in
        // `Failed` / `TimedOut` after seconds, so a quick not-found was never asked.
        let nowhere = Guard {
            allow_private: false,
            resolver: Resolver::new(&["127.0.0.1:9".parse().unwrap()]),
        };
        for name in ["corp.internal", "_submission._tcp.corp.internal", "printer.local"] {
            assert_eq!(nowhere.mx(name).await, Err(LookupError::NotFound), "{name}");
            assert_eq!(nowhere.srv(name).await, Err(LookupError::NotFound), "{name}");
            assert_eq!(nowhere.txt(name).await, Err(LookupError::NotFound), "{name}");
        }
        let host = Host::parse("db.corp.internal").unwrap();
        let started = std::time::Instant::now();
        let err = nowhere.resolve(&host, 25, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!((err.stage, err.kind), (SendStage::Resolve, FailureKind::HostNotFound));
        assert!(started.elapsed() < Duration::from_secs(1), "no DNS was asked");
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let host = Host::parse("localhost").unwrap();
        let err = guard(false)
            .resolve(&host, 25, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            FailureKind::HostNotFound,
            "the same answer as a name that does not exist"
        );
        assert_eq!(err.stage, SendStage::Resolve);
        assert!(guard(true).resolve(&host, 25, Duration::from_secs(5)).await.is_ok());
        let literal = Host::parse("[::ffff:127.0.0.1]").unwrap();
        assert_eq!(
            guard(false)
                .resolve(&literal, 25, Duration::from_secs(5))
                .await
                .unwrap_err()
                .kind,
            FailureKind::ForbiddenAddress
        );
    }
}
