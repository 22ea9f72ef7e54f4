//! A delivery and its attempts to and from their rows, every value parsed again on the
//! way back.

use std::str::FromStr;

use chrono::DateTime;
use domain::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, FailureCode, FailureReason, NotificationKind, RenderedMessage,
};
use domain::error::FieldCode;
use domain::mail::Subject;
use domain::values::EmailAddress;
use domain::{DeliveryId, IdempotencyKey, Locale, MessageId, SenderSource, StoreError, TenantId};

use crate::convert::corrupt;
use crate::entities::{deliveries, delivery_attempts};

use super::INVALID;

/// The failure reason of a row: its code and detail, or, where it has no code, the text a
/// release before the code wrote (during a rolling upgrade); `Err` names an unknown code.
pub(super) fn failure_reason(row: &deliveries::Model) -> Result<Option<FailureReason>, FieldCode> {
    match (row.failure_code.as_deref(), row.failure_reason.as_deref()) {
        (Some(code), _) => {
            let code = FailureCode::from_code(code).ok_or(INVALID)?;
            Ok(Some(FailureReason::from_parts(code, row.failure_detail.as_deref())))
        }
        (None, Some(text)) => Ok(Some(FailureReason::from_legacy_text(text))),
        (None, None) => Ok(None),
    }
}

/// A delivery read back, every value parsed again; a refused value is reported as
/// corrupt, naming the delivery and the field, never the value.
pub(crate) fn delivery_from_row(row: &deliveries::Model, attempts: Vec<Attempt>) -> Result<Delivery, StoreError> {
    let id = DeliveryId::from_str(&row.id).map_err(|e| corrupt("a deliveries row", "id", e))?;
    let subject = format!("delivery {id}");
    let field = |name: &str, code: FieldCode| corrupt(&subject, name, code);
    Ok(Delivery {
        id,
        tenant_id: TenantId::from_str(&row.tenant_id).map_err(|e| field("tenantId", e.into()))?,
        kind: NotificationKind::from_code(&row.kind).ok_or_else(|| field("kind", INVALID))?,
        to: EmailAddress::parse(&row.to_address).map_err(|e| field("to", e.into()))?,
        locale: Locale::from_code(&row.locale).ok_or_else(|| field("locale", INVALID))?,
        message: RenderedMessage {
            subject: Subject::parse(&row.subject).map_err(|e| field("subject", e.into()))?,
            text: row.text_body.clone(),
            html: row.html_body.clone(),
        },
        message_id: MessageId::parse(&row.message_id).map_err(|e| field("messageId", e.into()))?,
        idempotency_key: row
            .idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(|e| field("idempotencyKey", e.into()))?,
        status: DeliveryStatus::from_code(&row.status).ok_or_else(|| field("status", INVALID))?,
        retries: u32::try_from(row.retries).map_err(|_| field("retries", INVALID))?,
        retried_before: row.retried_before,
        next_attempt_at: DateTime::from_timestamp_millis(row.next_attempt_at_ms)
            .ok_or_else(|| field("nextAttemptAt", INVALID))?,
        created_at: row.created_at,
        sent_at: row.sent_at,
        failure_reason: failure_reason(row).map_err(|e| field("failureCode", e))?,
        claims: u32::try_from(row.claims).unwrap_or(0),
        via_platform: row.via_platform,
        content_removed_at: row.content_removed_at,
        recipient_hash: row.recipient_hash.clone(),
        payload_hash: row.payload_hash.clone(),
        // A malformed value only loses the link to the trace.
        trace_parent: row.trace_parent.as_deref().and_then(domain::TraceParent::parse),
        attempts,
    })
}

/// The row an attempt is stored as, with a fresh time-ordered id.
pub(super) fn attempt_row(delivery_id: &str, attempt: &Attempt) -> delivery_attempts::Model {
    delivery_attempts::Model {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        delivery_id: delivery_id.to_owned(),
        at: attempt.at,
        outcome: attempt.outcome.code().to_owned(),
        stage: attempt.stage.clone(),
        smtp_code: attempt.smtp_code.map(i32::from),
        enhanced_code: attempt.enhanced_code.clone(),
        server_message: attempt.server_message.clone(),
        sender_address: attempt.sender_address.clone(),
        sender_source: attempt.sender_source.map(|s| s.code().to_owned()),
    }
}

pub(super) fn attempt_from_row(row: &delivery_attempts::Model) -> Result<Attempt, StoreError> {
    let subject = format!("attempt {} of delivery {}", row.id, row.delivery_id);
    let field = |name: &str| corrupt(&subject, name, INVALID);
    Ok(Attempt {
        at: row.at,
        outcome: AttemptOutcome::from_code(&row.outcome).ok_or_else(|| field("outcome"))?,
        stage: row.stage.clone(),
        smtp_code: row
            .smtp_code
            .map(|code| u16::try_from(code).map_err(|_| field("smtpCode")))
            .transpose()?,
        enhanced_code: row.enhanced_code.clone(),
        server_message: row.server_message.clone(),
        sender_address: row.sender_address.clone(),
        sender_source: row
            .sender_source
            .as_deref()
            .map(|code| SenderSource::from_code(code).ok_or_else(|| field("senderSource")))
            .transpose()?,
    })
}
