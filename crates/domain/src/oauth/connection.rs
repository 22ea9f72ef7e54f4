//! A tenant's OAuth connection as the rest of the service sees it: which kind, which
//! mailbox, whether it still works. The refresh token is never part of it: it stays
//! sealed in the store and is handed out only to the one holder of a refresh turn
//! ([`crate::ports::MailConnections::begin_refresh`]).

use chrono::{DateTime, Utc};

use super::{ConnectionKind, GrantProblem};
use crate::tenant::TenantId;

pub use crate::ids::ConnectionId;

crate::coded_enum! {
    /// Whether a connection can send. Stored as its code.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ConnectionStatus {
        /// Tokens can be obtained.
        Active = "ACTIVE",
        /// The grant is gone or lacks consent: an admin signs in again.
        NeedsReconnect = "NEEDS_RECONNECT",
        /// The app registration or our request is refused: the setup must be fixed.
        Misconfigured = "MISCONFIGURED",
    }
}

impl ConnectionStatus {
    /// The status a refused refresh leads to; `None` keeps the current one. A throttled
    /// or failing server says nothing about the grant; neither does a refusal of
    /// Mailgate's own client (an expired client secret, an app the operator removed):
    /// that is the operator's to fix, and marking every tenant's grant for it would make
    /// every tenant sign in again once it is fixed.
    pub fn after_refusal(problem: GrantProblem) -> Option<Self> {
        match problem {
            GrantProblem::NeedsReconnect | GrantProblem::ConsentRequired => Some(Self::NeedsReconnect),
            GrantProblem::Misconfigured | GrantProblem::Throttled { .. } | GrantProblem::Temporary => None,
        }
    }
}

/// A tenant's OAuth grant, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConnection {
    pub id: ConnectionId,
    pub tenant_id: TenantId,
    pub kind: ConnectionKind,
    /// The signed-in identity (e-mail address or UPN), or the configured sender for the
    /// app-only kinds: whose mail this connection sends.
    pub mailbox: String,
    pub status: ConnectionStatus,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The last successful refresh (`None`: not refreshed since it was created).
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn oauth_refusals_set_the_connection_status() {
        use ConnectionStatus as S;
        assert_eq!(S::after_refusal(GrantProblem::NeedsReconnect), Some(S::NeedsReconnect));
        assert_eq!(
            S::after_refusal(GrantProblem::Misconfigured),
            None,
            "the operator's to fix"
        );
        assert_eq!(S::after_refusal(GrantProblem::ConsentRequired), Some(S::NeedsReconnect));
        assert_eq!(S::after_refusal(GrantProblem::Throttled { retry_after: None }), None);
        assert_eq!(
            S::after_refusal(GrantProblem::Throttled {
                retry_after: Some(Duration::from_secs(30))
            }),
            None
        );
        assert_eq!(S::after_refusal(GrantProblem::Temporary), None);
    }

    #[test]
    fn oauth_connection_ids_and_statuses_round_trip() {
        let id = ConnectionId::generate();
        assert_eq!(id.to_string().parse::<ConnectionId>(), Ok(id));
        assert!("not-an-id".parse::<ConnectionId>().is_err());
        for status in ConnectionStatus::ALL {
            assert_eq!(ConnectionStatus::from_code(status.code()), Some(status));
        }
    }
}
