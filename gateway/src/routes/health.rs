//! `GET /health`: liveness of the gateway itself.

use axum::http::StatusCode;
use serde::Serialize;

use crate::envelope::ApiOk;

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
