//! The probe of the setup assistant: which port and encryption a host answers on, what
//! each offers, and one suggestion to save. The transport runs the conversations
//! (greeting and EHLO only, then at most one AUTH on the best pair); this module holds
//! what a probe asks and answers and how the answers are ranked.

use std::time::Duration;

use secrecy::SecretString;

use crate::mail::{FailureKind, SendFailure};
use crate::settings::Encryption;
use crate::values::{Host, LocalHostname, Username};

/// The whole probe finishes (or gives up on what is left) within this.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(20);

/// One conversation (connect, TLS, greeting, EHLO) gives up after this.
pub const PAIR_DEADLINE: Duration = Duration::from_secs(8);

/// The usual submission pairs, tried for every host (plus the one the user typed).
pub const USUAL_PAIRS: [(u16, Encryption); 4] = [
    (587, Encryption::StartTls),
    (465, Encryption::Ssl),
    (25, Encryption::StartTls),
    (2525, Encryption::StartTls),
];

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub host: Host,
    /// The pairs to try, in order of preference (the typed one first, when there is one).
    pub pairs: Vec<(u16, Encryption)>,
    /// The pair the user typed, if any.
    pub typed: Option<(u16, Encryption)>,
    /// For the one AUTH attempt on the best pair.
    pub credentials: Option<(Username, SecretString)>,
    pub ehlo: Option<LocalHostname>,
}

impl ProbeTarget {
    /// The pairs for `host`: the typed one first, then the usual ones not typed.
    pub fn pairs_for(typed: Option<(u16, Encryption)>, usual: &[(u16, Encryption)]) -> Vec<(u16, Encryption)> {
        let mut pairs: Vec<(u16, Encryption)> = typed.into_iter().collect();
        for pair in usual {
            if !pairs.contains(pair) {
                pairs.push(*pair);
            }
        }
        pairs
    }
}

/// What a working pair offers after EHLO (over TLS when the pair is encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offer {
    /// AUTH mechanisms Mailgate can use or name: `PLAIN`, `LOGIN`, `XOAUTH2`.
    pub auth_mechanisms: Vec<String>,
    /// Whether STARTTLS is offered (on a pair without encryption).
    pub starttls: bool,
    pub smtputf8: bool,
}

impl Offer {
    /// Whether Mailgate can log in here (PLAIN or LOGIN offered).
    pub fn password_auth(&self) -> bool {
        self.auth_mechanisms.iter().any(|m| m == "PLAIN" || m == "LOGIN")
    }
}

/// One pair tried.
#[derive(Debug, Clone)]
pub struct ProbedPair {
    pub port: u16,
    pub encryption: Encryption,
    pub typed: bool,
    pub outcome: Result<Offer, SendFailure>,
}

impl ProbedPair {
    pub fn works(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// What a probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Working pairs first, best first; then the failed ones, in the order tried.
    pub pairs: Vec<ProbedPair>,
    /// The one AUTH attempt on the best pair, when credentials were given (and the pair
    /// offers a login method).
    pub auth: Option<Result<(), SendFailure>>,
    pub elapsed: Duration,
}

impl ProbeReport {
    /// Orders `pairs`: working ones first — encrypted before plain, with a usable login
    /// before without, the typed pair before others, then in the order tried —, then
    /// the failed ones in the order tried.
    pub fn ranked(mut pairs: Vec<ProbedPair>, auth: Option<Result<(), SendFailure>>, elapsed: Duration) -> Self {
        let order: Vec<(u16, Encryption)> = pairs.iter().map(|p| (p.port, p.encryption)).collect();
        let key = |p: &ProbedPair| {
            let tried = order
                .iter()
                .position(|o| *o == (p.port, p.encryption))
                .unwrap_or(usize::MAX);
            match &p.outcome {
                Ok(offer) => (
                    0u8,
                    u8::from(p.encryption == Encryption::None),
                    u8::from(!offer.password_auth()),
                    u8::from(!p.typed),
                    tried,
                ),
                Err(_) => (1, 0, 0, 0, tried),
            }
        };
        pairs.sort_by_key(key);
        Self { pairs, auth, elapsed }
    }

    /// The best working pair: what the form can save.
    pub fn best(&self) -> Option<&ProbedPair> {
        self.pairs.first().filter(|p| p.works())
    }
}

/// Whether a failed STARTTLS pair showed that the port answers in plain text (the
/// server greeted and answered EHLO but offered no STARTTLS).
pub fn answers_in_plain(failure: &SendFailure) -> bool {
    failure.kind == FailureKind::StartTlsNotOffered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::SendStage;

    fn works(port: u16, encryption: Encryption, auth: bool, typed: bool) -> ProbedPair {
        ProbedPair {
            port,
            encryption,
            typed,
            outcome: Ok(Offer {
                auth_mechanisms: if auth { vec!["PLAIN".into()] } else { Vec::new() },
                ..Offer::default()
            }),
        }
    }

    #[test]
    fn encrypted_with_login_comes_first_then_the_typed_pair_then_the_order_tried() {
        let failed = ProbedPair {
            port: 465,
            encryption: Encryption::Ssl,
            typed: false,
            outcome: Err(SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused)),
        };
        let report = ProbeReport::ranked(
            vec![
                works(587, Encryption::None, true, false),
                failed,
                works(25, Encryption::StartTls, false, false),
                works(2525, Encryption::StartTls, true, false),
                works(2526, Encryption::StartTls, true, true),
            ],
            None,
            Duration::ZERO,
        );
        let order: Vec<u16> = report.pairs.iter().map(|p| p.port).collect();
        assert_eq!(order, vec![2526, 2525, 25, 587, 465]);
        assert_eq!(report.best().map(|p| p.port), Some(2526));
    }

    #[test]
    fn no_working_pair_means_no_suggestion() {
        let report = ProbeReport::ranked(
            vec![ProbedPair {
                port: 587,
                encryption: Encryption::StartTls,
                typed: false,
                outcome: Err(SendFailure::new(SendStage::Connect, FailureKind::TimedOut)),
            }],
            None,
            Duration::ZERO,
        );
        assert!(report.best().is_none());
    }

    #[test]
    fn the_typed_pair_is_tried_first_and_not_twice() {
        let pairs = ProbeTarget::pairs_for(Some((465, Encryption::Ssl)), &USUAL_PAIRS);
        assert_eq!(pairs[0], (465, Encryption::Ssl));
        assert_eq!(pairs.len(), 4);
        assert_eq!(ProbeTarget::pairs_for(None, &USUAL_PAIRS).len(), 4);
    }
}
