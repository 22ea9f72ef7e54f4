//! A unit of work: what one change of a tenant writes besides its own rows, decided here
//! and stored by the store in the change's transaction — its entry in the tenant's trail,
//! the webhook events it causes, and whether other processes are told that the tenant
//! changed. A store method that takes a [`ChangeRecord`] writes exactly that, nothing
//! more; what this process caches of the tenant is dropped by the caller afterwards,
//! through [`crate::ports::TenantViews`].

use crate::audit::{AuditAction, AuditEntry};
use crate::tenant::TenantId;
use crate::webhook::event::WebhookEvent;

/// Everything one change writes beside its own rows, all in one transaction.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    /// The entry in the tenant's trail.
    pub audit: AuditEntry,
    /// The events the change causes: each stored once for every webhook endpoint that
    /// wants it.
    pub events: Vec<WebhookEvent>,
    /// Whether other processes are told, when the change commits, that the tenant
    /// changed (they drop what they keep of it: see [`announces`]).
    pub announce: bool,
}

impl ChangeRecord {
    /// The record of the change `audit` describes: the events its action causes, and an
    /// announcement where it changes what sending reads.
    pub fn of(audit: AuditEntry) -> Self {
        Self {
            events: WebhookEvent::of_audit(&audit).into_iter().collect(),
            announce: announces(audit.action),
            audit,
        }
    }

    /// The tenant the change is of.
    pub fn tenant(&self) -> TenantId {
        self.audit.tenant_id
    }
}

/// Whether a change of this kind is announced to other processes: those that change what
/// they keep of a tenant (its plan, settings, contact address, quota override). A new
/// tenant is in nobody's cache yet; a test mail or a probe changes nothing kept.
pub fn announces(action: AuditAction) -> bool {
    match action {
        AuditAction::PlanChanged
        | AuditAction::MailSettingsSaved
        | AuditAction::MailSettingsCleared
        | AuditAction::MailSettingsLive
        | AuditAction::MailSettingsSuspended
        | AuditAction::EnqueueQuotaChanged
        | AuditAction::TenantContactChanged => true,
        AuditAction::TenantCreated | AuditAction::TestMailSent | AuditAction::MailServerProbed => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Caller, Role};
    use crate::settings::FieldChange;
    use crate::webhook::EventType;

    fn entry(action: AuditAction) -> AuditEntry {
        let caller = Caller::new("op".into(), Role::Operator, None).expect("caller");
        let change = FieldChange::Value {
            field: "plan".into(),
            before: Some("BASIC".into()),
            after: Some("SHARE".into()),
        };
        AuditEntry::new(TenantId::generate(), &caller, action, vec![change], chrono::Utc::now())
    }

    #[test]
    fn a_record_states_its_events_and_whether_it_is_announced() {
        let moved = ChangeRecord::of(entry(AuditAction::PlanChanged));
        assert_eq!(moved.events.len(), 1);
        assert_eq!(moved.events[0].kind, EventType::TenantPlanChanged);
        assert!(moved.announce, "every process must see the new plan");

        let created = ChangeRecord::of(entry(AuditAction::TenantCreated));
        assert_eq!(created.events[0].kind, EventType::TenantCreated);
        assert!(!created.announce, "nobody keeps a tenant that did not exist");

        let tested = ChangeRecord::of(entry(AuditAction::TestMailSent));
        assert!(tested.events.is_empty() && !tested.announce);
        assert_eq!(tested.tenant(), tested.audit.tenant_id);
    }
}
