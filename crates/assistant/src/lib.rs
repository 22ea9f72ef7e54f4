//! The setup assistant's lookups ([`domain::ports::SetupLookups`]): discovery of a
//! sender's mail server from its address (`discover`: bundled provider data, MX, SRV,
//! autoconfig over HTTPS under the address guard with `http`, parsed by `autoconfig`),
//! cached per domain; and the sender domain's SPF, DKIM and DMARC (`sender_domain`; SPF
//! evaluated by `spf`, DMARC parsed by mail-auth). DNS goes through the mailer's resolver
//! (`MAILGATE_DNS_SERVERS`) under its address guard: a tenant-given name under a
//! private-use domain, or (for SPF and hosts) one that resolves to an internal address,
//! reads exactly like a name that does not exist.

mod autoconfig;
mod discover;
pub mod http;
mod sender_domain;
mod spf;

use std::sync::Arc;
use std::time::Duration;

use domain::discovery::Discovery;
use domain::ports::{CheckedServer, SetupLookups};
use domain::sender_domain::DomainFindings;
use domain::values::EmailAddress;
use mailer::Mailer;
use mailer::guard::Guard;
use mailer::tls::TlsMaterial;

pub use discover::{AUTOCONFIG_CAP, AUTOCONFIG_DEADLINE};

/// How the lookups behave.
#[derive(Debug, Clone)]
pub struct LookupsConfig {
    /// The port autoconfig documents are fetched from (443; tests use their own).
    pub https_port: u16,
    /// How long a domain's discovery is kept.
    pub cache_ttl: Duration,
    pub cache_capacity: u64,
}

impl Default for LookupsConfig {
    fn default() -> Self {
        Self {
            https_port: 443,
            cache_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
        }
    }
}

/// The lookups. Cheap to clone.
#[derive(Clone)]
pub struct Lookups {
    inner: Arc<Inner>,
}

struct Inner {
    guard: Guard,
    tls: TlsMaterial,
    https_port: u16,
    discoveries: moka::future::Cache<String, Discovery>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("https_port", &self.inner.https_port)
            .finish_non_exhaustive()
    }
}

impl Lookups {
    /// With the mailer's resolver, address guard and trusted roots.
    pub fn new(mailer: &Mailer, config: LookupsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                guard: mailer.guard().clone(),
                tls: mailer.tls().clone(),
                https_port: config.https_port,
                discoveries: moka::future::Cache::builder()
                    .max_capacity(config.cache_capacity)
                    .time_to_live(config.cache_ttl)
                    .build(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl SetupLookups for Lookups {
    async fn discover(&self, address: &EmailAddress) -> Discovery {
        let domain = address.ascii_domain();
        // One lookup per domain at a time; later callers get the cached answer.
        self.inner
            .discoveries
            .get_with(domain, self.run_discovery(address))
            .await
    }

    async fn sender_domain(
        &self,
        from: &EmailAddress,
        server: &CheckedServer,
        deadline: Duration,
    ) -> Option<DomainFindings> {
        tokio::time::timeout(deadline, self.findings(from, server)).await.ok()
    }
}
