//! `GET /health`: liveness of the gateway itself.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::envelope::{ApiError, ApiOk, ErrorCode};
use crate::state::AppState;

/// The health payload.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    /// `gateway`.
    pub service: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// The gateway process is up and serving HTTP.
pub async fn health() -> ApiOk<Health> {
    ApiOk(
        StatusCode::OK,
        Health { status: "healthy", service: "gateway", version: env!("CARGO_PKG_VERSION") },
    )
}

/// Readiness of one service behind the gateway.
#[derive(Debug, Serialize)]
pub struct Downstream {
    /// The service.
    pub service: &'static str,
    /// `serving`, `not_serving` or `unreachable`.
    pub status: &'static str,
}

/// The readiness payload.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each service behind the gateway.
    pub services: Vec<Downstream>,
}

/// `GET /health/ready`: 200 when the gateway and every service behind it can take work, else
/// 503 `SERVICE_UNAVAILABLE` with which one cannot (and while shutting down).
pub async fn ready(State(state): State<AppState>) -> Result<ApiOk<Readiness>, ApiError> {
    let checks = state.downstream_health.iter().map(|(service, client)| {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
            request.set_timeout(Duration::from_secs(1));
            let status = match client.check(request).await {
                Ok(response) if response.get_ref().status == ServingStatus::Serving as i32 => {
                    "serving"
                }
                Ok(_) => "not_serving",
                Err(_) => "unreachable",
            };
            Downstream { service, status }
        }
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
