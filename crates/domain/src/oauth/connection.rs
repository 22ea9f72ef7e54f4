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

/// A Microsoft organisation as app-only tokens are asked for it: its directory (tenant)
/// id, a GUID, or one of its domains (`contoso.onmicrosoft.com`). Valid by construction,
/// so it can stand in a token URL's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryId(String);

impl DirectoryId {
    pub fn parse(raw: &str) -> Result<Self, crate::values::ValueError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(crate::values::ValueError::Required);
        }
        let guid = raw.len() == 36 && uuid::Uuid::parse_str(raw).is_ok();
        let domain = raw.contains('.')
            && raw.len() <= 253
            && raw.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if guid || domain {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(crate::values::ValueError::InvalidFormat)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a new connection is made of (its secrets are sealed by the store).
#[derive(Debug, Clone, Copy)]
pub struct NewConnection<'a> {
    pub kind: ConnectionKind,
    pub mailbox: &'a str,
    pub scopes: &'a [String],
    /// Microsoft app-only.
    pub directory: Option<&'a DirectoryId>,
    /// Signed-in kinds.
    pub refresh_token: Option<&'a secrecy::SecretString>,
    /// Generic XOAUTH2.
    pub client: Option<ClientCredentials<'a>>,
}

/// A tenant's own client at a token endpoint it names (generic XOAUTH2).
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a secrecy::SecretString,
}

impl std::fmt::Debug for ClientCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
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
    /// Microsoft app-only: the organisation's directory (tenant) id or domain.
    pub directory_id: Option<String>,
    /// Generic XOAUTH2: the tenant's token endpoint and client id (its secret stays
    /// sealed in the store).
    pub token_url: Option<String>,
    pub client_id: Option<String>,
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
    fn oauth_directory_ids_are_guids_or_domains_and_nothing_that_could_bend_a_url() {
        assert_eq!(
            DirectoryId::parse(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ")
                .unwrap()
                .as_str(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
        assert_eq!(
            DirectoryId::parse("Contoso.onmicrosoft.com").unwrap().as_str(),
            "contoso.onmicrosoft.com"
        );
        for bad in [
            "",
            "common/../x",
            "contoso",
            "a..b",
            "x.com/evil",
            "-x.com",
            "x.com?y",
            "x y.com",
        ] {
            assert!(DirectoryId::parse(bad).is_err(), "{bad}");
        }
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
