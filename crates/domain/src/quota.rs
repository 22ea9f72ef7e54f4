//! Enqueue quotas: how many notifications one tenant may hand in per minute and per day
//! (platform defaults, an operator's override per tenant), so a caller with a service
//! token cannot flood the queue for any tenant. Windows are fixed (the UTC minute, the UTC
//! day); the counters live in the database, so they hold across processes.

use chrono::{DateTime, Utc};

/// Limits; 0: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnqueueLimits {
    pub per_minute: u32,
    pub per_day: u32,
}

/// An operator's override for one tenant; `None`: the platform default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaOverride {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
}

/// The largest limit an override may set.
pub const MAX_LIMIT: u32 = 10_000_000;

impl EnqueueLimits {
    /// These defaults with `o` applied.
    pub fn with(self, o: QuotaOverride) -> Self {
        Self {
            per_minute: o.per_minute.unwrap_or(self.per_minute),
            per_day: o.per_day.unwrap_or(self.per_day),
        }
    }
}

/// The fixed windows a count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Day,
}

impl Window {
    pub const ALL: [Window; 2] = [Window::Minute, Window::Day];

    pub fn code(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Day => "day",
        }
    }

    fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Day => 86_400_000,
        }
    }

    /// The start of the window `at` is in (ms since the epoch, UTC).
    pub fn start_ms(self, at: DateTime<Utc>) -> i64 {
        let ms = at.timestamp_millis();
        ms - ms.rem_euclid(self.millis())
    }

    /// Seconds from `at` until the next window starts (at least 1).
    pub fn retry_after_secs(self, at: DateTime<Utc>) -> u64 {
        let end = self.start_ms(at) + self.millis();
        u64::try_from((end - at.timestamp_millis() + 999) / 1000)
            .unwrap_or(1)
            .max(1)
    }

    /// The limit for this window.
    pub fn limit(self, limits: EnqueueLimits) -> u32 {
        match self {
            Self::Minute => limits.per_minute,
            Self::Day => limits.per_day,
        }
    }
}

/// How many of `wanted` a window with `used` of `limit` taken may still hand out (0 limit:
/// all of them).
pub fn grant(limit: u32, used: i64, wanted: u32) -> u32 {
    if limit == 0 {
        return wanted;
    }
    let left = i64::from(limit) - used;
    u32::try_from(left.clamp(0, i64::from(wanted))).unwrap_or(0)
}

/// How many a process reserves at once for a limit (fewer round trips under load; at most
/// this many per process may go unused when a window ends).
pub fn reservation(limit: u32) -> u32 {
    if limit == 0 { 1 } else { (limit / 20).clamp(1, 50) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grants_and_overrides() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:20:30.250Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Window::Minute.retry_after_secs(at), 30);
        let day_start = DateTime::parse_from_rfc3339("2026-12-03T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(Window::Day.start_ms(at), day_start);
        assert_eq!(grant(10, 8, 5), 2);
        assert_eq!(grant(10, 12, 5), 0);
        assert_eq!(grant(0, 1_000_000, 5), 5, "0: no limit");
        let defaults = EnqueueLimits {
            per_minute: 600,
            per_day: 50_000,
        };
        let limits = defaults.with(QuotaOverride {
            per_minute: Some(5),
            per_day: None,
        });
        assert_eq!(
            limits,
            EnqueueLimits {
                per_minute: 5,
                per_day: 50_000
            }
        );
        assert_eq!(reservation(10), 1);
        assert_eq!(reservation(600), 30);
        assert_eq!(reservation(1_000_000), 50);
    }
}
