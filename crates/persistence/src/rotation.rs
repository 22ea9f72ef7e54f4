//! Key rotation over every sealed value: the mail settings' passwords (`store`) and the
//! OAuth connections' refresh tokens (`oauth`), each re-sealed with the ring's current key.

use domain::StoreError;
use sea_orm::DatabaseConnection;

use crate::crypto::SecretKeyRing;

/// Re-seals every stored secret sealed with an older key of the ring with the current
/// one: SMTP and POP passwords (for their tenant and purpose) and OAuth refresh tokens
/// (for their connection). Returns how many values were rewritten. Run it after every
/// process uses the new current key; then the old key can be dropped from the
/// configuration. A value written concurrently is left alone (its writer sealed it with
/// its current key).
pub async fn rotate_secret_key(db: &DatabaseConnection, keys: &SecretKeyRing) -> Result<usize, StoreError> {
    let settings = crate::store::rotate_settings_secrets(db, keys).await?;
    let connections = crate::oauth::reseal_connections(db, keys).await?;
    Ok(settings + connections)
}
