//! The checks a declaration cannot say: those that span several settings (the JWT
//! algorithm and its secret or key files, private hosts in production) and those that
//! parse a value (keys, the platform sender, the database URL and schema). The checks of
//! one number or one text are declared with their setting (`settings.rs`).

use anyhow::bail;
use secrecy::ExposeSecret;

use super::values::{JwtAlgorithm, Profile};
use super::{Config, split_secrets};

impl Config {
    /// The first problem, naming its settings.
    pub(super) fn check_across(&self) -> anyhow::Result<()> {
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 => match &self.jwt_secret {
                None => bail!(
                    "MAILGATE_JWT_SECRET is required (HS256) in production; or set MAILGATE_JWT_ALGORITHM and MAILGATE_JWT_PUBLIC_KEY_FILE"
                ),
                Some(s) if s.expose_secret().len() < 32 => bail!("MAILGATE_JWT_SECRET must be at least 32 bytes long"),
                Some(_) => {}
            },
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {}
        }
        if let Some(previous) = &self.jwt_previous_secrets {
            if self.jwt_algorithm != JwtAlgorithm::HS256 {
                bail!(
                    "MAILGATE_JWT_PREVIOUS_SECRETS is for HS256; rotate public keys with MAILGATE_JWT_PUBLIC_KEY_FILE (several PEM keys) or MAILGATE_JWT_JWKS_FILE"
                );
            }
            if split_secrets(previous).any(|s| s.len() < 32) {
                bail!("MAILGATE_JWT_PREVIOUS_SECRETS: every secret must be at least 32 bytes long");
            }
        }
        match &self.jwt_jwks_file {
            Some(_) if self.jwt_algorithm == JwtAlgorithm::HS256 => {
                bail!("MAILGATE_JWT_JWKS_FILE holds public keys: set MAILGATE_JWT_ALGORITHM to RS256 or EdDSA")
            }
            Some(p) if !p.is_file() => bail!("MAILGATE_JWT_JWKS_FILE: {} is not a readable file", p.display()),
            _ => {}
        }
        match self.jwt_algorithm {
            JwtAlgorithm::HS256 => {}
            JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => match &self.jwt_public_key_file {
                None => bail!(
                    "MAILGATE_JWT_PUBLIC_KEY_FILE is required when MAILGATE_JWT_ALGORITHM is {:?}",
                    self.jwt_algorithm
                ),
                Some(p) if !p.is_file() => {
                    bail!("MAILGATE_JWT_PUBLIC_KEY_FILE: {} is not a readable file", p.display())
                }
                Some(_) => {}
            },
        }
        match &self.secret_key {
            None => bail!("MAILGATE_SECRET_KEY is required in production (base64 of 32 random bytes)"),
            Some(k) => {
                persistence::crypto::parse_key(k.expose_secret())
                    .map_err(|e| anyhow::anyhow!("MAILGATE_SECRET_KEY: {e}"))?;
            }
        }
        if let Some(prev) = &self.previous_secret_keys {
            for k in prev.expose_secret().split(',').map(str::trim).filter(|k| !k.is_empty()) {
                persistence::crypto::parse_key(k).map_err(|e| anyhow::anyhow!("MAILGATE_PREVIOUS_SECRET_KEYS: {e}"))?;
            }
        }
        domain::PlatformSender::parse(&self.default_from).map_err(|e| {
            anyhow::anyhow!("MAILGATE_DEFAULT_FROM: {e} (expected `Name <address@example.com>` or an address)")
        })?;
        // It heads every test mail's subject: checked as one (no line breaks, no control
        // or line-separator characters), so a name that starts cannot fail every test.
        if self.product_name.trim().chars().count() > 60
            || domain::mail::Subject::parse(&format!("{} テストメール", self.product_name.trim())).is_err()
        {
            bail!("MAILGATE_PRODUCT_NAME must be at most 60 characters, without line breaks or control characters");
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("MAILGATE_DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        // The name is used unquoted, where PostgreSQL folds it to lower case: only a name
        // that is already lower case means the same schema everywhere.
        if let Some(schema) = &self.database_schema
            && (schema.is_empty()
                || schema.len() > 63
                || schema.starts_with(|c: char| c.is_ascii_digit())
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            bail!(
                "MAILGATE_DATABASE_SCHEMA must be a PostgreSQL schema name of lower-case letters, digits and \
                 underscores (not starting with a digit, at most 63 characters)"
            );
        }
        // Tenants could make Mailgate connect to internal hosts (metadata services, admin
        // ports): in production only with a second, explicit yes.
        if self.profile == Profile::Production
            && self.allow_private_smtp_hosts
            && !self.allow_private_smtp_hosts_in_production
        {
            bail!(
                "MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS=true lets tenants make Mailgate connect to internal addresses; the \
                 production profile refuses it unless MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION=true says so too \
                 (a local demo only)"
            );
        }
        Ok(())
    }
}
