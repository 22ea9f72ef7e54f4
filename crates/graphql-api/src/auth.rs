//! Bearer-token authentication: JWTs signed with HS256 (shared secret) or RS256/EdDSA
//! (public key). The algorithm is pinned by configuration; `exp`, `iss`, `aud` and
//! `sub` are required and checked, `nbf` when present (with the same leeway as `exp`).
//! What RFC 7519 allows is accepted: `exp` and `nbf` as NumericDates with a fraction,
//! `aud` as one string or an array that contains ours; `iat` is neither required nor read.
//!
//! Keys rotate without downtime: besides the current key, earlier HS256 secrets, several
//! PEM public keys and a JWKS document may be configured. A token whose header names a
//! `kid` that a key has is checked with that key only; any other token with each key in
//! turn (a handful at most).

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use domain::{Caller, Role, TenantId};

/// The claims Mailgate reads (and mints for development).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub aud: String,
}

/// How tokens are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Hs256(SecretString),
    /// RS256 with a PEM public key.
    Rs256Pem(Vec<u8>),
    /// EdDSA (Ed25519) with a PEM public key.
    EdDsaPem(Vec<u8>),
}

impl JwtKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            JwtKey::Hs256(_) => Algorithm::HS256,
            JwtKey::Rs256Pem(_) => Algorithm::RS256,
            JwtKey::EdDsaPem(_) => Algorithm::EdDSA,
        }
    }

    fn decoding_key(&self) -> Result<DecodingKey, AuthError> {
        match self {
            JwtKey::Hs256(secret) => Ok(DecodingKey::from_secret(secret.expose_secret().as_bytes())),
            JwtKey::Rs256Pem(pem) => DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::BadKey(e.to_string())),
            JwtKey::EdDsaPem(pem) => DecodingKey::from_ed_pem(pem).map_err(|e| AuthError::BadKey(e.to_string())),
        }
    }

    /// The public keys of a PEM file, one per `-----BEGIN … KEY-----` block (a bundle
    /// holds the old and the new key while they rotate).
    pub fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
        let text = String::from_utf8_lossy(pem);
        let mut blocks = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if line.starts_with("-----BEGIN ") {
                current.clear();
            }
            current.push_str(line);
            current.push('\n');
            if line.starts_with("-----END ") {
                blocks.push(current.clone().into_bytes());
                current.clear();
            }
        }
        blocks
    }
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256(_) => "Hs256(<secret>)",
            JwtKey::Rs256Pem(_) => "Rs256Pem",
            JwtKey::EdDsaPem(_) => "EdDsaPem",
        })
    }
}

/// Key, issuer and audience for tokens.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The current key (the one `mint` signs with, for HS256).
    pub key: JwtKey,
    /// Further keys still accepted: earlier HS256 secrets, or (for RS256/EdDSA) more PEM
    /// public keys.
    pub previous: Vec<JwtKey>,
    /// A JWKS document (`{"keys": [...]}`) whose keys, with their `kid`, are accepted too
    /// (RS256/EdDSA: what an identity provider publishes while it rotates).
    pub jwks: Option<String>,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_secs: u64,
}

/// The claims read from a presented token (the engine has checked `exp`, `nbf`, `iss`,
/// `aud` already; `iat` and unknown claims are ignored).
#[derive(Debug, Deserialize)]
struct Presented {
    sub: String,
    role: String,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(deserialize_with = "numeric_date")]
    exp: u64,
}

/// An RFC 7519 NumericDate: seconds since the epoch, possibly with a fraction (rounded
/// down: a token is never trusted past its `exp`).
fn numeric_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = serde_json::Number::deserialize(deserializer)?;
    match (value.as_u64(), value.as_f64()) {
        (Some(n), _) => Ok(n),
        // Finite, non-negative and below u64::MAX: the cast floors, as intended.
        (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f.floor() as u64),
        _ => Err(serde::de::Error::custom("exp is not a NumericDate")),
    }
}

/// Why a token was refused. Only for logs; clients get `UNAUTHENTICATED`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the public key could not be read: {0}")]
    BadKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("the token's claims do not describe a caller: {0}")]
    BadClaims(&'static str),
    #[error("tokens can only be minted with an HS256 secret or a private key")]
    CannotMint,
}

/// Verifies bearer tokens. Built once at start-up.
#[derive(Clone)]
pub struct TokenVerifier {
    /// Every accepted key, the current one first, with its `kid` when known.
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    config: JwtConfig,
    /// Tokens already verified: the caller and until when the entry may be used (the
    /// token's `exp`, and at most a minute after it was verified).
    verified: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Caller, u64)>>>,
}

/// Verified tokens kept at most; the map is emptied when full.
const VERIFIED_CAPACITY: usize = 10_000;
/// Longest time a verified token is trusted without checking its signature again.
const VERIFIED_FOR_SECS: u64 = 60;

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(config: JwtConfig) -> Result<Self, AuthError> {
        let alg = config.key.algorithm();
        let mut keys = vec![(None, config.key.decoding_key()?)];
        for key in &config.previous {
            if key.algorithm() != alg {
                return Err(AuthError::BadKey(
                    "every key must be of the configured algorithm".into(),
                ));
            }
            keys.push((None, key.decoding_key()?));
        }
        if let Some(jwks) = &config.jwks {
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(jwks).map_err(|e| AuthError::BadKey(format!("JWKS: {e}")))?;
            for jwk in &set.keys {
                let family_matches = matches!(
                    (&jwk.algorithm, alg),
                    (jsonwebtoken::jwk::AlgorithmParameters::RSA(_), Algorithm::RS256)
                        | (
                            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_),
                            Algorithm::EdDSA
                        )
                );
                if !family_matches {
                    return Err(AuthError::BadKey(format!(
                        "JWKS key {:?} is not a key for {alg:?}",
                        jwk.common.key_id
                    )));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::BadKey(format!("JWKS: {e}")))?;
                keys.push((jwk.common.key_id.clone(), key));
            }
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self {
            keys,
            validation,
            config,
            verified: Default::default(),
        })
    }

    /// The caller a token stands for. A token verified in the last minute and not yet
    /// expired is answered from memory (the signature check is most of the cost).
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Ok(verified) = self.verified.lock()
            && let Some((caller, until)) = verified.get(token)
            && now < *until
        {
            return Ok(caller.clone());
        }
        let (caller, exp) = self.verify_signature(token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), (caller.clone(), exp.min(now + VERIFIED_FOR_SECS)));
        }
        Ok(caller)
    }

    fn verify_signature(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let named: Vec<&DecodingKey> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|(k, _)| k.as_deref() == Some(kid.as_str()))
                .map(|(_, key)| key)
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&DecodingKey> = if named.is_empty() {
            self.keys.iter().map(|(_, key)| key).collect()
        } else {
            named
        };
        let mut last = None;
        let mut data = None;
        for key in candidates {
            match decode::<Presented>(token, key, &self.validation) {
                Ok(d) => {
                    data = Some(d);
                    break;
                }
                // Another key cannot help a token that is expired, early or for someone else.
                Err(e) if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    return Err(AuthError::Invalid(e.to_string()));
                }
                Err(e) => last = Some(e),
            }
        }
        let data =
            data.ok_or_else(|| AuthError::Invalid(last.map_or_else(|| "no key".to_owned(), |e| e.to_string())))?;
        let claims = data.claims;
        let role = Role::from_code(&claims.role).ok_or(AuthError::BadClaims("unknown role"))?;
        let tenant_id = match claims.tenant_id.as_deref() {
            None => None,
            Some(raw) => {
                Some(TenantId::from_str(raw).map_err(|_| AuthError::BadClaims("tenant_id is not a tenant id"))?)
            }
        };
        if claims.sub.trim().is_empty() {
            return Err(AuthError::BadClaims("empty sub"));
        }
        let exp = claims.exp;
        let caller = Caller::new(claims.sub, role, tenant_id)
            .map_err(|_| AuthError::BadClaims("tenant_admin without tenant_id"))?;
        Ok((caller, exp))
    }

    /// Mints a token for development and operations (`mailgate token`). With RS256 or
    /// EdDSA a PEM private key must be given.
    pub fn mint(&self, claims: &Claims, private_pem: Option<&[u8]>) -> Result<String, AuthError> {
        let (key, alg) = match (&self.config.key, private_pem) {
            (JwtKey::Hs256(secret), _) => (
                EncodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            (JwtKey::Rs256Pem(_), Some(pem)) => (
                EncodingKey::from_rsa_pem(pem).map_err(|e| AuthError::BadKey(e.to_string()))?,
                Algorithm::RS256,
            ),
            (JwtKey::EdDsaPem(_), Some(pem)) => (
                EncodingKey::from_ed_pem(pem).map_err(|e| AuthError::BadKey(e.to_string()))?,
                Algorithm::EdDSA,
            ),
            _ => return Err(AuthError::CannotMint),
        };
        encode(&Header::new(alg), claims, &key).map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Claims for `role` valid for `ttl_secs` from now, with this verifier's issuer and audience.
    pub fn claims(&self, sub: &str, role: Role, tenant_id: Option<TenantId>, ttl_secs: u64) -> Claims {
        let now = jsonwebtoken::get_current_timestamp();
        Claims {
            sub: sub.to_owned(),
            role: role.code().to_owned(),
            tenant_id: tenant_id.map(|t| t.to_string()),
            exp: now + ttl_secs,
            iat: now,
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(JwtConfig {
            key: JwtKey::Hs256(SecretString::from(SECRET)),
            previous: Vec::new(),
            jwks: None,
            issuer: "mailgate".into(),
            audience: "mailgate".into(),
            leeway_secs: 30,
        })
        .expect("verifier")
    }

    fn token(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signs")
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn what_rfc_7519_allows_is_accepted() {
        let v = verifier();
        // A fractional exp, an audience array with ours in it, no iat.
        let t = token(&serde_json::json!({
            "sub": "svc", "role": "service", "iss": "mailgate",
            "aud": ["billing", "mailgate"], "exp": now() as f64 + 600.25,
        }));
        let caller = v.verify(&t).expect("accepted");
        assert_eq!(caller.role(), Role::Service);
        // A fractional nbf in the past is fine too.
        let t = token(&serde_json::json!({
            "sub": "op", "role": "operator", "iss": "mailgate", "aud": "mailgate",
            "exp": now() + 600, "nbf": now() as f64 - 10.5, "iat": now(),
        }));
        assert!(v.verify(&t).is_ok());
    }

    #[test]
    fn what_it_requires_stays_required() {
        let v = verifier();
        for (what, claims) in [
            (
                "an audience array without ours",
                serde_json::json!({ "sub": "s", "role": "service", "iss": "mailgate", "aud": ["billing"], "exp": now() + 600 }),
            ),
            (
                "no exp",
                serde_json::json!({ "sub": "s", "role": "service", "iss": "mailgate", "aud": "mailgate" }),
            ),
            (
                "an expired fractional exp",
                serde_json::json!({ "sub": "s", "role": "service", "iss": "mailgate", "aud": "mailgate", "exp": now() as f64 - 120.5 }),
            ),
            (
                "a negative exp",
                serde_json::json!({ "sub": "s", "role": "service", "iss": "mailgate", "aud": "mailgate", "exp": -1.5 }),
            ),
            (
                "no sub",
                serde_json::json!({ "role": "service", "iss": "mailgate", "aud": "mailgate", "exp": now() + 600 }),
            ),
        ] {
            assert!(v.verify(&token(&claims)).is_err(), "{what} is refused");
        }
    }
}
