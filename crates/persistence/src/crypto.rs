//! Encryption of the mail-server passwords Mailgate must store in a usable form.
//!
//! Each value is sealed with AES-256-GCM under a fresh random 96-bit nonce and stored as
//! `nonce || ciphertext`, next to the id of the key that sealed it. The associated data
//! is `tenant id + "\0" + purpose`, so a value copied into another tenant's row, or from
//! the SMTP to the POP column, fails to open. A key ring holds the current key (used for
//! every new value) and any previous keys (still accepted for reading), so keys can be
//! rotated without downtime; see [`crate::rotate_secret_key`].

use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::TenantId;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Key material: 32 bytes that are zeroed on drop and never printed.
pub type KeyBytes = SecretBox<[u8; KEY_LEN]>;

/// What a stored secret is for. Part of the associated data, so a value cannot be moved
/// between purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPurpose {
    /// The SMTP AUTH password.
    Smtp,
    /// The POP-before-SMTP password.
    Pop,
    /// A webhook endpoint's signing secret (its subject is the endpoint's id).
    Webhook,
    /// An OAuth sign-in `state` (its subject is [`crate::oauth::STATE_SUBJECT`]).
    OauthState,
    /// An OAuth connection's refresh token (its subject is the connection's id).
    OauthRefreshToken,
    /// A generic XOAUTH2 connection's client secret, bound to the connection's id.
    OauthClientSecret,
}

impl SecretPurpose {
    /// The text bound into the associated data; stable, since stored values depend on it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretPurpose::Smtp => "smtp",
            SecretPurpose::Pop => "pop",
            SecretPurpose::Webhook => "webhook",
            SecretPurpose::OauthState => "oauth-state",
            SecretPurpose::OauthRefreshToken => "oauth-refresh-token",
            SecretPurpose::OauthClientSecret => "oauth-client-secret",
        }
    }
}

/// Why a key could not be read or a value could not be sealed or opened. Never carries
/// key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the key is not valid base64")]
    KeyNotBase64,
    #[error("the key must be {KEY_LEN} bytes, not {0}")]
    KeyLength(usize),
    #[error("no key with id {0} in the key ring")]
    UnknownKey(String),
    #[error("the stored value is too short to be a sealed secret")]
    Truncated,
    #[error("the value could not be opened (wrong key, tenant or purpose, or altered data)")]
    Open,
    #[error("the value could not be sealed")]
    Seal,
    #[error("the opened value is not UTF-8 text")]
    NotText,
}

/// Parses a key given as standard base64 of exactly 32 bytes (surrounding white space
/// ignored), e.g. the value of `MAILGATE_SECRET_KEY`.
pub fn parse_key(text: &str) -> Result<KeyBytes, CryptoError> {
    let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| CryptoError::KeyNotBase64)?);
    if decoded.len() != KEY_LEN {
        return Err(CryptoError::KeyLength(decoded.len()));
    }
    Ok(SecretBox::init_with_mut(|key: &mut [u8; KEY_LEN]| {
        key.copy_from_slice(&decoded)
    }))
}

/// A new random key in the form [`parse_key`] reads, for operators setting up or
/// rotating `MAILGATE_SECRET_KEY`.
pub fn generate_key_base64() -> SecretString {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    SecretString::from(STANDARD.encode(key.as_ref()))
}

/// The id stored next to each value: the first 16 hex digits of SHA-256 of the key. It
/// names the key without revealing it.
fn key_id(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::digest(key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn associated_data(subject: &str, purpose: SecretPurpose) -> Vec<u8> {
    format!("{subject}\0{}", purpose.as_str()).into_bytes()
}

struct SecretKey {
    id: String,
    bytes: KeyBytes,
}

impl SecretKey {
    fn new(bytes: KeyBytes) -> Self {
        Self {
            id: key_id(bytes.expose_secret()),
            bytes,
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.bytes.expose_secret()))
    }
}

/// The keys that seal and open stored passwords: the current one for all new values,
/// previous ones so values sealed before a rotation can still be read (and re-sealed).
pub struct SecretKeyRing {
    current: SecretKey,
    previous: Vec<SecretKey>,
}

impl fmt::Debug for SecretKeyRing {
    // Only key ids; key material never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyRing")
            .field("current", &self.current.id)
            .field("previous", &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl SecretKeyRing {
    /// A ring that seals with `current` and also opens values sealed with `previous`
    /// keys (duplicates of the current key are ignored).
    pub fn new(current: KeyBytes, previous: impl IntoIterator<Item = KeyBytes>) -> Self {
        let current = SecretKey::new(current);
        let mut kept: Vec<SecretKey> = Vec::new();
        for key in previous.into_iter().map(SecretKey::new) {
            if key.id != current.id && kept.iter().all(|k| k.id != key.id) {
                kept.push(key);
            }
        }
        Self {
            current,
            previous: kept,
        }
    }

    /// A ring from keys in configuration form (base64, see [`parse_key`]).
    pub fn from_base64(current: &SecretString, previous: &[SecretString]) -> Result<Self, CryptoError> {
        let current = parse_key(current.expose_secret())?;
        let previous = previous
            .iter()
            .map(|k| parse_key(k.expose_secret()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(current, previous))
    }

    /// The id of the key new values are sealed with; values under any other id are due
    /// for rotation.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    fn key(&self, id: &str) -> Result<&SecretKey, CryptoError> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))
    }

    /// Seals `plaintext` for `tenant` and `purpose` with the current key. Returns the
    /// stored form (`nonce || ciphertext`) and the key id to store next to it.
    pub fn encrypt(
        &self,
        plaintext: &SecretString,
        tenant: &TenantId,
        purpose: SecretPurpose,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        self.encrypt_for(plaintext, &tenant.to_string(), purpose)
    }

    /// [`SecretKeyRing::encrypt`] for a value that belongs to `subject` (an id) rather
    /// than to a tenant.
    pub fn encrypt_for(
        &self,
        plaintext: &SecretString,
        subject: &str,
        purpose: SecretPurpose,
    ) -> Result<(Vec<u8>, String), CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(subject, purpose);
        let sealed = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut stored = Vec::with_capacity(NONCE_LEN + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok((stored, self.current.id.clone()))
    }

    /// Opens a stored value sealed for `tenant` and `purpose` with the key `key_id`.
    pub fn decrypt(
        &self,
        stored: &[u8],
        key_id: &str,
        tenant: &TenantId,
        purpose: SecretPurpose,
    ) -> Result<SecretString, CryptoError> {
        self.decrypt_for(stored, key_id, &tenant.to_string(), purpose)
    }

    /// Opens a value [`SecretKeyRing::encrypt_for`] sealed for `subject`.
    pub fn decrypt_for(
        &self,
        stored: &[u8],
        key_id: &str,
        subject: &str,
        purpose: SecretPurpose,
    ) -> Result<SecretString, CryptoError> {
        let key = self.key(key_id)?;
        if stored.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let aad = associated_data(subject, purpose);
        let opened = Zeroizing::new(
            key.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| CryptoError::Open)?,
        );
        let text = std::str::from_utf8(&opened).map_err(|_| CryptoError::NotText)?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> SecretKeyRing {
        SecretKeyRing::from_base64(&generate_key_base64(), &[]).unwrap()
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let ring = ring();
        let tenant = TenantId::generate();
        let pw = SecretString::from("pässwörd-1");
        let (a, id) = ring.encrypt(&pw, &tenant, SecretPurpose::Smtp).unwrap();
        let (b, _) = ring.encrypt(&pw, &tenant, SecretPurpose::Smtp).unwrap();
        assert_ne!(a, b, "each value gets its own nonce");
        assert_eq!(id, ring.current_key_id());
        assert_eq!(id.len(), 16);
        let opened = ring.decrypt(&a, &id, &tenant, SecretPurpose::Smtp).unwrap();
        assert_eq!(opened.expose_secret(), "pässwörd-1");
        assert!(!a.windows(8).any(|w| w == b"p\xc3\xa4sswo"));
    }

    #[test]
    fn another_tenant_or_purpose_cannot_open() {
        let ring = ring();
        let tenant = TenantId::generate();
        let pw = SecretString::from("secret");
        let (sealed, id) = ring.encrypt(&pw, &tenant, SecretPurpose::Smtp).unwrap();
        assert_eq!(
            ring.decrypt(&sealed, &id, &TenantId::generate(), SecretPurpose::Smtp)
                .err(),
            Some(CryptoError::Open)
        );
        assert_eq!(
            ring.decrypt(&sealed, &id, &tenant, SecretPurpose::Pop).err(),
            Some(CryptoError::Open)
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            ring.decrypt(&altered, &id, &tenant, SecretPurpose::Smtp).err(),
            Some(CryptoError::Open)
        );
        assert_eq!(
            ring.decrypt(&sealed[..20], &id, &tenant, SecretPurpose::Smtp).err(),
            Some(CryptoError::Truncated)
        );
    }

    #[test]
    fn unknown_key_id_is_an_error() {
        let ring = ring();
        let tenant = TenantId::generate();
        let (sealed, _) = ring
            .encrypt(&SecretString::from("x"), &tenant, SecretPurpose::Smtp)
            .unwrap();
        assert_eq!(
            ring.decrypt(&sealed, "0000000000000000", &tenant, SecretPurpose::Smtp)
                .err(),
            Some(CryptoError::UnknownKey("0000000000000000".into()))
        );
        // A ring with other keys does not know this value's key either.
        let (sealed, id) = ring
            .encrypt(&SecretString::from("x"), &tenant, SecretPurpose::Smtp)
            .unwrap();
        assert!(matches!(
            self::ring().decrypt(&sealed, &id, &tenant, SecretPurpose::Smtp),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn rotated_ring_opens_old_values_and_seals_with_the_new_key() {
        let old_text = generate_key_base64();
        let new_text = generate_key_base64();
        let old = SecretKeyRing::from_base64(&old_text, &[]).unwrap();
        let tenant = TenantId::generate();
        let (sealed, old_id) = old
            .encrypt(&SecretString::from("pw"), &tenant, SecretPurpose::Pop)
            .unwrap();

        let rotated = SecretKeyRing::from_base64(&new_text, std::slice::from_ref(&old_text)).unwrap();
        assert_ne!(rotated.current_key_id(), old_id);
        let opened = rotated.decrypt(&sealed, &old_id, &tenant, SecretPurpose::Pop).unwrap();
        let (resealed, new_id) = rotated.encrypt(&opened, &tenant, SecretPurpose::Pop).unwrap();
        assert_eq!(new_id, rotated.current_key_id());
        assert_eq!(
            rotated
                .decrypt(&resealed, &new_id, &tenant, SecretPurpose::Pop)
                .unwrap()
                .expose_secret(),
            "pw"
        );
    }

    #[test]
    fn keys_are_parsed_strictly_and_never_printed() {
        assert_eq!(parse_key("not base64!").err(), Some(CryptoError::KeyNotBase64));
        assert_eq!(
            parse_key(&STANDARD.encode([1u8; 16])).err(),
            Some(CryptoError::KeyLength(16))
        );
        let text = STANDARD.encode([7u8; KEY_LEN]);
        assert!(parse_key(&format!(" {text}\n")).is_ok());
        let ring = SecretKeyRing::new(parse_key(&text).unwrap(), [parse_key(&text).unwrap()]);
        let debug = format!("{ring:?}");
        assert!(debug.contains(ring.current_key_id()));
        assert!(!debug.contains(&text));
        assert!(!debug.contains("7, 7"));
        assert!(ring.previous.is_empty(), "the current key is not repeated");
    }
}
