//! Names to addresses and DNS records for everything Mailgate looks up on a tenant's
//! behalf: the SMTP and POP hosts it connects to, and the MX, SRV and TXT records the
//! setup assistant reads. By default host names go to the system's resolver (so
//! `/etc/hosts` and NSS keep working) and records to the servers of `/etc/resolv.conf`;
//! with DNS servers configured (`MAILGATE_DNS_SERVERS`) every lookup goes to them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// How long one DNS question may take at most (each try; two tries).
const QUESTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A lookup that found nothing, or could not be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The name does not exist, or has no record of this type.
    NotFound,
    /// No answer in time, or the server failed (SERVFAIL, refused, unreachable).
    Failed,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot; `.` (service not offered) is an empty string.
    pub target: String,
}

/// The resolver. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    dns: Option<TokioResolver>,
    /// Set when the operator named DNS servers: host names go to them too.
    configured: bool,
    config: ResolverConfig,
    options: ResolverOpts,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("configured", &self.inner.configured)
            .finish_non_exhaustive()
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

impl Resolver {
    /// Through `servers` when there are any, else the system's configuration. A system
    /// configuration that cannot be read leaves record lookups failing (host names
    /// still resolve through the system), with a warning in the log.
    pub fn new(servers: &[SocketAddr]) -> Self {
        let (config, mut options) = if servers.is_empty() {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok(conf) => conf,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the system's DNS configuration; MX, SRV and TXT lookups will fail");
                    (ResolverConfig::from_name_servers(Vec::new()), ResolverOpts::default())
                }
            }
        } else {
            (
                ResolverConfig::from_name_servers(servers.iter().copied().map(name_server).collect()),
                ResolverOpts::default(),
            )
        };
        options.timeout = QUESTION_TIMEOUT;
        options.attempts = 2;
        options.cache_size = 1024;
        let dns = if config.name_servers().is_empty() {
            None
        } else {
            match TokioResolver::builder_with_config(config.clone(), TokioRuntimeProvider::default())
                .with_options(options.clone())
                .build()
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build the DNS resolver; MX, SRV and TXT lookups will fail");
                    None
                }
            }
        };
        Self {
            inner: Arc::new(Inner {
                dns,
                configured: !servers.is_empty(),
                config,
                options,
            }),
        }
    }

    /// The resolver's configuration, for libraries that build their own (mail-auth).
    pub fn config(&self) -> (ResolverConfig, ResolverOpts) {
        (self.inner.config.clone(), self.inner.options.clone())
    }

    /// The addresses of `host` (a name; an IP address is returned as is), with `port`.
    pub async fn lookup_host(&self, host: &str, port: u16, deadline: Duration) -> Result<Vec<SocketAddr>, LookupError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = if self.inner.configured {
            let dns = self.inner.dns.as_ref().ok_or(LookupError::Failed)?;
            match tokio::time::timeout(deadline, dns.lookup_ip(fqdn(host))).await {
                Ok(Ok(ips)) => ips.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
                Ok(Err(e)) => return Err(classify(&e)),
                Err(_) => return Err(LookupError::Failed),
            }
        } else {
            match tokio::time::timeout(deadline, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(list)) => list.collect::<Vec<_>>(),
                Ok(Err(_)) => return Err(LookupError::NotFound),
                Err(_) => return Err(LookupError::Failed),
            }
        };
        if found.is_empty() {
            Err(LookupError::NotFound)
        } else {
            Ok(found)
        }
    }

    /// The A and AAAA records of `name` (both asked at once) from DNS: for lookups that are
    /// about DNS records themselves (SPF's `a`, `mx` and `exists`), not about where to
    /// connect ([`Resolver::lookup_host`]). `Failed` when either question failed, so a
    /// caller that checks every address never decides on half of them.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let dns = self.inner.dns.as_ref().ok_or(LookupError::Failed)?;
        let name = fqdn(name);
        let (v4, v6) = tokio::join!(dns.ipv4_lookup(name.clone()), dns.ipv6_lookup(name));
        let mut found = Vec::new();
        for answers in [&v4, &v6] {
            match answers {
                Ok(lookup) => found.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })),
                Err(e) if classify(e) == LookupError::NotFound => {}
                Err(_) => return Err(LookupError::Failed),
            }
        }
        if found.is_empty() {
            Err(LookupError::NotFound)
        } else {
            Ok(found)
        }
    }

    /// MX records of `name`: (preference, exchange without the trailing dot), lowest first.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, LookupError> {
        let dns = self.inner.dns.as_ref().ok_or(LookupError::Failed)?;
        let lookup = dns.mx_lookup(fqdn(name)).await.map_err(|e| classify(&e))?;
        let mut found: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, trim_dot(&mx.exchange.to_ascii()))),
                _ => None,
            })
            .collect();
        found.sort();
        if found.is_empty() {
            Err(LookupError::NotFound)
        } else {
            Ok(found)
        }
    }

    /// SRV records of `name`, lowest priority first, then highest weight.
    pub async fn srv(&self, name: &str) -> Result<Vec<Srv>, LookupError> {
        let dns = self.inner.dns.as_ref().ok_or(LookupError::Failed)?;
        let lookup = dns.srv_lookup(fqdn(name)).await.map_err(|e| classify(&e))?;
        let mut found: Vec<Srv> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(Srv {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: trim_dot(&srv.target.to_ascii()),
                }),
                _ => None,
            })
            .collect();
        found.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
        if found.is_empty() {
            Err(LookupError::NotFound)
        } else {
            Ok(found)
        }
    }

    /// TXT records of `name`, each with its strings joined (RFC 7208 §3.3).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let dns = self.inner.dns.as_ref().ok_or(LookupError::Failed)?;
        let lookup = dns.txt_lookup(fqdn(name)).await.map_err(|e| classify(&e))?;
        let found: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        if found.is_empty() {
            Err(LookupError::NotFound)
        } else {
            Ok(found)
        }
    }
}

fn classify(e: &hickory_resolver::net::NetError) -> LookupError {
    if e.is_nx_domain() || e.is_no_records_found() {
        LookupError::NotFound
    } else {
        LookupError::Failed
    }
}

/// `name.` (absolute: no search domains appended).
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn trim_dot(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
