//! The gateway's metrics (served on the admin port).

use std::time::Instant;

use blob_kit::admin::latency_buckets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a metric.
pub type Labels = Vec<(&'static str, String)>;

/// Every metric of the gateway; cheap to clone.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    /// Open voice sockets.
    pub live_sockets: Gauge,
    /// Time from the end of the child's speech to each stage of the turn: `transcript`
    /// (`stt_result` sent), `first_token` (the model's first text), `first_sentence` (first
    /// `ai_response.chunk` sent), `reply_complete` (`ai_response` sent).
    pub turn_stage: Family<Labels, Histogram>,
    /// `error` events sent on voice sockets, by code.
    pub ws_errors: Family<Labels, Counter>,
    /// Voice sockets closed by the server, by close code.
    pub ws_closes: Family<Labels, Counter>,
    /// REST requests refused by the per-user rate limit.
    pub rate_limited: Counter,
    /// Open TCP connections (voice sockets included).
    pub http_connections: Gauge,
    /// Times a new connection had to wait because `HTTP_MAX_CONNECTIONS` were open.
    pub connection_cap_reached: Counter,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            live_sockets: Gauge::default(),
            turn_stage: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            ws_errors: Family::default(),
            ws_closes: Family::default(),
            rate_limited: Counter::default(),
            http_connections: Gauge::default(),
            connection_cap_reached: Counter::default(),
        };
        registry.register(
            "gateway_live_sockets",
            "Open voice sockets",
            metrics.live_sockets.clone(),
        );
        registry.register(
            "gateway_turn_stage_seconds",
            "Time from the end of speech to each stage of a voice turn",
            metrics.turn_stage.clone(),
        );
        registry.register(
            "gateway_ws_errors",
            "Error events sent on voice sockets",
            metrics.ws_errors.clone(),
        );
        registry.register(
            "gateway_ws_closes",
            "Voice sockets closed by the server",
            metrics.ws_closes.clone(),
        );
        registry.register(
            "gateway_rate_limited",
            "REST requests refused by the per-user rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "gateway_http_connections",
            "Open TCP connections, voice sockets included",
            metrics.http_connections.clone(),
        );
        registry.register(
            "gateway_connection_cap_reached",
            "Times a new connection waited because the connection cap was reached",
            metrics.connection_cap_reached.clone(),
        );
        metrics
    }

    /// Records a stage of a turn whose speech ended at `speech_end`.
    pub fn stage(&self, stage: &'static str, speech_end: Option<Instant>) {
        if let Some(end) = speech_end {
            let labels = vec![("stage", stage.to_owned())];
            self.turn_stage.get_or_create(&labels).observe(end.elapsed().as_secs_f64());
        }
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}
