//! The audit trail: who did what to a tenant, when, and which fields changed. Secrets
//! appear only as "changed". Past the retention window an entry keeps no person's data
//! beyond what the tenant configured: a test mail's recipient and a server's reply go,
//! like a delivery's content ([`AuditEntry::changes_without_content`]).

use chrono::{DateTime, Utc};

use crate::access::Role;
use crate::delivery::retention::{REMOVED_RECIPIENT, recipient_hash};
use crate::settings::FieldChange;
use crate::tenant::TenantId;
use crate::values::EmailAddress;

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
        /// An operator set or removed the tenant's contact address (where notices about
        /// its settings go).
        TenantContactChanged = "TENANT_CONTACT_CHANGED",
    }
}

/// Which end of a tenant's trail a page starts from; `after` continues in that direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrailOrder {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// The actions whose entries hold a person's data that retention removes (see
/// [`AuditEntry::changes_without_content`]).
pub const ACTIONS_WITH_CONTENT: [AuditAction; 2] = [AuditAction::TestMailSent, AuditAction::MailSettingsSuspended];

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

    /// The changes this entry keeps once retention removed its content: a test mail's
    /// recipient (`to`) reads as [`REMOVED_RECIPIENT`], with the address's hash kept as
    /// `recipientHash` (as a delivery keeps it); a server's reply (`serverMessage`, which
    /// may name a person) is dropped. Everything else stays; entries of other actions
    /// are returned as they are.
    pub fn changes_without_content(&self) -> Vec<FieldChange> {
        if !ACTIONS_WITH_CONTENT.contains(&self.action) {
            return self.changes.clone();
        }
        let mut kept = Vec::with_capacity(self.changes.len() + 1);
        for change in &self.changes {
            match change {
                FieldChange::Value { field, after, .. }
                    if field == "to" && after.as_deref() != Some(REMOVED_RECIPIENT) =>
                {
                    let hash = after
                        .as_deref()
                        .and_then(|a| EmailAddress::parse(a).ok())
                        .map(|a| recipient_hash(&a));
                    kept.push(FieldChange::Value {
                        field: field.clone(),
                        before: None,
                        after: Some(REMOVED_RECIPIENT.to_owned()),
                    });
                    if let Some(hash) = hash {
                        kept.push(FieldChange::Value {
                            field: "recipientHash".into(),
                            before: None,
                            after: Some(hash),
                        });
                    }
                }
                FieldChange::Value { field, .. } if field == "serverMessage" => {}
                other => kept.push(other.clone()),
            }
        }
        kept
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

    #[test]
    fn retention_removes_test_mail_recipients_and_server_replies_only() {
        use super::*;
        let value = |field: &str, after: &str| FieldChange::Value {
            field: field.into(),
            before: None,
            after: Some(after.into()),
        };
        let caller = crate::Caller::new("op".into(), Role::Operator, None).unwrap();
        let tenant = TenantId::generate();
        let test_mail = AuditEntry::new(
            tenant,
            &caller,
            AuditAction::TestMailSent,
            vec![
                value("to", "Yamada@Example.JP"),
                value("result", "ok"),
                value("host", "smtp.example.jp"),
            ],
            Utc::now(),
        );
        let hash = recipient_hash(&EmailAddress::parse("yamada@example.jp").unwrap());
        let expected = vec![
            value("to", REMOVED_RECIPIENT),
            value("recipientHash", &hash),
            value("result", "ok"),
            value("host", "smtp.example.jp"),
        ];
        assert_eq!(test_mail.changes_without_content(), expected);
        // Removing twice changes nothing more.
        let removed = AuditEntry {
            changes: expected.clone(),
            ..test_mail
        };
        assert_eq!(removed.changes_without_content(), expected);
        let suspended = AuditEntry::new(
            tenant,
            &caller,
            AuditAction::MailSettingsSuspended,
            vec![
                value("stage", "RCPT_TO"),
                value("serverMessage", "550 <yamada@example.jp> unknown"),
            ],
            Utc::now(),
        );
        assert_eq!(suspended.changes_without_content(), vec![value("stage", "RCPT_TO")]);
        let saved = AuditEntry::new(
            tenant,
            &caller,
            AuditAction::MailSettingsSaved,
            vec![value("fromAddress", "shop@example.jp")],
            Utc::now(),
        );
        assert_eq!(
            saved.changes_without_content(),
            saved.changes,
            "what the tenant configured stays"
        );
    }
}
