//! Waking the worker, and knowing when a claim would find nothing.
//!
//! Enqueues (and a person's retry) tell the worker which tenant got work. After a claim
//! came back short, only new work of a tenant it left out then, or time passing (retries
//! falling due, leases of other processes running out), can change that; until then the
//! worker skips claims that could not find anything.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use domain::TenantId;
use tokio::sync::Notify;

use crate::line_pace::on_grid;
use crate::lock;

/// Tells this process's worker that tenants have new due work (an enqueue, a retry by
/// an operator).
#[derive(Debug, Default)]
pub struct WorkSignal {
    pub(crate) notify: Notify,
    tenants: Mutex<WorkHint>,
}

/// The tenants that got work since the worker last looked.
#[derive(Debug, Default)]
pub(crate) struct WorkHint {
    pub(crate) tenants: HashSet<TenantId>,
    /// Too many tenants to keep: treat it as "anything may have work".
    pub(crate) overflow: bool,
}

/// Tenants remembered between two looks of the worker at most.
const WORK_HINT_TENANTS: usize = 4096;

impl WorkSignal {
    /// `tenant` has new work.
    pub fn tenant_has_work(&self, tenant: TenantId) {
        {
            let mut hint = lock(&self.tenants);
            if hint.tenants.len() < WORK_HINT_TENANTS {
                hint.tenants.insert(tenant);
            } else {
                hint.overflow = true;
            }
        }
        self.notify.notify_one();
    }

    pub(crate) fn take(&self) -> WorkHint {
        std::mem::take(&mut *lock(&self.tenants))
    }
}

/// When postponed work of this worker's comes due, so the claim loop looks then rather
/// than at the next poll: every such time, not only the earliest (tenants sent back from
/// a full line return one group after another), on the [`crate::line_pace::RETURN_STEP`] grid so that
/// times within a step are one wake, up to [`WAKES_KEPT`] of the earliest.
#[derive(Debug, Default)]
pub(crate) struct WakeAt {
    due: Mutex<BTreeSet<DateTime<Utc>>>,
}

/// Wake times kept at most; later ones are found by the next poll.
const WAKES_KEPT: usize = 1024;

impl WakeAt {
    /// Something comes due at `at` (a time already past stays as it is: due at once).
    pub(crate) fn at(&self, at: DateTime<Utc>) {
        let now = Utc::now();
        let mut due = lock(&self.due);
        due.insert(if at <= now { at } else { on_grid(at) });
        if due.len() > WAKES_KEPT {
            due.pop_last();
        }
    }

    /// How long until the earliest, if one is set.
    pub(crate) fn next_in(&self) -> Option<Duration> {
        lock(&self.due)
            .first()
            .map(|e| (*e - Utc::now()).to_std().unwrap_or_default())
    }

    /// Whether one has come (and forgets those that have).
    pub(crate) fn take_if_due(&self) -> bool {
        let mut due = lock(&self.due);
        let now = Utc::now();
        let mut any = false;
        while due.first().is_some_and(|e| *e <= now) {
            due.pop_first();
            any = true;
        }
        any
    }
}

/// What the last claims showed: no due deliveries outside `tenants` as of `since`.
#[derive(Debug, Default)]
pub(crate) struct ClaimSkipper {
    exhausted: Option<Exhausted>,
}

#[derive(Debug)]
struct Exhausted {
    tenants: HashSet<TenantId>,
    since: Instant,
}

impl ClaimSkipper {
    /// Takes in the tenants that got work since the last look, and forgets everything
    /// once `poll_interval` has passed.
    pub(crate) fn observe(&mut self, hint: WorkHint, poll_interval: Duration) {
        if hint.overflow {
            self.exhausted = None;
        } else if let Some(known) = &mut self.exhausted {
            known.tenants.extend(hint.tenants);
        }
        if self
            .exhausted
            .as_ref()
            .is_some_and(|k| k.since.elapsed() >= poll_interval)
        {
            self.exhausted = None;
        }
    }

    /// Whether a claim leaving out `exclude` could not find anything.
    pub(crate) fn pointless(&self, exclude: &HashSet<TenantId>) -> bool {
        self.exhausted.as_ref().is_some_and(|k| k.tenants.is_subset(exclude))
    }

    /// How long until the next look without a wake-up.
    pub(crate) fn look_again_in(&self, poll_interval: Duration) -> Duration {
        self.exhausted
            .as_ref()
            .map_or(poll_interval, |k| poll_interval.saturating_sub(k.since.elapsed()))
    }

    /// A claim that left out `exclude`, made at `claimed_at`, came back short: nothing
    /// else is due outside those tenants (until new work or time).
    pub(crate) fn came_back_short(&mut self, exclude: HashSet<TenantId>, claimed_at: Instant) {
        self.exhausted = Some(match self.exhausted.take() {
            Some(k) => Exhausted {
                tenants: k.tenants.intersection(&exclude).copied().collect(),
                since: k.since,
            },
            None => Exhausted {
                tenants: exclude,
                since: claimed_at,
            },
        });
    }

    /// The time for a look has come.
    pub(crate) fn forget(&mut self) {
        self.exhausted = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wake_time_is_kept_not_only_the_earliest() {
        let wake = WakeAt::default();
        let now = Utc::now();
        wake.at(now + chrono::Duration::seconds(60));
        wake.at(now - chrono::Duration::seconds(1));
        wake.at(now - chrono::Duration::seconds(2));
        assert!(wake.take_if_due(), "the two past ones are due");
        assert!(!wake.take_if_due(), "and forgotten");
        let next = wake.next_in().expect("the later one is still kept");
        assert!(next > Duration::from_secs(50), "{next:?}");
        // Times within one step of the grid are one wake.
        let later = now + chrono::Duration::seconds(120);
        for ms in 0..20 {
            wake.at(later + chrono::Duration::milliseconds(ms));
        }
        assert!(lock(&wake.due).len() <= 3, "{:?}", lock(&wake.due).len());
    }

    #[test]
    fn a_short_claim_skips_the_next_until_work_or_time() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let poll = Duration::from_secs(3600);
        let mut skip = ClaimSkipper::default();
        let nobody = HashSet::new();
        assert!(!skip.pointless(&nobody), "nothing known yet: claim");

        skip.came_back_short(HashSet::from([a]), Instant::now());
        assert!(
            skip.pointless(&HashSet::from([a])),
            "only a could have work, and a is left out"
        );
        assert!(!skip.pointless(&nobody), "a is claimable now");

        let signal = WorkSignal::default();
        signal.tenant_has_work(b);
        skip.observe(signal.take(), poll);
        assert!(!skip.pointless(&HashSet::from([a])), "b got work");
        assert!(signal.take().tenants.is_empty(), "a hint is taken once");

        skip.came_back_short(HashSet::from([a]), Instant::now());
        skip.observe(WorkHint::default(), Duration::ZERO);
        assert!(!skip.pointless(&HashSet::from([a])), "the poll interval passed");
    }

    #[test]
    fn too_many_hints_mean_anything_may_have_work() {
        let signal = WorkSignal::default();
        for _ in 0..=WORK_HINT_TENANTS {
            signal.tenant_has_work(TenantId::generate());
        }
        let hint = signal.take();
        assert!(hint.overflow);
        let mut skip = ClaimSkipper::default();
        skip.came_back_short(HashSet::new(), Instant::now());
        assert!(skip.pointless(&HashSet::new()));
        skip.observe(hint, Duration::from_secs(3600));
        assert!(!skip.pointless(&HashSet::new()));
    }
}
