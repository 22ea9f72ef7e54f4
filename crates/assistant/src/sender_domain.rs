//! The sender domain's records for mail through a server: SPF (the provider's include,
//! found through nested includes and redirects, or for an unknown server its addresses
//! evaluated by our own `spf::check_host`), DKIM (a key under the provider's selectors),
//! DMARC (the record of the domain or of its organisational domain, parsed by mail-auth).
//! Every name is looked up under the address guard: SPF's through [`spf::Guarded`] (a
//! name resolving to an internal address reads as nonexistent), DKIM's and DMARC's through
//! [`mailer::guard::Guard::txt`] (names under private-use domains read as nonexistent).

use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::{Macro, Mechanism, Spf};

use domain::ports::CheckedServer;
use domain::providers::Provider;
use domain::sender_domain::{DkimFinding, DmarcPolicy, DomainFindings, SpfFinding, envelope_is_from_domain};
use domain::values::{EmailAddress, Host};
use mailer::resolver::LookupError;

use crate::Lookups;
use crate::spf::{self, Guarded, ResolverDns, SpfResult};

/// Includes and redirects followed at most when looking for a provider's include (the
/// SPF limit of 10 DNS-querying terms).
const SPF_LOOKUPS: u8 = 10;

/// How long the server's addresses may take to resolve for the SPF evaluation.
const SPF_HOST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Second-level labels under which registrations are at the third level (`example.co.jp`).
const SECOND_LEVEL: [&str; 12] = [
    "co", "ne", "or", "ac", "go", "ed", "gr", "lg", "ad", "com", "net", "org",
];

/// The domain whose DMARC record applies when the From domain has none: its
/// organisational domain (an approximation without the public suffix list).
pub fn organisational_domain(domain: &str) -> String {
    let labels: Vec<&str> = domain.split('.').collect();
    let keep =
        if labels.len() >= 3 && SECOND_LEVEL.contains(&labels[labels.len() - 2]) && labels[labels.len() - 1].len() == 2
        {
            3
        } else {
            2
        };
    labels[labels.len().saturating_sub(keep)..].join(".")
}

fn literal(m: &Macro) -> Option<String> {
    match m {
        Macro::Literal(bytes) => Some(
            String::from_utf8_lossy(bytes)
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        ),
        _ => None,
    }
}

impl Lookups {
    /// DNS for SPF, under the address guard's rule.
    fn spf_dns(&self) -> Guarded<ResolverDns<'_>> {
        Guarded {
            raw: ResolverDns(&self.inner.guard.resolver),
            allow_private: self.inner.guard.allow_private,
        }
    }

    /// The first SPF record of `domain`, looked up like every name SPF looks up.
    async fn spf_record(&self, domain: &str) -> Result<Option<String>, LookupError> {
        use spf::SpfDns as _;
        match self.spf_dns().txt(domain).await {
            Ok(records) => Ok(records
                .into_iter()
                .find(|r| r.as_bytes().get(..6).is_some_and(|p| p.eq_ignore_ascii_case(b"v=spf1")))),
            Err(LookupError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `record` reaches `target` (an include domain) through its includes and
    /// redirect. `Err` when a record on the way is broken, or DNS did not answer for one.
    async fn spf_reaches(&self, record: &str, target: &str, budget: &mut u8) -> Result<bool, SpfFinding> {
        let parsed = Spf::parse(record.as_bytes()).map_err(|_| SpfFinding::Error)?;
        let mut next = Vec::new();
        for d in parsed.directives.iter() {
            if let Mechanism::Include { macro_string } = &d.mechanism
                && let Some(domain) = literal(macro_string)
            {
                if domain == target {
                    return Ok(true);
                }
                next.push(domain);
            }
        }
        if let Some(domain) = parsed.redirect.as_ref().and_then(literal) {
            if domain == target {
                return Ok(true);
            }
            next.push(domain);
        }
        for domain in next {
            if *budget == 0 {
                return Err(SpfFinding::Error);
            }
            *budget -= 1;
            match self.spf_record(&domain).await {
                Ok(Some(inner)) if Box::pin(self.spf_reaches(&inner, target, budget)).await? => return Ok(true),
                Ok(_) | Err(LookupError::NotFound) => {}
                // The include may well be there, behind a name that did not answer.
                Err(LookupError::Failed) => return Err(SpfFinding::Unanswered),
            }
        }
        Ok(false)
    }

    /// SPF evaluated for the server's own addresses (a server Mailgate does not know).
    /// The host goes through the address guard like every tenant-given name: one that
    /// resolves to an internal address reads exactly like one that does not resolve
    /// (`ERROR`), so the tenant's own SPF record cannot be evaluated against internal
    /// addresses to map them. So does every name the record names (`a:`, `mx:`,
    /// `include:`, `exists:`, `redirect=`): our own evaluation ([`spf::check_host`]) looks
    /// them up through [`spf::Guarded`], and one that resolves to an internal address is
    /// a name that does not exist.
    async fn spf_for_addresses(&self, domain: &str, host: &Host) -> SpfFinding {
        let ips: Vec<IpAddr> = match self.inner.guard.resolve(host, 25, SPF_HOST_DEADLINE).await {
            Ok(addrs) => addrs.into_iter().map(|a| a.ip()).take(4).collect(),
            Err(f) if f.kind == domain::mail::FailureKind::TimedOut => return SpfFinding::Unanswered,
            Err(_) => return SpfFinding::Error,
        };
        let dns = self.spf_dns();
        let (mut broken, mut unanswered) = (false, false);
        for ip in ips {
            match spf::check_host(&dns, ip, domain).await {
                SpfResult::Pass => return SpfFinding::Pass,
                SpfResult::PermError => broken = true,
                // A DNS error on the way (RFC 7208 temperror): not an answer.
                SpfResult::TempError => unanswered = true,
                _ => {}
            }
        }
        if broken {
            SpfFinding::Error
        } else if unanswered {
            SpfFinding::Unanswered
        } else {
            SpfFinding::NotAllowed
        }
    }

    /// The selectors with a key, and whether DNS failed to answer for any of them.
    async fn dkim_keys(&self, domain: &str, selectors: &[&str]) -> (Vec<String>, bool) {
        // Every selector at once: a save waits for the slowest lookup, not their sum.
        let lookups = selectors.iter().map(|selector| async move {
            let name = format!("{selector}._domainkey.{domain}");
            (*selector, self.inner.guard.txt(&name).await)
        });
        let mut found = Vec::new();
        let mut unanswered = false;
        for (selector, answer) in futures_util::future::join_all(lookups).await {
            match answer {
                Ok(records) if records.iter().any(|r| has_public_key(r)) => found.push(selector.to_owned()),
                Ok(_) | Err(LookupError::NotFound) => {}
                Err(LookupError::Failed) => unanswered = true,
            }
        }
        (found, unanswered)
    }

    /// The policy that applies, its record and the domain it is published at; a lookup
    /// that did not answer stops the search (the organisational domain's record does not
    /// apply when the domain's own may exist).
    async fn dmarc(&self, domain: &str) -> (DmarcPolicy, Option<String>, Option<String>) {
        let org = organisational_domain(domain);
        let mut places = vec![domain.to_owned()];
        if org != domain {
            places.push(org);
        }
        for (i, place) in places.iter().enumerate() {
            let records = match self.inner.guard.txt(&format!("_dmarc.{place}")).await {
                Ok(records) => records,
                Err(LookupError::NotFound) => continue,
                Err(LookupError::Failed) => return (DmarcPolicy::Unanswered, None, None),
            };
            let Some(record) = records.into_iter().find(|r| {
                r.as_bytes()
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"v=DMARC1"))
            }) else {
                continue;
            };
            let Ok(parsed) = Dmarc::parse(record.as_bytes()) else {
                continue;
            };
            // A subdomain without its own record gets the organisational domain's `sp=`.
            let policy = if i == 0 { parsed.p } else { parsed.sp };
            let policy = match policy {
                Policy::Reject => DmarcPolicy::Reject,
                Policy::Quarantine => DmarcPolicy::Quarantine,
                _ => DmarcPolicy::None,
            };
            return (policy, Some(record), Some(place.clone()));
        }
        (DmarcPolicy::Missing, None, None)
    }

    pub(crate) async fn findings(&self, from: &EmailAddress, server: &CheckedServer) -> DomainFindings {
        let domain = from.ascii_domain();
        let provider = Provider::of_kind(server.kind).or_else(|| Provider::for_smtp_host(server.host.as_str()));
        let kind = provider.map_or(server.kind, |p| p.kind);
        let spf_include = provider.and_then(|p| p.spf_include);
        let spf = async {
            match self.spf_record(&domain).await {
                Err(LookupError::Failed) => (None, SpfFinding::Unanswered),
                Err(LookupError::NotFound) | Ok(None) => (None, SpfFinding::Missing),
                Ok(Some(record)) => {
                    let finding = match spf_include.map(|i| i.trim_start_matches("include:").to_ascii_lowercase()) {
                        Some(target) => {
                            let mut budget = SPF_LOOKUPS;
                            match self.spf_reaches(&record, &target, &mut budget).await {
                                Ok(true) => SpfFinding::Pass,
                                Ok(false) => SpfFinding::NotAllowed,
                                Err(finding) => finding,
                            }
                        }
                        None => self.spf_for_addresses(&domain, &server.host).await,
                    };
                    (Some(record), finding)
                }
            }
        };
        let selectors: &[&str] = provider.map_or(&[], |p| p.dkim_selectors);
        // SPF, DKIM and DMARC at once (each its own chain of lookups).
        let ((spf_record, spf), (dkim_found, dkim_unanswered), (dmarc, dmarc_record, dmarc_domain)) =
            tokio::join!(spf, self.dkim_keys(&domain, selectors), self.dmarc(&domain));
        let dkim = if !dkim_found.is_empty() {
            DkimFinding::Published
        } else if selectors.is_empty() {
            DkimFinding::Unknown
        } else if dkim_unanswered {
            DkimFinding::Unanswered
        } else {
            DkimFinding::Missing
        };
        DomainFindings {
            domain,
            kind,
            provider: provider.map(|p| p.name),
            spf,
            spf_record,
            spf_include,
            spf_aligns: envelope_is_from_domain(kind),
            dkim,
            dkim_selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
            dkim_found,
            dmarc,
            dmarc_record,
            dmarc_domain,
        }
    }
}

/// Whether a DKIM key record (`v=DKIM1; k=rsa; p=…`) carries a key: an empty `p=` means
/// the key was revoked (RFC 6376 §3.6.1).
fn has_public_key(record: &str) -> bool {
    record.split(';').any(|tag| {
        tag.split_once('=')
            .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("p") && !v.trim().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisational_domains() {
        assert_eq!(organisational_domain("mail.example.jp"), "example.jp");
        assert_eq!(organisational_domain("shop.example.co.jp"), "example.co.jp");
        assert_eq!(organisational_domain("example.co.jp"), "example.co.jp");
        assert_eq!(organisational_domain("a.b.example.test"), "example.test");
    }

    #[test]
    fn revoked_keys_are_no_keys() {
        assert!(has_public_key("v=DKIM1; k=rsa; p=MIIBIjANBg"));
        assert!(!has_public_key("v=DKIM1; k=rsa; p="));
        assert!(!has_public_key("v=DKIM1; k=rsa"));
    }
}
