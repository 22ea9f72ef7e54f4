//! When a message that did not get a 2xx answer is tried again: a fixed schedule with a
//! little jitter, about three and a half days in all, then `FAILED` (an operator can
//! replay it). A message is delivered at least once: a process that dies mid-attempt
//! leaves it `SENDING` under a lease, and it is tried again once the lease runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{MessageStatus, WebhookAttempt};

/// The waits after the 1st, 2nd, … failed attempt: 11 attempts in all.
pub const RETRY_SCHEDULE: [Duration; 10] = [
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The new state of a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUpdate {
    pub status: MessageStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt: WebhookAttempt,
}

impl MessageUpdate {
    /// What follows `attempt`, the message's attempt number `attempts_before + 1`.
    /// `jitter` in `0.0..1.0` spreads the wait by up to ±10 % (none on the first wait).
    pub fn after(attempts_before: u32, attempt: WebhookAttempt, jitter: f64) -> Self {
        let attempts = attempts_before.saturating_add(1);
        let at = attempt.at;
        if attempt.succeeded() {
            return Self {
                status: MessageStatus::Delivered,
                attempts,
                next_attempt_at: at,
                delivered_at: Some(at),
                attempt,
            };
        }
        let wait = usize::try_from(attempts_before)
            .ok()
            .and_then(|n| RETRY_SCHEDULE.get(n))
            .copied();
        match wait {
            Some(wait) => {
                let spread = if attempts_before == 0 {
                    1.0
                } else {
                    0.9 + 0.2 * jitter.clamp(0.0, 1.0)
                };
                let wait = chrono::Duration::from_std(wait.mul_f64(spread)).unwrap_or_default();
                Self {
                    status: MessageStatus::Pending,
                    attempts,
                    next_attempt_at: at + wait,
                    delivered_at: None,
                    attempt,
                }
            }
            None => Self {
                status: MessageStatus::Failed,
                attempts,
                next_attempt_at: at,
                delivered_at: None,
                attempt,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::AttemptError;

    fn attempt(code: Option<u16>, error: Option<AttemptError>) -> WebhookAttempt {
        WebhookAttempt {
            at: Utc::now(),
            status_code: code,
            error,
            duration_ms: 3,
            response_excerpt: None,
        }
    }

    #[test]
    fn schedule_then_failed() {
        let ok = MessageUpdate::after(0, attempt(Some(204), None), 0.5);
        assert_eq!(ok.status, MessageStatus::Delivered);
        let first = MessageUpdate::after(0, attempt(Some(500), Some(AttemptError::HttpStatus)), 0.9);
        assert_eq!(first.status, MessageStatus::Pending);
        assert_eq!((first.next_attempt_at - first.attempt.at).num_seconds(), 5);
        let total: u64 = RETRY_SCHEDULE.iter().map(Duration::as_secs).sum();
        assert!(total > 3 * 24 * 3600, "retried for days");
        let last = MessageUpdate::after(10, attempt(None, Some(AttemptError::TimedOut)), 0.5);
        assert_eq!((last.status, last.attempts), (MessageStatus::Failed, 11));
        let redirect = MessageUpdate::after(0, attempt(Some(302), Some(AttemptError::HttpStatus)), 0.5);
        assert_eq!(redirect.status, MessageStatus::Pending);
    }
}
