//! Building the gateway: clients, verifier, router; bind; serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use blob_kit::grpc::{HeaderExtractor, lazy_channel, traced};
use blob_kit::shutdown::DEFAULT_GRACE;
use blob_proto::llm::v1::companion_client::CompanionClient;
use blob_proto::session::v1::edge_guard_client::EdgeGuardClient;
use blob_proto::session::v1::families_client::FamiliesClient;
use blob_proto::session::v1::lessons_client::LessonsClient;
use blob_proto::session::v1::sessions_client::SessionsClient;
use blob_proto::stt::v1::speech_to_text_client::SpeechToTextClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::auth::backend::BackendTokens;
use crate::auth::dev;
use crate::auth::firebase::{CertSource, FirebaseVerifier, RemoteCerts};
use crate::config::{AuthProvider, Config};
use crate::envelope::{self, ApiError, ErrorCode};
use crate::limits::MAX_BODY_BYTES;
use crate::metrics::GatewayMetrics;
use crate::routes;
use crate::state::AppState;
use crate::ws::capacity::SocketCapacity;
use crate::ws::socket::voice_socket;
use blob_kit::admin::Readiness;
use tonic_health::pb::health_client::HealthClient;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A built gateway, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    sockets: TaskTracker,
    readiness: Readiness,
    limits: crate::server::ConnectionLimits,
    metrics: GatewayMetrics,
}

impl Application {
    /// Builds clients and the router, and binds the HTTP listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let source = match config.auth_provider {
            AuthProvider::Firebase => {
                let http = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .context("building the HTTP client")?;
                CertSource::Remote(RemoteCerts::new(http, config.firebase_certs_url.clone()))
            }
            AuthProvider::Local => {
                tracing::warn!(
                    project = %config.firebase_project_id,
                    "AUTH_PROVIDER=local: accepting tokens from the development issuer; never use this in production"
                );
                dev::cert_source().map_err(anyhow::Error::msg)?
            }
        };
        let (metrics, readiness, _) =
            blob_kit::admin::start(config.admin_addr, GatewayMetrics::register).await?;
        let session_channel = traced(lazy_channel(&config.session_service_url, CONNECT_TIMEOUT)?);
        let stt_channel = traced(lazy_channel(&config.stt_service_url, CONNECT_TIMEOUT)?);
        let llm_channel = traced(lazy_channel(&config.llm_service_url, CONNECT_TIMEOUT)?);
        let capacity = SocketCapacity::new(config.ws.max_sockets, config.ws.max_sockets_per_user);
        let state = AppState {
            firebase: Arc::new({
                let verifier = FirebaseVerifier::new(config.firebase_project_id.clone(), source);
                if config.firebase_auth_emulator {
                    tracing::warn!("accepting unsigned Firebase Auth emulator tokens");
                    verifier.accepting_emulator_tokens()
                } else {
                    verifier
                }
            }),
            tokens: Arc::new(BackendTokens::new(&config.jwt_secret, config.jwt_ttl)),
            downstream_health: vec![
                ("session-service", HealthClient::new(session_channel.clone())),
                ("stt-service", HealthClient::new(stt_channel.clone())),
                ("llm-service", HealthClient::new(llm_channel.clone())),
            ],
            families: FamiliesClient::new(session_channel.clone()),
            sessions: SessionsClient::new(session_channel.clone()),
            lessons: LessonsClient::new(session_channel.clone()),
            guard: EdgeGuardClient::new(session_channel),
            stt: SpeechToTextClient::new(stt_channel),
            llm: CompanionClient::new(llm_channel),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            capacity,
            metrics,
            readiness,
        };
        let listener = TcpListener::bind(state.config.http_addr)
            .await
            .with_context(|| format!("binding GATEWAY_HTTP_ADDR {}", state.config.http_addr))?;
        let (shutdown, sockets) = (state.shutdown.clone(), state.sockets.clone());
        let readiness = state.readiness.clone();
        let (limits, metrics) = (state.config.connections.clone(), state.metrics.clone());
        Ok(Self { listener, router: router(state), shutdown, sockets, readiness, limits, metrics })
    }

    /// The bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes. Then it stops accepting connections, tells every live
    /// voice socket to suspend its session and close with 1001, and waits for them at most the
    /// grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "gateway listening");
        self.readiness.set(true);
        let token = self.shutdown.clone();
        let readiness = self.readiness.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Readiness fails first, so the load balancer stops sending new sockets.
            readiness.set(false);
            token.cancel();
        });
        let server = tokio::spawn(crate::server::serve(
            self.listener,
            self.router,
            self.limits,
            self.metrics,
            self.shutdown.clone(),
        ));
        self.shutdown.cancelled().await;
        // Upgraded voice sockets are not HTTP connections any more: the server's own graceful
        // shutdown does not wait for them, so wait for them here.
        self.sockets.close();
        let drained = async {
            let served = server.await;
            self.sockets.wait().await;
            served
        };
        match tokio::time::timeout(DEFAULT_GRACE, drained).await {
            Ok(served) => served.context("the HTTP server panicked"),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; stopping anyway");
                Ok(())
            }
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // The routes are registered once, in `routes`; the OpenAPI document is made from the same.
    let (api, _) = routes::api().split_for_parts();
    let api = api
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::limits::idempotency))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::limits::request_timeout));
    let address_limit =
        axum::middleware::from_fn_with_state(state.clone(), crate::limits::address_limit);
    let (health, _) = routes::health::router().split_for_parts();
    let cors = crate::limits::cors(&state.config.http.cors_allowed_origins);
    Router::new()
        .merge(health)
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/docs", get(crate::openapi::docs_page))
        .route("/console", get(crate::console::page))
        .route("/console/{file}", get(crate::console::asset))
        .route("/ws/voice", get(voice_socket))
        .merge(api)
        .fallback(envelope::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(address_limit)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(axum::middleware::from_fn(envelope::request_id))
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    let mut err = ApiError::new(ErrorCode::ValidationError, "method not allowed on this endpoint");
    err.status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    err
}

fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(envelope::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        http.method = %request.method(),
        http.path = %request.uri().path(),
        request_id,
        user_id = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}
