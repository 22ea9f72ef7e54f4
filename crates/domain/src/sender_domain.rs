//! The sender-domain check: what the From domain's SPF, DKIM and DMARC records say about
//! mail sent through given settings, and the verdict — `PASS`, `AT_RISK` or `WILL_FAIL` —
//! with the issues and, where they are knowable, the exact records to add. The records
//! are read and SPF is evaluated in the assistant's adapter (with `mail-auth`); the
//! judgement is here.

use crate::server::ServerKind;

crate::coded_enum! {
    /// What receivers are likely to do with the mail.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Verdict {
        /// SPF and DKIM are likely to pass aligned, and DMARC is published.
        Pass = "PASS",
        /// Accepted, probably, but something is missing: spam folders, and rejection by
        /// Gmail and Yahoo for bulk senders.
        AtRisk = "AT_RISK",
        /// DMARC says quarantine or reject, and neither SPF nor DKIM will pass aligned.
        WillFail = "WILL_FAIL",
        /// DNS did not answer for a record the verdict needs (timed out or failed): nothing
        /// can be said until it does. Not "missing": the records may well be there.
        Unknown = "UNKNOWN",
    }
}

crate::coded_enum! {
    /// What SPF says about the server's addresses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SpfFinding {
        /// The record allows the server (its include, or one of its addresses passes).
        Pass = "PASS",
        /// The record exists but does not allow the server (fail, softfail or neutral).
        NotAllowed = "NOT_ALLOWED",
        /// No SPF record.
        Missing = "MISSING",
        /// The record is broken (permerror: syntax, too many lookups), or a name it
        /// names did not answer.
        Error = "ERROR",
        /// DNS did not answer for the domain's own TXT records.
        Unanswered = "UNANSWERED",
    }
}

crate::coded_enum! {
    /// Whether the server's DKIM signatures will carry the From domain.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DkimFinding {
        /// A key is published under one of the provider's selectors.
        Published = "PUBLISHED",
        /// The provider is known and none of its selectors has a key.
        Missing = "MISSING",
        /// The server is not a known provider: its selector cannot be guessed.
        Unknown = "UNKNOWN",
        /// No key found, and DNS did not answer for at least one selector.
        Unanswered = "UNANSWERED",
    }
}

crate::coded_enum! {
    /// The From domain's DMARC policy (`p=`, or `sp=` for a subdomain).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DmarcPolicy {
        Missing = "MISSING",
        None = "NONE",
        Quarantine = "QUARANTINE",
        Reject = "REJECT",
        /// DNS did not answer for `_dmarc` of the domain (or of its organisational domain).
        Unanswered = "UNANSWERED",
    }
}

crate::coded_enum! {
    /// One thing the check found wrong or worth knowing. The sentences are in the API's
    /// catalogues.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DomainIssue {
        SpfMissing = "SPF_MISSING",
        SpfNotAllowed = "SPF_NOT_ALLOWED",
        SpfError = "SPF_ERROR",
        /// The provider sends with its own envelope domain, so SPF cannot align.
        SpfNotAligned = "SPF_NOT_ALIGNED",
        DkimMissing = "DKIM_MISSING",
        DkimUnknown = "DKIM_UNKNOWN",
        DmarcMissing = "DMARC_MISSING",
        DmarcPolicyNone = "DMARC_POLICY_NONE",
        /// DMARC reject/quarantine and nothing aligned: receivers refuse or junk the mail.
        DmarcWillFail = "DMARC_WILL_FAIL",
        /// DNS did not answer for some of the records: the check could not look them up
        /// (which is not the same as finding nothing).
        DnsUnanswered = "DNS_UNANSWERED",
    }
}

/// A DNS record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFix {
    /// The fully qualified name, e.g. `example.jp` or `_dmarc.example.jp`.
    pub name: String,
    /// `TXT`.
    pub record_type: &'static str,
    /// The whole record to publish (for SPF: the existing one with the mechanism added).
    pub value: String,
    /// Replaces the record now there (SPF), or is new.
    pub replaces: Option<String>,
}

/// What the adapter read and evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFindings {
    pub domain: String,
    pub kind: ServerKind,
    /// The known provider's name, if the server is one.
    pub provider: Option<&'static str>,
    pub spf: SpfFinding,
    pub spf_record: Option<String>,
    /// The mechanism that allows the provider (`include:_spf.google.com`), when known.
    pub spf_include: Option<&'static str>,
    /// SPF passes for the envelope sender's domain, which is the From domain only when
    /// the provider does not send with its own envelope domain.
    pub spf_aligns: bool,
    pub dkim: DkimFinding,
    /// The selectors looked up, and those with a key.
    pub dkim_selectors: Vec<String>,
    pub dkim_found: Vec<String>,
    pub dmarc: DmarcPolicy,
    pub dmarc_record: Option<String>,
    /// The domain whose `_dmarc` record applies (the From domain or a parent).
    pub dmarc_domain: Option<String>,
}

/// The verdict and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCheck {
    pub findings: DomainFindings,
    pub verdict: Verdict,
    pub issues: Vec<DomainIssue>,
    pub fixes: Vec<RecordFix>,
}

/// Whether a provider's mail carries the From domain in its envelope sender (so SPF can
/// align). Amazon SES and SendGrid use their own unless a custom MAIL FROM / branded
/// return path is set up, which the DNS of the From domain alone does not show.
pub fn envelope_is_from_domain(kind: ServerKind) -> bool {
    !matches!(kind, ServerKind::AmazonSes | ServerKind::SendGrid)
}

/// The SPF record with `mechanism` added before its final `all` (or `redirect=`), or a
/// new record when there is none.
pub fn spf_with(record: Option<&str>, mechanism: &str) -> String {
    match record {
        None => format!("v=spf1 {mechanism} ~all"),
        Some(r) => {
            let mut terms: Vec<&str> = r.split_whitespace().collect();
            let at = terms
                .iter()
                .position(|t| {
                    let t = t.trim_start_matches(['+', '-', '~', '?']).to_ascii_lowercase();
                    t == "all" || t.starts_with("redirect=")
                })
                .unwrap_or(terms.len());
            terms.insert(at.max(1), mechanism);
            terms.join(" ")
        }
    }
}

impl DomainCheck {
    /// Judges the findings.
    pub fn judge(findings: DomainFindings) -> Self {
        let mut issues = Vec::new();
        let mut fixes = Vec::new();
        // What DNS did not answer is not "missing": no verdict, no record to publish for
        // it, and the first thing said is that it could not be looked up.
        let unanswered = findings.spf == SpfFinding::Unanswered
            || findings.dkim == DkimFinding::Unanswered
            || findings.dmarc == DmarcPolicy::Unanswered;
        if unanswered {
            issues.push(DomainIssue::DnsUnanswered);
        }
        let spf_ok = findings.spf == SpfFinding::Pass && findings.spf_aligns;
        match findings.spf {
            SpfFinding::Pass if !findings.spf_aligns => issues.push(DomainIssue::SpfNotAligned),
            SpfFinding::Pass => {}
            SpfFinding::Missing => issues.push(DomainIssue::SpfMissing),
            SpfFinding::NotAllowed => issues.push(DomainIssue::SpfNotAllowed),
            SpfFinding::Error => issues.push(DomainIssue::SpfError),
            SpfFinding::Unanswered => {}
        }
        if matches!(findings.spf, SpfFinding::Missing | SpfFinding::NotAllowed)
            && let Some(include) = findings.spf_include
        {
            fixes.push(RecordFix {
                name: findings.domain.clone(),
                record_type: "TXT",
                value: spf_with(findings.spf_record.as_deref(), include),
                replaces: findings.spf_record.clone(),
            });
        }
        let dkim_ok = findings.dkim == DkimFinding::Published;
        match findings.dkim {
            DkimFinding::Published => {}
            DkimFinding::Missing => issues.push(DomainIssue::DkimMissing),
            DkimFinding::Unknown => issues.push(DomainIssue::DkimUnknown),
            DkimFinding::Unanswered => {}
        }
        let aligned = spf_ok || dkim_ok;
        let verdict = match findings.dmarc {
            // Whether it aligns is not known until DNS answers.
            DmarcPolicy::Quarantine | DmarcPolicy::Reject if unanswered => Verdict::Unknown,
            DmarcPolicy::Quarantine | DmarcPolicy::Reject if !aligned => {
                issues.push(DomainIssue::DmarcWillFail);
                Verdict::WillFail
            }
            DmarcPolicy::Missing => {
                issues.push(DomainIssue::DmarcMissing);
                fixes.push(RecordFix {
                    name: format!("_dmarc.{}", findings.domain),
                    record_type: "TXT",
                    value: "v=DMARC1; p=none".to_owned(),
                    replaces: None,
                });
                Verdict::AtRisk
            }
            DmarcPolicy::Unanswered => Verdict::Unknown,
            policy => {
                if policy == DmarcPolicy::None {
                    issues.push(DomainIssue::DmarcPolicyNone);
                }
                if spf_ok && dkim_ok {
                    Verdict::Pass
                } else {
                    Verdict::AtRisk
                }
            }
        };
        // What did answer may decide it anyway (SPF aligned and DMARC reject: whatever
        // DKIM says, it passes or is at risk; DMARC missing: at risk): the verdict is
        // known when every answer DNS could still give leads to the same one.
        let verdict = if unanswered {
            decided(&findings).unwrap_or(Verdict::Unknown)
        } else {
            verdict
        };
        Self {
            verdict,
            findings,
            issues,
            fixes,
        }
    }
}

/// The verdict of answered findings (none `Unanswered`).
fn verdict_of(spf_ok: bool, dkim_ok: bool, dmarc: DmarcPolicy) -> Verdict {
    match dmarc {
        DmarcPolicy::Quarantine | DmarcPolicy::Reject if !(spf_ok || dkim_ok) => Verdict::WillFail,
        DmarcPolicy::Missing => Verdict::AtRisk,
        _ if spf_ok && dkim_ok => Verdict::Pass,
        _ => Verdict::AtRisk,
    }
}

/// The verdict when it is the same whatever the unanswered lookups would have said.
fn decided(f: &DomainFindings) -> Option<Verdict> {
    let spf: &[bool] = match f.spf {
        SpfFinding::Unanswered => &[true, false],
        SpfFinding::Pass => &[true],
        _ => &[false],
    };
    let dkim: &[bool] = match f.dkim {
        DkimFinding::Unanswered => &[true, false],
        DkimFinding::Published => &[true],
        _ => &[false],
    };
    let dmarc: &[DmarcPolicy] = match f.dmarc {
        DmarcPolicy::Unanswered => &[DmarcPolicy::Missing, DmarcPolicy::None, DmarcPolicy::Reject],
        ref p => std::slice::from_ref(p),
    };
    let mut seen = None;
    for &s in spf {
        for &k in dkim {
            for &d in dmarc {
                let v = verdict_of(s && f.spf_aligns, k, d);
                if seen.is_some_and(|seen| seen != v) {
                    return None;
                }
                seen = Some(v);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(spf: SpfFinding, dkim: DkimFinding, dmarc: DmarcPolicy) -> DomainFindings {
        DomainFindings {
            domain: "example.jp".into(),
            kind: ServerKind::GoogleWorkspace,
            provider: Some("Google Workspace"),
            spf,
            spf_record: Some("v=spf1 mx -all".into()),
            spf_include: Some("include:_spf.google.com"),
            spf_aligns: true,
            dkim,
            dkim_selectors: vec!["google".into()],
            dkim_found: Vec::new(),
            dmarc,
            dmarc_record: None,
            dmarc_domain: None,
        }
    }

    #[test]
    fn each_verdict() {
        use DkimFinding as K;
        use DmarcPolicy as D;
        use SpfFinding as S;
        let v = |s, k, d| DomainCheck::judge(findings(s, k, d)).verdict;
        assert_eq!(v(S::Pass, K::Published, D::Reject), Verdict::Pass);
        assert_eq!(v(S::Pass, K::Published, D::None), Verdict::Pass);
        assert_eq!(v(S::Pass, K::Missing, D::Reject), Verdict::AtRisk);
        assert_eq!(v(S::NotAllowed, K::Published, D::Quarantine), Verdict::AtRisk);
        assert_eq!(v(S::Pass, K::Published, D::Missing), Verdict::AtRisk);
        assert_eq!(v(S::NotAllowed, K::Missing, D::None), Verdict::AtRisk);
        assert_eq!(v(S::NotAllowed, K::Missing, D::Reject), Verdict::WillFail);
        assert_eq!(v(S::Missing, K::Unknown, D::Quarantine), Verdict::WillFail);
        assert_eq!(v(S::Error, K::Missing, D::Reject), Verdict::WillFail);
    }

    #[test]
    fn what_dns_did_not_answer_is_unknown_not_missing() {
        use DkimFinding as K;
        use DmarcPolicy as D;
        use SpfFinding as S;
        for (s, k, d) in [
            (S::Unanswered, K::Missing, D::Reject),
            (S::Pass, K::Unanswered, D::Reject),
            (S::Missing, K::Missing, D::Unanswered),
        ] {
            let check = DomainCheck::judge(findings(s, k, d));
            assert_eq!(check.verdict, Verdict::Unknown, "{s:?} {k:?} {d:?}");
            assert_eq!(check.issues[0], DomainIssue::DnsUnanswered);
            assert!(!check.issues.contains(&DomainIssue::DmarcWillFail));
            assert!(!check.issues.contains(&DomainIssue::DmarcMissing));
            // Nothing to publish for a record that may well be there.
            assert!(
                !check.fixes.iter().any(|f| f.name.starts_with("_dmarc.")),
                "{:?}",
                check.fixes
            );
        }
        // What did answer still gets its fix: the SPF record without the provider's include.
        let check = DomainCheck::judge(findings(S::NotAllowed, K::Published, D::Unanswered));
        assert_eq!(check.fixes.len(), 1);
        assert!(check.issues.contains(&DomainIssue::SpfNotAllowed));
        // What did answer can decide it: at risk whatever DKIM says (DMARC missing, or
        // SPF not allowed without DMARC's demand); unknown while it could still pass.
        let v = |s, k, d| DomainCheck::judge(findings(s, k, d)).verdict;
        assert_eq!(v(S::NotAllowed, K::Unanswered, D::Missing), Verdict::AtRisk);
        assert_eq!(v(S::NotAllowed, K::Unanswered, D::None), Verdict::AtRisk);
        assert_eq!(
            v(S::Pass, K::Unanswered, D::None),
            Verdict::Unknown,
            "passes if a key is there"
        );
        assert_eq!(
            v(S::Pass, K::Published, D::Unanswered),
            Verdict::Unknown,
            "DMARC may be missing"
        );
    }

    #[test]
    fn spf_that_cannot_align_does_not_save_the_mail() {
        let mut f = findings(SpfFinding::Pass, DkimFinding::Missing, DmarcPolicy::Reject);
        f.spf_aligns = false;
        let check = DomainCheck::judge(f);
        assert_eq!(check.verdict, Verdict::WillFail);
        assert!(check.issues.contains(&DomainIssue::SpfNotAligned));
    }

    #[test]
    fn the_exact_records_to_add() {
        let check = DomainCheck::judge(findings(
            SpfFinding::NotAllowed,
            DkimFinding::Published,
            DmarcPolicy::Missing,
        ));
        assert_eq!(
            check.fixes,
            vec![
                RecordFix {
                    name: "example.jp".into(),
                    record_type: "TXT",
                    value: "v=spf1 mx include:_spf.google.com -all".into(),
                    replaces: Some("v=spf1 mx -all".into()),
                },
                RecordFix {
                    name: "_dmarc.example.jp".into(),
                    record_type: "TXT",
                    value: "v=DMARC1; p=none".into(),
                    replaces: None,
                },
            ]
        );
        assert_eq!(
            spf_with(None, "include:sendgrid.net"),
            "v=spf1 include:sendgrid.net ~all"
        );
        assert_eq!(
            spf_with(Some("v=spf1 redirect=_spf.example.jp"), "include:amazonses.com"),
            "v=spf1 include:amazonses.com redirect=_spf.example.jp"
        );
        assert_eq!(spf_with(Some("v=spf1 a"), "include:x"), "v=spf1 a include:x");
    }
}
