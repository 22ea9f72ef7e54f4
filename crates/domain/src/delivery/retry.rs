//! How failures are retried: exponential backoff with jitter, a longer pause when the
//! server asks us to slow down, and an age after which a delivery is given up.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::mail::{FailureKind, SendFailure};

/// How failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry delay; doubled each time.
    pub base: Duration,
    /// Longest delay between tries.
    pub max_delay: Duration,
    /// After this age a delivery that still fails is `FAILED` with reason `expired`.
    pub max_age: Duration,
    /// Delay after a rate-limit reply.
    pub defer: Duration,
    /// A configuration failure on the tenant's own server (see
    /// [`crate::mail::is_configuration_failure`]) waits for its settings version to be
    /// suspended (then it goes through the platform default) instead of failing the mail.
    /// False when suspension is off: such a failure then fails the mail like any refusal.
    pub configuration_failures_wait: bool,
    /// Time-critical mail ([`super::NotificationKind::is_time_critical`]) that the
    /// tenant's server has not taken this long after it was handed in, for a temporary
    /// reason, goes through the platform default (`None`: never).
    pub fallback_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(3 * 24 * 3600),
            defer: Duration::from_secs(60),
            configuration_failures_wait: true,
            fallback_after: Some(Duration::from_secs(900)),
        }
    }
}

/// What to do after a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDecision {
    /// Try again after this delay; uses up one error retry.
    Retry(Duration),
    /// The server asked us to slow down: try again after this delay, no retry used.
    Defer(Duration),
    /// Never retried.
    Fail,
    /// Too old to retry.
    Expire,
}

/// Whether a reply says "slow down" rather than "error" (or the destination host's
/// connections are all taken: the same, said by us).
pub fn is_rate_limit(failure: &SendFailure) -> bool {
    if failure.kind == FailureKind::HostBusy {
        return true;
    }
    let Some(code) = failure.smtp_code else {
        return false;
    };
    let text = failure.server_message.as_deref().unwrap_or("").to_ascii_lowercase();
    let enhanced = failure.enhanced_code.as_deref().unwrap_or("");
    code == 421
        || (matches!(code, 450 | 451 | 452 | 454)
            && (enhanced.starts_with("4.7.") || text.contains("rate") || text.contains("too many")))
}

/// Whether every other mail to the same server would meet this failure too, so the
/// tenant's other waiting mail should wait as well instead of each trying and failing in
/// turn: the server asked to slow down, or it could not be reached or talked to before any
/// mail started (resolve, connect, greeting, TLS, EHLO, POP login, AUTH, or the whole
/// send's deadline) for a reason that may pass. A refusal of one mail (at MAIL FROM, RCPT
/// TO or DATA) is about that mail only.
pub fn is_server_wide(failure: &SendFailure) -> bool {
    use crate::mail::SendStage::*;
    if is_rate_limit(failure) {
        return true;
    }
    failure.is_transient()
        && matches!(
            failure.stage,
            Resolve | Connect | Greeting | Tls | Ehlo | PopLogin | Auth | Timeout
        )
}

impl RetryPolicy {
    /// Exponential backoff with ±20 % jitter (`jitter` in 0..1).
    pub fn backoff(&self, retries: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(retries.min(20)));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }

    /// When `d` stops waiting for its tenant's own server and goes through the platform
    /// default instead: its fallback time, if it is time-critical and not already going
    /// through the platform default (`None`: it waits for its server as long as it takes).
    pub fn fallback_time(&self, d: &super::Delivery) -> Option<DateTime<Utc>> {
        if d.via_platform || !d.kind.is_time_critical() {
            return None;
        }
        Some(d.created_at + chrono::Duration::from_std(self.fallback_after?).ok()?)
    }

    /// When `d`, which would be tried again at `next` on the tenant's own server, should
    /// go through the platform default instead: at its fallback time
    /// ([`Self::fallback_time`]), if `next` is not earlier (never before `now`).
    pub fn fallback_at(&self, d: &super::Delivery, now: DateTime<Utc>, next: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let due = self.fallback_time(d)?;
        (next >= due).then(|| due.max(now))
    }

    /// Decides what follows a failure of a delivery created at `created_at`.
    pub fn decide(
        &self,
        failure: &SendFailure,
        retries: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> FailureDecision {
        let transient = failure.is_transient() || is_rate_limit(failure);
        if !transient || failure.kind == FailureKind::InvalidMessage {
            return FailureDecision::Fail;
        }
        let age = (now - created_at).to_std().unwrap_or_default();
        if age >= self.max_age {
            return FailureDecision::Expire;
        }
        if is_rate_limit(failure) {
            return FailureDecision::Defer(self.defer.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)));
        }
        FailureDecision::Retry(self.backoff(retries, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{FailureKind, SendFailure, SendStage};

    #[test]
    fn retry_decisions() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let reply = |code: u16, enh: &str, text: &str| SendFailure {
            smtp_code: Some(code),
            enhanced_code: Some(enh.into()),
            server_message: Some(text.into()),
            ..SendFailure::new(SendStage::Data, FailureKind::Rejected)
        };
        assert!(matches!(
            p.decide(&reply(451, "4.3.0", "try later"), 0, now, now, 0.5),
            FailureDecision::Retry(_)
        ));
        assert_eq!(
            p.decide(&reply(550, "5.1.1", "no such user"), 0, now, now, 0.5),
            FailureDecision::Fail
        );
        assert!(matches!(
            p.decide(&reply(421, "4.7.0", "slow down"), 0, now, now, 0.5),
            FailureDecision::Defer(_)
        ));
        assert!(matches!(
            p.decide(&reply(450, "4.2.1", "Too many messages"), 0, now, now, 0.5),
            FailureDecision::Defer(_)
        ));
        let old = now - chrono::Duration::days(4);
        assert_eq!(
            p.decide(&reply(451, "4.3.0", ""), 3, old, now, 0.5),
            FailureDecision::Expire
        );
        let net = SendFailure::new(SendStage::Connect, FailureKind::ConnectionRefused);
        assert!(matches!(p.decide(&net, 0, now, now, 0.5), FailureDecision::Retry(_)));
        let busy = SendFailure::new(SendStage::Connect, FailureKind::HostBusy);
        assert!(
            matches!(p.decide(&busy, 0, now, now, 0.5), FailureDecision::Defer(_)),
            "the host's connections are all taken: no retry used"
        );
        assert!(is_server_wide(&busy), "the tenant's other mail waits too");
        assert_eq!(p.backoff(0, 0.5), Duration::from_secs(30));
        assert_eq!(p.backoff(30, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn which_failures_hold_up_the_whole_server() {
        let at = |stage, kind| SendFailure::new(stage, kind);
        assert!(is_server_wide(&at(SendStage::Greeting, FailureKind::TimedOut)));
        assert!(is_server_wide(&at(SendStage::Connect, FailureKind::ConnectionRefused)));
        assert!(is_server_wide(&at(SendStage::Timeout, FailureKind::TimedOut)));
        assert!(is_server_wide(&at(SendStage::Ehlo, FailureKind::ProtocolViolation)));
        let reply = |stage, code: u16, enh: &str| SendFailure {
            smtp_code: Some(code),
            enhanced_code: Some(enh.into()),
            server_message: Some("x".into()),
            ..SendFailure::new(stage, FailureKind::Rejected)
        };
        assert!(is_server_wide(&reply(SendStage::RcptTo, 421, "4.7.0")), "slow down");
        assert!(
            is_server_wide(&reply(SendStage::Greeting, 451, "4.3.2")),
            "busy at greeting"
        );
        assert!(
            !is_server_wide(&reply(SendStage::RcptTo, 451, "4.2.0")),
            "one mailbox is busy"
        );
        assert!(
            !is_server_wide(&reply(SendStage::RcptTo, 550, "5.1.1")),
            "one recipient"
        );
        assert!(
            !is_server_wide(&reply(SendStage::Auth, 535, "5.7.8")),
            "permanent: fails fast"
        );
        assert!(
            !is_server_wide(&at(SendStage::Data, FailureKind::Network)),
            "broke mid-mail"
        );
    }
}
