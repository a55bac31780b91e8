//! Building the service: choose the provider, bind the listener, serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use blob_proto::llm::v1::companion_server::CompanionServer;
use tokio::net::TcpListener;

use blob_kit::admin::Readiness;

use crate::bypass::BypassProvider;
use crate::config::{Config, Fallback, ProviderConfig};
use crate::gemini::GeminiProvider;
use crate::local::{LocalConfig, LocalProvider};
use crate::metrics::LlmMetrics;
use crate::provider::ReplyProvider;
use crate::service::{CompanionService, ReplyPolicy};

/// A built llm-service, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    service: CompanionService,
    readiness: Readiness,
    /// Serve gRPC reflection (`GRPC_REFLECTION`).
    reflection: bool,
}

impl Application {
    /// Builds the provider and binds the gRPC listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (metrics, readiness, _) =
            blob_kit::admin::start(config.admin_addr, LlmMetrics::register).await?;
        let provider: Arc<dyn ReplyProvider> = match config.provider {
            ProviderConfig::Bypass => {
                tracing::warn!("BYPASSLLM: every reply is the same fixed sentence");
                Arc::new(BypassProvider)
            }
            ProviderConfig::Local(local) => load_local(local).await?,
            ProviderConfig::OpenAi(openai) => {
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(config.timeout)
                    .build()
                    .context("building the HTTP client")?;
                tracing::info!(model = %openai.model, base = %openai.api_base, "replies from an OpenAI-compatible endpoint");
                Arc::new(crate::openai::OpenAiProvider::new(http, openai))
            }
            ProviderConfig::Gemini(gemini) => {
                let http = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(config.timeout)
                    .build()
                    .context("building the HTTP client")?;
                tracing::info!(model = %gemini.model, "replies from Gemini");
                Arc::new(GeminiProvider::new(http, gemini).context("setting up Gemini")?)
            }
        };
        let fallback: Option<Arc<dyn ReplyProvider>> = match config.fallback {
            Fallback::None => None,
            Fallback::Bypass => {
                tracing::info!("while the provider fails, the bypass reply answers");
                Some(Arc::new(BypassProvider))
            }
            Fallback::Local(local) => {
                tracing::info!("while the provider fails, the local model answers");
                Some(load_local(local).await?)
            }
        };
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding LLM_GRPC_ADDR {}", config.grpc_addr))?;
        Ok(Self {
            listener,
            service: CompanionService::with_fallback(
                provider,
                fallback,
                config.breaker,
                ReplyPolicy {
                    timeout: config.timeout,
                    first_token_timeout: config.first_token_timeout,
                    max_retries: config.max_retries,
                    history_turns: config.history_turns,
                    history_token_budget: config.history_token_budget,
                },
                metrics,
            )
            .with_budget(config.reply_budget),
            readiness,
            reflection: config.grpc_reflection,
        })
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
        tracing::info!(addr = %self.local_addr(), "llm-service listening");
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(CompanionServer::new(self.service));
        blob_kit::grpc::serve(
            self.listener,
            routes,
            &["blob.llm.v1.Companion"],
            if self.reflection { &[blob_proto::FILE_DESCRIPTOR_SET] } else { &[] },
            self.readiness,
            shutdown,
        )
        .await
    }
}

/// Loads a local GGUF model off the async runtime.
async fn load_local(config: LocalConfig) -> anyhow::Result<Arc<dyn ReplyProvider>> {
    let path = config.model_path.clone();
    let (provider, report) = tokio::task::spawn_blocking(move || LocalProvider::load(config))
        .await
        .context("loading the local model")??;
    tracing::info!(
        model = %path.display(),
        load_seconds = report.load_seconds,
        "replies from the local model"
    );
    Ok(Arc::new(provider))
}
