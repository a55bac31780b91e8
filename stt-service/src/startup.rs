//! Building the service: load the model, bind the listener, serve until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use blob_proto::stt::v1::speech_to_text_server::SpeechToTextServer;
use tokio::net::TcpListener;

use blob_kit::admin::Readiness;

use crate::config::{Config, TurnMode, VadMode};
use crate::engine::Engine;
use crate::metrics::SttMetrics;
use crate::service::SttService;
use crate::silero::SileroVad;
use crate::smart_turn::SmartTurn;
use crate::stream::StreamSettings;

/// A built stt-service with its model loaded, listening but not yet serving.
pub struct Application {
    listener: TcpListener,
    service: SttService,
    readiness: Readiness,
    /// Serve gRPC reflection (`GRPC_REFLECTION`).
    reflection: bool,
    admin_addr: SocketAddr,
}

impl Application {
    /// Loads the whisper model and binds the gRPC listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        // The admin server comes up first: it reports not ready while the model loads.
        let (metrics, readiness, admin_addr) =
            blob_kit::admin::start(config.admin_addr, SttMetrics::register).await?;
        let (path, workers, queue, threads) =
            (config.model_path.clone(), config.workers, config.queue_depth, config.threads);
        let language = config.language.clone();
        let engine_metrics = metrics.clone();
        let engine = tokio::task::spawn_blocking(move || {
            Engine::load(&path, workers, queue, threads, &language, engine_metrics)
        })
        .await
        .context("model loading task failed")??;
        tracing::info!(
            model = %config.model_path.display(),
            workers = config.workers,
            queue_depth = config.queue_depth,
            threads = config.threads,
            load_ms = started.elapsed().as_millis() as u64,
            "whisper model loaded"
        );
        let vad = match config.vad.clone() {
            VadMode::Energy => None,
            VadMode::Silero { model, runtime } => {
                let (sessions, vad_metrics) = (config.workers, metrics.clone());
                let vad = tokio::task::spawn_blocking(move || {
                    SileroVad::load(&runtime, &model, sessions, vad_metrics)
                })
                .await
                .context("VAD loading task failed")??;
                tracing::info!(?vad, "Silero VAD loaded");
                Some(vad)
            }
        };
        let turn = match config.turn.clone() {
            TurnMode::Silence => None,
            TurnMode::Smart { model, runtime, config: turn } => {
                let (sessions, turn_metrics) = (config.workers, metrics.clone());
                let detector = tokio::task::spawn_blocking(move || {
                    SmartTurn::load(&runtime, &model, sessions, turn_metrics)
                })
                .await
                .context("turn model loading task failed")??;
                tracing::info!(?detector, ?turn, "Smart Turn loaded");
                Some((detector, turn))
            }
        };
        let settings = StreamSettings {
            segmenter: config.segmenter.clone(),
            vad,
            turn,
            min_speech: config.min_speech,
            confidence_threshold: config.confidence_threshold,
            metrics,
        };
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding STT_GRPC_ADDR {}", config.grpc_addr))?;
        Ok(Self {
            listener,
            service: SttService::new(Arc::new(engine), settings, config.max_streams),
            readiness,
            reflection: config.grpc_reflection,
            admin_addr,
        })
    }

    /// The bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound admin address (metrics and health).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "stt-service listening");
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(SpeechToTextServer::new(self.service));
        blob_kit::grpc::serve(
            self.listener,
            routes,
            &["blob.stt.v1.SpeechToText"],
            if self.reflection { &[blob_proto::FILE_DESCRIPTOR_SET] } else { &[] },
            self.readiness,
            shutdown,
        )
        .await
    }
}
