//! The OAuth sign-in's ports on the store (issue 25): the `state` sealed with the key
//! ring (AES-256-GCM, so the browser can neither read the PKCE verifier inside nor change
//! a byte; keys rotated out still open it), and each `state` used once
//! (`oauth_states_used`, keyed by its nonce).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::oauth::StateNonce;
use domain::ports::{AuthorizationStateStore, StateSeal};
use domain::{StoreError, TenantId};
use sea_orm::ConnectionTrait;
use secrecy::{ExposeSecret as _, SecretString};

use crate::convert::db_err;
use crate::crypto::SecretPurpose;
use crate::sql::SqlBuilder;
use crate::store::SqlStore;

/// The associated data's subject of every sealed `state` (its tenant is inside the claims,
/// which the domain checks against the caller).
pub const STATE_SUBJECT: &str = "oauth-sign-in";

/// The sealed form: `v1.<key id>.<base64url(nonce || ciphertext)>`: URL-safe, and the key
/// id says which key of the ring opens it.
const VERSION: &str = "v1";

/// Sealed `state`s longer than this are not opened (what we seal is far shorter).
const MAX_SEALED: usize = 4096;

impl StateSeal for SqlStore {
    fn seal(&self, claims: &[u8]) -> String {
        // The claims are text (`AuthorizationState::to_claims`); anything else seals as
        // its lossless base64 so that nothing is refused here.
        let text = match std::str::from_utf8(claims) {
            Ok(t) => t.to_owned(),
            Err(_) => URL_SAFE_NO_PAD.encode(claims),
        };
        match self
            .keys
            .encrypt_for(&SecretString::from(text), STATE_SUBJECT, SecretPurpose::OauthState)
        {
            Ok((sealed, key_id)) => format!("{VERSION}.{key_id}.{}", URL_SAFE_NO_PAD.encode(sealed)),
            // AES-GCM sealing fails only for absurd lengths; an empty `state` then fails to
            // open at the callback, refusing the sign-in rather than weakening it.
            Err(_) => String::new(),
        }
    }

    fn open(&self, token: &str) -> Option<Vec<u8>> {
        if token.len() > MAX_SEALED {
            return None;
        }
        let mut parts = token.splitn(3, '.');
        let (version, key_id, body) = (parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
        let opened = self
            .keys
            .decrypt_for(&sealed, key_id, STATE_SUBJECT, SecretPurpose::OauthState)
            .ok()?;
        Some(opened.expose_secret().as_bytes().to_vec())
    }
}

#[async_trait::async_trait]
impl AuthorizationStateStore for SqlStore {
    async fn mark_state_used(
        &self,
        tenant: TenantId,
        nonce: &StateNonce,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let backend = self.connection().get_database_backend();
        let txn = self.begin_write().await?;
        // What has expired can go: an expired `state` is refused before it gets here.
        let mut expired = SqlBuilder::new(backend);
        expired
            .sql("DELETE FROM oauth_states_used WHERE expires_at_ms < ")
            .bind(Utc::now().timestamp_millis());
        txn.execute_raw(expired.build()).await.map_err(db_err)?;
        let mut insert = SqlBuilder::new(backend);
        insert
            .sql("INSERT INTO oauth_states_used (nonce, tenant_id, expires_at_ms) VALUES (")
            .bind(nonce.as_str().to_owned())
            .sql(", ")
            .bind(tenant.to_string())
            .sql(", ")
            .bind(expires_at.timestamp_millis())
            .sql(") ON CONFLICT (nonce) DO NOTHING");
        let inserted = txn.execute_raw(insert.build()).await.map_err(db_err)?.rows_affected();
        txn.commit().await.map_err(db_err)?;
        Ok(inserted == 1)
    }
}
