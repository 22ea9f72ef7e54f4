//! Test mails and activation: what a test sends and records, what proves a saved version
//! (a test, or the code it carried), and the limits.

use std::sync::Arc;

use chrono::Utc;

use super::TenantService;
use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry};
use crate::audit_value::{Outcome, Proof};
use crate::change::ChangeRecord;
use crate::error::{Error, Result};
use crate::error::{FieldCode, WriteError};
use crate::health::{ActivationCode, ActivationMode, CodeRefusal, SettingsState};
use crate::i18n::Locale;
use crate::mail::{Diagnosis, OutgoingMail, SendFailure, SendReceipt, Subject, diagnose};
use crate::plan::sender_override_permit;
use crate::ports::TestMailLimit;
use crate::settings::{FieldChange, MailSettings, MailSettingsDraft, SettingsWarning, StoredMailSettings};
use crate::tenant::TenantId;
use crate::values::EmailAddress;

/// The audit entry of a version going live, and what proved it (`test`, `code`).
fn live_audit(id: TenantId, caller: &Caller, version: i64, proof: Proof) -> AuditEntry {
    AuditEntry::new(
        id,
        caller,
        AuditAction::MailSettingsLive,
        vec![
            FieldChange::Value {
                field: "version".into(),
                before: None,
                after: Some(version.to_string()),
            },
            FieldChange::Value {
                field: "provenBy".into(),
                before: None,
                after: Some(proof.stored().to_owned()),
            },
        ],
        Utc::now(),
    )
}

/// A test mail must finish (or give up) within this.
pub const TEST_MAIL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Test mails per tenant per minute.
pub const TEST_MAILS_PER_MINUTE: u32 = 10;

/// Test mails one caller (token `sub`) may send per minute across all tenants: an operator
/// or service token cannot use every tenant's server for test mails at once.
pub const TEST_MAILS_PER_CALLER_PER_MINUTE: u32 = 30;

/// The outcome of a test mail, with a diagnosis when it failed.
#[derive(Debug, Clone)]
pub struct TestMailOutcome {
    pub result: Result<SendReceipt, SendFailure>,
    pub diagnosis: Option<Diagnosis>,
    /// This test made the saved settings live (`test` activation).
    pub activated: bool,
    /// The mail carried an activation code for the saved settings (`code` activation).
    pub activation_code_sent: bool,
    /// Allowed but probably not what was meant (the recipient is in the sender's domain).
    pub warnings: Vec<SettingsWarning>,
    /// Microsoft refused the password these settings use (`550 5.7.30`, `535 5.7.139`):
    /// offer to connect the mailbox with a Microsoft sign-in instead.
    pub sign_in_offer: Option<crate::oauth::Provider>,
}

/// Test mails (and probes, which count as test mails) per tenant and per caller.
pub const TEST_MAIL_LIMIT: TestMailLimit = TestMailLimit {
    per_tenant: TEST_MAILS_PER_MINUTE,
    per_caller: TEST_MAILS_PER_CALLER_PER_MINUTE,
    window: std::time::Duration::from_secs(60),
};

/// What became of a test mail, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMailCount {
    Sent,
    /// It failed at this stage.
    Failed(crate::mail::SendStage),
    /// The tenant's or caller's test-mail limit refused it; nothing was sent.
    RateLimited,
}

/// Counts test mails (a metrics series).
pub type TestMailCounter = Arc<dyn Fn(TestMailCount) + Send + Sync>;

impl TenantService {
    /// Sends a real test mail to `to`, through the unsaved `draft` when given (the stored
    /// password is reused only for the same server) or the stored settings. The plan gate
    /// applies; at most ten a minute per tenant (refused before any connection); every
    /// test is written to the audit trail (recipient and result, no secrets).
    pub async fn send_test_mail(
        &self,
        caller: &Caller,
        id: TenantId,
        to: &str,
        draft: Option<&MailSettingsDraft>,
        locale: Locale,
    ) -> Result<TestMailOutcome> {
        caller.require_settings_editor(id)?;
        let record = self.load(id).await?;
        let permit = sender_override_permit(record.tenant.plan)?;
        let to = EmailAddress::parse(to).map_err(|e| Error::validation("to", e))?;
        let stored = record.settings.as_ref().map(|s| &s.settings);
        if draft.is_none()
            && let Some(u) = record.unreadable_settings
        {
            return Err(Error::SettingsUnreadable { version: u.version });
        }
        let settings = match draft {
            Some(d) => MailSettings::validate(d, stored).map_err(Error::Validation)?,
            None => stored
                .cloned()
                .ok_or_else(|| Error::validation("settings", crate::error::FieldCode::Required))?,
        };
        self.ports.check(&settings).map_err(Error::Validation)?;
        // A test of the saved version proves it (a draft proves nothing about what is saved).
        let proving = match (draft, &record.settings) {
            (None, Some(saved)) if saved.health.state != SettingsState::Live => Some(saved.version),
            _ => None,
        };
        let code = match (proving, self.activation) {
            (Some(_), ActivationMode::Code) => Some(ActivationCode::issue(Utc::now())),
            _ => None,
        };
        if !self
            .coordination
            .try_record_test_mail(id, caller.subject(), TEST_MAIL_LIMIT)
            .await?
        {
            self.count_test_mail(TestMailCount::RateLimited);
            return Err(Error::RateLimited);
        }
        let product = &self.product;
        let (subject, text) = match locale {
            Locale::En => (
                format!("{product} test mail"),
                "This is a test mail from your site's mail server settings.\r\nIf you can read it, sending works and the sender is the one you set.\r\n",
            ),
            Locale::Ja => (
                format!("{product} テストメール"),
                "メールサーバー設定からのテストメールです。\r\nこのメールが届いていれば、送信と送信元の設定は正しく動作しています。\r\n",
            ),
        };
        let mut text = text.to_owned();
        if let Some((code, _)) = &code {
            text.push_str(&match locale {
                Locale::En => format!(
                    "\r\nActivation code: {code}\r\nEnter it in the mail server settings within 30 minutes to put them in force.\r\n"
                ),
                Locale::Ja => format!(
                    "\r\n有効化コード: {code}\r\n30 分以内にメールサーバー設定の画面で入力すると、この設定が有効になります。\r\n"
                ),
            });
        }
        let mail = OutgoingMail {
            to: to.clone(),
            subject: Subject::parse(&subject).map_err(|e| Error::validation("subject", e))?,
            text,
            html: None,
            message_id: None,
            via_platform: false,
        };
        let result = self
            .mailer
            .send_test(permit, id, &settings, &mail, TEST_MAIL_DEADLINE)
            .await;
        self.count_test_mail(match &result {
            Ok(_) => TestMailCount::Sent,
            Err(f) => TestMailCount::Failed(f.stage),
        });
        let outcome = match &result {
            Ok(_) => Outcome::Succeeded,
            Err(f) => Outcome::Failed {
                stage: Some(f.stage),
                smtp_code: f.smtp_code,
            },
        }
        .stored();
        let audit = AuditEntry::new(
            id,
            caller,
            AuditAction::TestMailSent,
            vec![
                FieldChange::Value {
                    field: "to".into(),
                    before: None,
                    after: Some(to.to_string()),
                },
                FieldChange::Value {
                    field: "result".into(),
                    before: None,
                    after: Some(outcome),
                },
                FieldChange::Value {
                    field: "host".into(),
                    before: None,
                    after: Some(settings.host().to_string()),
                },
            ],
            Utc::now(),
        );
        self.store.record_change(&ChangeRecord::of(audit)).await?;
        let (mut activated, mut activation_code_sent) = (false, false);
        if let (Ok(_), Some(version)) = (&result, proving) {
            let written = match &code {
                Some((_, stored)) => self.store.set_activation_code(id, version, stored).await,
                None => {
                    let audit = live_audit(id, caller, version, Proof::TestMail);
                    let at = audit.at;
                    self.store
                        .activate_mail_settings(id, version, at, &ChangeRecord::of(audit))
                        .await
                }
            };
            match written {
                Ok(()) => {
                    activated = code.is_none();
                    activation_code_sent = code.is_some();
                    self.views.changed(id).await;
                }
                // Saved anew or cleared meanwhile: this test proved a version that is gone
                // (and what this process kept of the tenant is stale).
                Err(WriteError::VersionConflict { .. } | WriteError::NotFound | WriteError::PlanChanged) => {
                    self.views.changed(id).await;
                }
                Err(WriteError::Store(e)) => return Err(e.into()),
            }
        }
        let diagnosis = result.as_ref().err().map(|f| diagnose(f, Some(&settings)));
        let sign_in_offer = result
            .as_ref()
            .err()
            .filter(|f| crate::mail::offers_microsoft_sign_in(f, Some(&settings)))
            .map(|_| crate::oauth::Provider::Microsoft);
        // A server often delivers mail for its own domain locally: a test to it proves
        // little about mail to the outside (the seed page asks for an external address).
        let warnings = if to.ascii_domain() == settings.from_address().ascii_domain() {
            vec![SettingsWarning::RecipientInSenderDomain]
        } else {
            Vec::new()
        };
        Ok(TestMailOutcome {
            result,
            diagnosis,
            activated,
            activation_code_sent,
            warnings,
            sign_in_offer,
        })
    }

    /// Activates the saved settings with the code their test mail carried (`code`
    /// activation; the code also brings a suspended version back). Answers the settings
    /// as they are now.
    pub async fn activate_mail_settings(
        &self,
        caller: &Caller,
        id: TenantId,
        code: &str,
    ) -> Result<StoredMailSettings> {
        caller.require_settings_editor(id)?;
        let record = self.load(id).await?;
        if let Some(u) = record.unreadable_settings {
            return Err(Error::SettingsUnreadable { version: u.version });
        }
        let saved = record
            .settings
            .as_ref()
            .ok_or_else(|| Error::validation("code", FieldCode::ActivationCodeInvalid))?;
        if saved.health.state == SettingsState::Live {
            return Err(Error::validation("code", FieldCode::AlreadyLive));
        }
        let now = Utc::now();
        let waiting = saved
            .health
            .activation_code
            .as_ref()
            .ok_or_else(|| Error::validation("code", FieldCode::ActivationCodeInvalid))?;
        waiting.check(code, now).map_err(|refusal| {
            Error::validation(
                "code",
                match refusal {
                    CodeRefusal::Invalid => FieldCode::ActivationCodeInvalid,
                    CodeRefusal::Expired => FieldCode::ActivationCodeExpired,
                },
            )
        })?;
        let audit = live_audit(id, caller, saved.version, Proof::Code);
        match self
            .store
            .activate_mail_settings(id, saved.version, now, &ChangeRecord::of(audit))
            .await
        {
            Ok(()) => {}
            Err(WriteError::Store(e)) => return Err(e.into()),
            Err(refused) => {
                // What this process kept was stale: the next read sees the store.
                self.views.changed(id).await;
                return Err(match refused {
                    WriteError::VersionConflict { current } => Error::VersionConflict { current },
                    WriteError::NotFound => Error::NotFound,
                    _ => Error::VersionConflict { current: saved.version },
                });
            }
        }
        self.views.changed(id).await;
        let record = self.load(id).await?;
        record.settings.ok_or(Error::VersionConflict { current: 0 })
    }
}
