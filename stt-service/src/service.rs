//! The `blob.stt.v1.SpeechToText` gRPC service.

use std::sync::Arc;

use blob_proto::stt::v1::speech_to_text_server::SpeechToText;
use blob_proto::stt::v1::{TranscribeEvent, TranscribeRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::engine::Engine;
use crate::stream::{StreamSettings, run};

/// Outbound events buffered per stream before the stream task waits for the client.
const OUTBOUND_EVENTS: usize = 32;

/// The service: one shared engine, one task per stream.
#[derive(Clone)]
pub struct SttService {
    engine: Arc<Engine>,
    settings: StreamSettings,
}

impl SttService {
    /// A service over a loaded engine.
    pub fn new(engine: Arc<Engine>, settings: StreamSettings) -> Self {
        Self { engine, settings }
    }
}

#[tonic::async_trait]
impl SpeechToText for SttService {
    type TranscribeStream = ReceiverStream<Result<TranscribeEvent, Status>>;

    async fn transcribe(
        &self,
        request: Request<Streaming<TranscribeRequest>>,
    ) -> Result<Response<Self::TranscribeStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND_EVENTS);
        let span = tracing::info_span!("stt.stream", session_id = tracing::field::Empty);
        let streams = self.settings.metrics.streams.clone();
        let stream = run(Arc::clone(&self.engine), self.settings.clone(), inbound, tx);
        streams.inc();
        tokio::spawn(
            async move {
                stream.await;
                streams.dec();
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
