//! Building the service: connect the stores, bind the listener, serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::TcpListener;

use blob_kit::admin::Readiness;

use crate::cold::{ColdStore, FirestoreColdStore, SqliteColdStore};
use crate::config::{ColdConfig, Config};
use crate::hot::HotStore;
use crate::metrics::SessionMetrics;
use crate::service::{Core, SERVICE_NAMES};
use crate::signals::Signals;

/// A built session-service, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    service: Core,
    readiness: Readiness,
    /// Serve gRPC reflection (`GRPC_REFLECTION`).
    reflection: bool,
}

/// The Redis client for `REDIS_URL`; over TLS (`rediss://`) it trusts `REDIS_TLS_CA_PATH`, or
/// the system's roots.
fn redis_client(config: &Config) -> anyhow::Result<redis::Client> {
    let invalid = || format!("invalid REDIS_URL {:?}", config.redis_url);
    if !config.redis_url.starts_with("rediss://") {
        return redis::Client::open(config.redis_url.as_str()).with_context(invalid);
    }
    // Several crates link rustls with different providers; say which one this process uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match &config.redis_tls_ca_path {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading REDIS_TLS_CA_PATH {}", path.display()))?,
        ),
        None => None,
    };
    let certificates = redis::TlsCertificates { client_tls: None, root_cert };
    redis::Client::build_with_tls(config.redis_url.as_str(), certificates).with_context(invalid)
}

impl Application {
    /// Connects to Redis and binds the gRPC listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (metrics, readiness, _) =
            blob_kit::admin::start(config.admin_addr, SessionMetrics::register).await?;
        let client = redis_client(&config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let redis = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .context("connecting to Redis")?;
        let hot = HotStore::new(redis, config.ttl, metrics.clone());
        hot.ping().await.context("pinging Redis")?;
        let signals = Signals::start(client).await.context("subscribing to session signals")?;
        tokio::spawn(sample_session_counts(hot.clone(), metrics.clone()));
        let cold = open_cold_store(&config.cold).await?;
        match crate::cold::catalogue::seed(cold.as_ref()).await {
            Ok(written) => tracing::info!(store = cold.kind(), written, "lessons catalogue seeded"),
            // The store may come back; lessons are seeded again at the next start.
            Err(err) => tracing::error!(error = %err, "could not seed the lessons catalogue"),
        }
        let service = Core::new(hot, cold, signals, metrics);

        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding SESSION_GRPC_ADDR {}", config.grpc_addr))?;
        Ok(Self { listener, service, readiness, reflection: config.grpc_reflection })
    }

    /// The bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "session-service listening");
        let mut routes = tonic::service::RoutesBuilder::default();
        self.service.add_services(&mut routes);
        blob_kit::grpc::serve(
            self.listener,
            routes,
            &SERVICE_NAMES,
            if self.reflection { &[blob_proto::FILE_DESCRIPTOR_SET] } else { &[] },
            self.readiness,
            shutdown,
        )
        .await
    }
}

/// Opens the configured cold store.
async fn open_cold_store(config: &ColdConfig) -> anyhow::Result<Arc<dyn ColdStore>> {
    Ok(match config {
        ColdConfig::Embedded { path } => {
            let store = SqliteColdStore::open(path)
                .await
                .with_context(|| format!("opening EMBEDDED_STORE_PATH {}", path.display()))?;
            tracing::info!(path = %path.display(), "cold store: embedded SQLite");
            Arc::new(store)
        }
        ColdConfig::Firestore { project_id, database_id, timeout } => {
            let store = FirestoreColdStore::connect(project_id, database_id, *timeout)
                .await
                .context("connecting to Firestore")?;
            tracing::info!(%project_id, %database_id, "cold store: Firestore");
            Arc::new(store)
        }
    })
}

/// How often the sessions-by-state gauge is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Keeps the sessions-by-state gauge current.
async fn sample_session_counts(hot: HotStore, metrics: SessionMetrics) {
    let mut interval = tokio::time::interval(SAMPLE_EVERY);
    loop {
        interval.tick().await;
        match hot.count_states().await {
            Ok((active, suspended)) => {
                metrics.sessions.get_or_create(&vec![("state", "active")]).set(active as i64);
                metrics.sessions.get_or_create(&vec![("state", "suspended")]).set(suspended as i64);
            }
            Err(err) => tracing::debug!(error = %err, "could not sample session counts"),
        }
    }
}
