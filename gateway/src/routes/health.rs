//! `GET /health`: liveness of the gateway itself.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::envelope::{ApiError, ApiOk, ErrorCode, Meta};
use crate::state::AppState;

/// The health routes, registered once for the router and the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready)).routes(routes!(services))
}

/// The health payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    /// `gateway`.
    pub service: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// The gateway process is up and serving HTTP. Beside the envelope the body carries a top-level
/// `"status": "ok"`, which the proof of concept's deploy check reads.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    summary = "The gateway is up",
    responses(
        (status = 200, description = "Healthy", body = Health)
    )
)]
pub async fn health() -> Response {
    #[derive(Serialize)]
    struct Body {
        status: &'static str,
        success: bool,
        data: Health,
        meta: Meta,
    }
    let data = Health { status: "healthy", service: "gateway", version: env!("CARGO_PKG_VERSION") };
    let body = Body { status: "ok", success: true, data, meta: Meta::now() };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Readiness of one service behind the gateway.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Downstream {
    /// The service.
    pub service: &'static str,
    /// `serving`, `not_serving` or `unreachable`.
    pub status: &'static str,
}

/// The readiness payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each service behind the gateway.
    pub services: Vec<Downstream>,
}

/// `GET /health/ready`: 200 when the gateway and every service behind it can take work, else
/// 503 `SERVICE_UNAVAILABLE` with which one cannot (and while shutting down).
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    summary = "The gateway and every service behind it can take work",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "SERVICE_UNAVAILABLE: not ready; details list the services")
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<ApiOk<Readiness>, ApiError> {
    let checks = state.downstream_health.iter().map(|(service, client)| async move {
        let status = match probe(client).await {
            Probe::Serving => "serving",
            Probe::NotServing => "not_serving",
            Probe::Unreachable(_) => "unreachable",
        };
        Downstream { service, status }
    });
    let services = futures::future::join_all(checks).await;
    let all_serving = services.iter().all(|d| d.status == "serving");
    if state.readiness.is_ready() && all_serving {
        return Ok(ApiOk(StatusCode::OK, Readiness { status: "ready", services }));
    }
    let mut err = ApiError::new(ErrorCode::ServiceUnavailable, "not ready");
    err.details = Some(serde_json::json!({
        "shutting_down": !state.readiness.is_ready(),
        "services": services,
    }));
    Err(err)
}

/// One dependency in `/health/services`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dependency {
    /// `session-service`, `stt-service`, `llm-service`, `redis` or `cold_store`.
    pub name: String,
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    /// How long the check took, in milliseconds.
    pub latency_ms: u32,
    /// Why it is unhealthy (empty when healthy).
    pub detail: String,
}

/// The `/health/services` payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Services {
    /// `healthy` when every dependency is, else `degraded`.
    pub status: &'static str,
    /// Each dependency.
    pub dependencies: Vec<Dependency>,
}

/// `GET /health/services`: every dependency of the API and how it answers — the services behind
/// the gateway (gRPC health) and the session-service's stores (Redis and the cold store).
/// Always 200 while the gateway runs; `status` says whether anything is down.
#[utoipa::path(
    get,
    path = "/health/services",
    tag = "health",
    summary = "Every dependency and how it answers",
    responses(
        (status = 200, description = "Each dependency", body = Services)
    )
)]
pub async fn services(State(state): State<AppState>) -> ApiOk<Services> {
    let checks = state.downstream_health.iter().map(|(service, client)| async move {
        let started = std::time::Instant::now();
        let detail = match probe(client).await {
            Probe::Serving => String::new(),
            Probe::NotServing => "not serving".to_owned(),
            Probe::Unreachable(code) => format!("unreachable ({code:?})"),
        };
        dependency((*service).to_owned(), detail, started.elapsed())
    });
    let mut stores_client = state.guard.clone();
    let stores = async move {
        let mut request = tonic::Request::new(blob_proto::session::v1::CheckStoresRequest {});
        request.set_timeout(Duration::from_secs(2));
        stores_client.check_stores(request).await
    };
    let (mut dependencies, stores) = tokio::join!(futures::future::join_all(checks), stores);
    match stores {
        Ok(response) => {
            dependencies.extend(response.into_inner().stores.into_iter().map(|s| Dependency {
                status: if s.ok { "healthy" } else { "unhealthy" },
                name: s.name,
                latency_ms: s.latency_ms,
                detail: s.detail,
            }))
        }
        Err(status) => {
            for name in ["redis", "cold_store"] {
                dependencies.push(Dependency {
                    name: name.to_owned(),
                    status: "unhealthy",
                    latency_ms: 0,
                    detail: format!(
                        "unknown: the session-service did not answer ({:?})",
                        status.code()
                    ),
                });
            }
        }
    }
    let healthy = dependencies.iter().all(|d| d.status == "healthy");
    ApiOk(
        StatusCode::OK,
        Services { status: if healthy { "healthy" } else { "degraded" }, dependencies },
    )
}

fn dependency(name: String, detail: String, took: Duration) -> Dependency {
    Dependency {
        status: if detail.is_empty() { "healthy" } else { "unhealthy" },
        name,
        latency_ms: took.as_millis() as u32,
        detail,
    }
}

/// What a service's gRPC health check said.
enum Probe {
    Serving,
    NotServing,
    Unreachable(tonic::Code),
}

/// Asks one service's `grpc.health.v1` about the whole server, waiting at most a second.
async fn probe(
    client: &tonic_health::pb::health_client::HealthClient<blob_kit::grpc::TracedChannel>,
) -> Probe {
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(Duration::from_secs(1));
    match client.clone().check(request).await {
        Ok(response) if response.get_ref().status == ServingStatus::Serving as i32 => {
            Probe::Serving
        }
        Ok(_) => Probe::NotServing,
        Err(status) => Probe::Unreachable(status.code()),
    }
}
