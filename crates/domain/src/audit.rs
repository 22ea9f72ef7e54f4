//! The audit trail: who did what to a tenant, when, and which fields changed. Secrets
//! appear only as "changed".

use chrono::{DateTime, Utc};

use crate::access::Role;
use crate::settings::FieldChange;
use crate::tenant::TenantId;

crate::coded_enum! {
    /// What happened.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AuditAction {
        TenantCreated = "TENANT_CREATED",
        PlanChanged = "PLAN_CHANGED",
        MailSettingsSaved = "MAIL_SETTINGS_SAVED",
        MailSettingsCleared = "MAIL_SETTINGS_CLEARED",
        TestMailSent = "TEST_MAIL_SENT",
        /// A saved version was proven (a test mail, or its code) and carries the mail.
        MailSettingsLive = "MAIL_SETTINGS_LIVE",
        /// Real deliveries kept failing for a configuration fault: the version was
        /// suspended and the tenant's mail goes through the platform default.
        MailSettingsSuspended = "MAIL_SETTINGS_SUSPENDED",
        /// An operator set or removed the tenant's enqueue quota override.
        EnqueueQuotaChanged = "ENQUEUE_QUOTA_CHANGED",
        /// The setup assistant probed a server (the pair it found, and the one login).
        MailServerProbed = "MAIL_SERVER_PROBED",
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Time-ordered (UUID v7), so the trail pages by id.
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub actor_subject: String,
    pub actor_role: Role,
    pub action: AuditAction,
    pub changes: Vec<FieldChange>,
    pub at: DateTime<Utc>,
}

impl AuditEntry {
    pub fn new(
        tenant_id: TenantId,
        actor: &crate::Caller,
        action: AuditAction,
        changes: Vec<FieldChange>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7(),
            tenant_id,
            actor_subject: actor.subject().to_owned(),
            actor_role: actor.role(),
            action,
            changes,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn action_codes_round_trip() {
        for a in [
            AuditAction::TenantCreated,
            AuditAction::PlanChanged,
            AuditAction::MailSettingsSaved,
            AuditAction::MailSettingsCleared,
            AuditAction::TestMailSent,
        ] {
            assert_eq!(AuditAction::from_code(a.code()), Some(a));
        }
    }
}
