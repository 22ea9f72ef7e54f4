//! The domain's services on the in-memory fakes of their ports (`domain::fakes`): every
//! rule a service owns — who may do what, the plan gate, versions, activation, limits,
//! idempotency, quotas, webhook endpoints, the assistant's decisions — checked with no
//! database, socket or server, in milliseconds. The same services run against real
//! databases and real servers in the API suite (`tests/api`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on the first surprise"
)]

mod assistant;
mod deliveries;
mod finishes;
mod settings;
mod tenants;
mod test_mail;
mod webhooks;

use domain::error::{Error, FieldCode};
use domain::settings::{Encryption, MailSettingsDraft};
use secrecy::SecretString;

/// A complete form for a server on port 587 with STARTTLS and a password.
pub fn draft() -> MailSettingsDraft {
    MailSettingsDraft {
        host: Some("smtp.example.com".into()),
        port: Some(587),
        from_address: Some("info@example.com".into()),
        from_name: Some("Example".into()),
        smtp_auth: Some(true),
        username: Some("info@example.com".into()),
        password: Some(SecretString::from("s3cret-Passw0rd")),
        encryption: Some(Encryption::StartTls),
        ..MailSettingsDraft::default()
    }
}

/// The field codes of a validation error (panics on any other error).
pub fn field_codes(error: Error) -> Vec<(&'static str, FieldCode)> {
    match error {
        Error::Validation(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}
