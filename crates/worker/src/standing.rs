//! What this worker knows of each tenant's server, and what that lets the tenant hold.
//!
//! A tenant starts **unproven**: one lane, from the side budget (`max_probing`), so a
//! server nobody has seen answer yet can only ever tie up one connection and side room.
//! Its first accepted mail makes it **proven**: up to its per-tenant cap of lanes from the
//! main budget (`max_in_flight`), which unproven tenants never touch — so tenants whose
//! mail is going out never wait behind tenants whose mail cannot. A failure that every
//! mail to that server would meet (see [`domain::delivery::is_server_wide`]) makes it
//! unproven again and **backing off** until a time: its waiting mail is postponed to then,
//! and the first mail at that time probes the server. A **paced** tenant (a send
//! interval) has one lane: its sends cannot overlap anyway.
//!
//! What is known is per route: a change of the tenant's settings version (or a switch
//! between its own server and the platform default) starts over. The platform relay is
//! the operator's own and shared by everyone, so tenants sending through it are proven.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::TenantId;
use domain::ports::TenantRecord;
use domain::sender::SenderRoute;

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
}

#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    route: Option<Route>,
    proven: bool,
    paced: bool,
    /// Server-wide failures in a row.
    failures: u32,
    backing_off_until: Option<DateTime<Utc>>,
    /// Mail of the tenant's is held back behind a probe (since its last server-wide
    /// failure); kept across a change of route, so mail held for the old settings comes
    /// back as soon as the new ones take a mail.
    holding: bool,
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
            _ => (1, Budget::Side),
        }
    }

    /// Whether the tenant's route is known here.
    pub(crate) fn knows(&self, tenant: TenantId) -> bool {
        self.by_tenant.get(&tenant).is_some_and(|s| s.route.is_some())
    }

    /// Until when the tenant's server is backing off, if it is at `now`.
    pub(crate) fn backing_off(&self, tenant: TenantId, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.by_tenant
            .get(&tenant)
            .and_then(|s| s.backing_off_until)
            .filter(|until| *until > now)
    }

    /// The tenant's mail goes `route` now, paced or not; a different route than before
    /// starts over (but mail held behind a probe stays held until a send goes through).
    /// The platform route is proven at once.
    pub(crate) fn observe(&mut self, tenant: TenantId, route: Route, paced: bool) {
        self.make_room();
        let s = self.by_tenant.entry(tenant).or_default();
        if s.route != Some(route) {
            *s = Standing {
                route: Some(route),
                proven: route == Route::Platform,
                holding: s.holding,
                ..Standing::default()
            };
        }
        s.paced = paced;
    }

    /// The tenant's server took a mail; true when it was backing off before (its mail
    /// held back behind the probe can go now).
    pub(crate) fn accepted(&mut self, tenant: TenantId) -> bool {
        let Some(s) = self.by_tenant.get_mut(&tenant) else {
            return false;
        };
        let recovered = s.holding;
        s.proven = true;
        s.failures = 0;
        s.backing_off_until = None;
        s.holding = false;
        recovered
    }

    /// The tenant's server could not take mail (a server-wide failure at `now`, after
    /// which the failed delivery is due again at `retry_at`): unproven, backing off until
    /// the later of `retry_at` and a backoff that doubles with each failure in a row
    /// (`backoff(n)`). Returns that time.
    pub(crate) fn unreachable(
        &mut self,
        tenant: TenantId,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        backoff: impl Fn(u32) -> Duration,
    ) -> DateTime<Utc> {
        self.make_room();
        let s = self.by_tenant.entry(tenant).or_default();
        let own = now + chrono::Duration::from_std(backoff(s.failures)).unwrap_or(chrono::Duration::hours(1));
        let until = own.max(retry_at).max(s.backing_off_until.unwrap_or(now));
        s.proven = false;
        s.failures = s.failures.saturating_add(1);
        s.backing_off_until = Some(until);
        s.holding = true;
        until
    }

    fn make_room(&mut self) {
        if self.by_tenant.len() < REMEMBERED {
            return;
        }
        let now = Utc::now();
        self.by_tenant
            .retain(|_, s| s.failures > 0 && s.backing_off_until.is_some_and(|u| u > now));
        if self.by_tenant.len() >= REMEMBERED {
            self.by_tenant.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_earns_its_lanes_and_loses_them_when_its_server_stops_answering() {
        let mut s = Standings::default();
        let t = TenantId::generate();
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side), "never seen");
        s.observe(t, Route::Own(1), false);
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side), "not proven yet");
        assert!(!s.accepted(t), "nothing was held back");
        assert_eq!(s.lanes_allowed(t, 4), (4, Budget::Main));
        s.observe(t, Route::Own(1), true);
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Main), "paced: one lane");

        let now = Utc::now();
        let backoff = |n: u32| Duration::from_secs(30 * 2u64.pow(n));
        let first = s.unreachable(t, now, now, backoff);
        assert_eq!(first, now + chrono::Duration::seconds(30));
        assert_eq!(s.lanes_allowed(t, 4), (1, Budget::Side));
        assert_eq!(s.backing_off(t, now), Some(first));
        assert_eq!(s.backing_off(t, first), None, "over at its time");
        let later = now + chrono::Duration::hours(2);
        let second = s.unreachable(t, now, later, backoff);
        assert_eq!(second, later, "the failed delivery's own retry is later");
        let third = s.unreachable(t, later, later, backoff);
        assert_eq!(
            third,
            later + chrono::Duration::seconds(120),
            "doubles with each failure in a row"
        );

        assert!(s.accepted(t), "back after a backoff");
        assert_eq!(
            s.lanes_allowed(t, 4),
            (1, Budget::Main),
            "proven again (and still paced)"
        );
        s.unreachable(t, now, now, backoff);
        s.observe(t, Route::Own(2), false);
        assert_eq!(s.backing_off(t, now), None, "new settings start over");
        assert!(
            s.accepted(t),
            "mail held for the old settings comes back with the new ones"
        );
        s.unreachable(t, now, now, backoff);
        s.observe(t, Route::Platform, false);
        assert_eq!(
            s.lanes_allowed(t, 4),
            (4, Budget::Main),
            "the platform relay is the operator's"
        );
        assert!(s.accepted(t), "and when cleared, the platform default takes it");
        assert!(!s.accepted(t), "once");
    }
}
