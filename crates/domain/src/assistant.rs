//! The setup assistant's operations: probe a server for the port and encryption that
//! work. Each is one call: authorise the caller, apply the plan gate and the limits of
//! test mail, run, record it in the audit trail.

use std::sync::Arc;

use chrono::Utc;

use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry};
use crate::error::{Error, Result};
use crate::plan::sender_override_permit;
use crate::ports::{Coordination, MailTransport, TenantStore, TestMailLimit};
use crate::probe::{PROBE_DEADLINE, ProbeReport, ProbeTarget};
use crate::service::{TEST_MAILS_PER_CALLER_PER_MINUTE, TEST_MAILS_PER_MINUTE};
use crate::settings::{Encryption, FieldChange, MailSettingsDraft, ServerDraft};
use crate::tenant::TenantId;

/// The setup assistant. Cheap to clone.
#[derive(Clone)]
pub struct AssistantService {
    store: Arc<dyn TenantStore>,
    mailer: Arc<dyn MailTransport>,
    coordination: Arc<dyn Coordination>,
    /// The pairs every probe tries (the usual submission pairs unless configured).
    usual_pairs: Arc<Vec<(u16, Encryption)>>,
}

impl std::fmt::Debug for AssistantService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssistantService")
            .field("usual_pairs", &self.usual_pairs)
            .finish_non_exhaustive()
    }
}

impl AssistantService {
    pub fn new(
        store: Arc<dyn TenantStore>,
        mailer: Arc<dyn MailTransport>,
        coordination: Arc<dyn Coordination>,
        usual_pairs: Vec<(u16, Encryption)>,
    ) -> Self {
        Self {
            store,
            mailer,
            coordination,
            usual_pairs: Arc::new(usual_pairs),
        }
    }

    /// Tries the usual pairs and the typed one on the form's host, up to EHLO, then (with
    /// a password) one login on the best. Counts against the tenant's and the caller's
    /// test-mail limits; each probe is in the audit trail with what it found.
    pub async fn probe_mail_server(
        &self,
        caller: &Caller,
        id: TenantId,
        draft: &MailSettingsDraft,
    ) -> Result<ProbeReport> {
        caller.require_settings_editor(id)?;
        let record = self.store.tenant(id).await?.ok_or(Error::NotFound)?;
        let permit = sender_override_permit(record.tenant.plan)?;
        let stored = record.settings.as_ref().map(|s| &s.settings);
        let server = ServerDraft::parse(draft, stored).map_err(Error::Validation)?;
        let typed = server.typed.map(|(p, e)| (p.get(), e));
        let limit = TestMailLimit {
            per_tenant: TEST_MAILS_PER_MINUTE,
            per_caller: TEST_MAILS_PER_CALLER_PER_MINUTE,
            window: std::time::Duration::from_secs(60),
        };
        if !self
            .coordination
            .try_record_test_mail(id, caller.subject(), limit)
            .await?
        {
            return Err(Error::RateLimited);
        }
        let target = ProbeTarget {
            host: server.host.clone(),
            pairs: ProbeTarget::pairs_for(typed, &self.usual_pairs),
            typed,
            credentials: server.credentials,
            ehlo: server.local_hostname,
        };
        let report = self.mailer.probe(permit, &target, PROBE_DEADLINE).await;
        let found = match report.best() {
            Some(best) => format!("{} {}", best.port, best.encryption.code()),
            None => "none".to_owned(),
        };
        let auth = match &report.auth {
            None => "not tried".to_owned(),
            Some(Ok(())) => "ok".to_owned(),
            Some(Err(f)) => match f.smtp_code {
                Some(code) => format!("failed ({code})"),
                None => format!("failed at {}", f.stage.code()),
            },
        };
        let value = |field: &str, after: String| FieldChange::Value {
            field: field.into(),
            before: None,
            after: Some(after),
        };
        let audit = AuditEntry::new(
            id,
            caller,
            AuditAction::MailServerProbed,
            vec![
                value("host", server.host.to_string()),
                value("found", found),
                value("auth", auth),
            ],
            Utc::now(),
        );
        self.store.record_audit(&audit).await?;
        Ok(report)
    }
}
