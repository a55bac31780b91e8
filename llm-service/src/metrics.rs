//! The llm-service's metrics (served on the admin port).

use blob_kit::admin::latency_buckets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a counter.
pub type Labels = Vec<(&'static str, &'static str)>;

/// Every metric of the service; cheap to clone.
#[derive(Clone, Debug)]
pub struct LlmMetrics {
    /// Time from the request to the first text.
    pub first_token: Histogram,
    /// Time from the request to the complete reply.
    pub reply: Histogram,
    /// Completed replies.
    pub replies: Counter,
    /// Failed provider calls by kind: rate_limited, unavailable, timeout, rejected.
    pub errors: Family<Labels, Counter>,
    /// Retried provider calls.
    pub retries: Counter,
    /// Replies given by the fallback provider.
    pub fallbacks: Counter,
    /// Sentences replaced by the output filter, by reason (and empty replies).
    pub filtered: Family<Labels, Counter>,
    /// Replies held to their shape, by reason: cut at the most sentences or words, a first
    /// sentence shortened, markup taken out.
    pub shaped: Family<Labels, Counter>,
    /// Child utterances answered with a safety line instead of the model, by concern.
    pub concerns: Family<Labels, Counter>,
}

impl LlmMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            first_token: Histogram::new(latency_buckets()),
            reply: Histogram::new(latency_buckets()),
            replies: Counter::default(),
            errors: Family::default(),
            retries: Counter::default(),
            fallbacks: Counter::default(),
            filtered: Family::default(),
            shaped: Family::default(),
            concerns: Family::default(),
        };
        registry.register(
            "llm_first_token_seconds",
            "Time to the reply's first text",
            metrics.first_token.clone(),
        );
        registry.register("llm_reply_seconds", "Time to the complete reply", metrics.reply.clone());
        registry.register("llm_replies", "Completed replies", metrics.replies.clone());
        registry.register("llm_errors", "Failed provider calls by kind", metrics.errors.clone());
        registry.register("llm_retries", "Retried provider calls", metrics.retries.clone());
        registry.register(
            "llm_fallbacks",
            "Replies given by the fallback",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "llm_filtered",
            "Sentences replaced by the output filter, by reason",
            metrics.filtered.clone(),
        );
        registry.register(
            "llm_shaped",
            "Replies held to the length and form a child can follow, by reason",
            metrics.shaped.clone(),
        );
        registry.register(
            "llm_concerns",
            "Child utterances answered with a safety line instead of the model, by concern",
            metrics.concerns.clone(),
        );
        metrics
    }

    /// Counts an utterance answered with a safety line.
    pub fn concern(&self, concern: &'static str) {
        self.concerns.get_or_create(&vec![("concern", concern)]).inc();
    }

    /// Counts a reply held to its shape.
    pub fn shaped(&self, reason: &'static str) {
        self.shaped.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts a replaced sentence.
    pub fn filtered(&self, reason: &'static str) {
        self.filtered.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// Counts a failure.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&vec![("kind", kind)]).inc();
    }
}

impl Default for LlmMetrics {
    /// Metrics registered nowhere (tests, tools).
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}
