//! Whether a tenant's saved settings carry its mail. A saved version waits
//! (`PENDING_VERIFICATION`) until a test mail proves it, then it is `LIVE`; real deliveries
//! that keep meeting configuration failures (a password changed at the provider, SMTP AUTH
//! turned off, a sender no longer allowed, a certificate that stopped verifying) make it
//! `SUSPENDED`, and the tenant's mail goes through the platform default until a version
//! is proven again.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::failure::{Hint, SendStage};

crate::coded_enum! {
    /// Where a saved settings version stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SettingsState {
        /// Saved, not yet proven: mail goes out as it did before the save.
        PendingVerification = "PENDING_VERIFICATION",
        /// Proven: the tenant's mail goes out through it.
        Live = "LIVE",
        /// Real deliveries kept failing for a configuration fault: the tenant's mail goes
        /// through the platform default, and no AUTH is attempted with it.
        Suspended = "SUSPENDED",
    }
}

crate::coded_enum! {
    /// What makes a saved version live (`MAILGATE_SETTINGS_ACTIVATION`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum ActivationMode {
        /// A successful test mail of the saved version.
        #[default]
        Test = "test",
        /// The one-time code that the test mail carries, given back with
        /// `activateMailSettings`: proves the mail reached an inbox.
        Code = "code",
        /// Live on save, unproven (the behaviour before verification existed).
        Save = "save",
    }
}

impl ActivationMode {
    /// The state a newly saved version starts in.
    pub fn initial_state(self) -> SettingsState {
        match self {
            Self::Save => SettingsState::Live,
            Self::Test | Self::Code => SettingsState::PendingVerification,
        }
    }
}

/// How long an activation code is valid.
pub const ACTIVATION_CODE_VALIDITY: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Characters of an activation code (no 0/O or 1/I: read from a mail and typed). Ten of
/// them from a random UUID carry about 49 bits.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 10;

/// The last configuration failure of a version, as the tenant is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsFailure {
    pub at: DateTime<Utc>,
    pub stage: SendStage,
    pub smtp_code: Option<u16>,
    pub enhanced_code: Option<String>,
    /// The server's reply (already redacted by the mailer).
    pub server_message: Option<String>,
    pub hint: Hint,
}

/// A one-time activation code as stored: its hash and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCode {
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}

/// Why a code does not activate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// No code is waiting, or this is not it.
    Invalid,
    /// It was the code, but it is older than [`ACTIVATION_CODE_VALIDITY`].
    Expired,
}

impl ActivationCode {
    /// A new code, valid from `at`: the text for the mail, and what is stored.
    pub fn issue(at: DateTime<Utc>) -> (String, Self) {
        let random = uuid::Uuid::new_v4();
        let code: String = random.as_bytes()[..CODE_LEN]
            .iter()
            .map(|b| CODE_ALPHABET[usize::from(b % 32)] as char)
            .collect();
        let stored = Self {
            hash: code_hash(&code),
            expires_at: at + chrono::Duration::from_std(ACTIVATION_CODE_VALIDITY).unwrap_or_default(),
        };
        (code, stored)
    }

    /// Whether `code` (as typed: case, spaces and dashes do not matter) is this one and
    /// still valid at `at`.
    pub fn check(&self, code: &str, at: DateTime<Utc>) -> Result<(), CodeRefusal> {
        let given = code_hash(code);
        // Compared as hashes: the time taken says nothing about the code.
        if given.len() != self.hash.len()
            || given.bytes().zip(self.hash.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) != 0
        {
            return Err(CodeRefusal::Invalid);
        }
        if at > self.expires_at {
            return Err(CodeRefusal::Expired);
        }
        Ok(())
    }
}

fn code_hash(code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(normalised.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The health of one saved settings version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsHealth {
    pub state: SettingsState,
    pub since: DateTime<Utc>,
    /// Configuration failures of real deliveries in a row (a sent mail resets it).
    pub consecutive_failures: u32,
    pub last_failure: Option<SettingsFailure>,
    /// The code a test mail carried (`code` activation), while it waits to be given back.
    pub activation_code: Option<ActivationCode>,
    /// What the workers last learnt of the version's server.
    pub server: ServerRecord,
}

/// What the workers last learnt of a settings version's server, kept so that a worker
/// starting later (a restart, a deploy, another replica) does not make every tenant's
/// server prove itself again through the side budget. Written when a server proves
/// itself in a worker, or fails for every mail; never per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerRecord {
    /// The server last took mail at this time.
    pub reached_at: Option<DateTime<Utc>>,
    /// The server last failed for every mail (no answer, refused) at this time.
    pub unreachable_at: Option<DateTime<Utc>>,
}

impl ServerRecord {
    /// Whether the server took mail after it last failed for every mail.
    pub fn proven(&self) -> bool {
        match (self.reached_at, self.unreachable_at) {
            (Some(reached), Some(failed)) => reached > failed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// What a worker learnt of one settings version's server, and when: one entry of
/// [`crate::ports::TenantStore::record_servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerNote {
    pub tenant: crate::TenantId,
    pub version: i64,
    pub learnt: ServerLearnt,
    pub at: DateTime<Utc>,
}

/// What a worker learnt of a server, to remember (see [`ServerRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerLearnt {
    /// It took mail.
    Reached,
    /// It failed for every mail.
    Unreachable,
}

impl SettingsHealth {
    pub fn new(state: SettingsState, since: DateTime<Utc>) -> Self {
        Self {
            state,
            since,
            consecutive_failures: 0,
            last_failure: None,
            activation_code: None,
            server: ServerRecord::default(),
        }
    }

    /// Live since `since`, with no failures.
    pub fn live(since: DateTime<Utc>) -> Self {
        Self::new(SettingsState::Live, since)
    }
}

/// What a configuration failure on a real delivery does to its version, by
/// `MAILGATE_SUSPEND_AFTER_FAILURES` (`suspend_after`; 0: never suspended).
pub fn state_after_failure(health: &SettingsHealth, suspend_after: u32) -> SettingsState {
    let failures = health.consecutive_failures.saturating_add(1);
    if health.state == SettingsState::Live && suspend_after > 0 && failures >= suspend_after {
        SettingsState::Suspended
    } else {
        health.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_proven_when_it_last_took_mail() {
        let at = Utc::now();
        let later = at + chrono::Duration::seconds(1);
        let record = |reached_at, unreachable_at| ServerRecord {
            reached_at,
            unreachable_at,
        };
        assert!(!ServerRecord::default().proven(), "nothing known");
        assert!(record(Some(at), None).proven());
        assert!(record(Some(later), Some(at)).proven(), "took mail again after failing");
        assert!(!record(Some(at), Some(later)).proven(), "failed since");
        assert!(!record(None, Some(at)).proven());
    }

    #[test]
    fn a_live_version_is_suspended_at_the_threshold_and_only_a_live_one() {
        let at = Utc::now();
        let mut h = SettingsHealth::live(at);
        h.consecutive_failures = 1;
        assert_eq!(state_after_failure(&h, 3), SettingsState::Live);
        h.consecutive_failures = 2;
        assert_eq!(state_after_failure(&h, 3), SettingsState::Suspended);
        assert_eq!(state_after_failure(&h, 0), SettingsState::Live, "0: never");
        let pending = SettingsHealth {
            consecutive_failures: 9,
            ..SettingsHealth::new(SettingsState::PendingVerification, at)
        };
        assert_eq!(state_after_failure(&pending, 3), SettingsState::PendingVerification);
    }

    #[test]
    fn codes_check_once_typed_loosely_and_expire() {
        let at = Utc::now();
        let (code, stored) = ActivationCode::issue(at);
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(stored.check(&code, at), Ok(()));
        let typed = format!(" {}-{} ", code[..5].to_ascii_lowercase(), &code[5..]);
        assert_eq!(stored.check(&typed, at), Ok(()));
        assert_eq!(stored.check("AAAAAAAAAA", at), Err(CodeRefusal::Invalid));
        assert_eq!(stored.check("", at), Err(CodeRefusal::Invalid));
        let late = at + chrono::Duration::minutes(31);
        assert_eq!(stored.check(&code, late), Err(CodeRefusal::Expired));
        let (other, _) = ActivationCode::issue(at);
        assert_ne!(code, other);
        assert!(!stored.hash.contains(&code), "only the hash is kept");
    }
}
