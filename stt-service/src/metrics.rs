//! The stt-service's metrics (served on the admin port).

use blob_kit::admin::latency_buckets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, linear_buckets};
use prometheus_client::registry::Registry;

/// Labels of a counter by outcome.
pub type Outcome = Vec<(&'static str, &'static str)>;

/// Every metric of the service; cheap to clone (the handles share their values).
#[derive(Clone, Debug)]
pub struct SttMetrics {
    /// Utterances waiting for a worker.
    pub queue_depth: Gauge,
    /// Time an utterance waited for a worker.
    pub queue_wait: Histogram,
    /// Time spent in whisper per utterance.
    pub inference: Histogram,
    /// Inference time over audio time.
    pub real_time_factor: Histogram,
    /// Utterances by outcome: transcribed, too_short, low_confidence, empty, failed, busy.
    pub utterances: Family<Outcome, Counter>,
    /// Open transcription streams.
    pub streams: Gauge,
}

impl SttMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            queue_depth: Gauge::default(),
            queue_wait: Histogram::new(latency_buckets()),
            inference: Histogram::new(latency_buckets()),
            real_time_factor: Histogram::new(linear_buckets(0.05, 0.05, 20)),
            utterances: Family::default(),
            streams: Gauge::default(),
        };
        registry.register(
            "stt_queue_depth",
            "Utterances waiting for a worker",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "stt_queue_wait_seconds",
            "Time an utterance waited for a worker",
            metrics.queue_wait.clone(),
        );
        registry.register(
            "stt_inference_seconds",
            "Whisper time per utterance",
            metrics.inference.clone(),
        );
        registry.register(
            "stt_real_time_factor",
            "Inference time over audio time",
            metrics.real_time_factor.clone(),
        );
        registry.register("stt_utterances", "Utterances by outcome", metrics.utterances.clone());
        registry.register("stt_streams", "Open transcription streams", metrics.streams.clone());
        metrics
    }

    /// Counts an utterance's outcome.
    pub fn outcome(&self, outcome: &'static str) {
        self.utterances.get_or_create(&vec![("outcome", outcome)]).inc();
    }
}

impl Default for SttMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}
