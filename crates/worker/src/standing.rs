//! What this worker knows of each tenant's server, and what that lets the tenant hold.
//!
//! A tenant starts **unproven**: one lane, from the side budget (`max_probing`), so a
//! server nobody has seen answer yet can only ever tie up one connection and side room.
//! Its first accepted mail makes it **proven**: up to its per-tenant cap of lanes from the
//! main budget (`max_in_flight`), which unproven tenants never touch — so tenants whose
//! mail is going out never wait behind tenants whose mail cannot. A failure that every
//! mail to that server would meet (see [`domain::delivery::is_server_wide`]) makes it
//! unproven again and **backing off** until a time: its waiting mail is postponed to then,
//! and mail at that time probes the server — the delivery whose failure started the
//! back-off, when it still waits for that server (it is placed at that time, so its place
//! does not depend on which write reaches the database first), with the first of the rest
//! moved then beside it to stand in should it not go; one lane takes them one after the
//! other, and the rest waits behind them. A **paced** tenant (a send interval) has one lane: its
//! sends cannot overlap anyway.
//!
//! What is known is per route: a change of the tenant's settings version (or a switch
//! between its own server and the platform default) starts over. The platform relay is
//! the operator's own and shared by everyone, so tenants sending through it are proven.
//!
//! What a worker learns is also **on record** in the database
//! ([`domain::health::ServerRecord`]), written when it changes (a server proves itself, or
//! fails for every mail), never per delivery. A tenant whose server is proven on record
//! starts with one lane from a budget of its own ([`Budget::OnRecord`], as large as the
//! side budget) instead of waiting in the side budget's line behind servers nobody knows,
//! and earns its cap with its first mail here: after a restart or a deploy, thousands of
//! tenants with a few mails each go as fast as before it, while servers that stopped
//! answering meanwhile tie up lanes of that budget only, never the main budget.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::delivery::Postponement;
use domain::ports::TenantRecord;
use domain::sender::SenderRoute;
use domain::{DeliveryId, TenantId};

/// Where a tenant's mail goes, as far as its standing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The platform relay (or `.eml` files).
    Platform,
    /// The tenant's own server, with this settings version.
    Own(i64),
}

impl Route {
    /// The route the tenant's mail takes now.
    pub(crate) fn of(record: &TenantRecord) -> Self {
        match record.route() {
            SenderRoute::Custom { version, .. } => Self::Own(version),
            SenderRoute::Unreadable { .. } => Self::Own(record.settings_version()),
            SenderRoute::PlatformDefault { .. } => Self::Platform,
        }
    }
}

/// Which budget of lanes a tenant's lanes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Tenants whose server has taken mail from this worker.
    Main,
    /// Tenants not (or no longer) proven: one lane each, off to the side.
    Side,
    /// Tenants whose server is proven on record but has not taken mail from this worker
    /// yet: one lane each, from a budget of their own (as large as the side budget), so
    /// servers that stopped answering while no worker ran cannot take the main budget.
    OnRecord,
}

#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    route: Option<Route>,
    proven: bool,
    /// The database says the route's server is proven (as this worker last wrote or read).
    on_record: bool,
    paced: bool,
    /// Server-wide failures in a row.
    failures: u32,
    backing_off: Option<BackOff>,
    /// Mail of the tenant's is held back behind a probe (since its last server-wide
    /// failure); kept across a change of route, so mail held for the old settings comes
    /// back as soon as the new ones take a mail.
    holding: bool,
}

/// What a tenant's server taking a mail changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// It was backing off: its mail held back behind the probe can go now.
    pub(crate) recovered: bool,
    /// This settings version's server is proven now and was not on record: remember it.
    pub(crate) remember: Option<i64>,
}

/// A tenant's server backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackOff {
    /// Until then.
    pub(crate) until: DateTime<Utc>,
    /// The delivery that probes the server then: the one whose failure started the
    /// back-off, handed to the recorder due at `until` (the last failure's, if several
    /// lanes failed; time-critical mail at its fallback time if that comes first). None:
    /// the first mail moved to `until` probes it.
    pub(crate) probe: Option<DeliveryId>,
    /// The last failure was the server's, for a temporary reason (not its settings):
    /// time-critical mail does not wait past its fallback time
    /// ([`Postponement::falls_back`]).
    pub(crate) falls_back: bool,
}

impl BackOff {
    /// The schedule for the tenant's mail claimed while it backs off: the first at
    /// `until` beside the probe (to stand in should the probe not go: it left for the
    /// platform default, expired, or was claimed by a worker that never saw the failure),
    /// the rest `hold` later (or as soon as a probe goes through). One lane takes what is
    /// due at `until` one after the other.
    pub(crate) fn schedule(self, hold: Duration) -> Postponement {
        Postponement::backing_off(self.until, hold, self.falls_back)
    }
}

/// What a tenant's server failing for every mail changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreachable {
    /// It backs off until then.
    pub(crate) until: DateTime<Utc>,
    /// This settings version's server was proven on record: remember it failed.
    pub(crate) remember: Option<i64>,
}

/// Whether the server of the route the tenant's mail takes now is proven on record.
pub(crate) fn on_record(record: &TenantRecord) -> bool {
    match record.route() {
        SenderRoute::Custom { version, .. } => record
            .settings_of_version(version)
            .is_some_and(|s| s.health.server.proven()),
        _ => false,
    }
}

/// Tenants remembered at most; beyond that the ones with nothing to remember go first.
const REMEMBERED: usize = 100_000;

/// The standing of the tenants this worker has seen.
#[derive(Debug, Default)]
pub(crate) struct Standings {
    by_tenant: HashMap<TenantId, Standing>,
}

impl Standings {
    /// How many lanes the tenant may have at once (with `per_tenant` the configured cap),
    /// and from which budget.
    pub(crate) fn lanes_allowed(&self, tenant: TenantId, per_tenant: usize) -> (usize, Budget) {
        match self.by_tenant.get(&tenant) {
            Some(s) if s.proven => (if s.paced { 1 } else { per_tenant.max(1) }, Budget::Main),
            Some(s) if s.on_record => (1, Budget::OnRecord),
            _ => (1, Budget::Side),
        }
    }

    /// Whether the tenant's route is known here.
    pub(crate) fn knows(&self, tenant: TenantId) -> bool {
        self.by_tenant.get(&tenant).is_some_and(|s| s.route.is_some())
    }

    /// The tenant's server's back-off, if it is backing off at `now`. Compared to the
    /// millisecond, as the database stores the probe's time: a probe claimed at its
    /// time is not sent back for the rest of that millisecond.
    pub(crate) fn backing_off(&self, tenant: TenantId, now: DateTime<Utc>) -> Option<BackOff> {
        self.by_tenant
            .get(&tenant)
            .and_then(|s| s.backing_off)
            .filter(|b| b.until.timestamp_millis() > now.timestamp_millis())
    }

    /// The tenant's mail goes `route` now, paced or not, its server proven on record or
    /// not; a different route than before starts over (but mail held behind a probe stays
    /// held until a send goes through). The platform route is proven at once.
    pub(crate) fn observe(&mut self, tenant: TenantId, route: Route, paced: bool, on_record: bool) {
        self.make_room();
        let s = self.by_tenant.entry(tenant).or_default();
        if s.route != Some(route) {
            *s = Standing {
                route: Some(route),
                proven: route == Route::Platform,
                on_record: on_record && route != Route::Platform,
                holding: s.holding,
                ..Standing::default()
            };
        }
        s.paced = paced;
    }

    /// The tenant's mail no longer waits for its server (its settings were suspended: it
    /// goes through the platform default), which proved nothing.
    pub(crate) fn release(&mut self, tenant: TenantId) {
        if let Some(s) = self.by_tenant.get_mut(&tenant) {
            s.backing_off = None;
            s.holding = false;
        }
    }

    /// The tenant's server took a mail (see [`Accepted`]).
    pub(crate) fn accepted(&mut self, tenant: TenantId) -> Accepted {
        let Some(s) = self.by_tenant.get_mut(&tenant) else {
            return Accepted::default();
        };
        let recovered = s.holding;
        let remember = match s.route {
            Some(Route::Own(version)) if !s.on_record => Some(version),
            _ => None,
        };
        s.proven = true;
        s.on_record |= remember.is_some();
        s.failures = 0;
        s.backing_off = None;
        s.holding = false;
        Accepted { recovered, remember }
    }

    /// The tenant's server could not take mail (a server-wide failure at `now`, after
    /// which the failed delivery is due again at `retry_at`): unproven, backing off until
    /// the later of `retry_at` and a backoff that doubles with each failure in a row
    /// (`backoff(n)`). `probe`: the failed delivery, due again at that time to probe the
    /// server (see [`BackOff`]); `falls_back`: see [`BackOff::falls_back`]. Returns that
    /// time, and what to correct on record.
    pub(crate) fn unreachable(
        &mut self,
        tenant: TenantId,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        probe: Option<DeliveryId>,
        falls_back: bool,
        backoff: impl Fn(u32) -> Duration,
    ) -> Unreachable {
        self.make_room();
        let s = self.by_tenant.entry(tenant).or_default();
        let own = now + chrono::Duration::from_std(backoff(s.failures)).unwrap_or(chrono::Duration::hours(1));
        let until = own.max(retry_at).max(s.backing_off.map_or(now, |b| b.until));
        let remember = match s.route {
            Some(Route::Own(version)) if s.on_record => Some(version),
            _ => None,
        };
        s.proven = false;
        s.on_record = false;
        s.failures = s.failures.saturating_add(1);
        s.backing_off = Some(BackOff {
            until,
            probe,
            falls_back,
        });
        s.holding = true;
        Unreachable { until, remember }
    }

    fn make_room(&mut self) {
        if self.by_tenant.len() < REMEMBERED {
            return;
        }
        let now = Utc::now();
        self.by_tenant
            .retain(|_, s| s.failures > 0 && s.backing_off.is_some_and(|b| b.until > now));
        if self.by_tenant.len() >= REMEMBERED {
            self.by_tenant.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike as _;

    #[test]
    fn a_tenant_earns_its_lanes_and_loses_them_when_its_server_stops_answering() {
        let mut s = Standings::default();
        let t = TenantId::generate();
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side), "never seen");
        s.observe(t, Route::Own(1), false, false);
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side), "not proven yet");
        assert_eq!(
            s.accepted(t),
            Accepted {
                recovered: false,
                remember: Some(1)
            },
            "nothing was held back; proven now, to remember"
        );
        assert_eq!(s.lanes_allowed(t, 4), (4, Budget::Main));
        s.observe(t, Route::Own(1), true, false);
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Main), "paced: one lane");

        let now = Utc::now();
        let backoff = |n: u32| Duration::from_secs(30 * 2u64.pow(n));
        let probe = DeliveryId::generate();
        let first = s.unreachable(t, now, now, Some(probe), true, backoff);
        assert_eq!(first.remember, Some(1), "on record as proven: remember it failed");
        let first = first.until;
        assert_eq!(first, now + chrono::Duration::seconds(30));
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side));
        assert_eq!(
            s.backing_off(t, now),
            Some(BackOff {
                until: first,
                probe: Some(probe),
                falls_back: true,
            })
        );
        let same_millisecond = first
            .with_nanosecond(first.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap();
        assert_eq!(
            s.backing_off(t, same_millisecond),
            None,
            "a probe claimed in its millisecond (as the database has it) is not sent back"
        );
        assert_eq!(s.backing_off(t, first), None, "over at its time");
        let later = now + chrono::Duration::hours(2);
        let second = s.unreachable(t, now, later, None, true, backoff);
        assert_eq!(second.remember, None, "once");
        let second = second.until;
        assert_eq!(second, later, "the failed delivery's own retry is later");
        assert_eq!(
            s.backing_off(t, now).map(|b| b.probe),
            Some(None),
            "the last failure says whether its delivery probes"
        );
        let third = s.unreachable(t, later, later, Some(probe), true, backoff).until;
        assert_eq!(
            third,
            later + chrono::Duration::seconds(120),
            "doubles with each failure in a row"
        );

        assert_eq!(
            s.accepted(t),
            Accepted {
                recovered: true,
                remember: Some(1)
            },
            "back after a backoff"
        );
        assert_eq!(
            s.lanes_allowed(t, 4),
            (1, Budget::Main),
            "proven again (and still paced)"
        );
        s.unreachable(t, now, now, Some(probe), true, backoff);
        s.observe(t, Route::Own(2), false, false);
        assert_eq!(s.backing_off(t, now), None, "new settings start over");
        assert!(
            s.accepted(t).recovered,
            "mail held for the old settings comes back with the new ones"
        );
        s.unreachable(t, now, now, Some(probe), true, backoff);
        s.observe(t, Route::Platform, false, false);
        assert_eq!(
            s.lanes_allowed(t, 4),
            (4, Budget::Main),
            "the platform relay is the operator's"
        );
        assert_eq!(
            s.accepted(t),
            Accepted {
                recovered: true,
                remember: None
            },
            "and when cleared, the platform default takes it (nothing to remember of the relay)"
        );
        assert!(!s.accepted(t).recovered, "once");
    }

    #[test]
    fn mail_claimed_during_a_back_off_stands_in_beside_the_probe_then_waits_behind_it() {
        let t = Utc::now();
        let hold = Duration::from_secs(180);
        for probe in [Some(DeliveryId::generate()), None] {
            let schedule = BackOff {
                until: t,
                probe,
                falls_back: true,
            }
            .schedule(hold);
            assert_eq!(
                (schedule.at(0), schedule.at(1), schedule.at(7)),
                (
                    t,
                    t + chrono::Duration::seconds(180),
                    t + chrono::Duration::seconds(180)
                )
            );
        }
    }

    #[test]
    fn a_server_proven_on_record_starts_with_one_main_lane_and_earns_its_cap_here() {
        let mut s = Standings::default();
        let t = TenantId::generate();
        s.observe(t, Route::Own(3), false, true);
        assert_eq!(
            s.lanes_allowed(t, 4),
            (1, Budget::OnRecord),
            "no wait behind unknown servers, and no main lane yet"
        );
        assert_eq!(
            s.accepted(t),
            Accepted {
                recovered: false,
                remember: None
            },
            "already on record: nothing to write"
        );
        assert_eq!(s.lanes_allowed(t, 4), (4, Budget::Main));
        // A new version knows nothing of its server, whatever the old one's record.
        s.observe(t, Route::Own(4), false, false);
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side));

        // A server on record that stopped answering: its first failure puts it aside.
        let u = TenantId::generate();
        s.observe(u, Route::Own(1), false, true);
        let now = Utc::now();
        let failed = s.unreachable(u, now, now, None, true, |_| Duration::from_secs(30));
        assert_eq!(failed.remember, Some(1));
        assert_eq!(s.lanes_allowed(u, 4), (1, Budget::Side));
        // The platform relay is never on record.
        let p = TenantId::generate();
        s.observe(p, Route::Platform, false, true);
        assert_eq!(s.accepted(p).remember, None);
    }
}
