//! Discovery of a sender's mail server from its address: what each step found (bundled
//! provider data, MX, SRV, autoconfig), and the candidates it suggests with where each
//! came from and how sure it is. The lookups run in the assistant's adapter; the
//! matching against known providers is here.

use crate::providers::{HostSpec, Provider, UsernameKind};
use crate::server::{Encryption, ServerKind};

crate::coded_enum! {
    /// Where a candidate came from, in the order discovery asks.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum DiscoverySource {
        /// Mailgate's own provider data, by the address's domain (`gmail.com`).
        Bundled = "BUNDLED",
        /// The domain's MX records point at a known provider.
        Mx = "MX",
        /// The domain publishes `_submission._tcp` / `_submissions._tcp` (RFC 6186, 8314).
        Srv = "SRV",
        /// The domain's autoconfig document (`autoconfig.<domain>`, `.well-known`).
        Autoconfig = "AUTOCONFIG",
    }
}

crate::coded_enum! {
    /// How sure a candidate is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Confidence {
        /// Known provider data for this very domain, or its MX at a known provider.
        High = "HIGH",
        /// Published by the domain itself (SRV, autoconfig).
        Medium = "MEDIUM",
        /// A guess (a provider whose host has a part only the user knows).
        Low = "LOW",
    }
}

crate::coded_enum! {
    /// What one step of discovery found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StepOutcome {
        Found = "FOUND",
        NotFound = "NOT_FOUND",
        /// DNS or the web server did not answer in time or failed.
        Failed = "FAILED",
        /// The address guard refused it (an internal address), or it was too large.
        Refused = "REFUSED",
    }
}

/// One step and its outcome, e.g. (`AUTOCONFIG`, `https://autoconfig.example.jp/…`, `REFUSED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryStep {
    pub source: DiscoverySource,
    /// What was asked: a domain name, a record name or a URL.
    pub asked: String,
    pub outcome: StepOutcome,
}

/// Settings the form can take: a preset kind or custom with its server fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: ServerKind,
    /// The host, or for a preset with a template the template (`{account}.sakura.ne.jp`).
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    pub smtp_auth: bool,
    pub username: Option<UsernameKind>,
    pub source: DiscoverySource,
    pub confidence: Confidence,
    /// What it is based on: the MX host, the SRV record, the URL.
    pub evidence: String,
}

impl Candidate {
    /// A provider's preset as a candidate.
    pub fn of_provider(p: &Provider, source: DiscoverySource, evidence: String) -> Self {
        let (host, confidence) = match p.host {
            HostSpec::Fixed(name) => (name.to_owned(), Confidence::High),
            HostSpec::Template { template, .. } => (template.to_owned(), Confidence::Low),
        };
        Self {
            kind: p.kind,
            host,
            port: p.port,
            encryption: p.encryption,
            smtp_auth: p.smtp_auth,
            username: Some(p.username),
            source,
            confidence,
            evidence,
        }
    }
}

/// What discovery found for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub domain: String,
    /// Best first: by confidence, then in the order of the steps; no two alike.
    pub candidates: Vec<Candidate>,
    pub steps: Vec<DiscoveryStep>,
}

impl Discovery {
    /// Orders the candidates and drops repeats (same host, port and encryption).
    pub fn new(domain: String, mut candidates: Vec<Candidate>, steps: Vec<DiscoveryStep>) -> Self {
        candidates.sort_by_key(|c| (c.confidence, c.source));
        let mut seen: Vec<(String, u16, Encryption)> = Vec::new();
        candidates.retain(|c| {
            let key = (c.host.to_ascii_lowercase(), c.port, c.encryption);
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        });
        Self {
            domain,
            candidates,
            steps,
        }
    }

    /// The provider the best candidate is a preset of, if any.
    pub fn provider(&self) -> Option<&'static Provider> {
        self.candidates.first().and_then(|c| Provider::of_kind(c.kind))
    }
}

/// The encryption a submission port implies (SRV records carry none).
pub fn encryption_for_srv(service: &str, port: u16) -> Encryption {
    if service.starts_with("_submissions.") || port == 465 {
        Encryption::Ssl
    } else {
        Encryption::StartTls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(host: &str, source: DiscoverySource, confidence: Confidence) -> Candidate {
        Candidate {
            kind: ServerKind::Custom,
            host: host.into(),
            port: 587,
            encryption: Encryption::StartTls,
            smtp_auth: true,
            username: None,
            source,
            confidence,
            evidence: String::new(),
        }
    }

    #[test]
    fn candidates_are_ranked_by_confidence_then_step_and_not_repeated() {
        let d = Discovery::new(
            "example.jp".into(),
            vec![
                custom("smtp.example.jp", DiscoverySource::Autoconfig, Confidence::Medium),
                custom("SMTP.example.jp", DiscoverySource::Srv, Confidence::Medium),
                custom("smtp.gmail.com", DiscoverySource::Mx, Confidence::High),
            ],
            Vec::new(),
        );
        let hosts: Vec<(&str, DiscoverySource)> = d.candidates.iter().map(|c| (c.host.as_str(), c.source)).collect();
        assert_eq!(
            hosts,
            vec![
                ("smtp.gmail.com", DiscoverySource::Mx),
                ("SMTP.example.jp", DiscoverySource::Srv)
            ]
        );
    }

    #[test]
    fn srv_ports_imply_the_encryption() {
        assert_eq!(encryption_for_srv("_submissions._tcp", 465), Encryption::Ssl);
        assert_eq!(encryption_for_srv("_submission._tcp", 587), Encryption::StartTls);
        assert_eq!(encryption_for_srv("_submission._tcp", 465), Encryption::Ssl);
    }
}
