//! Serving and calling gRPC the same way in every service: health (`grpc.health.v1`) and
//! reflection on every server, W3C trace context carried across calls, bounded drain on shutdown.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use tokio::net::TcpListener;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::RoutesBuilder;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::admin::Readiness;
use crate::shutdown::DEFAULT_GRACE;

/// `GRPC_REFLECTION`: whether a server describes its services to anyone who asks (grpcurl).
/// By default only on a loopback address, i.e. on a developer's machine: in a cluster the
/// schema is not handed to whoever reaches the port.
pub fn reflection_enabled(env: &mut crate::config::EnvReader, addr: &std::net::SocketAddr) -> bool {
    env.flag("GRPC_REFLECTION", addr.ip().is_loopback())
}

/// Serves `routes` on `listener` until `shutdown` completes.
///
/// `services` are the fully qualified names reported by `grpc.health.v1` (the empty name, the
/// whole server, is always reported). `descriptors` are encoded file descriptor sets for
/// reflection (v1 and v1alpha, so older grpcurl builds work too); none, no reflection at all
/// (see [`reflection_enabled`]). `readiness` (the admin
/// server's) turns ready now. When `shutdown` fires, `readiness` and every service turn not
/// ready (`NOT_SERVING`) first, then in-flight calls drain for at most the grace period.
pub async fn serve(
    listener: TcpListener,
    mut routes: RoutesBuilder,
    services: &[&str],
    descriptors: &[&[u8]],
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    names.push(String::new());
    for name in &names {
        reporter.set_service_status(name, ServingStatus::Serving).await;
    }

    routes.add_service(health_service);
    if !descriptors.is_empty() {
        let mut v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for set in descriptors {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        routes.add_service(v1.build_v1().context("building reflection v1")?);
        routes.add_service(v1alpha.build_v1alpha().context("building reflection v1alpha")?);
    }

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    readiness.set(true);
    let drain = async move {
        shutdown.await;
        readiness.set(false);
        for name in &names {
            reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
        let _ = stopping_tx.send(());
    };

    let incoming = tokio_stream_incoming(listener);
    let server = tonic::transport::Server::builder()
        .trace_fn(server_span)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, drain);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("gRPC server failed"),
        _ = stopping_rx => {}
    }
    match tokio::time::timeout(DEFAULT_GRACE, server).await {
        Ok(result) => result.context("gRPC server failed while draining"),
        Err(_) => {
            tracing::warn!("gRPC calls still running after the grace period; stopping anyway");
            Ok(())
        }
    }
}

fn tokio_stream_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// The span of one incoming call, continuing the caller's trace when it sent `traceparent`.
fn server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %request.uri().path(),
        rpc.system = "grpc",
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

/// A lazily connecting channel to `url` with a connect timeout; cheap to clone and share.
pub fn lazy_channel(url: &str, connect_timeout: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid gRPC URL {url:?}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// Client interceptor that sends the current span's trace context as `traceparent`.
pub fn inject_trace_context(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    });
    Ok(request)
}

/// The type of a client built with [`inject_trace_context`].
pub type TracedChannel = tonic::service::interceptor::InterceptedService<
    Channel,
    fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
>;

/// Wraps a channel so that every call carries the current trace context.
pub fn traced(channel: Channel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, inject_trace_context as _)
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) =
            (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value.as_str()))
        {
            self.0.insert(key, value);
        }
    }
}

/// The current span's W3C trace context as a map (to carry it inside a message).
pub fn current_trace_context() -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut map);
    });
    map
}

/// Makes `span` a child of the trace context in `map` (when it holds one).
pub fn set_parent_from(span: &tracing::Span, map: &std::collections::HashMap<String, String>) {
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(map));
    let _ = span.set_parent(parent);
}

/// Reads W3C trace context from HTTP headers (REST, WebSocket upgrade, gRPC).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod reflection_tests {
    use super::reflection_enabled;
    use crate::config::EnvReader;

    #[test]
    fn reflection_is_on_for_loopback_only_unless_set() {
        let loopback = "127.0.0.1:50051".parse().unwrap();
        let any = "0.0.0.0:50051".parse().unwrap();
        let unset = || EnvReader::from_pairs(Vec::<(String, String)>::new());
        assert!(reflection_enabled(&mut unset(), &loopback));
        assert!(!reflection_enabled(&mut unset(), &any));
        let mut on = EnvReader::from_pairs([("GRPC_REFLECTION", "true")]);
        assert!(reflection_enabled(&mut on, &any));
        let mut off = EnvReader::from_pairs([("GRPC_REFLECTION", "false")]);
        assert!(!reflection_enabled(&mut off, &loopback));
    }
}
