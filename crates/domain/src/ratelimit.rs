//! A sliding-window limit per tenant (test mails: 10 a minute), in this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tenant::TenantId;

/// At most `limit` events per `window` for each tenant.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<TenantId, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event if the tenant is under its limit; false (and nothing recorded) otherwise.
    pub fn try_acquire(&self, tenant: TenantId) -> bool {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget tenants whose events all expired, so the map stays small.
        if events.len() > 10_000 {
            events.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        let queue = events.entry(tenant).or_default();
        while queue.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            queue.pop_front();
        }
        if queue.len() >= self.limit {
            return false;
        }
        queue.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_tenant() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let (a, b) = (TenantId::generate(), TenantId::generate());
        assert!((0..3).all(|_| limiter.try_acquire(a)));
        assert!(!limiter.try_acquire(a));
        assert!(limiter.try_acquire(b));
    }
}
