//! The setup assistant's lookups with set answers: discovery finds nothing unless told
//! otherwise, and the sender-domain check answers what a test set (none: it ran out of
//! time).

use std::sync::Mutex;

use super::lock;
use crate::discovery::Discovery;
use crate::ports::{CheckedServer, SetupLookups};
use crate::sender_domain::DomainFindings;
use crate::values::EmailAddress;

/// `SetupLookups` with set answers; it counts what it was asked.
#[derive(Debug, Default)]
pub struct FixedLookups {
    discovery: Mutex<Option<Discovery>>,
    findings: Mutex<Option<DomainFindings>>,
    asked: Mutex<Vec<String>>,
}

impl FixedLookups {
    /// What discovery answers from now on (the asked domain is put in).
    pub fn discovers(&self, discovery: Discovery) {
        *lock(&self.discovery) = Some(discovery);
    }

    /// What the sender-domain check answers from now on.
    pub fn finds(&self, findings: DomainFindings) {
        *lock(&self.findings) = Some(findings);
    }

    /// Every lookup asked, as `discover:<address>` or `domain:<address>`, in order.
    pub fn asked(&self) -> Vec<String> {
        lock(&self.asked).clone()
    }
}

#[async_trait::async_trait]
impl SetupLookups for FixedLookups {
    async fn discover(&self, address: &EmailAddress) -> Discovery {
        lock(&self.asked).push(format!("discover:{}", address.as_str()));
        let domain = address.ascii_domain();
        match lock(&self.discovery).clone() {
            Some(found) => Discovery { domain, ..found },
            None => Discovery::new(domain, Vec::new(), Vec::new()),
        }
    }

    async fn sender_domain(
        &self,
        from: &EmailAddress,
        _server: &CheckedServer,
        _deadline: std::time::Duration,
    ) -> Option<DomainFindings> {
        lock(&self.asked).push(format!("domain:{}", from.as_str()));
        lock(&self.findings).clone()
    }
}
