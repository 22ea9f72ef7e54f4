//! GraphQL input types and their conversion to domain drafts. Passwords become
//! `SecretString` at once and never appear in `Debug` output.

use async_graphql::InputObject;
use secrecy::SecretString;

use domain::settings::{MailSettingsDraft, PopBeforeSmtpDraft};

use crate::types::{MailEncryption, MailServerKind};

/// The settings form. A save replaces the stored settings; an absent (or empty)
/// password keeps the stored one only if host, port, username and encryption are
/// unchanged. Every text field empty clears, like `clearMailSettings`.
#[derive(InputObject)]
pub(crate) struct MailSettingsInput {
    /// Default CUSTOM; GMAIL fills host, port, encryption and authentication.
    server_kind: Option<MailServerKind>,
    host: Option<String>,
    port: Option<i32>,
    from_address: Option<String>,
    from_name: Option<String>,
    /// Default: on when a username is given.
    smtp_auth: Option<bool>,
    username: Option<String>,
    /// Write-only. Absent = keep the stored one.
    password: Option<String>,
    /// Default: SSL for 465, NONE for 25, STARTTLS otherwise.
    encryption: Option<MailEncryption>,
    /// Null or absent: POP-before-SMTP off.
    pop_before_smtp: Option<PopBeforeSmtpInput>,
    local_hostname: Option<String>,
    /// 0–3,600,000 ms between the starts of two sends; default 0.
    send_interval_ms: Option<i32>,
    /// Optimistic concurrency: the `version` you loaded (0 when nothing was saved).
    expected_version: Option<i32>,
}

impl std::fmt::Debug for MailSettingsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettingsInput")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// POP-before-SMTP login. Default port 110, or 995 with TLS.
#[derive(InputObject)]
pub(crate) struct PopBeforeSmtpInput {
    host: Option<String>,
    port: Option<i32>,
    username: Option<String>,
    /// Write-only. Absent = keep the stored one.
    password: Option<String>,
    tls: Option<bool>,
}

impl std::fmt::Debug for PopBeforeSmtpInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PopBeforeSmtpInput")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl MailSettingsInput {
    pub(crate) fn expected_version(&self) -> Option<i64> {
        self.expected_version.map(i64::from)
    }

    pub(crate) fn into_draft(self) -> MailSettingsDraft {
        MailSettingsDraft {
            server_kind: self.server_kind.map(Into::into),
            host: self.host,
            port: self.port.map(i64::from),
            from_address: self.from_address,
            from_name: self.from_name,
            smtp_auth: self.smtp_auth,
            username: self.username,
            password: self.password.map(SecretString::from),
            encryption: self.encryption.map(Into::into),
            pop_before_smtp: self.pop_before_smtp.map(|p| PopBeforeSmtpDraft {
                host: p.host,
                port: p.port.map(i64::from),
                username: p.username,
                password: p.password.map(SecretString::from),
                tls: p.tls,
            }),
            local_hostname: self.local_hostname,
            send_interval_ms: self.send_interval_ms.map(i64::from),
        }
    }
}
