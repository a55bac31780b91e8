//! The `blob.stt.v1.SpeechToText` gRPC service.

use std::sync::Arc;

use blob_proto::stt::v1::speech_to_text_server::SpeechToText;
use blob_proto::stt::v1::{TranscribeEvent, TranscribeRequest};
use tokio::sync::Semaphore;
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
    /// One permit per stream that may be open (`STT_MAX_STREAMS`): each costs voice activity
    /// detection on every frame, so an instance holds no more than it can follow in real time.
    streams: Arc<Semaphore>,
    max_streams: usize,
}

impl SttService {
    /// A service over a loaded engine, holding at most `max_streams` streams at once.
    pub fn new(engine: Arc<Engine>, settings: StreamSettings, max_streams: usize) -> Self {
        Self { engine, settings, streams: Arc::new(Semaphore::new(max_streams)), max_streams }
    }
}

#[tonic::async_trait]
impl SpeechToText for SttService {
    type TranscribeStream = ReceiverStream<Result<TranscribeEvent, Status>>;

    async fn transcribe(
        &self,
        request: Request<Streaming<TranscribeRequest>>,
    ) -> Result<Response<Self::TranscribeStream>, Status> {
        let Ok(permit) = Arc::clone(&self.streams).try_acquire_owned() else {
            self.settings.metrics.outcome("stream_refused");
            tracing::warn!(max = self.max_streams, "stream refused: STT_MAX_STREAMS open");
            return Err(Status::resource_exhausted(format!(
                "this recogniser already holds {} streams",
                self.max_streams
            )));
        };
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
                drop(permit);
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
