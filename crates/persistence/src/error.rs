//! Errors of setting up storage (connecting, migrating, reading keys). Errors of the
//! storage operations themselves are the domain's [`domain::ports::StoreError`].

use sea_orm::DbErr;

use crate::crypto::CryptoError;

/// Why the database could not be opened or prepared.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme {0:?} (use sqlite: or postgres:)")]
    UnsupportedUrl(String),
    /// A schema was asked for on a database that has none (SQLite).
    #[error("a database schema can only be chosen for PostgreSQL")]
    SchemaNotSupported,
    #[error(
        "invalid PostgreSQL schema name {0:?}: use 1-63 lower-case letters, digits and _, \
         not starting with a digit"
    )]
    InvalidSchemaName(String),
    /// Connecting failed. The text has any password in the URL masked.
    #[error("could not connect to the database: {0}")]
    Connect(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("migrating the database failed: {0}")]
    Migration(#[source] DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Result of setting up storage.
pub type Result<T, E = Error> = std::result::Result<T, E>;
