//! A Google service account for Workspace domain-wide delegation (issue 25): the JSON key
//! file Google hands out, and the RS256 assertion of the JWT bearer grant (RFC 7523 §2.1)
//! that asks for a token *as* a mailbox of a domain whose admin authorized the account's
//! client id for `gmail.send` (developers.google.com/identity/protocols/oauth2/service-account,
//! "Delegating domain-wide authority").

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use crate::{ClientAuth, InvalidEndpoint, TokenEndpoint};

/// How long an assertion is good for (Google accepts at most one hour).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// Why a key file is refused (at start, naming the setting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("not a service account key file (JSON with client_email, client_id and private_key)")]
    NotAKeyFile,
    #[error("its private_key is not an RSA key in PEM")]
    Key,
    #[error("its token_uri: {0}")]
    TokenUri(InvalidEndpoint),
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    client_id: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A loaded service account. Its `Debug` shows the account, never the key.
pub struct ServiceAccount {
    client_email: String,
    client_id: String,
    key: EncodingKey,
    key_id: Option<String>,
    token: TokenEndpoint,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads Google's JSON key file; its `token_uri` (default Google's) is where tokens
    /// are asked for.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ServiceAccountError> {
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|_| ServiceAccountError::NotAKeyFile)?;
        if file.client_email.trim().is_empty() || file.client_id.trim().is_empty() {
            return Err(ServiceAccountError::NotAKeyFile);
        }
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|_| ServiceAccountError::Key)?;
        let token_uri = file
            .token_uri
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
        let token = TokenEndpoint::new(&token_uri, &file.client_email, ClientAuth::None)
            .map_err(ServiceAccountError::TokenUri)?;
        Ok(Self {
            client_email: file.client_email,
            client_id: file.client_id,
            key,
            key_id: file.private_key_id,
            token,
        })
    }

    /// The numeric client id a Workspace admin authorizes for domain-wide delegation.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn token_endpoint(&self) -> &TokenEndpoint {
        &self.token
    }

    /// The signed assertion for a token as `mailbox` with `scope`, at `now` (seconds).
    pub(crate) fn assertion(&self, mailbox: &str, scope: &str, now: u64) -> Option<String> {
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": mailbox,
            "scope": scope,
            "aud": self.token.url().as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, &claims, &self.key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_service_account_files_are_checked() {
        assert_eq!(
            ServiceAccount::from_json(b"{}").unwrap_err(),
            ServiceAccountError::NotAKeyFile
        );
        let no_key = br#"{"client_email":"a@p.iam.gserviceaccount.com","client_id":"1","private_key":"nope"}"#;
        assert_eq!(ServiceAccount::from_json(no_key).unwrap_err(), ServiceAccountError::Key);
    }
}
