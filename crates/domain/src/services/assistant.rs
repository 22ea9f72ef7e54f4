//! The setup assistant's operations: discover a sender's server from its address, probe
//! a server for the port and encryption that work, check the sender domain's SPF, DKIM
//! and DMARC. Each is one call: authorise the caller, apply the plan gate and a limit,
//! run (the probe is also in the audit trail).

use std::sync::Arc;

use chrono::Utc;

use crate::access::Caller;
use crate::audit::{AuditAction, AuditEntry};
use crate::audit_value::{Found, Outcome};
use crate::change::ChangeRecord;
use crate::discovery::Discovery;
use crate::error::{Error, Result};
use crate::plan::sender_override_permit;
use crate::ports::{CheckedServer, Coordination, MailTransport, SetupLookups, TenantStore};
use crate::probe::{PROBE_DEADLINE, ProbeReport, ProbeTarget};
use crate::sender_domain::DomainCheck;
use crate::services::TEST_MAIL_LIMIT;
use crate::settings::{Encryption, FieldChange, MailSettingsDraft, ServerDraft};
use crate::tenant::TenantId;
use crate::values::EmailAddress;

/// The setup assistant. Cheap to clone.
#[derive(Clone)]
pub struct AssistantService {
    store: Arc<dyn TenantStore>,
    mailer: Arc<dyn MailTransport>,
    coordination: Arc<dyn Coordination>,
    /// The pairs every probe tries (the usual submission pairs unless configured).
    usual_pairs: Arc<Vec<(u16, Encryption)>>,
    lookups: Arc<dyn SetupLookups>,
    /// Discoveries and domain checks per tenant in the current minute (this process).
    lookup_budget: Arc<std::sync::Mutex<LookupBudget>>,
}

/// Discoveries and domain checks a tenant may ask for per minute (in each process; the
/// answers are cached per domain, so a form that asks again costs nothing upstream).
pub const LOOKUPS_PER_TENANT_PER_MINUTE: u32 = 60;

#[derive(Debug, Default)]
struct LookupBudget {
    minute: u64,
    used: std::collections::HashMap<TenantId, u32>,
}

impl LookupBudget {
    fn take(&mut self, tenant: TenantId, now_minute: u64) -> bool {
        if now_minute != self.minute {
            self.minute = now_minute;
            self.used.clear();
        }
        let used = self.used.entry(tenant).or_default();
        if *used >= LOOKUPS_PER_TENANT_PER_MINUTE {
            return false;
        }
        *used += 1;
        true
    }
}

/// The sender-domain check waits this long for DNS at most.
pub const SENDER_DOMAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

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
        lookups: Arc<dyn SetupLookups>,
        usual_pairs: Vec<(u16, Encryption)>,
    ) -> Self {
        Self {
            store,
            mailer,
            coordination,
            usual_pairs: Arc::new(usual_pairs),
            lookups,
            lookup_budget: Arc::default(),
        }
    }

    /// The caller may edit the tenant's settings and its plan allows its own server.
    async fn gate(&self, caller: &Caller, id: TenantId) -> Result<crate::ports::TenantRecord> {
        caller.require_settings_editor(id)?;
        let record = self.store.tenant(id).await?.ok_or(Error::NotFound)?;
        sender_override_permit(record.tenant.plan)?;
        Ok(record)
    }

    fn take_lookup(&self, id: TenantId) -> Result<()> {
        let minute = u64::try_from(Utc::now().timestamp()).unwrap_or(0) / 60;
        let mut budget = self
            .lookup_budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if budget.take(id, minute) {
            Ok(())
        } else {
            Err(Error::RateLimited)
        }
    }

    /// Candidate settings for the sender address, from the bundled provider data, the
    /// domain's MX, SRV and autoconfig, with where each came from.
    pub async fn discover_mail_server(&self, caller: &Caller, id: TenantId, from_address: &str) -> Result<Discovery> {
        self.gate(caller, id).await?;
        let from = EmailAddress::parse(from_address).map_err(|e| Error::validation("fromAddress", e))?;
        self.take_lookup(id)?;
        Ok(self.lookups.discover(&from).await)
    }

    /// What the From domain's SPF, DKIM and DMARC do with mail through the form's server
    /// (or the saved one when the form is absent), and the verdict.
    pub async fn check_sender_domain(
        &self,
        caller: &Caller,
        id: TenantId,
        from_address: &str,
        draft: Option<&MailSettingsDraft>,
    ) -> Result<DomainCheck> {
        let record = self.gate(caller, id).await?;
        let from = EmailAddress::parse(from_address).map_err(|e| Error::validation("fromAddress", e))?;
        let stored = record.settings.as_ref().map(|s| &s.settings);
        let server = match draft {
            Some(d) => {
                let s = ServerDraft::parse(d, stored).map_err(Error::Validation)?;
                CheckedServer {
                    kind: s.kind,
                    host: s.host,
                }
            }
            None => {
                let s = stored.ok_or_else(|| Error::validation("settings", crate::error::FieldCode::Required))?;
                CheckedServer {
                    kind: s.server_kind(),
                    host: s.host().clone(),
                }
            }
        };
        self.take_lookup(id)?;
        let findings = self
            .lookups
            .sender_domain(&from, &server, SENDER_DOMAIN_DEADLINE)
            .await
            .ok_or(Error::TimedOut)?;
        Ok(DomainCheck::judge(findings))
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
        let record = self.gate(caller, id).await?;
        let permit = sender_override_permit(record.tenant.plan)?;
        let stored = record.settings.as_ref().map(|s| &s.settings);
        let server = ServerDraft::parse(draft, stored).map_err(Error::Validation)?;
        let typed = server.typed.map(|(p, e)| (p.get(), e));
        if !self
            .coordination
            .try_record_test_mail(id, caller.subject(), TEST_MAIL_LIMIT)
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
        let found = Found(report.best().map(|best| (best.port, best.encryption))).stored();
        let auth = match &report.auth {
            None => Outcome::NotTried,
            Some(Ok(())) => Outcome::Succeeded,
            Some(Err(f)) => Outcome::Failed {
                stage: Some(f.stage),
                smtp_code: f.smtp_code,
            },
        }
        .stored();
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
        self.store.record_change(&ChangeRecord::of(audit)).await?;
        Ok(report)
    }
}
