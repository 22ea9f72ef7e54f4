//! Conversions between table rows and domain values. Going in, secrets are sealed;
//! coming out, every value is parsed again through the domain's constructors and
//! secrets are opened, so a row that a bug or a hand edit made invalid is reported as
//! corrupt (naming the tenant and the field, never the value) instead of being used.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::StoreError;
use domain::access::Role;
use domain::audit::{AuditAction, AuditEntry};
use domain::delivery::Delivery;
use domain::error::FieldCode;
use domain::health::{ActivationCode, SettingsFailure, SettingsHealth, SettingsState};
use domain::mail::{Hint, SendStage};
use domain::ports::TenantRecord;
use domain::settings::{
    Encryption, FieldChange, MailSettings, MailSettingsDraft, PopBeforeSmtpDraft, ServerKind, StoredMailSettings,
};
use domain::tenant::UnreadableSettings;
use domain::values::EmailAddress;
use domain::{Plan, Tenant, TenantId, TenantName};
use sea_orm::ActiveValue::Set;
use sea_orm::DbErr;
use secrecy::SecretString;
use serde::Deserialize;

use crate::crypto::{SecretKeyRing, SecretPurpose};
use crate::entities::{audit_events, deliveries, mail_settings, tenants};

/// A database failure as the port reports it. sea-orm's errors carry SQL and driver
/// text, never bound values, so no secret reaches the message.
pub(crate) fn db_err(e: DbErr) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// A stored value the domain refuses. `subject` names the row (tenant id or audit
/// entry), `field` the column in API terms, `code` the reason.
pub(crate) fn corrupt(subject: &str, field: &str, code: impl Into<FieldCode>) -> StoreError {
    StoreError::Corrupt(format!("{subject}: field {field}: {}", code.into().code()))
}

const INVALID: FieldCode = FieldCode::InvalidFormat;
const MISSING: FieldCode = FieldCode::Required;

/// Parses a tenant id read from a row, naming `table` when it is not one.
pub(crate) fn tenant_id(raw: &str, table: &str) -> Result<TenantId, StoreError> {
    TenantId::from_str(raw).map_err(|e| corrupt(&format!("a {table} row"), "tenantId", e))
}

pub(crate) fn tenant_from_row(row: &tenants::Model) -> Result<Tenant, StoreError> {
    let id = tenant_id(&row.id, "tenants")?;
    let subject = format!("tenant {id}");
    Ok(Tenant {
        id,
        name: TenantName::parse(&row.name).map_err(|e| corrupt(&subject, "name", e))?,
        plan: Plan::from_str(&row.plan).map_err(|_| corrupt(&subject, "plan", INVALID))?,
        contact_email: row
            .contact_email
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|e| corrupt(&subject, "contactEmail", e))?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(crate) fn tenant_row(tenant: &Tenant) -> tenants::ActiveModel {
    tenants::ActiveModel {
        id: Set(tenant.id.to_string()),
        name: Set(tenant.name.as_str().to_owned()),
        name_key: Set(Some(domain::tenant::name_search_key(tenant.name.as_str()))),
        plan: Set(tenant.plan.code().to_owned()),
        settings_version: Set(0),
        contact_email: Set(tenant.contact_email.as_ref().map(|c| c.as_str().to_owned())),
        created_at: Set(tenant.created_at),
        updated_at: Set(tenant.updated_at),
    }
}

/// A tenant with its settings rows (any order): the newest version is the saved one; an
/// older one still kept is the version that carries the mail while the saved one waits
/// for its test.
pub(crate) fn record_from_rows(
    tenant: &tenants::Model,
    settings: &[&mail_settings::Model],
    keys: &SecretKeyRing,
) -> Result<TenantRecord, StoreError> {
    let tenant = tenant_from_row(tenant)?;
    let Some(row) = settings.iter().copied().max_by_key(|r| r.version) else {
        return Ok(TenantRecord::new(tenant, None));
    };
    let live = settings
        .iter()
        .copied()
        .filter(|r| r.version < row.version)
        .max_by_key(|r| r.version);
    match settings_from_row(row, &tenant.id, keys) {
        Ok(settings) => {
            let live_settings = match live.map(|l| settings_from_row(l, &tenant.id, keys)).transpose() {
                Ok(live) => live,
                // The saved version is readable: the tenant can test it; until then its
                // mail goes from the platform default rather than waiting.
                Err(error) => {
                    tracing::error!(tenant = %tenant.id, %error, "the tenant's earlier live mail settings cannot be read; they are not used");
                    None
                }
            };
            Ok(TenantRecord {
                live_settings,
                ..TenantRecord::new(tenant, Some(settings))
            })
        }
        // The tenant stays usable (it can see why, save anew or clear); its own route
        // waits. The error names the tenant and the field, never a value.
        Err(error) => {
            tracing::error!(tenant = %tenant.id, version = row.version, %error, "the tenant's saved mail settings cannot be read; its mail waits until they are saved again or cleared");
            Ok(TenantRecord {
                unreadable_settings: Some(UnreadableSettings { version: row.version }),
                ..TenantRecord::new(tenant, None)
            })
        }
    }
}

/// Opens one stored secret; both columns are set or neither is.
fn open_secret(
    keys: &SecretKeyRing,
    tenant: &TenantId,
    field: &str,
    purpose: SecretPurpose,
    sealed: Option<&[u8]>,
    key_id: Option<&str>,
) -> Result<Option<SecretString>, StoreError> {
    match (sealed, key_id) {
        (None, None) => Ok(None),
        (Some(sealed), Some(key_id)) => keys
            .decrypt(sealed, key_id, tenant, purpose)
            .map(Some)
            .map_err(|e| StoreError::Crypto(format!("tenant {tenant}: field {field}: {e}"))),
        _ => Err(corrupt(&format!("tenant {tenant}"), field, MISSING)),
    }
}

fn seal_secret(
    keys: &SecretKeyRing,
    tenant: &TenantId,
    field: &str,
    purpose: SecretPurpose,
    secret: Option<&SecretString>,
) -> Result<(Option<Vec<u8>>, Option<String>), StoreError> {
    match secret {
        None => Ok((None, None)),
        Some(secret) => keys
            .encrypt(secret, tenant, purpose)
            .map(|(sealed, key_id)| (Some(sealed), Some(key_id)))
            .map_err(|e| StoreError::Crypto(format!("tenant {tenant}: field {field}: {e}"))),
    }
}

/// Rebuilds the settings from a row by running the row, as a draft, through
/// [`MailSettings::validate`] — the same rules a form goes through.
pub(crate) fn settings_from_row(
    row: &mail_settings::Model,
    tenant: &TenantId,
    keys: &SecretKeyRing,
) -> Result<StoredMailSettings, StoreError> {
    let subject = format!("tenant {tenant}");
    let server_kind =
        ServerKind::from_code(&row.server_kind).ok_or_else(|| corrupt(&subject, "serverKind", INVALID))?;
    let encryption = Encryption::from_code(&row.encryption).ok_or_else(|| corrupt(&subject, "encryption", INVALID))?;
    let password = open_secret(
        keys,
        tenant,
        "password",
        SecretPurpose::Smtp,
        row.password_ciphertext.as_deref(),
        row.password_key_id.as_deref(),
    )?;
    let pop_before_smtp = match &row.pop_host {
        None => {
            let leftovers = row.pop_port.is_some()
                || row.pop_username.is_some()
                || row.pop_password_ciphertext.is_some()
                || row.pop_password_key_id.is_some()
                || row.pop_tls.is_some();
            if leftovers {
                return Err(corrupt(&subject, "popBeforeSmtp.host", MISSING));
            }
            None
        }
        Some(host) => Some(PopBeforeSmtpDraft {
            host: Some(host.clone()),
            // Stored explicitly; a missing one must not silently become the default port.
            port: Some(
                row.pop_port
                    .map(i64::from)
                    .ok_or_else(|| corrupt(&subject, "popBeforeSmtp.port", MISSING))?,
            ),
            username: row.pop_username.clone(),
            password: open_secret(
                keys,
                tenant,
                "popBeforeSmtp.password",
                SecretPurpose::Pop,
                row.pop_password_ciphertext.as_deref(),
                row.pop_password_key_id.as_deref(),
            )?,
            tls: Some(
                row.pop_tls
                    .ok_or_else(|| corrupt(&subject, "popBeforeSmtp.tls", MISSING))?,
            ),
        }),
    };
    let draft = MailSettingsDraft {
        server_kind: Some(server_kind),
        host: Some(row.host.clone()),
        port: Some(i64::from(row.port)),
        from_address: Some(row.from_address.clone()),
        from_name: row.from_name.clone(),
        smtp_auth: Some(row.smtp_auth),
        username: row.username.clone(),
        password,
        encryption: Some(encryption),
        pop_before_smtp,
        local_hostname: row.local_hostname.clone(),
        send_interval_ms: Some(row.send_interval_ms),
        connection_id: row.connection_id.clone(),
    };
    let settings = MailSettings::validate(&draft, None).map_err(|errors| {
        let fields: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {}", e.field, e.code.code()))
            .collect();
        StoreError::Corrupt(format!("{subject}: {}", fields.join(", ")))
    })?;
    Ok(StoredMailSettings {
        settings,
        version: row.version,
        updated_at: row.updated_at,
        health: health_from_row(row, &subject)?,
    })
}

pub(crate) fn health_from_row(row: &mail_settings::Model, subject: &str) -> Result<SettingsHealth, StoreError> {
    let state = SettingsState::from_code(&row.state).ok_or_else(|| corrupt(subject, "health.state", INVALID))?;
    let last_failure = match (row.last_failure_at, &row.last_failure_stage) {
        (Some(at), Some(stage)) => Some(SettingsFailure {
            at,
            stage: SendStage::from_code(stage).ok_or_else(|| corrupt(subject, "health.lastFailure.stage", INVALID))?,
            smtp_code: row.last_failure_smtp_code.and_then(|c| u16::try_from(c).ok()),
            enhanced_code: row.last_failure_enhanced_code.clone(),
            server_message: row.last_failure_message.clone(),
            hint: row
                .last_failure_hint
                .as_deref()
                .and_then(Hint::from_code)
                .unwrap_or(Hint::Other),
        }),
        _ => None,
    };
    let activation_code = match (&row.activation_code_hash, row.activation_code_expires_at) {
        (Some(hash), Some(expires_at)) => Some(ActivationCode {
            hash: hash.clone(),
            expires_at,
        }),
        _ => None,
    };
    Ok(SettingsHealth {
        state,
        since: row.state_since,
        consecutive_failures: u32::try_from(row.consecutive_failures).unwrap_or(0),
        last_failure,
        activation_code,
        server: domain::health::ServerRecord {
            reached_at: row.server_reached_at,
            unreachable_at: row.server_unreachable_at,
        },
    })
}

/// The health columns of a settings row.
pub(crate) fn set_health(row: &mut mail_settings::ActiveModel, health: &SettingsHealth) {
    let f = health.last_failure.as_ref();
    row.state = Set(health.state.code().to_owned());
    row.state_since = Set(health.since);
    row.consecutive_failures = Set(i32::try_from(health.consecutive_failures).unwrap_or(i32::MAX));
    row.last_failure_at = Set(f.map(|f| f.at));
    row.last_failure_stage = Set(f.map(|f| f.stage.code().to_owned()));
    row.last_failure_smtp_code = Set(f.and_then(|f| f.smtp_code).map(i32::from));
    row.last_failure_enhanced_code = Set(f.and_then(|f| f.enhanced_code.clone()));
    row.last_failure_message = Set(f.and_then(|f| f.server_message.clone()));
    row.last_failure_hint = Set(f.map(|f| f.hint.code().to_owned()));
    let code = health.activation_code.as_ref();
    row.activation_code_hash = Set(code.map(|c| c.hash.clone()));
    row.activation_code_expires_at = Set(code.map(|c| c.expires_at));
}

/// The row for `settings`, with passwords sealed for this tenant.
pub(crate) fn settings_row(
    tenant: &TenantId,
    settings: &MailSettings,
    version: i64,
    at: DateTime<Utc>,
    health: &SettingsHealth,
    keys: &SecretKeyRing,
) -> Result<mail_settings::ActiveModel, StoreError> {
    let (password_ciphertext, password_key_id) =
        seal_secret(keys, tenant, "password", SecretPurpose::Smtp, settings.password())?;
    let pop = settings.pop_before_smtp();
    let (pop_password_ciphertext, pop_password_key_id) = seal_secret(
        keys,
        tenant,
        "popBeforeSmtp.password",
        SecretPurpose::Pop,
        pop.map(|p| p.password()),
    )?;
    let mut row = mail_settings::ActiveModel {
        tenant_id: Set(tenant.to_string()),
        version: Set(version),
        server_kind: Set(settings.server_kind().code().to_owned()),
        host: Set(settings.host().as_str().to_owned()),
        port: Set(i32::from(settings.port().get())),
        from_address: Set(settings.from_address().as_str().to_owned()),
        from_name: Set(settings.from_name().map(|n| n.as_str().to_owned())),
        smtp_auth: Set(settings.smtp_auth()),
        username: Set(settings.username().map(|u| u.as_str().to_owned())),
        password_ciphertext: Set(password_ciphertext),
        password_key_id: Set(password_key_id),
        encryption: Set(settings.encryption().code().to_owned()),
        pop_host: Set(pop.map(|p| p.host().as_str().to_owned())),
        pop_port: Set(pop.map(|p| i32::from(p.port().get()))),
        pop_username: Set(pop.map(|p| p.username().as_str().to_owned())),
        pop_password_ciphertext: Set(pop_password_ciphertext),
        pop_password_key_id: Set(pop_password_key_id),
        pop_tls: Set(pop.map(|p| p.tls())),
        local_hostname: Set(settings.local_hostname().map(|h| h.as_str().to_owned())),
        send_interval_ms: Set(i64::from(settings.send_interval().as_millis())),
        connection_id: Set(settings.connection().map(|c| c.to_string())),
        updated_at: Set(at),
        ..Default::default()
    };
    set_health(&mut row, health);
    Ok(row)
}

/// One element of the stored `changes` list. Values carry `before`/`after` (null when
/// absent); secrets carry only `secret: true`.
#[derive(Deserialize)]
struct StoredChange {
    field: String,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

pub(crate) fn changes_json(changes: &[FieldChange]) -> String {
    let items: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| match c {
            FieldChange::Value { field, before, after } => {
                serde_json::json!({ "field": field, "before": before, "after": after })
            }
            FieldChange::Secret { field } => serde_json::json!({ "field": field, "secret": true }),
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

pub(crate) fn audit_row(entry: &AuditEntry) -> audit_events::ActiveModel {
    audit_events::ActiveModel {
        id: Set(entry.id.hyphenated().to_string()),
        tenant_id: Set(entry.tenant_id.to_string()),
        actor_subject: Set(entry.actor_subject.clone()),
        actor_role: Set(entry.actor_role.code().to_owned()),
        action: Set(entry.action.code().to_owned()),
        changes: Set(changes_json(&entry.changes)),
        at: Set(entry.at),
        content_removed_at: Set(None),
    }
}

pub(crate) fn audit_from_row(row: &audit_events::Model) -> Result<AuditEntry, StoreError> {
    let subject = format!("audit entry {}", row.id);
    let id = uuid::Uuid::parse_str(&row.id).map_err(|_| corrupt(&subject, "id", INVALID))?;
    let changes: Vec<StoredChange> =
        serde_json::from_str(&row.changes).map_err(|_| corrupt(&subject, "changes", INVALID))?;
    Ok(AuditEntry {
        id,
        tenant_id: TenantId::from_str(&row.tenant_id).map_err(|e| corrupt(&subject, "tenantId", e))?,
        actor_subject: row.actor_subject.clone(),
        actor_role: Role::from_code(&row.actor_role).ok_or_else(|| corrupt(&subject, "actorRole", INVALID))?,
        action: AuditAction::from_code(&row.action).ok_or_else(|| corrupt(&subject, "action", INVALID))?,
        changes: changes
            .into_iter()
            .map(|c| {
                if c.secret {
                    FieldChange::Secret { field: c.field }
                } else {
                    FieldChange::Value {
                        field: c.field,
                        before: c.before,
                        after: c.after,
                    }
                }
            })
            .collect(),
        at: row.at,
    })
}

pub(crate) fn retries_column(retries: u32) -> i32 {
    i32::try_from(retries).unwrap_or(i32::MAX)
}

/// The row a new delivery is stored as (its attempts are not part of it).
pub(crate) fn delivery_row(delivery: &Delivery, now: DateTime<Utc>) -> deliveries::ActiveModel {
    deliveries::ActiveModel {
        id: Set(delivery.id.to_string()),
        tenant_id: Set(delivery.tenant_id.to_string()),
        kind: Set(delivery.kind.code().to_owned()),
        to_address: Set(delivery.to.as_str().to_owned()),
        locale: Set(delivery.locale.code().to_owned()),
        subject: Set(delivery.message.subject.as_str().to_owned()),
        text_body: Set(delivery.message.text.clone()),
        html_body: Set(delivery.message.html.clone()),
        message_id: Set(delivery.message_id.as_str().to_owned()),
        idempotency_key: Set(delivery.idempotency_key.as_ref().map(|k| k.as_str().to_owned())),
        status: Set(delivery.status.code().to_owned()),
        retries: Set(retries_column(delivery.retries)),
        retried_before: Set(delivery.retried_before),
        next_attempt_at_ms: Set(delivery.next_attempt_at.timestamp_millis()),
        lease_owner: Set(None),
        lease_until_ms: Set(None),
        created_at: Set(delivery.created_at),
        updated_at: Set(now),
        sent_at: Set(delivery.sent_at),
        failure_code: Set(delivery.failure_reason.as_ref().map(|r| r.code().code().to_owned())),
        failure_detail: Set(delivery
            .failure_reason
            .as_ref()
            .and_then(|r| r.detail())
            .map(str::to_owned)),
        failure_reason: Set(None),
        claims: Set(0),
        via_platform: Set(delivery.via_platform),
        content_removed_at: Set(delivery.content_removed_at),
        recipient_hash: Set(delivery.recipient_hash.clone()),
        payload_hash: Set(delivery.payload_hash.clone()),
        trace_parent: Set(delivery.trace_parent.as_ref().map(|t| t.as_str().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_through_json() {
        let changes = vec![
            FieldChange::Value {
                field: "port".into(),
                before: None,
                after: Some("587".into()),
            },
            FieldChange::Secret {
                field: "password".into(),
            },
        ];
        let json = changes_json(&changes);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            serde_json::json!([
                { "field": "port", "before": null, "after": "587" },
                { "field": "password", "secret": true },
            ])
        );
        let row = audit_events::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: TenantId::generate().to_string(),
            actor_subject: "op-1".into(),
            actor_role: "operator".into(),
            action: "MAIL_SETTINGS_SAVED".into(),
            changes: json,
            at: Utc::now(),
            content_removed_at: None,
        };
        assert_eq!(audit_from_row(&row).unwrap().changes, changes);
    }
}
