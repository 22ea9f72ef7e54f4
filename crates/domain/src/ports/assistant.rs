//! What the setup assistant needs from the network besides SMTP: discovery of a sender
//! domain's server, and the records of its SPF, DKIM and DMARC. The `assistant` crate
//! implements it (DNS through the configured resolver, HTTPS under the address guard).

use crate::discovery::Discovery;
use crate::sender_domain::DomainFindings;
use crate::server::ServerKind;
use crate::values::{EmailAddress, Host};

/// The server a domain check is about.
#[derive(Debug, Clone)]
pub struct CheckedServer {
    pub kind: ServerKind,
    pub host: Host,
}

#[async_trait::async_trait]
pub trait SetupLookups: Send + Sync + 'static {
    /// Discovery for the address's domain: bundled data, MX, SRV, autoconfig. Cached per
    /// domain for a while; never fails (each step says what it found).
    async fn discover(&self, address: &EmailAddress) -> Discovery;

    /// Reads and evaluates the From domain's SPF, DKIM (the provider's selectors) and
    /// DMARC for mail sent through `server`; `None` when that took longer than `deadline`.
    async fn sender_domain(
        &self,
        from: &EmailAddress,
        server: &CheckedServer,
        deadline: std::time::Duration,
    ) -> Option<DomainFindings>;
}
