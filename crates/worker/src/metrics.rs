//! Counters the worker keeps for `/metrics`: sends by outcome and sender source, and
//! send latency. Plain atomics, rendered as Prometheus text by the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::SenderSource;
use domain::delivery::{Attempt, AttemptOutcome, DeliveryStatus};

/// Latency bucket upper bounds, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const OUTCOMES: [&str; 4] = ["sent", "retry", "deferred", "failed"];
const SOURCES: [&str; 2] = ["custom", "platform_default"];

/// Send counters and a latency histogram.
#[derive(Debug, Default)]
pub struct Metrics {
    sends: [[AtomicU64; 2]; 4],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// Outcomes written to the database, by the status they left the delivery in.
    recorded: [AtomicU64; RECORDED.len()],
    /// Deliveries given back unattempted for their tenant's turn or server backoff.
    postponed: AtomicU64,
    /// Deliveries that waited because their tenant's saved settings cannot be read.
    settings_unreadable: AtomicU64,
    /// Settings versions this process suspended after configuration failures.
    settings_suspended: AtomicU64,
    /// Deliveries sent through the platform default in the tenant's place, by reason.
    fallbacks: [AtomicU64; FALLBACK_REASONS.len()],
    /// Deliveries whose content retention removed.
    content_removed: AtomicU64,
}

/// Why a delivery went through the platform default in its tenant's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The tenant's settings version is suspended.
    Suspended,
    /// Time-critical mail its server did not take in time.
    TimeCritical,
}

const FALLBACK_REASONS: [&str; 2] = ["suspended", "time_critical"];

const RECORDED: [DeliveryStatus; 3] = [DeliveryStatus::Sent, DeliveryStatus::Retrying, DeliveryStatus::Failed];

impl Metrics {
    /// A send was attempted and ended in `attempt`, after `latency`.
    pub fn attempted(&self, attempt: &Attempt, latency: Duration) {
        let outcome = match attempt.outcome {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Deferred => "deferred",
            AttemptOutcome::Failed => "failed",
        };
        let source = match attempt.sender_source {
            Some(SenderSource::Custom) => "custom",
            Some(SenderSource::PlatformDefault) | None => "platform_default",
        };
        self.record(outcome, source, latency);
    }

    pub fn record(&self, outcome: &str, source: &str, latency: Duration) {
        let (Some(o), Some(s)) = (
            OUTCOMES.iter().position(|x| *x == outcome),
            SOURCES.iter().position(|x| *x == source),
        ) else {
            return;
        };
        self.sends[o][s].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// An outcome was written to the database.
    pub fn recorded(&self, status: DeliveryStatus) {
        if let Some(i) = RECORDED.iter().position(|s| *s == status) {
            self.recorded[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deliveries were given back unattempted for later (pacing turn, server backoff).
    pub fn postponed(&self, n: usize) {
        self.postponed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A delivery waited because its tenant's saved settings cannot be read.
    pub fn settings_unreadable(&self) {
        self.settings_unreadable.fetch_add(1, Ordering::Relaxed);
    }

    /// Retention removed the content of `n` deliveries.
    pub fn content_removed(&self, n: u64) {
        self.content_removed.fetch_add(n, Ordering::Relaxed);
    }

    /// A settings version was suspended.
    pub fn settings_suspended(&self) {
        self.settings_suspended.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery was sent through the platform default in its tenant's place.
    pub fn fell_back(&self, reason: Fallback) {
        let i = match reason {
            Fallback::Suspended => 0,
            Fallback::TimeCritical => 1,
        };
        self.fallbacks[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries given back for later so far.
    pub fn postponed_count(&self) -> u64 {
        self.postponed.load(Ordering::Relaxed)
    }

    /// Outcomes written to the database that left the delivery in `status`.
    pub fn recorded_count(&self, status: DeliveryStatus) -> u64 {
        RECORDED
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.recorded[i].load(Ordering::Relaxed))
    }

    /// Prometheus text for these series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP mailgate_sends_total Send attempts by outcome and sender source.\n# TYPE mailgate_sends_total counter\n");
        for (o, outcome) in OUTCOMES.iter().enumerate() {
            for (s, source) in SOURCES.iter().enumerate() {
                let n = self.sends[o][s].load(Ordering::Relaxed);
                out.push_str(&format!(
                    "mailgate_sends_total{{outcome=\"{outcome}\",source=\"{source}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP mailgate_send_duration_seconds Time to send one delivery.\n# TYPE mailgate_send_duration_seconds histogram\n");
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "mailgate_send_duration_seconds_bucket{{le=\"{bound}\"}} {n}\n"
            ));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        out.push_str(&format!(
            "mailgate_send_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!(
            "mailgate_send_duration_seconds_sum {sum}\nmailgate_send_duration_seconds_count {count}\n"
        ));
        out.push_str("# HELP mailgate_deliveries_recorded_total Attempt outcomes written to the database, by the status they set.\n# TYPE mailgate_deliveries_recorded_total counter\n");
        for (i, status) in RECORDED.iter().enumerate() {
            let n = self.recorded[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "mailgate_deliveries_recorded_total{{status=\"{}\"}} {n}\n",
                status.code().to_ascii_lowercase()
            ));
        }
        out.push_str("# HELP mailgate_deliveries_postponed_total Deliveries given back unattempted until their tenant's pacing turn or the end of its server's backoff.\n# TYPE mailgate_deliveries_postponed_total counter\n");
        out.push_str(&format!(
            "mailgate_deliveries_postponed_total {}\n",
            self.postponed.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mailgate_deliveries_settings_unreadable_total Deliveries that waited because their tenant's saved mail settings cannot be read (a corrupt row, a secret whose key is gone); the log names the tenant.\n# TYPE mailgate_deliveries_settings_unreadable_total counter\n");
        out.push_str(&format!(
            "mailgate_deliveries_settings_unreadable_total {}\n",
            self.settings_unreadable.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mailgate_settings_suspended_total Tenant settings versions suspended after configuration failures in a row (wrong password, SMTP AUTH off, sender refused, certificate no longer valid).\n# TYPE mailgate_settings_suspended_total counter\n");
        out.push_str(&format!(
            "mailgate_settings_suspended_total {}\n",
            self.settings_suspended.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mailgate_deliveries_content_removed_total Deliveries whose recipient, subject, bodies and reply texts were removed after the retention period.\n# TYPE mailgate_deliveries_content_removed_total counter\n");
        out.push_str(&format!(
            "mailgate_deliveries_content_removed_total {}\n",
            self.content_removed.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP mailgate_deliveries_fallbacks_total Deliveries sent through the platform default in their tenant's place, by reason.\n# TYPE mailgate_deliveries_fallbacks_total counter\n");
        for (i, reason) in FALLBACK_REASONS.iter().enumerate() {
            let n = self.fallbacks[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "mailgate_deliveries_fallbacks_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        out
    }
}
