//! DNS on loopback: an authoritative server for fixture zones (dnslib, `dns_server.py`),
//! and the process's empty one that keeps every test away from the machine's resolver.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::script::{Script, read_lossy, temp_dir};

/// An authoritative DNS server for fixture zones on 127.0.0.1 (UDP and TCP, one port).
#[derive(Debug)]
pub struct DnsServer {
    pub port: u16,
    queries: PathBuf,
    child: Script,
}

impl DnsServer {
    /// Serves `zone` (master-file text; full names or `$ORIGIN`).
    pub fn start(zone: &str) -> DnsServer {
        Self::start_with(zone, &[])
    }

    /// Serves `zone`, and answers SERVFAIL for every name at or below one of `broken`
    /// (a domain whose DNS fails, which is not one without records).
    pub fn start_with(zone: &str, broken: &[&str]) -> DnsServer {
        let dir = temp_dir("dns");
        let zone_file = dir.join("fixture.zone");
        fs::write(&zone_file, zone).unwrap_or_else(|e| panic!("cannot write {}: {e}", zone_file.display()));
        let queries = dir.join("queries.log");
        let args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--zone".into(),
            zone_file.display().to_string(),
            "--log-queries".into(),
            queries.display().to_string(),
        ]
        .into_iter()
        .chain(
            broken
                .iter()
                .flat_map(|name| ["--servfail".to_owned(), (*name).to_owned()]),
        )
        .collect();
        let (child, ready) = Script::start("dns", "dns_server.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        DnsServer { port, queries, child }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The questions asked so far: `<TYPE> <name>` (lower case, no final dot).
    pub fn queries(&self) -> Vec<String> {
        read_lossy(&self.queries).lines().map(str::to_owned).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }
}

/// One DNS server for the whole test process that answers NXDOMAIN for every name but
/// `localhost` (what the test servers listen on), so no test asks the machine's resolver;
/// and SERVFAIL for names under [`BROKEN_DNS_DOMAIN`].
pub fn empty_dns() -> &'static DnsServer {
    static DNS: OnceLock<DnsServer> = OnceLock::new();
    DNS.get_or_init(|| DnsServer::start_with("localhost. 60 IN A 127.0.0.1\n", &[BROKEN_DNS_DOMAIN]))
}

/// A domain whose DNS fails (SERVFAIL) on [`empty_dns`]: lookups there do not answer.
pub const BROKEN_DNS_DOMAIN: &str = "dns-down.test";
