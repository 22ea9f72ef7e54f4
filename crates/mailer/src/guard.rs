//! Where tenants' connections may go. Host names that tenants enter are resolved once,
//! every address is checked, and the connection goes to a checked address (no second
//! lookup). Loopback, private, link-local, carrier-grade NAT, multicast, unspecified,
//! reserved and cloud-metadata addresses are refused, IPv4-mapped and other embedded
//! IPv4 forms included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use domain::mail::{FailureKind, SendFailure, SendStage};
use domain::values::Host;

use crate::resolver::{LookupError, Resolver};

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
        || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] // discard-only
}

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
    /// learn which internal names exist; the log tells operators which it was. An address
    /// typed as such (`10.0.0.1`, `[::1]`) is `ForbiddenAddress`: it reveals nothing.
    pub async fn resolve(&self, host: &Host, port: u16, deadline: Duration) -> Result<Vec<SocketAddr>, SendFailure> {
        let addrs: Vec<SocketAddr> = match host.ip() {
            Some(ip) => vec![SocketAddr::new(ip, port)],
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
