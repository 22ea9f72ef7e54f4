//! The state changes of a delivery, each decided here and nowhere else. A worker (or the
//! retry operation) asks for the change that follows what happened; storage applies the
//! resulting [`DeliveryUpdate`] only while the row is still in [`DeliveryUpdate::expected`]
//! (for a worker: `SENDING` under its own lease), and clears the lease.

use chrono::{DateTime, Utc};

use super::retry::{FailureDecision, RetryPolicy, is_rate_limit};
use super::{
    Attempt, AttemptOutcome, Delivery, DeliveryStatus, FailureReason, MAX_CLAIMS_WITHOUT_OUTCOME, Postponement,
};
use crate::mail::{SendFailure, SendReceipt, SendStage, is_configuration_failure};
use crate::sender::SenderSource;

/// The new state of one delivery, and the attempt that led to it (if one was made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    expected: DeliveryStatus,
    status: DeliveryStatus,
    retries: Option<u32>,
    next_attempt_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    failure_reason: Option<FailureReason>,
    attempt: Option<Attempt>,
    /// `Some(true)`: from now on it goes through the platform default (a time-critical
    /// fallback); `None`: as stored.
    via_platform: Option<bool>,
}

/// The stage recorded for an attempt that crashed inside Mailgate.
pub const INTERNAL_STAGE: &str = "INTERNAL";

/// The stage recorded for an attempt that waited because the tenant's saved settings
/// cannot be read back.
pub const SETTINGS_STAGE: &str = "SETTINGS";

/// What [`DeliveryUpdate::unsent`] needs to know.
struct Unsent<'a> {
    stage: &'static str,
    /// The attempt's outcome when the delivery is tried again.
    outcome: AttemptOutcome,
    /// Retries used before, and after when it is tried again.
    retries: u32,
    retries_then: u32,
    created_at: DateTime<Utc>,
    policy: &'a RetryPolicy,
    at: DateTime<Utc>,
    next: DateTime<Utc>,
}

/// An attempt that reached no server: only its time, outcome and stage.
fn bare_attempt(at: DateTime<Utc>, outcome: AttemptOutcome, stage: &str) -> Attempt {
    Attempt {
        at,
        outcome,
        stage: Some(stage.to_owned()),
        smtp_code: None,
        enhanced_code: None,
        server_message: None,
        sender_address: None,
        sender_source: None,
    }
}

/// Only a `FAILED` delivery can be put back in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only a failed delivery can be retried")]
pub struct NotFailed;

impl DeliveryUpdate {
    /// The server took the mail.
    pub fn sent(receipt: &SendReceipt, retries: u32, at: DateTime<Utc>) -> Self {
        Self {
            expected: DeliveryStatus::Sending,
            status: DeliveryStatus::Sent,
            retries: Some(retries),
            next_attempt_at: at,
            sent_at: Some(at),
            failure_reason: None,
            attempt: Some(Attempt {
                at,
                outcome: AttemptOutcome::Sent,
                stage: None,
                smtp_code: receipt.smtp_code,
                enhanced_code: None,
                server_message: receipt.server_message.clone(),
                sender_address: Some(receipt.sender.address.to_string()),
                sender_source: Some(receipt.sender.source),
            }),
            via_platform: None,
        }
    }

    /// What follows a failed send of `delivery`, by `policy`: a retry after a backoff
    /// (one error retry used), a deferral after a rate-limit reply (none used), or a
    /// permanent failure (refused, or expired). On the tenant's own server two things
    /// differ: a configuration failure (wrong credentials, SMTP AUTH off, sender refused,
    /// certificate no longer valid) waits with backoff and no retry used — its settings
    /// version is suspended after a few of them and the mail then goes through the
    /// platform default —, and time-critical mail whose next try would come after the
    /// policy's fallback time goes through the platform default at that time instead.
    pub fn after_failure(
        delivery: &Delivery,
        failure: &SendFailure,
        policy: &RetryPolicy,
        at: DateTime<Utc>,
        jitter: f64,
    ) -> Self {
        let own_server = failure
            .sender
            .as_ref()
            .is_some_and(|s| s.source == SenderSource::Custom);
        let age = (at - delivery.created_at).to_std().unwrap_or_default();
        let decision = if own_server && policy.configuration_failures_wait && is_configuration_failure(failure) {
            if age >= policy.max_age {
                FailureDecision::Expire
            } else {
                FailureDecision::Defer(policy.backoff(delivery.retries, jitter))
            }
        } else {
            policy.decide(failure, delivery.retries, delivery.created_at, at, jitter)
        };
        let later = |delay: std::time::Duration| at + chrono::Duration::from_std(delay).unwrap_or_default();
        let (status, retries, mut next, outcome, reason) = match decision {
            FailureDecision::Retry(delay) => (
                DeliveryStatus::Retrying,
                delivery.retries.saturating_add(1),
                later(delay),
                AttemptOutcome::Retry,
                None,
            ),
            FailureDecision::Defer(delay) => (
                DeliveryStatus::Retrying,
                delivery.retries,
                later(delay),
                AttemptOutcome::Deferred,
                None,
            ),
            FailureDecision::Fail => (
                DeliveryStatus::Failed,
                delivery.retries,
                at,
                AttemptOutcome::Failed,
                Some(refusal(failure)),
            ),
            FailureDecision::Expire => (
                DeliveryStatus::Failed,
                delivery.retries,
                at,
                AttemptOutcome::Failed,
                Some(FailureReason::Expired),
            ),
        };
        let temporary = failure.is_transient() || is_rate_limit(failure);
        let mut via_platform = None;
        if own_server
            && temporary
            && status == DeliveryStatus::Retrying
            && let Some(fallback) = policy.fallback_at(delivery, at, next)
        {
            next = fallback;
            via_platform = Some(true);
        }
        Self {
            expected: DeliveryStatus::Sending,
            status,
            retries: Some(retries),
            next_attempt_at: next,
            sent_at: None,
            failure_reason: reason,
            attempt: Some(failed_attempt(failure, outcome, at)),
            via_platform,
        }
    }

    /// Sending it crashed inside Mailgate (a bug of ours, not the server's): tried again
    /// after a backoff like a temporary failure (one retry used), so it neither wedges its
    /// lane nor comes straight back; one that keeps crashing expires like any delivery that
    /// keeps failing. The attempt's stage is `INTERNAL`.
    pub fn crashed(
        retries: u32,
        created_at: DateTime<Utc>,
        policy: &RetryPolicy,
        at: DateTime<Utc>,
        jitter: f64,
    ) -> Self {
        let delay = chrono::Duration::from_std(policy.backoff(retries, jitter)).unwrap_or_default();
        Self::unsent(Unsent {
            stage: INTERNAL_STAGE,
            outcome: AttemptOutcome::Retry,
            retries,
            retries_then: retries.saturating_add(1),
            created_at,
            policy,
            at,
            next: at + delay,
        })
    }

    /// The tenant's saved settings cannot be read back, so nothing was sent: due again at
    /// `until` (the worker passes the time of the failure and moves the update to its
    /// back-off's end with [`Self::waiting_at_least_until`]), no retry used — it is not the mail's
    /// fault and waits for the settings to be saved again or cleared —, but one that is
    /// older than `policy.max_age` expires like any delivery that cannot go out. The
    /// attempt (stage `SETTINGS`) is what the tenant sees on the delivery.
    pub fn settings_unreadable(
        delivery: &Delivery,
        policy: &RetryPolicy,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Self {
        Self::unsent(Unsent {
            stage: SETTINGS_STAGE,
            outcome: AttemptOutcome::Deferred,
            retries: delivery.retries,
            retries_then: delivery.retries,
            created_at: delivery.created_at,
            policy,
            at,
            next: until.max(at),
        })
    }

    /// Nothing reached a server for a reason of Mailgate's own: due again at `next` with
    /// `retries_then` retries used, the attempt recorded as `outcome` at `stage`; or, once
    /// the delivery is older than the policy's maximum age, failed as expired.
    fn unsent(u: Unsent<'_>) -> Self {
        let age = (u.at - u.created_at).to_std().unwrap_or_default();
        let expired = age >= u.policy.max_age;
        let (status, retries, next, outcome) = if expired {
            (DeliveryStatus::Failed, u.retries, u.at, AttemptOutcome::Failed)
        } else {
            (DeliveryStatus::Retrying, u.retries_then, u.next, u.outcome)
        };
        Self {
            expected: DeliveryStatus::Sending,
            status,
            retries: Some(retries),
            next_attempt_at: next,
            sent_at: None,
            failure_reason: expired.then_some(FailureReason::Expired),
            attempt: Some(bare_attempt(u.at, outcome, u.stage)),
            via_platform: None,
        }
    }

    /// Whether `delivery`, just claimed, has been claimed too often in a row without an
    /// outcome; if so, [`DeliveryUpdate::abandoned`] is what follows instead of a send.
    pub fn is_abandoned(delivery: &Delivery) -> bool {
        delivery.claims > MAX_CLAIMS_WITHOUT_OUTCOME
    }

    /// Every recent claim of the delivery ended with its process before an outcome (a
    /// poison row that takes down whoever sends it, or a process that keeps dying): failed
    /// for good instead of taking the next process down, with an `INTERNAL` attempt.
    pub fn abandoned(delivery: &Delivery, at: DateTime<Utc>) -> Self {
        Self {
            expected: DeliveryStatus::Sending,
            status: DeliveryStatus::Failed,
            retries: Some(delivery.retries),
            next_attempt_at: at,
            sent_at: None,
            failure_reason: Some(FailureReason::Abandoned),
            attempt: Some(bare_attempt(at, AttemptOutcome::Failed, INTERNAL_STAGE)),
            via_platform: None,
        }
    }

    /// The delivery's tenant no longer exists: failed for good, nothing sent.
    pub fn tenant_missing(delivery: &Delivery, at: DateTime<Utc>) -> Self {
        Self {
            expected: DeliveryStatus::Sending,
            status: DeliveryStatus::Failed,
            retries: Some(delivery.retries),
            next_attempt_at: at,
            sent_at: None,
            failure_reason: Some(FailureReason::TenantMissing),
            attempt: Some(bare_attempt(at, AttemptOutcome::Failed, SendStage::Resolve.code())),
            via_platform: None,
        }
    }

    /// A claimed row could not be read back: failed for good, so it neither blocks the
    /// queue nor comes back when its lease runs out. Its retry count is left as stored.
    pub fn unreadable(at: DateTime<Utc>) -> Self {
        let reason = FailureReason::InvalidStoredData;
        Self {
            expected: DeliveryStatus::Sending,
            status: DeliveryStatus::Failed,
            retries: None,
            next_attempt_at: at,
            sent_at: None,
            attempt: Some(Attempt {
                at,
                outcome: AttemptOutcome::Failed,
                stage: None,
                smtp_code: None,
                enhanced_code: None,
                // No server said anything: the attempt names the code.
                server_message: Some(reason.code().code().to_owned()),
                sender_address: None,
                sender_source: None,
            }),
            failure_reason: Some(reason),
            via_platform: None,
        }
    }

    /// Given back unattempted (shutdown, or the tenant could not be loaded): due again at
    /// once, `QUEUED` if it never failed, `RETRYING` otherwise.
    pub fn released(retries: u32, at: DateTime<Utc>) -> Self {
        Self {
            expected: DeliveryStatus::Sending,
            status: if retries == 0 {
                DeliveryStatus::Queued
            } else {
                DeliveryStatus::Retrying
            },
            retries: Some(retries),
            next_attempt_at: at,
            sent_at: None,
            failure_reason: None,
            attempt: None,
            via_platform: None,
        }
    }

    /// Given back unattempted because its tenant's server cannot take it now (the
    /// tenant's pacing turn has not come, or its server is backing off): due at `until`,
    /// nothing recorded, no retry used.
    pub fn postponed(retries: u32, until: DateTime<Utc>) -> Self {
        Self {
            next_attempt_at: until,
            ..Self::released(retries, until)
        }
    }

    /// `d`, claimed while its tenant's mail waits, given back unattempted at place `n` of
    /// `schedule`: due then ([`Self::postponed`]). Where the schedule lets time-critical
    /// mail fall back ([`Postponement::falls_back`]: its server failed for a temporary
    /// reason), such mail ([`RetryPolicy::fallback_time`]) is held no later than its
    /// fallback time instead, and one claimed at or after it goes through the platform
    /// default at once. Returns the update and whether it took place `n` (the next
    /// delivery takes `n + 1`) rather than its fallback time.
    pub fn placed(
        d: &Delivery,
        schedule: &Postponement,
        n: u32,
        policy: &RetryPolicy,
        now: DateTime<Utc>,
    ) -> (Self, bool) {
        let at = schedule.at(n);
        let fallback = schedule.falls_back().then(|| policy.fallback_time(d)).flatten();
        match fallback {
            // Due times are kept in milliseconds: one claimed in the millisecond of its
            // fallback time is there.
            Some(f) if f.timestamp_millis() <= now.timestamp_millis() => (
                Self {
                    via_platform: Some(true),
                    ..Self::postponed(d.retries, now)
                },
                false,
            ),
            Some(f) if f < at => (Self::postponed(d.retries, f), false),
            _ => (Self::postponed(d.retries, at), true),
        }
    }

    /// A `FAILED` delivery put back in the queue by a person: retries reset, due at once.
    pub fn requeued(delivery: &Delivery, at: DateTime<Utc>) -> Result<Self, NotFailed> {
        if delivery.status != DeliveryStatus::Failed {
            return Err(NotFailed);
        }
        Ok(Self {
            expected: DeliveryStatus::Failed,
            status: DeliveryStatus::Queued,
            retries: Some(0),
            next_attempt_at: at,
            sent_at: None,
            failure_reason: None,
            attempt: None,
            via_platform: None,
        })
    }

    /// Whether a delivery that was tried on its tenant's own server waits, after this
    /// update, to be tried there again: due again, and not switched to the platform
    /// default in its place. Such a delivery can be the one that probes the server when
    /// its back-off ends.
    pub fn waits_for_own_server(&self) -> bool {
        matches!(self.status, DeliveryStatus::Queued | DeliveryStatus::Retrying) && self.via_platform != Some(true)
    }

    /// The same update, but a delivery it leaves waiting for its tenant's own server
    /// ([`Self::waits_for_own_server`]) is tried no sooner than `at`: the server backs off
    /// until then, and this delivery is the one that probes it then (the move of the
    /// tenant's other waiting mail, [`crate::delivery::Postponement::backing_off`], leaves
    /// a delivery due then where it is). With `fallback` (the delivery's
    /// [`RetryPolicy::fallback_time`], where the back-off lets it fall back), `at` is
    /// taken no later than that: claimed then while the server still backs off, it goes
    /// through the platform default ([`Self::placed`]). Never earlier than it was due.
    /// Any other update is unchanged.
    #[must_use]
    pub fn waiting_at_least_until(mut self, at: DateTime<Utc>, fallback: Option<DateTime<Utc>>) -> Self {
        if self.waits_for_own_server() && at > self.next_attempt_at {
            let at = fallback.map_or(at, |f| at.min(f));
            self.next_attempt_at = self.next_attempt_at.max(at);
        }
        self
    }

    /// The same update, but a delivery it leaves waiting is due no later than `at`: what
    /// held it back is gone (its tenant's settings were just suspended, and its mail goes
    /// through the platform default now). Any other update is unchanged.
    #[must_use]
    pub fn due_by(mut self, at: DateTime<Utc>) -> Self {
        if matches!(self.status, DeliveryStatus::Queued | DeliveryStatus::Retrying) && self.next_attempt_at > at {
            self.next_attempt_at = at;
        }
        self
    }

    /// The status the stored row must still have for this update to apply.
    pub fn expected(&self) -> DeliveryStatus {
        self.expected
    }
    pub fn status(&self) -> DeliveryStatus {
        self.status
    }
    /// The error retries used; `None`: leave the stored count as it is.
    pub fn retries(&self) -> Option<u32> {
        self.retries
    }
    pub fn next_attempt_at(&self) -> DateTime<Utc> {
        self.next_attempt_at
    }
    pub fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.sent_at
    }
    pub fn failure_reason(&self) -> Option<&FailureReason> {
        self.failure_reason.as_ref()
    }
    /// `Some(true)` when the delivery goes through the platform default from now on.
    pub fn via_platform(&self) -> Option<bool> {
        self.via_platform
    }
    /// The attempt to record with the change (none for a release or a requeue).
    pub fn attempt(&self) -> Option<&Attempt> {
        self.attempt.as_ref()
    }

    /// Whether its attempt is a retry or a deferral: from then on the delivery has been
    /// retried before ([`Delivery::retried_before`]).
    pub fn retries_or_defers(&self) -> bool {
        self.attempt
            .as_ref()
            .is_some_and(|a| matches!(a.outcome, AttemptOutcome::Retry | AttemptOutcome::Deferred))
    }

    /// `delivery` as this update leaves it (what a caller sees right after the write).
    pub fn applied_to(&self, mut delivery: Delivery) -> Delivery {
        delivery.status = self.status;
        if let Some(retries) = self.retries {
            delivery.retries = retries;
        }
        delivery.retried_before |= self.retries_or_defers();
        delivery.next_attempt_at = self.next_attempt_at;
        delivery.sent_at = self.sent_at;
        delivery.failure_reason = self.failure_reason.clone();
        if let Some(via) = self.via_platform {
            delivery.via_platform = via;
        }
        if let Some(attempt) = &self.attempt {
            delivery.attempts.push(attempt.clone());
        }
        delivery
    }
}

/// The attempt a failure is recorded as.
fn failed_attempt(failure: &SendFailure, outcome: AttemptOutcome, at: DateTime<Utc>) -> Attempt {
    Attempt {
        at,
        outcome,
        stage: Some(failure.stage.code().to_owned()),
        smtp_code: failure.smtp_code,
        enhanced_code: failure.enhanced_code.clone(),
        server_message: failure.server_message.clone(),
        sender_address: failure.sender.as_ref().map(|s| s.address.to_string()),
        sender_source: failure.sender.as_ref().map(|s| s.source),
    }
}

/// A short reason for a permanent failure: stage, reply code, and the server's reply
/// (already redacted by the mailer) or the kind of failure. No secrets.
fn refusal(failure: &SendFailure) -> FailureReason {
    let mut parts = vec![failure.stage.code().to_owned()];
    if let Some(code) = failure.smtp_code {
        parts.push(code.to_string());
    }
    match &failure.server_message {
        Some(m) => parts.push(m.clone()),
        None => parts.push(format!("{:?}", failure.kind)),
    }
    FailureReason::Refused(parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{FailureCode, NotificationKind, RenderedMessage};
    use crate::i18n::Locale;
    use crate::ids::MessageId;
    use crate::mail::{FailureKind, SendStage, Subject};
    use crate::tenant::TenantId;
    use crate::values::EmailAddress;

    /// A policy whose time-critical mail falls back 900 s after it was handed in, whatever
    /// the default.
    fn falling_back_after_15_minutes() -> RetryPolicy {
        RetryPolicy {
            fallback_after: Some(std::time::Duration::from_secs(900)),
            ..RetryPolicy::default()
        }
    }

    fn delivery(status: DeliveryStatus, retries: u32, created_at: DateTime<Utc>) -> Delivery {
        Delivery {
            status,
            retries,
            ..Delivery::queued(
                TenantId::generate(),
                NotificationKind::Custom,
                EmailAddress::parse("a@example.com").unwrap(),
                Locale::En,
                RenderedMessage {
                    subject: Subject::parse("s").unwrap(),
                    text: "t".into(),
                    html: None,
                },
                MessageId::generate("example.com"),
                created_at,
            )
        }
    }

    fn reply(code: u16, enhanced: &str, text: &str) -> SendFailure {
        SendFailure {
            smtp_code: Some(code),
            enhanced_code: Some(enhanced.into()),
            server_message: Some(text.into()),
            ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
        }
    }

    #[test]
    fn each_failure_leads_to_one_state() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let d = delivery(DeliveryStatus::Sending, 2, now);

        let retry = DeliveryUpdate::after_failure(&d, &reply(451, "4.3.0", "later"), &policy, now, 0.5);
        assert_eq!(retry.status(), DeliveryStatus::Retrying);
        assert_eq!(retry.retries(), Some(3));
        assert_eq!(retry.next_attempt_at(), now + chrono::Duration::seconds(120));
        assert_eq!(retry.attempt().map(|a| a.outcome), Some(AttemptOutcome::Retry));
        assert_eq!(retry.failure_reason(), None);

        let defer = DeliveryUpdate::after_failure(&d, &reply(421, "4.7.0", "slow down"), &policy, now, 0.5);
        assert_eq!((defer.status(), defer.retries()), (DeliveryStatus::Retrying, Some(2)));
        assert_eq!(defer.next_attempt_at(), now + chrono::Duration::seconds(60));
        assert_eq!(defer.attempt().map(|a| a.outcome), Some(AttemptOutcome::Deferred));

        let fail = DeliveryUpdate::after_failure(&d, &reply(550, "5.1.1", "no such user"), &policy, now, 0.5);
        assert_eq!(fail.status(), DeliveryStatus::Failed);
        assert_eq!(
            fail.failure_reason(),
            Some(&FailureReason::Refused("DATA 550 no such user".into()))
        );
        assert_eq!(fail.attempt().and_then(|a| a.stage.as_deref()), Some("DATA"));

        let old = delivery(DeliveryStatus::Sending, 9, now - chrono::Duration::days(4));
        let expired = DeliveryUpdate::after_failure(&old, &reply(451, "4.3.0", ""), &policy, now, 0.5);
        assert_eq!(expired.status(), DeliveryStatus::Failed);
        assert_eq!(expired.failure_reason(), Some(&FailureReason::Expired));
        assert_eq!(
            expired.failure_reason().map(FailureReason::code),
            Some(FailureCode::Expired)
        );

        let gone = DeliveryUpdate::tenant_missing(&d, now);
        assert_eq!(gone.status(), DeliveryStatus::Failed);
        assert_eq!(gone.failure_reason(), Some(&FailureReason::TenantMissing));
        for u in [&retry, &defer, &fail, &expired, &gone] {
            assert_eq!(u.expected(), DeliveryStatus::Sending);
        }
    }

    #[test]
    fn a_crash_is_retried_later_and_expires_like_a_failure() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let crashed = DeliveryUpdate::crashed(1, now, &policy, now, 0.5);
        assert_eq!(
            (crashed.status(), crashed.retries()),
            (DeliveryStatus::Retrying, Some(2))
        );
        assert_eq!(crashed.next_attempt_at(), now + chrono::Duration::seconds(60));
        assert_eq!(crashed.attempt().and_then(|a| a.stage.as_deref()), Some("INTERNAL"));
        let old = DeliveryUpdate::crashed(9, now - chrono::Duration::days(4), &policy, now, 0.5);
        assert_eq!(old.status(), DeliveryStatus::Failed);
        assert_eq!(old.failure_reason(), Some(&FailureReason::Expired));
    }

    #[test]
    fn unreadable_settings_wait_without_using_retries_and_expire_when_old() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(4);
        let d = delivery(DeliveryStatus::Sending, 2, now);
        let wait = DeliveryUpdate::settings_unreadable(&d, &policy, now, later);
        assert_eq!((wait.status(), wait.retries()), (DeliveryStatus::Retrying, Some(2)));
        assert_eq!(wait.next_attempt_at(), later);
        let attempt = wait.attempt().unwrap();
        assert_eq!(
            (attempt.outcome, attempt.stage.as_deref()),
            (AttemptOutcome::Deferred, Some("SETTINGS"))
        );
        let old = delivery(DeliveryStatus::Sending, 0, now - chrono::Duration::days(4));
        let expired = DeliveryUpdate::settings_unreadable(&old, &policy, now, later);
        assert_eq!(expired.status(), DeliveryStatus::Failed);
        assert_eq!(expired.failure_reason(), Some(&FailureReason::Expired));
    }

    #[test]
    fn a_delivery_whose_claims_keep_ending_without_an_outcome_is_abandoned() {
        let now = Utc::now();
        let mut d = delivery(DeliveryStatus::Sending, 1, now);
        d.claims = MAX_CLAIMS_WITHOUT_OUTCOME;
        assert!(!DeliveryUpdate::is_abandoned(&d), "the last claim allowed");
        d.claims += 1;
        assert!(DeliveryUpdate::is_abandoned(&d));
        let gone = DeliveryUpdate::abandoned(&d, now);
        assert_eq!((gone.status(), gone.retries()), (DeliveryStatus::Failed, Some(1)));
        assert_eq!(gone.failure_reason(), Some(&FailureReason::Abandoned));
        assert_eq!(gone.attempt().and_then(|a| a.stage.as_deref()), Some("INTERNAL"));
    }

    #[test]
    fn release_and_requeue() {
        let now = Utc::now();
        assert_eq!(DeliveryUpdate::released(0, now).status(), DeliveryStatus::Queued);
        let again = DeliveryUpdate::released(3, now);
        assert_eq!((again.status(), again.retries()), (DeliveryStatus::Retrying, Some(3)));
        assert!(again.attempt().is_none());

        let sending = delivery(DeliveryStatus::Sending, 1, now);
        assert_eq!(DeliveryUpdate::requeued(&sending, now), Err(NotFailed));
        let mut failed = delivery(DeliveryStatus::Failed, 4, now);
        failed.failure_reason = Some(FailureReason::Expired);
        let requeue = DeliveryUpdate::requeued(&failed, now).unwrap();
        assert_eq!(requeue.expected(), DeliveryStatus::Failed);
        let after = requeue.applied_to(failed);
        assert_eq!(
            (after.status, after.retries, after.failure_reason),
            (DeliveryStatus::Queued, 0, None)
        );

        let unreadable = DeliveryUpdate::unreadable(now);
        assert_eq!(unreadable.retries(), None);
        assert_eq!(
            unreadable.failure_reason().map(FailureReason::code),
            Some(FailureCode::InvalidStoredData)
        );
    }

    #[test]
    fn reasons_read_back_as_written() {
        for r in [
            FailureReason::Expired,
            FailureReason::TenantMissing,
            FailureReason::InvalidStoredData,
            FailureReason::Abandoned,
            FailureReason::Refused("RCPT 550 no".into()),
        ] {
            assert_eq!(FailureReason::from_parts(r.code(), r.detail()), r);
            assert_eq!(FailureReason::from_legacy_text(r.legacy_text()), r);
            assert_eq!(FailureCode::from_code(r.code().code()), Some(r.code()));
        }
    }

    fn on(source: SenderSource, mut f: SendFailure) -> SendFailure {
        f.sender = Some(crate::mail::SenderUsed {
            address: EmailAddress::parse("shop@example.jp").unwrap(),
            name: None,
            source,
        });
        f
    }

    fn auth_refused() -> SendFailure {
        SendFailure {
            stage: SendStage::Auth,
            ..reply(535, "5.7.8", "Authentication credentials invalid")
        }
    }

    #[test]
    fn a_configuration_failure_on_the_tenants_server_waits_and_never_fails_the_mail() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let d = delivery(DeliveryStatus::Sending, 2, now);
        let own = DeliveryUpdate::after_failure(&d, &on(SenderSource::Custom, auth_refused()), &policy, now, 0.5);
        assert_eq!(own.status(), DeliveryStatus::Retrying);
        assert_eq!(own.retries(), Some(2), "no retry used");
        assert!(own.next_attempt_at() > now);
        assert_eq!(own.attempt().unwrap().outcome, AttemptOutcome::Deferred);
        assert_eq!(own.attempt().unwrap().smtp_code, Some(535));
        let old = delivery(DeliveryStatus::Sending, 2, now - chrono::Duration::days(4));
        let expired = DeliveryUpdate::after_failure(&old, &on(SenderSource::Custom, auth_refused()), &policy, now, 0.5);
        assert_eq!(expired.failure_reason(), Some(&FailureReason::Expired));
        // The platform relay refusing is the operator's problem: fails as before.
        let relay = DeliveryUpdate::after_failure(
            &d,
            &on(SenderSource::PlatformDefault, auth_refused()),
            &policy,
            now,
            0.5,
        );
        assert_eq!(relay.status(), DeliveryStatus::Failed);
        // Without suspension there is nothing to wait for.
        let off = RetryPolicy {
            configuration_failures_wait: false,
            ..policy
        };
        let failed = DeliveryUpdate::after_failure(&d, &on(SenderSource::Custom, auth_refused()), &off, now, 0.5);
        assert_eq!(failed.status(), DeliveryStatus::Failed);
    }

    #[test]
    fn time_critical_mail_falls_back_to_the_platform_once_at_its_time() {
        let policy = falling_back_after_15_minutes();
        let created = Utc::now();
        let timeout = || {
            on(
                SenderSource::Custom,
                SendFailure::new(SendStage::Greeting, FailureKind::TimedOut),
            )
        };
        let mut d = delivery(DeliveryStatus::Sending, 0, created);
        d.kind = NotificationKind::PasswordReset;
        // Early on, it retries on the tenant's server.
        let early = DeliveryUpdate::after_failure(&d, &timeout(), &policy, created, 0.5);
        assert_eq!(early.via_platform(), None);
        // A retry that would come after the fallback time is moved to it, via the platform.
        d.retries = 5;
        let at = created + chrono::Duration::seconds(800);
        let late = DeliveryUpdate::after_failure(&d, &timeout(), &policy, at, 0.5);
        assert_eq!(late.via_platform(), Some(true));
        assert_eq!(late.next_attempt_at(), created + chrono::Duration::seconds(900));
        // It goes through the platform now: it probes nothing of the tenant's server and
        // does not wait for its back-off.
        assert!(early.waits_for_own_server());
        assert!(!late.waits_for_own_server());
        let backing_off_until = created + chrono::Duration::hours(2);
        assert_eq!(
            late.clone()
                .waiting_at_least_until(backing_off_until, None)
                .next_attempt_at(),
            late.next_attempt_at()
        );
        assert_eq!(late.status(), DeliveryStatus::Retrying);
        // Past the time it goes at once; once fallen back it stays so (nothing to decide).
        let past = created + chrono::Duration::seconds(1000);
        let now = DeliveryUpdate::after_failure(&d, &timeout(), &policy, past, 0.5);
        assert_eq!(now.next_attempt_at(), past);
        d.via_platform = true;
        assert_eq!(
            DeliveryUpdate::after_failure(&d, &timeout(), &policy, past, 0.5).via_platform(),
            None
        );
        // CUSTOM mail keeps retrying on the tenant's server; 0 (None) turns it off.
        let mut custom = delivery(DeliveryStatus::Sending, 5, created);
        custom.kind = NotificationKind::Custom;
        assert_eq!(
            DeliveryUpdate::after_failure(&custom, &timeout(), &policy, past, 0.5).via_platform(),
            None
        );
        let never = RetryPolicy {
            fallback_after: None,
            ..policy
        };
        d.via_platform = false;
        assert_eq!(
            DeliveryUpdate::after_failure(&d, &timeout(), &never, past, 0.5).via_platform(),
            None
        );
        // A permanent refusal is not waited out on another route.
        let refused = on(
            SenderSource::Custom,
            SendFailure {
                stage: SendStage::RcptTo,
                ..reply(550, "5.1.1", "no such user")
            },
        );
        assert_eq!(
            DeliveryUpdate::after_failure(&d, &refused, &policy, past, 0.5).status(),
            DeliveryStatus::Failed
        );
    }

    #[test]
    fn a_waiting_delivery_probes_a_backing_off_server_at_its_time_and_no_other_is_moved() {
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        let released = DeliveryUpdate::released(2, now);
        assert_eq!(
            released.clone().waiting_at_least_until(later, None).next_attempt_at(),
            later
        );
        // Never earlier than it was.
        let far = now + chrono::Duration::hours(1);
        assert_eq!(
            DeliveryUpdate::postponed(0, far)
                .waiting_at_least_until(later, None)
                .next_attempt_at(),
            far
        );
        // An update that does not leave the delivery waiting keeps its time.
        let gone = DeliveryUpdate::unreadable(now);
        assert!(!gone.waits_for_own_server());
        assert_eq!(gone.clone().waiting_at_least_until(later, Some(now)), gone);
        // Brought forward, never put back; a finished delivery keeps its time.
        assert_eq!(DeliveryUpdate::postponed(0, far).due_by(later).next_attempt_at(), later);
        assert_eq!(released.clone().due_by(later), released);
        assert_eq!(gone.clone().due_by(now - chrono::Duration::hours(1)), gone);
    }

    #[test]
    fn time_critical_mail_is_not_held_behind_a_backing_off_server_past_its_fallback_time() {
        let policy = falling_back_after_15_minutes();
        let created = Utc::now();
        let fallback = created + chrono::Duration::seconds(900);
        let until = created + chrono::Duration::hours(1);
        let hold = std::time::Duration::from_secs(180);
        let down = Postponement::backing_off(until, hold, true);
        let mut urgent = delivery(DeliveryStatus::Sending, 1, created);
        urgent.kind = NotificationKind::PasswordReset;
        assert_eq!(policy.fallback_time(&urgent), Some(fallback));
        // Claimed early in the back-off: due at its fallback time, still for its server
        // (which may come back before then and take it), and it takes no place.
        let (early, placed) = DeliveryUpdate::placed(&urgent, &down, 0, &policy, created);
        assert_eq!((early.next_attempt_at(), placed), (fallback, false));
        assert_eq!(early.via_platform(), None);
        assert_eq!(early.retries(), Some(1), "no retry used");
        assert!(early.attempt().is_none(), "nothing recorded");
        // A back-off that ends before the fallback time holds it as any other mail.
        let short = created + chrono::Duration::seconds(60);
        let brief = Postponement::backing_off(short, hold, true);
        assert_eq!(
            DeliveryUpdate::placed(&urgent, &brief, 0, &policy, created),
            (DeliveryUpdate::postponed(1, short), true)
        );
        // Claimed at or after its fallback time (in its millisecond too) while the server
        // still backs off: through the platform default, at once.
        let its_millisecond = DateTime::from_timestamp_millis(fallback.timestamp_millis()).unwrap();
        for late in [its_millisecond, fallback, fallback + chrono::Duration::seconds(5)] {
            let (now, placed) = DeliveryUpdate::placed(&urgent, &down, 3, &policy, late);
            assert_eq!(
                (now.next_attempt_at(), now.via_platform(), placed),
                (late, Some(true), false)
            );
            assert_eq!(now.status(), DeliveryStatus::Retrying);
        }
        let late = fallback + chrono::Duration::seconds(5);
        // Other mail, mail already going through the platform, a policy without a
        // fallback, and schedules that do not fall back (a pacing turn, a lane in the
        // line, settings that failed) hold it at its place.
        let mut custom = urgent.clone();
        custom.kind = NotificationKind::Custom;
        let mut via = urgent.clone();
        via.via_platform = true;
        let never = RetryPolicy {
            fallback_after: None,
            ..policy
        };
        for (d, policy) in [(&custom, &policy), (&via, &policy), (&urgent, &never)] {
            assert_eq!(policy.fallback_time(d), None);
            assert_eq!(
                DeliveryUpdate::placed(d, &down, 1, policy, late),
                (DeliveryUpdate::postponed(1, down.at(1)), true)
            );
        }
        for waits in [
            Postponement::until_turn(until, hold),
            Postponement::until_a_lane(until),
            Postponement::backing_off(until, hold, false),
        ] {
            assert_eq!(
                DeliveryUpdate::placed(&urgent, &waits, 2, &policy, late),
                (DeliveryUpdate::postponed(1, waits.at(2)), true)
            );
        }
        // The delivery whose failure started the back-off probes the server at its end,
        // or at its fallback time if that comes first; never earlier than it was due.
        let retry = DeliveryUpdate::postponed(1, created + chrono::Duration::seconds(30));
        assert_eq!(
            retry
                .clone()
                .waiting_at_least_until(until, Some(fallback))
                .next_attempt_at(),
            fallback
        );
        assert_eq!(
            retry
                .clone()
                .waiting_at_least_until(short, Some(fallback))
                .next_attempt_at(),
            short
        );
        let past = created - chrono::Duration::seconds(1);
        assert_eq!(
            retry
                .clone()
                .waiting_at_least_until(until, Some(past))
                .next_attempt_at(),
            retry.next_attempt_at()
        );
    }
}
