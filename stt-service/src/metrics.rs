//! The stt-service's metrics (served on the admin port).

use blob_kit::admin::latency_buckets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
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
    /// Utterances by outcome: transcribed, too_short, low_confidence, empty, hallucination,
    /// failed, busy, cancelled (the stream closed and the inference was stopped), discarded
    /// (the stream closed too late to stop it).
    pub utterances: Family<Outcome, Counter>,
    /// Open transcription streams.
    pub streams: Gauge,
    /// Time per voice-activity model call (one 32 ms chunk).
    pub vad_inference: Histogram,
    /// Voice-activity model calls that failed (the energy gate decided those chunks).
    pub vad_errors: Counter,
    /// Clips decoded again with the full window after a decoder loop.
    pub loop_retries: Counter,
    /// Time per end-of-turn model call (feature extraction and inference).
    pub turn_inference: Histogram,
    /// End-of-turn model verdicts at a pause: complete, incomplete, failed.
    pub turn_checks: Family<Outcome, Counter>,
    /// Utterances by what ended them: turn (the model judged it complete), backstop (the
    /// longest silence), silence (the fixed silence, without the model), max_length, flush.
    pub turn_ends: Family<Outcome, Counter>,
    /// Speculative transcriptions started at a pause, by outcome: hit (the turn ended there and
    /// the transcript was used), miss (speech resumed; it was dropped), busy (no free worker).
    pub speculations: Family<Outcome, Counter>,
    /// Turns the model ended that the child went on with within a second.
    pub turn_cut_offs: Counter,
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
            vad_inference: Histogram::new(exponential_buckets(0.000_025, 2.0, 12)),
            vad_errors: Counter::default(),
            loop_retries: Counter::default(),
            turn_inference: Histogram::new(exponential_buckets(0.002, 2.0, 10)),
            turn_checks: Family::default(),
            turn_ends: Family::default(),
            speculations: Family::default(),
            turn_cut_offs: Counter::default(),
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
        registry.register(
            "stt_vad_inference_seconds",
            "Voice-activity model time per 32 ms chunk",
            metrics.vad_inference.clone(),
        );
        registry.register(
            "stt_vad_errors",
            "Voice-activity model calls that failed",
            metrics.vad_errors.clone(),
        );
        registry.register(
            "stt_loop_retries",
            "Clips decoded again with the full window after a decoder loop",
            metrics.loop_retries.clone(),
        );
        registry.register(
            "stt_turn_inference_seconds",
            "End-of-turn model time per call, features included",
            metrics.turn_inference.clone(),
        );
        registry.register(
            "stt_turn_checks",
            "End-of-turn model verdicts at a pause",
            metrics.turn_checks.clone(),
        );
        registry.register(
            "stt_turn_ends",
            "Utterances by what ended them",
            metrics.turn_ends.clone(),
        );
        registry.register(
            "stt_speculations",
            "Speculative transcriptions by outcome",
            metrics.speculations.clone(),
        );
        registry.register(
            "stt_turn_cut_offs",
            "Turns the end-of-turn model ended that the child went on with within a second",
            metrics.turn_cut_offs.clone(),
        );
        metrics
    }

    /// Records one voice-activity model call.
    pub fn vad_inference(&self, took: std::time::Duration) {
        self.vad_inference.observe(took.as_secs_f64());
    }

    /// Counts a label of one of the outcome families.
    pub fn count(family: &Family<Outcome, Counter>, label: &'static str, value: &'static str) {
        family.get_or_create(&vec![(label, value)]).inc();
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
