//! Logs and traces: `tracing` everywhere, pretty or JSON logs, and OpenTelemetry OTLP export of
//! spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, with W3C trace context propagation.
//!
//! Variables: `RUST_LOG` (filter; default `info`), `LOG_FORMAT` (`pretty` or `json`; default
//! `pretty`), `OTEL_EXPORTER_OTLP_ENDPOINT` (OTLP/gRPC collector, e.g. `http://otel:4317`),
//! `OTEL_SERVICE_NAME` and the other standard `OTEL_*` resource variables.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Flushes and stops the span exporter when dropped (at the end of `main`).
#[must_use = "dropping the guard stops span export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("span exporter shutdown failed: {err}");
        }
    }
}

/// Installs the global subscriber for a service named `service_name` (the binary's name).
///
/// Must be called inside a Tokio runtime when OTLP export is configured.
pub fn init(service_name: &str) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed()
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt::layer().with_target(true).with_ansi(ansi).boxed()
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|v| !v.is_empty());
    let (otel_layer, provider) = match endpoint.map(|e| build_provider(service_name, &e)) {
        Some(Ok(provider)) => {
            let tracer = provider.tracer(service_name.to_owned());
            // The exporter's own transport must not trace itself, and nothing below INFO is
            // exported: debug events may carry a child's words, which never leave the process.
            let quiet = Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("h2", tracing::level_filters::LevelFilter::OFF)
                .with_target("hyper", tracing::level_filters::LevelFilter::OFF)
                .with_target("hyper_util", tracing::level_filters::LevelFilter::OFF)
                .with_target("tonic", tracing::level_filters::LevelFilter::OFF)
                .with_target("tower", tracing::level_filters::LevelFilter::OFF)
                .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF)
                .with_target("opentelemetry_sdk", tracing::level_filters::LevelFilter::OFF)
                .with_target("opentelemetry_otlp", tracing::level_filters::LevelFilter::OFF);
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(quiet);
            (Some(layer), Some(provider))
        }
        Some(Err(err)) => {
            eprintln!("OTLP export disabled: {err:#}");
            (None, None)
        }
        None => (None, None),
    };

    Registry::default().with(filter).with(fmt_layer).with(otel_layer).init();
    TelemetryGuard { provider }
}

fn build_provider(service_name: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
