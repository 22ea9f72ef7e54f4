//! The audit trail: who did what to a tenant, when, and which fields changed. Secrets
//! appear only as "changed".

use chrono::{DateTime, Utc};

use crate::access::Role;
use crate::settings::FieldChange;
use crate::tenant::TenantId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    TenantCreated,
    PlanChanged,
    MailSettingsSaved,
    MailSettingsCleared,
    TestMailSent,
}

impl AuditAction {
    pub fn code(self) -> &'static str {
        match self {
            AuditAction::TenantCreated => "TENANT_CREATED",
            AuditAction::PlanChanged => "PLAN_CHANGED",
            AuditAction::MailSettingsSaved => "MAIL_SETTINGS_SAVED",
            AuditAction::MailSettingsCleared => "MAIL_SETTINGS_CLEARED",
            AuditAction::TestMailSent => "TEST_MAIL_SENT",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        [
            Self::TenantCreated,
            Self::PlanChanged,
            Self::MailSettingsSaved,
            Self::MailSettingsCleared,
            Self::TestMailSent,
        ]
        .into_iter()
        .find(|a| a.code() == s)
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
