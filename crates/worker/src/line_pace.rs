//! How fast the line of the side and on-record budgets moves, and so how long a tenant
//! that found it full waits before it comes back: the line gains a place each time one of
//! those budgets' lanes ends, so the k-th tenant sent back returns after about k lane ends.
//! Tenants sent back one after another are promised returns one after another, at the
//! pace the lanes ended lately; none waits longer than [`SIDE_WAIT`] (the line has not
//! moved for that long: its servers are slow or never answer).
//!
//! A fixed wait left the CPU idle: after a start, a claim brings thousands of new tenants
//! before the first lane has ended, and those beyond the line all waited [`SIDE_WAIT`]
//! while the line emptied in a fraction of it.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::postpone::SIDE_WAIT;

/// Returns are promised on a grid of this step, so tenants sent back together come back
/// together, in one claim (and one wake of the claim loop), not one claim each.
pub(crate) const RETURN_STEP: Duration = Duration::from_millis(50);

/// Lane ends remembered at most (the pace is read from the ones within [`SIDE_WAIT`]).
const ENDS_KEPT: usize = 256;

/// The recent lane ends of the side and on-record budgets, and the last return promised.
#[derive(Debug, Default)]
pub(crate) struct LinePace {
    ends: VecDeque<DateTime<Utc>>,
    /// When a lane last ended, or when one started while none ran: nothing has ended
    /// since then.
    moved: Option<DateTime<Utc>>,
    promised: Option<DateTime<Utc>>,
}

impl LinePace {
    /// A lane of those budgets started; `idle` when none was running. After an idle
    /// spell (a step or more since the last end) the ends before it say nothing of the
    /// lanes now: the pace starts afresh. A moment at zero between two claims is no spell.
    pub(crate) fn started(&mut self, now: DateTime<Utc>, idle: bool) {
        let step = chrono::Duration::from_std(RETURN_STEP).unwrap_or_default();
        if idle && self.moved.is_none_or(|m| now - m >= step) {
            self.ends.clear();
            self.moved = Some(now);
        }
    }

    /// A lane of those budgets ended.
    pub(crate) fn ended(&mut self, now: DateTime<Utc>) {
        if self.ends.len() >= ENDS_KEPT {
            self.ends.pop_front();
        }
        self.ends.push_back(now);
        self.moved = Some(now);
    }

    /// How long a tenant that finds the line full waits, with `running` lanes of those
    /// budgets busy: one lane end after the return promised last (or after now), on the
    /// [`RETURN_STEP`] grid, at least a step and at most [`SIDE_WAIT`].
    pub(crate) fn wait(&mut self, now: DateTime<Utc>, running: usize) -> Duration {
        let window = chrono::Duration::from_std(SIDE_WAIT).unwrap_or_default();
        while self.ends.front().is_some_and(|e| *e < now - window) {
            self.ends.pop_front();
        }
        // Ends per second lately: those within the window over the time since the first
        // of them; with none, the busy lanes over the time nothing has ended (they end no
        // sooner than that, so the guess only grows while nothing moves).
        let (ends, since) = match self.ends.front() {
            Some(first) => (self.ends.len(), *first),
            None => (running.max(1), self.moved.unwrap_or(now)),
        };
        let span = (now - since).max(chrono::Duration::milliseconds(1));
        let between = span / i32::try_from(ends).unwrap_or(i32::MAX);
        let latest = now + window;
        let after = self.promised.filter(|p| *p > now).unwrap_or(now);
        let promised = (after + between).min(latest);
        self.promised = Some(promised);
        let step = chrono::Duration::from_std(RETURN_STEP).unwrap_or_default();
        // On the grid; at the cap, the last grid time within it.
        let returns = on_grid(promised.max(now + step));
        let returns = if returns > latest {
            on_grid(latest) - step
        } else {
            returns
        };
        (returns - now)
            .to_std()
            .unwrap_or(RETURN_STEP)
            .clamp(RETURN_STEP, SIDE_WAIT)
    }
}

/// `at` rounded up to the [`RETURN_STEP`] grid (whole steps since the epoch), so times
/// within one step are one time.
pub(crate) fn on_grid(at: DateTime<Utc>) -> DateTime<Utc> {
    let step_ms = i64::try_from(RETURN_STEP.as_millis()).unwrap_or(1).max(1);
    let at_ms = at.timestamp_millis() + i64::from(!at.timestamp_subsec_nanos().is_multiple_of(1_000_000));
    let up = at_ms.div_euclid(step_ms) * step_ms + if at_ms.rem_euclid(step_ms) == 0 { 0 } else { step_ms };
    DateTime::<Utc>::from_timestamp_millis(up).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(n)
    }

    #[test]
    fn tenants_sent_back_return_one_lane_end_apart_at_the_pace_lanes_ended() {
        let t0 = DateTime::<Utc>::from_timestamp_millis(1_000_000).unwrap();
        let mut pace = LinePace::default();
        pace.started(t0, true);
        // 100 ends in the last second: one every 10 ms.
        for i in 0..100 {
            pace.ended(t0 + ms(10 * i));
        }
        let now = t0 + ms(1_000);
        let waits: Vec<Duration> = (0..40).map(|_| pace.wait(now, 64)).collect();
        // The 1st comes back on the next step of the grid, the 40th about 400 ms later.
        assert_eq!(waits[0], RETURN_STEP);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "returns in the order sent back");
        assert_eq!(waits[39], Duration::from_millis(400));
        // Off the grid, each return is on it, and none sooner than a step.
        let now = now + ms(1_037);
        for _ in 0..40 {
            let back = now + chrono::Duration::from_std(pace.wait(now, 64)).unwrap();
            assert_eq!(back, on_grid(back), "on the grid");
            assert!(back - now >= ms(50), "{}", back - now);
        }
    }

    #[test]
    fn after_an_idle_spell_the_pace_starts_afresh() {
        let t0 = DateTime::<Utc>::from_timestamp_millis(3_000_000).unwrap();
        let mut pace = LinePace::default();
        pace.started(t0, true);
        pace.ended(t0 + ms(10));
        // An hour later a burst starts: the end an hour ago says nothing of it.
        let later = t0 + ms(3_600_000);
        pace.started(later, true);
        assert!(
            pace.wait(later + ms(5), 64) <= 2 * RETURN_STEP,
            "the first grid time a step away"
        );
    }

    #[test]
    fn a_line_that_has_not_moved_sends_tenants_back_for_longer_up_to_the_side_wait() {
        let t0 = DateTime::<Utc>::from_timestamp_millis(2_000_000).unwrap();
        let mut pace = LinePace::default();
        pace.started(t0, true);
        // Just after the start, nothing has ended: 64 lanes busy for 10 ms is a guess of
        // one end every ~0.16 ms: the first grid time a step away.
        assert_eq!(pace.wait(t0 + ms(10), 64), Duration::from_millis(90));
        // Two seconds on and still nothing: 64 lanes, one end per 31 ms at best.
        let later = t0 + ms(2_000);
        let waits: Vec<Duration> = (0..200).map(|_| pace.wait(later, 64)).collect();
        assert!(waits[100] >= Duration::from_millis(3_000), "{:?}", waits[100]);
        let last = *waits.last().unwrap();
        assert!(
            last <= SIDE_WAIT && last > SIDE_WAIT - RETURN_STEP,
            "never longer than the side wait: {last:?}"
        );
        // A minute after the last end, the ends before it count for nothing: 64 lanes
        // that have not ended in 59 s end one per ~0.9 s at best.
        let mut stuck = LinePace::default();
        stuck.started(t0, true);
        for i in 0..100 {
            stuck.ended(t0 + ms(10 * i));
        }
        let waits: Vec<Duration> = (0..10).map(|_| stuck.wait(t0 + ms(60_000), 64)).collect();
        assert!(waits[0] >= Duration::from_millis(900), "{:?}", waits[0]);
        assert!(waits[9] <= SIDE_WAIT && waits[9] > SIDE_WAIT - RETURN_STEP);
    }
}
