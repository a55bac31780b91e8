//! Building the service: connect the stores, bind the listener, serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blob_proto::session::v1::session_store_server::SessionStoreServer;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::TcpListener;

use crate::cold::MemoryColdStore;
use crate::config::Config;
use crate::hot::HotStore;
use crate::service::SessionService;
use crate::signals::Signals;

/// A built session-service, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    service: SessionService,
}

impl Application {
    /// Connects to Redis and binds the gRPC listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.redis_url.as_str())
            .with_context(|| format!("invalid REDIS_URL {:?}", config.redis_url))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let redis = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .context("connecting to Redis")?;
        let hot = HotStore::new(redis, config.ttl);
        hot.ping().await.context("pinging Redis")?;
        let signals = Signals::start(client).await.context("subscribing to session signals")?;
        let service = SessionService::new(hot, Arc::new(MemoryColdStore::default()), signals);

        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding SESSION_GRPC_ADDR {}", config.grpc_addr))?;
        Ok(Self { listener, service })
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
        routes.add_service(SessionStoreServer::new(self.service));
        blob_kit::grpc::serve(
            self.listener,
            routes,
            &["blob.session.v1.SessionStore"],
            &[blob_proto::FILE_DESCRIPTOR_SET],
            shutdown,
        )
        .await
    }
}
