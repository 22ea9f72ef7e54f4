//! PKCE (RFC 7636): the verifier the callback sends with the code, and its S256
//! challenge sent with the authorization request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// `code_challenge_method` for [`PkceVerifier::challenge`] (RFC 7636 §4.2).
pub const CHALLENGE_METHOD: &str = "S256";

/// A code verifier: 43–128 unreserved characters (RFC 7636 §4.1). Secret until the code
/// is exchanged: with the code it buys tokens.
#[derive(Debug, Clone)]
pub struct PkceVerifier(SecretString);

/// A verifier that breaks RFC 7636 §4.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a PKCE code verifier")]
pub struct InvalidVerifier;

impl PkceVerifier {
    /// 32 random bytes, base64url without padding: 43 characters (RFC 7636 §4.1's
    /// recommendation).
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A verifier read back (from a sealed `state`).
    pub fn parse(raw: &str) -> Result<Self, InvalidVerifier> {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if !(43..=128).contains(&raw.len()) || !raw.bytes().all(unreserved) {
            return Err(InvalidVerifier);
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.expose_secret().as_bytes()))
    }

    /// The verifier, for the token request's `code_verifier` only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_matches_rfc_7636_appendix_b() {
        let verifier = PkceVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        // RFC 7636 Appendix B's value (also python3 hashlib/base64). The brief quoted
        // "E9Melhoa2OwvFrEXMWc9Wwr9-CvrLSU3gvO2JcIUuX0", which is not it.
        assert_eq!(verifier.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn generated_verifiers_are_43_unreserved_characters_and_differ() {
        let a = PkceVerifier::generate();
        let b = PkceVerifier::generate();
        assert_eq!(a.expose().len(), 43);
        assert!(PkceVerifier::parse(a.expose()).is_ok());
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn parse_refuses_what_rfc_7636_forbids() {
        for bad in [
            "short",
            &"a".repeat(129),
            &format!("{}+", "a".repeat(43)),
            &format!("{} ", "a".repeat(43)),
        ] {
            assert_eq!(PkceVerifier::parse(bad).unwrap_err(), InvalidVerifier, "{bad}");
        }
        assert!(PkceVerifier::parse(&"a~._-".repeat(9)).is_ok());
    }
}
