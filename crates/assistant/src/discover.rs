//! Discovery, step by step: the bundled provider data by domain; then at once the MX
//! records (matched against known providers), the SRV records of RFC 6186 / 8314, and
//! the two autoconfig documents over HTTPS (under the address guard, capped). Every
//! lookup goes through the guard: a domain under a private-use domain (`corp.internal`)
//! reads as one that does not exist, without asking DNS.

use domain::discovery::{
    Candidate, Confidence, Discovery, DiscoverySource, DiscoveryStep, StepOutcome, encryption_for_srv,
};
use domain::providers::Provider;
use domain::server::ServerKind;
use domain::values::{EmailAddress, Host};
use mailer::resolver::LookupError;

use crate::Lookups;
use crate::http::{self, FetchError};

/// Autoconfig documents larger than this are refused.
pub const AUTOCONFIG_CAP: usize = 64 * 1024;

/// One autoconfig fetch gives up after this.
pub const AUTOCONFIG_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// At most this many candidates of one step are looked at.
const MAX_PUBLISHED: usize = 8;

/// How long the host of a candidate a domain published may take to resolve.
const CANDIDATE_LOOKUP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

fn outcome_of(e: LookupError) -> StepOutcome {
    match e {
        LookupError::NotFound => StepOutcome::NotFound,
        LookupError::Failed => StepOutcome::Failed,
    }
}

fn step(source: DiscoverySource, asked: String, outcome: StepOutcome) -> DiscoveryStep {
    DiscoveryStep { source, asked, outcome }
}

impl Lookups {
    pub(crate) async fn run_discovery(&self, address: &EmailAddress) -> Discovery {
        let domain = address.ascii_domain();
        if let Some(p) = Provider::for_address_domain(&domain) {
            let c = Candidate::of_provider(p, DiscoverySource::Bundled, domain.clone());
            return Discovery::new(
                domain.clone(),
                vec![c],
                vec![step(DiscoverySource::Bundled, domain, StepOutcome::Found)],
            );
        }
        let bundled = step(DiscoverySource::Bundled, domain.clone(), StepOutcome::NotFound);
        let (mx, srv, autoconfig) = tokio::join!(
            self.mx_step(&domain),
            self.srv_steps(&domain),
            self.autoconfig_steps(address, &domain)
        );
        let mut steps = vec![bundled];
        let mut candidates = Vec::new();
        for (s, c) in std::iter::once(mx).chain(srv).chain(autoconfig) {
            steps.push(s);
            candidates.extend(c);
        }
        Discovery::new(domain, candidates, steps)
    }

    async fn mx_step(&self, domain: &str) -> (DiscoveryStep, Vec<Candidate>) {
        match self.inner.guard.mx(domain).await {
            Ok(records) => {
                let mut found: Vec<Candidate> = Vec::new();
                for (_, exchange) in records {
                    if let Some(p) = Provider::for_mx_host(&exchange)
                        && !found.iter().any(|c| c.kind == p.kind)
                    {
                        found.push(Candidate::of_provider(p, DiscoverySource::Mx, exchange));
                    }
                }
                let outcome = if found.is_empty() {
                    StepOutcome::NotFound
                } else {
                    StepOutcome::Found
                };
                (step(DiscoverySource::Mx, domain.to_owned(), outcome), found)
            }
            Err(e) => (step(DiscoverySource::Mx, domain.to_owned(), outcome_of(e)), Vec::new()),
        }
    }

    /// The candidates a domain published (SRV targets, autoconfig host names) that may be
    /// offered: at most [`MAX_PUBLISHED`] per step, each host valid like a saved host
    /// (`Host::parse`: no line feeds, no stray characters) and resolving, through the
    /// address guard, to addresses tenants may reach. A host that resolves to an internal
    /// address is dropped exactly like one that does not resolve (or not in time), so the
    /// answer never tells them apart; the log does.
    async fn usable(&self, candidates: Vec<Candidate>) -> Vec<Candidate> {
        let mut checks = tokio::task::JoinSet::new();
        for (i, mut c) in candidates.into_iter().take(MAX_PUBLISHED).enumerate() {
            let Ok(host) = Host::parse(&c.host) else {
                tracing::debug!(
                    source = c.source.code(),
                    "a published candidate host is not a valid host name"
                );
                continue;
            };
            let guard = self.inner.guard.clone();
            checks.spawn(async move {
                let resolved = guard.resolve(&host, c.port, CANDIDATE_LOOKUP_DEADLINE).await;
                resolved.ok().map(|_| {
                    c.host = host.as_str().to_owned();
                    (i, c)
                })
            });
        }
        let mut kept: Vec<(usize, Candidate)> = checks.join_all().await.into_iter().flatten().collect();
        kept.sort_by_key(|(i, _)| *i);
        kept.into_iter().map(|(_, c)| c).collect()
    }

    async fn srv_steps(&self, domain: &str) -> Vec<(DiscoveryStep, Vec<Candidate>)> {
        let mut out = Vec::new();
        for service in ["_submissions._tcp", "_submission._tcp"] {
            let name = format!("{service}.{domain}");
            match self.inner.guard.srv(&name).await {
                Ok(records) => {
                    let found: Vec<Candidate> = records
                        .into_iter()
                        // `.` means the service is not offered (RFC 2782).
                        .filter(|r| !r.target.is_empty() && r.port != 0)
                        .map(|r| Candidate {
                            kind: Provider::for_smtp_host(&r.target).map_or(ServerKind::Custom, |p| p.kind),
                            encryption: encryption_for_srv(service, r.port),
                            port: r.port,
                            smtp_auth: true,
                            username: None,
                            source: DiscoverySource::Srv,
                            confidence: Confidence::Medium,
                            evidence: format!("{name} SRV {} {} {} {}", r.priority, r.weight, r.port, r.target),
                            host: r.target,
                        })
                        .collect();
                    let found = self.usable(found).await;
                    let outcome = if found.is_empty() {
                        StepOutcome::NotFound
                    } else {
                        StepOutcome::Found
                    };
                    out.push((step(DiscoverySource::Srv, name, outcome), found));
                }
                Err(e) => out.push((step(DiscoverySource::Srv, name, outcome_of(e)), Vec::new())),
            }
        }
        out
    }

    async fn autoconfig_steps(&self, address: &EmailAddress, domain: &str) -> Vec<(DiscoveryStep, Vec<Candidate>)> {
        let query: String = url::form_urlencoded::byte_serialize(address.to_ascii().as_bytes()).collect();
        let places = [
            (
                format!("autoconfig.{domain}"),
                format!("/mail/config-v1.1.xml?emailaddress={query}"),
            ),
            (
                domain.to_owned(),
                "/.well-known/autoconfig/mail/config-v1.1.xml".to_owned(),
            ),
        ];
        let port = self.inner.https_port;
        let fetches = places.iter().map(|(host, path)| async move {
            let shown = if port == 443 {
                format!("https://{host}{path}")
            } else {
                format!("https://{host}:{port}{path}")
            };
            let got = http::get(
                &self.inner.guard,
                &self.inner.tls,
                host,
                port,
                path,
                AUTOCONFIG_CAP,
                AUTOCONFIG_DEADLINE,
            )
            .await;
            match got {
                Ok(body) => {
                    let found = crate::autoconfig::smtp_servers(&String::from_utf8_lossy(&body), domain, &shown);
                    let found = self.usable(found).await;
                    let outcome = if found.is_empty() {
                        StepOutcome::NotFound
                    } else {
                        StepOutcome::Found
                    };
                    (step(DiscoverySource::Autoconfig, shown, outcome), found)
                }
                Err(e) => {
                    let outcome = match e {
                        FetchError::NotFound => StepOutcome::NotFound,
                        FetchError::Failed => StepOutcome::Failed,
                        FetchError::TooLarge => StepOutcome::Refused,
                    };
                    (step(DiscoverySource::Autoconfig, shown, outcome), Vec::new())
                }
            }
        });
        let (a, b) = {
            let mut it = fetches;
            let first = it.next();
            let second = it.next();
            match (first, second) {
                (Some(f1), Some(f2)) => tokio::join!(f1, f2),
                _ => return Vec::new(),
            }
        };
        vec![a, b]
    }
}
