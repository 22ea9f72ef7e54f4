//! What the worker counts for `/metrics`: sends by outcome and sender source, send
//! latency, outcomes recorded, deliveries postponed, fallbacks and retention. Metrics of
//! the `prometheus-client` library, registered in the process's registry with
//! [`Metrics::register`] and encoded by the server.

use std::time::Duration;

use domain::SenderSource;
use domain::delivery::{Attempt, AttemptOutcome, DeliveryStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency bucket upper bounds, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const OUTCOMES: [&str; 4] = ["sent", "retry", "deferred", "failed"];
const SOURCES: [&str; 2] = ["custom", "platform_default"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    outcome: &'static str,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The worker's series. Clones share their values.
#[derive(Debug, Clone)]
pub struct Metrics {
    sends: Family<SendLabels, Counter>,
    duration: Histogram,
    /// Outcomes written to the database, by the status they left the delivery in.
    recorded: Family<StatusLabel, Counter>,
    /// Deliveries given back unattempted for their tenant's turn or server backoff.
    postponed: Counter,
    /// Deliveries that waited because their tenant's saved settings cannot be read.
    settings_unreadable: Counter,
    /// Settings versions this process suspended after configuration failures.
    settings_suspended: Counter,
    /// Deliveries sent through the platform default in the tenant's place, by reason.
    fallbacks: Family<ReasonLabel, Counter>,
    /// Deliveries whose content retention removed.
    content_removed: Counter,
    /// Deliveries deleted past the history horizon.
    rows_removed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            sends: Family::default(),
            duration: Histogram::new(LATENCY_BUCKETS),
            recorded: Family::default(),
            postponed: Counter::default(),
            settings_unreadable: Counter::default(),
            settings_suspended: Counter::default(),
            fallbacks: Family::default(),
            content_removed: Counter::default(),
            rows_removed: Counter::default(),
        };
        // Every series exists from the start (at 0), so rates and alerts see it.
        for outcome in OUTCOMES {
            for source in SOURCES {
                let _ = metrics.sends.get_or_create(&SendLabels { outcome, source });
            }
        }
        for status in RECORDED {
            let _ = metrics.recorded.get_or_create(&status_label(status));
        }
        for reason in FALLBACK_REASONS {
            let _ = metrics.fallbacks.get_or_create(&ReasonLabel { reason });
        }
        metrics
    }
}

fn status_label(status: DeliveryStatus) -> StatusLabel {
    StatusLabel {
        status: match status {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Failed => "failed",
        },
    }
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
    /// Registers the series in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mailgate_sends",
            "Send attempts by outcome and sender source",
            self.sends.clone(),
        );
        registry.register(
            "mailgate_send_duration_seconds",
            "Time to send one delivery",
            self.duration.clone(),
        );
        registry.register(
            "mailgate_deliveries_recorded",
            "Attempt outcomes written to the database, by the status they set",
            self.recorded.clone(),
        );
        registry.register(
            "mailgate_deliveries_postponed",
            "Deliveries given back unattempted until their tenant's pacing turn or the end of its server's backoff",
            self.postponed.clone(),
        );
        registry.register(
            "mailgate_deliveries_settings_unreadable",
            "Deliveries that waited because their tenant's saved mail settings cannot be read (a corrupt row, a secret whose key is gone); the log names the tenant",
            self.settings_unreadable.clone(),
        );
        registry.register(
            "mailgate_settings_suspended",
            "Tenant settings versions suspended after configuration failures in a row (wrong password, SMTP AUTH off, sender refused, certificate no longer valid)",
            self.settings_suspended.clone(),
        );
        registry.register(
            "mailgate_deliveries_content_removed",
            "Deliveries whose recipient, subject, bodies and reply texts were removed after the retention period",
            self.content_removed.clone(),
        );
        registry.register(
            "mailgate_deliveries_removed",
            "Sent and failed deliveries deleted, with their attempts, past the history horizon (MAILGATE_DELIVERY_HISTORY_DAYS)",
            self.rows_removed.clone(),
        );
        registry.register(
            "mailgate_deliveries_fallbacks",
            "Deliveries sent through the platform default in their tenant's place, by reason",
            self.fallbacks.clone(),
        );
    }

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
        let (Some(outcome), Some(source)) = (
            OUTCOMES.iter().find(|x| **x == outcome),
            SOURCES.iter().find(|x| **x == source),
        ) else {
            return;
        };
        self.sends.get_or_create(&SendLabels { outcome, source }).inc();
        self.duration.observe(latency.as_secs_f64());
    }

    /// An outcome was written to the database.
    pub fn recorded(&self, status: DeliveryStatus) {
        if RECORDED.contains(&status) {
            self.recorded.get_or_create(&status_label(status)).inc();
        }
    }

    /// Deliveries were given back unattempted for later (pacing turn, server backoff).
    pub fn postponed(&self, n: usize) {
        self.postponed.inc_by(n as u64);
    }

    /// A delivery waited because its tenant's saved settings cannot be read.
    pub fn settings_unreadable(&self) {
        self.settings_unreadable.inc();
    }

    /// Retention removed the content of `n` deliveries.
    pub fn content_removed(&self, n: u64) {
        self.content_removed.inc_by(n);
    }

    /// The history horizon deleted `n` deliveries.
    pub fn rows_removed(&self, n: u64) {
        self.rows_removed.inc_by(n);
    }

    /// A settings version was suspended.
    pub fn settings_suspended(&self) {
        self.settings_suspended.inc();
    }

    /// A delivery was sent through the platform default in its tenant's place.
    pub fn fell_back(&self, reason: Fallback) {
        let reason = match reason {
            Fallback::Suspended => FALLBACK_REASONS[0],
            Fallback::TimeCritical => FALLBACK_REASONS[1],
        };
        self.fallbacks.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Deliveries given back for later so far.
    pub fn postponed_count(&self) -> u64 {
        self.postponed.get()
    }

    /// Outcomes written to the database that left the delivery in `status`.
    pub fn recorded_count(&self, status: DeliveryStatus) -> u64 {
        self.recorded.get_or_create(&status_label(status)).get()
    }
}
