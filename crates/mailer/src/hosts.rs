//! Open connections to one destination host across every tenant's pool. Many tenants on
//! one provider share its limits (a hosting platform sends from few addresses), so the
//! sessions open to a host name are capped however many pools reach it. A place is held
//! for as long as a session is open, idle or not; when someone waits for a place, a
//! session that would go idle is closed instead, and the mailer's sweeper closes idle
//! sessions to that host at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The gates of all destination hosts, by host name (lower case).
#[derive(Debug)]
pub struct HostGates {
    per_host: usize,
    gates: std::sync::Mutex<HashMap<String, Arc<HostGate>>>,
    /// Woken when someone starts waiting for a place, so idle sessions are closed now
    /// rather than at the idle timer's next round.
    pub(crate) sweep: Arc<Notify>,
}

/// One destination host's places.
#[derive(Debug)]
pub struct HostGate {
    places: Arc<Semaphore>,
    waiting: AtomicUsize,
    sweep: Arc<Notify>,
}

/// No place at the host came free within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBusy;

impl HostGates {
    /// At most `per_host` open sessions to each host name.
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            gates: std::sync::Mutex::new(HashMap::new()),
            sweep: Arc::new(Notify::new()),
        }
    }

    /// The gate of `host`, shared by every pool that connects to it.
    pub fn gate(&self, host: &str) -> Arc<HostGate> {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates
            .entry(host.to_ascii_lowercase())
            .or_insert_with(|| {
                Arc::new(HostGate {
                    places: Arc::new(Semaphore::new(self.per_host)),
                    waiting: AtomicUsize::new(0),
                    sweep: self.sweep.clone(),
                })
            })
            .clone()
    }

    /// Forgets the gates no pool holds and no session uses (so the map does not grow with
    /// every host ever seen).
    pub fn prune(&self) {
        let mut gates = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.retain(|_, g| Arc::strong_count(g) > 1 || g.places.available_permits() < self.per_host);
    }
}

impl HostGate {
    /// A place for one open session: at once when one is free, else the first to come
    /// free within `wait` (meanwhile sessions to this host close instead of idling).
    pub async fn enter(&self, wait: Duration) -> Result<OwnedSemaphorePermit, HostBusy> {
        if let Ok(place) = self.places.clone().try_acquire_owned() {
            return Ok(place);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.sweep.notify_one();
        let place = tokio::time::timeout(wait, self.places.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match place {
            Ok(Ok(place)) => Ok(place),
            _ => Err(HostBusy),
        }
    }

    /// Whether someone is waiting for a place: then a session should close rather than
    /// sit idle.
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Places in use (open sessions), for tests and metrics.
    pub fn open(&self, per_host: usize) -> usize {
        per_host.saturating_sub(self.places.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_has_so_many_places_across_pools_and_a_waiter_is_seen() {
        let gates = HostGates::new(2);
        let (a, b) = (gates.gate("SMTP.Example.com"), gates.gate("smtp.example.com"));
        let first = a.enter(Duration::from_millis(10)).await.expect("free");
        let _second = b.enter(Duration::from_millis(10)).await.expect("free");
        assert_eq!(a.open(2), 2, "one host, whatever the case of its name");
        assert_eq!(b.enter(Duration::from_millis(20)).await.err(), Some(HostBusy));
        let other = gates.gate("smtp.other.example");
        assert!(
            other.enter(Duration::from_millis(10)).await.is_ok(),
            "another host is not held"
        );

        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.enter(Duration::from_secs(5)).await.map(|_| ()) })
        };
        while !b.wanted() {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()), "the freed place goes to the waiter");
        assert!(!b.wanted());
        drop((a, b, other));
        gates.prune();
        assert_eq!(
            gates.gates.lock().unwrap().len(),
            1,
            "only the host with an open session is kept"
        );
    }
}
