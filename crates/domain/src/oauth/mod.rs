//! Sending with OAuth 2 instead of a password (issue 25): the connection kinds, PKCE,
//! the sign-in `state` and its return URL, token answers and when to refresh, and what
//! a refusal means. Pure rules: the HTTP calls, the sealing and the storage are done by
//! other crates through the oauth ports (`StateSeal`, `AuthorizationStateStore`,
//! `MailConnections`).

mod connection;
mod kind;
mod pkce;
mod problem;
mod return_url;
mod sign_in;
mod state;
mod token;

pub use connection::{ClientCredentials, ConnectionId, ConnectionStatus, DirectoryId, MailConnection, NewConnection};
pub use kind::{ConnectionKind, Grant, OFFICE365_SMTP_HOST, OFFICE365_SMTP_PORT, Provider, Transport};
pub use pkce::{CHALLENGE_METHOD, InvalidVerifier, PkceVerifier};
pub use problem::{GrantProblem, MAX_RETRY_AFTER, SendAnswer, SendRefusal, parse_retry_after};
pub use return_url::{MAX_RETURN_URL_LEN, ReturnUrl, ReturnUrlAllowList, ReturnUrlError};
pub use sign_in::{SignInEndpoint, SignInEndpointError};
pub use state::{AuthorizationState, STATE_LIFETIME, StateError, StateNonce};
pub use token::{
    DEFAULT_LIFETIME, KEEP_ALIVE_EVERY, MAX_LIFETIME, MAX_TOKEN_RESPONSE, REFRESH_AHEAD, RefreshPlan, RefreshReason,
    RefreshedTokens, SignedInIdentity, TokenResponseError, TokenSet,
};
