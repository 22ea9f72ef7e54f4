//! Saving and clearing a tenant's mail settings: the plan gate, the version check, the
//! connection a save names, the warnings only a save can give.

use chrono::Utc;

use super::paging::ConflictRetry;
use super::{TenantService, TenantView};
use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry};
use crate::change::ChangeRecord;
use crate::error::FieldCode;
use crate::error::{Error, Result, WriteError};
use crate::health::SettingsState;
use crate::plan::sender_override_permit;
use crate::ports::{CheckedServer, HostCheck};
use crate::sender_domain::{DomainCheck, Verdict};
use crate::settings::{MailSettings, MailSettingsDraft, SettingsWarning, StoredMailSettings, settings_diff};
use crate::tenant::TenantId;

/// Settings just saved, with the warnings that only the save could give (a host that did
/// not resolve then).
#[derive(Debug, Clone)]
pub struct SavedSettings {
    pub stored: StoredMailSettings,
    pub warnings: Vec<SettingsWarning>,
}

/// How long a save waits for the sender-domain check before it saves without its warning.
pub const SENDER_DOMAIN_DEADLINE_ON_SAVE: std::time::Duration = std::time::Duration::from_secs(3);

impl TenantService {
    /// Saves a tenant's settings from a form. An input whose every text field is empty
    /// clears instead, and the result is `None`.
    pub async fn update_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        draft: &MailSettingsDraft,
        expected_version: Option<i64>,
    ) -> Result<Option<SavedSettings>> {
        caller.require_settings_editor(id)?;
        if draft.is_clear_request() {
            self.clear_mail_settings(caller, id, expected_version).await?;
            return Ok(None);
        }
        let mut writes = ConflictRetry::new(expected_version.is_some());
        // An unchanged form is only taken as such against what the store holds now, not
        // against what this process kept (another process may have saved meanwhile).
        let mut unchanged_checked = false;
        loop {
            let record = self.load(id).await?;
            let permit = sender_override_permit(record.tenant.plan)?;
            let stored = record.settings.as_ref();
            // Unreadable settings are replaced as a whole: the form must carry every
            // field (and the password) again.
            let current = record.settings_version();
            if let Some(expected) = expected_version
                && expected != current
            {
                return Err(Error::VersionConflict { current });
            }
            let settings = MailSettings::validate(draft, stored.map(|s| &s.settings)).map_err(Error::Validation)?;
            self.ports.check(&settings).map_err(Error::Validation)?;
            let connection = self.check_connection(id, &settings).await?;
            // Through a mail API the settings' server is not used: nothing to look up.
            let by_api = connection.as_ref().is_some_and(|c| {
                matches!(
                    c.kind.transport(),
                    crate::oauth::Transport::GraphSendMail | crate::oauth::Transport::GmailApi
                )
            });
            let mut warnings = if by_api {
                Vec::new()
            } else {
                self.check_hosts(&settings).await?
            };
            if connection
                .as_ref()
                .is_some_and(|c| !c.mailbox.eq_ignore_ascii_case(settings.from_address().as_str()))
            {
                warnings.push(SettingsWarning::SenderNotSignedInMailbox);
            }
            let now = Utc::now();
            let changes = settings_diff(stored.map(|s| &s.settings), Some(&settings));
            // The form says what is saved already (passwords too) and the version is live
            // (or in the state a save would give it): nothing is written, and live settings
            // stay live. A suspended version is saved anew, so it can be proven again.
            if let Some(saved) = stored
                && changes.is_empty()
                && (saved.health.state == SettingsState::Live || saved.health.state == self.activation.initial_state())
            {
                if unchanged_checked {
                    return Ok(Some(SavedSettings {
                        stored: saved.clone(),
                        warnings,
                    }));
                }
                unchanged_checked = true;
                self.views.changed(id).await;
                continue;
            }
            let audit = AuditEntry::new(id, caller, AuditAction::MailSettingsSaved, changes, now);
            let saved = self
                .store
                .save_mail_settings(
                    id,
                    permit,
                    &settings,
                    self.activation.initial_state(),
                    current,
                    now,
                    &ChangeRecord::of(audit),
                )
                .await;
            // Written, or refused because what this process kept was stale: either way the
            // next read (and a retry) must see the store.
            if !matches!(saved, Err(WriteError::Store(_))) {
                self.views.changed(id).await;
            }
            if let Some(stored) = writes.settle(saved)? {
                return Ok(Some(SavedSettings { stored, warnings }));
            }
        }
    }

    /// The connection settings name must be one of the tenant's, and able to send.
    async fn check_connection(
        &self,
        id: TenantId,
        settings: &MailSettings,
    ) -> Result<Option<crate::oauth::MailConnection>> {
        let Some(connection) = settings.connection() else {
            return Ok(None);
        };
        let found = match &self.connections {
            Some(store) => store.get(id, connection).await?,
            None => None,
        };
        match found {
            None => Err(Error::Validation(vec![crate::error::FieldError::new(
                "connectionId",
                FieldCode::UnknownConnection,
            )])),
            Some(c) if c.status != crate::oauth::ConnectionStatus::Active => {
                Err(Error::Validation(vec![crate::error::FieldError::new(
                    "connectionId",
                    FieldCode::ConnectionNotActive,
                )]))
            }
            // XOAUTH2 sends the bearer token itself: never over a plain connection.
            Some(c)
                if matches!(
                    c.kind.transport(),
                    crate::oauth::Transport::Office365Smtp | crate::oauth::Transport::TenantSmtp
                ) && settings.encryption() == crate::settings::Encryption::None =>
            {
                Err(Error::Validation(vec![crate::error::FieldError::new(
                    "encryption",
                    FieldCode::EncryptionRequired,
                )]))
            }
            Some(c) => Ok(Some(c)),
        }
    }

    /// Looks up the SMTP and POP hosts under the sending guard: an internal address or
    /// `localhost` refuses the save (every such field at once); a host that does not
    /// resolve to a reachable address is saved with a warning. The sender domain's check
    /// runs at the same time: a save waits for the slowest of the three, each bounded by
    /// its own deadline (the hosts' 3 s, the domain's [`SENDER_DOMAIN_DEADLINE_ON_SAVE`]),
    /// not for their sum.
    async fn check_hosts(&self, settings: &MailSettings) -> Result<Vec<SettingsWarning>> {
        let pop = async {
            match settings.pop_before_smtp() {
                Some(p) => Some(self.mailer.check_host(p.host(), p.port().get()).await),
                None => None,
            }
        };
        let (smtp, pop, verdict) = futures_util::future::join3(
            self.mailer.check_host(settings.host(), settings.port().get()),
            pop,
            self.sender_domain_verdict(settings),
        )
        .await;
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        match smtp {
            HostCheck::Forbidden => refused.push(crate::error::FieldError::new("host", FieldCode::ForbiddenAddress)),
            HostCheck::Unresolved => warnings.push(SettingsWarning::HostNotResolved),
            HostCheck::Reachable => {}
        }
        match pop {
            Some(HostCheck::Forbidden) => refused.push(crate::error::FieldError::new(
                "popBeforeSmtp.host",
                FieldCode::ForbiddenAddress,
            )),
            Some(HostCheck::Unresolved) => warnings.push(SettingsWarning::PopHostNotResolved),
            _ => {}
        }
        if !refused.is_empty() {
            return Err(Error::Validation(refused));
        }
        if let Some(verdict) = verdict {
            match verdict {
                Verdict::Pass => {}
                Verdict::AtRisk => warnings.push(SettingsWarning::SenderDomainAtRisk),
                Verdict::WillFail => warnings.push(SettingsWarning::SenderDomainWillFail),
                // DNS did not answer: nothing to warn of (the assistant's check says so).
                Verdict::Unknown => {}
            }
        }
        Ok(warnings)
    }

    /// The sender-domain verdict for `settings`, if the check answers within its
    /// deadline (DNS that is slow or down gives no warning rather than a slow save).
    async fn sender_domain_verdict(&self, settings: &MailSettings) -> Option<Verdict> {
        let lookups = self.lookups.as_ref()?;
        let server = CheckedServer {
            kind: settings.server_kind(),
            host: settings.host().clone(),
        };
        let findings = lookups
            .sender_domain(settings.from_address(), &server, SENDER_DOMAIN_DEADLINE_ON_SAVE)
            .await?;
        Some(DomainCheck::judge(findings).verdict)
    }

    /// Removes all of a tenant's settings; mail goes out from the platform default again.
    /// Clearing when nothing is saved changes nothing.
    pub async fn clear_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        expected_version: Option<i64>,
    ) -> Result<TenantView> {
        caller.require_settings_editor(id)?;
        let mut writes = ConflictRetry::new(expected_version.is_some());
        loop {
            let mut record = self.load(id).await?;
            let current = record.settings_version();
            if let Some(expected) = expected_version
                && expected != current
            {
                return Err(Error::VersionConflict { current });
            }
            if current == 0 {
                return Ok(self.view(record));
            }
            let now = Utc::now();
            // Unreadable settings are cleared without reading them: nothing to list.
            let changes = settings_diff(record.settings.as_ref().map(|s| &s.settings), None);
            let audit = AuditEntry::new(id, caller, AuditAction::MailSettingsCleared, changes, now);
            let cleared = self
                .store
                .clear_mail_settings(id, current, now, &ChangeRecord::of(audit))
                .await;
            if !matches!(cleared, Err(WriteError::Store(_))) {
                self.views.changed(id).await;
            }
            if writes.settle(cleared)?.is_some() {
                record.settings = None;
                record.unreadable_settings = None;
                return Ok(self.view(record));
            }
        }
    }
}
