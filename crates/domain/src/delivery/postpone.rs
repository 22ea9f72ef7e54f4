//! Moving a tenant's waiting mail to when its server can take it, instead of letting it
//! hold a lane, a connection or a claim while it waits.
//!
//! Two things make a tenant's mail wait: its send interval (the next turn has not come)
//! and a server that cannot be reached (it is backing off). Either way the tenant's
//! deliveries that are due now are moved, in their order, onto a schedule:
//! - for a turn: `turn`, `turn + interval`, `turn + 2 × interval`, …, so a paced tenant's
//!   queue comes due one turn at a time (each claim finds only what may go out);
//! - for a backoff: the first at `until` (it probes the server), the rest a hold later, so
//!   a tenant whose server is still down does not bring its whole queue back into every
//!   claim; when the probe goes through, the rest is brought back at once.
//!
//! Nothing is attempted, nothing recorded, no retry used. Time-critical mail is the one
//! exception to moving in order behind a server that failed for a temporary reason: it
//! never waits there past its fallback time (see [`Postponement::moves`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::NotificationKind;

/// Where a tenant's waiting deliveries go: place 0 at `from`, place `n ≥ 1` at
/// `from + rest_after + n × spacing`; `skip` places are already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Postponement {
    from: DateTime<Utc>,
    spacing: Duration,
    rest_after: Duration,
    skip: u32,
    /// Time-critical mail does not wait past its fallback time (the tenant's server
    /// failed for a temporary reason).
    falls_back: bool,
}

fn later(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::days(365))
}

impl Postponement {
    /// The tenant's next pacing turn is at `turn`; one mail per `interval` after that.
    pub fn until_turn(turn: DateTime<Utc>, interval: Duration) -> Self {
        Self {
            from: turn,
            spacing: interval,
            rest_after: Duration::ZERO,
            skip: 0,
            falls_back: false,
        }
    }

    /// No lane is free for the tenant until `at` (its turn in the line of tenants whose
    /// servers are not yet proven): all its mail then. Its server has not failed, so
    /// time-critical mail waits like the rest.
    pub fn until_a_lane(at: DateTime<Utc>) -> Self {
        Self::until_turn(at, Duration::ZERO)
    }

    /// The tenant's server is backing off until `until`: one mail then to probe it, the
    /// rest `hold` later (or as soon as the probe goes through). `falls_back`: it failed
    /// for a temporary reason (it could not be reached, or asked to slow down), so
    /// time-critical mail does not wait past its fallback time; false when its settings
    /// are what failed (refused, or unreadable), which the platform default waits out too.
    pub fn backing_off(until: DateTime<Utc>, hold: Duration, falls_back: bool) -> Self {
        Self {
            from: until,
            spacing: Duration::ZERO,
            rest_after: hold,
            skip: 0,
            falls_back,
        }
    }

    /// Whether time-critical mail on this schedule is held no later than its fallback
    /// time ([`super::DeliveryUpdate::placed`]).
    pub fn falls_back(&self) -> bool {
        self.falls_back
    }

    /// Whether a waiting delivery of `kind` moves onto the schedule with the tenant's
    /// other mail. Time-critical mail does not move behind a server that failed for a
    /// temporary reason: it stays where it is, and when it is claimed it is given back due
    /// no later than its fallback time, from which it goes through the platform default
    /// ([`super::DeliveryUpdate::placed`]).
    pub fn moves(&self, kind: NotificationKind) -> bool {
        !(self.falls_back && kind.is_time_critical())
    }

    /// The kinds that stay where they are ([`Self::moves`]).
    pub fn kinds_left_alone(&self) -> impl Iterator<Item = NotificationKind> + '_ {
        NotificationKind::ALL.into_iter().filter(|k| !self.moves(*k))
    }

    /// Mail due before this is moved; the first place of the schedule.
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The time between two mails after the first.
    pub fn spacing(&self) -> Duration {
        self.spacing
    }

    /// How much later than the first the second place is (beyond the spacing).
    pub fn rest_after(&self) -> Duration {
        self.rest_after
    }

    /// Places already taken.
    pub fn skip(&self) -> u32 {
        self.skip
    }

    /// When the `n`-th mail (from 0) of the schedule is due.
    pub fn at(&self, n: u32) -> DateTime<Utc> {
        let place = n.saturating_add(self.skip);
        if place == 0 {
            return self.from;
        }
        later(later(self.from, self.rest_after), self.spacing.saturating_mul(place))
    }

    /// The same schedule with its first `n` places taken (they went to mail handled
    /// elsewhere, e.g. deliveries this worker held and gave back).
    pub fn after(&self, n: u32) -> Self {
        Self {
            skip: self.skip.saturating_add(n),
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_queue_comes_due_one_turn_at_a_time() {
        let t = Utc::now();
        let p = Postponement::until_turn(t, Duration::from_secs(60));
        assert_eq!(p.at(0), t);
        assert_eq!(p.at(3), t + chrono::Duration::seconds(180));
        assert_eq!(p.after(2).at(0), t + chrono::Duration::seconds(120));
    }

    #[test]
    fn a_backing_off_queue_sends_one_probe_first() {
        let t = Utc::now();
        let b = Postponement::backing_off(t, Duration::from_secs(60), true);
        let hold = t + chrono::Duration::seconds(60);
        assert_eq!((b.at(0), b.at(1), b.at(500)), (t, hold, hold));
        assert_eq!(b.after(1).at(0), hold, "the probe's place is taken");
    }

    #[test]
    fn time_critical_mail_moves_with_a_pacing_turn_but_not_behind_a_failed_server() {
        let t = Utc::now();
        let hold = Duration::from_secs(60);
        let down = Postponement::backing_off(t, hold, true);
        assert!(down.moves(NotificationKind::Custom));
        assert_eq!(
            down.kinds_left_alone().collect::<Vec<_>>(),
            vec![NotificationKind::RegistrationCompleted, NotificationKind::PasswordReset]
        );
        assert!(down.after(3).falls_back());
        for waits in [
            Postponement::until_turn(t, hold),
            Postponement::until_a_lane(t),
            Postponement::backing_off(t, hold, false),
        ] {
            assert!(NotificationKind::ALL.iter().all(|k| waits.moves(*k)));
            assert_eq!(waits.kinds_left_alone().count(), 0);
            assert!(!waits.falls_back());
        }
        let lane = Postponement::until_a_lane(t);
        assert_eq!((lane.at(0), lane.at(9)), (t, t));
    }
}
