//! The admin HTTP server every service runs on `ADMIN_ADDR`, apart from its main port:
//! `GET /metrics` (Prometheus text format), `GET /health/live` (the process is up) and
//! `GET /health/ready` (the service can take work: 503 while starting and once shutting down).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Whether the service can take work; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the service ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// Starts the admin server on `addr` for the process's lifetime, reporting not ready until the
/// service sets its [`Readiness`]. `register` adds the service's metrics to the registry.
pub async fn start<M>(
    addr: SocketAddr,
    register: impl FnOnce(&mut Registry) -> M,
) -> anyhow::Result<(M, Readiness, SocketAddr)> {
    let mut registry = Registry::with_prefix("blob");
    let metrics = register(&mut registry);
    let readiness = Readiness::default();
    let bound = spawn(addr, Arc::new(registry), readiness.clone(), std::future::pending()).await?;
    Ok((metrics, readiness, bound))
}

/// Binds `addr` and serves the admin routes until `shutdown` completes.
pub async fn spawn(
    addr: SocketAddr,
    registry: Arc<Registry>,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("binding ADMIN_ADDR {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route("/health/ready", get(ready))
        .with_state(Admin { registry, readiness });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %err, "admin server failed");
        }
    });
    tracing::info!(addr = %bound, "admin server listening (/metrics, /health/live, /health/ready)");
    Ok(bound)
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                String::new(),
            )
        }
    }
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Latency buckets in seconds, from 1 ms to about 33 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}
