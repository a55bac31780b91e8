//! The session-service's metrics (served on the admin port).

use std::time::Instant;

use blob_kit::admin::latency_buckets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a metric.
pub type Labels = Vec<(&'static str, &'static str)>;

/// Every metric of the service; cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionMetrics {
    /// Redis latency per hot-state operation.
    pub redis_seconds: Family<Labels, Histogram>,
    /// Store failures by store (`redis`, `cold`).
    pub store_errors: Family<Labels, Counter>,
    /// Sessions opened, by outcome (created, discovered, resumed).
    pub opened: Family<Labels, Counter>,
    /// Sessions by state, sampled from Redis every few seconds.
    pub sessions: Family<Labels, Gauge>,
}

impl SessionMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            redis_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            store_errors: Family::default(),
            opened: Family::default(),
            sessions: Family::default(),
        };
        registry.register(
            "session_redis_seconds",
            "Redis latency per hot-state operation",
            metrics.redis_seconds.clone(),
        );
        registry.register(
            "session_store_errors",
            "Store failures by store",
            metrics.store_errors.clone(),
        );
        registry.register("session_opened", "Sessions opened by outcome", metrics.opened.clone());
        registry.register("sessions", "Sessions by state (sampled)", metrics.sessions.clone());
        metrics
    }

    /// Times one hot-state operation until the returned guard is dropped.
    pub fn time(&self, op: &'static str) -> OpTimer {
        OpTimer {
            histogram: self.redis_seconds.get_or_create(&vec![("op", op)]).clone(),
            started: Instant::now(),
        }
    }

    /// Counts a store failure.
    pub fn store_error(&self, store: &'static str) {
        self.store_errors.get_or_create(&vec![("store", store)]).inc();
    }
}

impl Default for SessionMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

/// Records an operation's latency when dropped.
#[derive(Debug)]
pub struct OpTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for OpTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
