//! The one cloneable state every handler gets: configuration and long-lived clients.

use std::sync::Arc;

use blob_kit::grpc::TracedChannel;
use blob_proto::llm::v1::companion_client::CompanionClient;
use blob_proto::session::v1::edge_guard_client::EdgeGuardClient;
use blob_proto::session::v1::families_client::FamiliesClient;
use blob_proto::session::v1::lessons_client::LessonsClient;
use blob_proto::session::v1::sessions_client::SessionsClient;
use blob_proto::stt::v1::speech_to_text_client::SpeechToTextClient;
use tonic_health::pb::health_client::HealthClient;

use crate::auth::backend::BackendTokens;
use crate::auth::firebase::FirebaseVerifier;
use crate::config::Config;

/// Shared by every request and socket; cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Parents' ID tokens.
    pub firebase: Arc<FirebaseVerifier>,
    /// The backend's own tokens.
    pub tokens: Arc<BackendTokens>,
    /// The session-service: users, children and family links.
    pub families: FamiliesClient<TracedChannel>,
    /// The session-service: sessions and their conversations.
    pub sessions: SessionsClient<TracedChannel>,
    /// The session-service: lessons and progress.
    pub lessons: LessonsClient<TracedChannel>,
    /// The session-service: request budgets, idempotency keys and store health.
    pub guard: EdgeGuardClient<TracedChannel>,
    /// The stt-service.
    pub stt: SpeechToTextClient<TracedChannel>,
    /// The llm-service.
    pub llm: CompanionClient<TracedChannel>,
    /// Cancelled when the gateway begins to shut down: live sockets suspend and close.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every live voice socket, so shutdown can wait for them to finish suspending.
    pub sockets: tokio_util::task::TaskTracker,
    /// The caps on voice sockets, in all and per account.
    pub capacity: std::sync::Arc<crate::ws::capacity::SocketCapacity>,
    /// Metrics served on the admin port.
    pub metrics: crate::metrics::GatewayMetrics,
    /// False while starting and once shutting down.
    pub readiness: blob_kit::admin::Readiness,
    /// gRPC health of the services behind the gateway, by name.
    pub downstream_health: Vec<(&'static str, HealthClient<TracedChannel>)>,
}

impl AppState {
    /// A unary request to a downstream service with the configured deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.config.downstream_timeout);
        request
    }
}
