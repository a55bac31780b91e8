//! The `blob.llm.v1.Companion` gRPC service: streams a provider's reply as deltas, then a final.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_kit::ErrorKind;
use blob_proto::llm::v1::companion_server::Companion;
use blob_proto::llm::v1::{
    GenerateReplyRequest, ReplyEvent, ReplyFinal, TextDelta, reply_event::Event,
};
use futures::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::metrics::LlmMetrics;
use crate::provider::ReplyProvider;

/// Longest child utterance accepted, in bytes.
const MAX_USER_TEXT_BYTES: usize = 4 * 1024;

/// The service over one provider.
#[derive(Clone)]
pub struct CompanionService {
    provider: Arc<dyn ReplyProvider>,
    timeout: Duration,
    metrics: LlmMetrics,
}

impl CompanionService {
    /// A service that gives each reply at most `timeout`.
    pub fn new(provider: Arc<dyn ReplyProvider>, timeout: Duration, metrics: LlmMetrics) -> Self {
        Self { provider, timeout, metrics }
    }
}

#[tonic::async_trait]
impl Companion for CompanionService {
    type GenerateReplyStream = ReceiverStream<Result<ReplyEvent, Status>>;

    async fn generate_reply(
        &self,
        request: Request<GenerateReplyRequest>,
    ) -> Result<Response<Self::GenerateReplyStream>, Status> {
        let request = request.into_inner();
        if request.user_text.trim().is_empty() {
            return Err(ErrorKind::InvalidArgument.status("user_text is required"));
        }
        if request.user_text.len() > MAX_USER_TEXT_BYTES {
            return Err(ErrorKind::InvalidArgument.status("user_text too long"));
        }
        let span = tracing::info_span!(
            "llm.reply",
            conversation_id = %request.conversation_id,
            request_id = %request.request_id,
            model = %self.provider.model(),
            ttft_ms = tracing::field::Empty,
            chars = tracing::field::Empty,
        );
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut text_stream = tokio::time::timeout_at(deadline, self.provider.reply(&request))
            .instrument(span.clone())
            .await
            .map_err(|_| {
                self.metrics.error("timeout");
                ErrorKind::DeadlineExceeded.status("the model took too long")
            })?
            .map_err(|err| {
                self.metrics.error(err.metric_kind());
                tracing::warn!(parent: &span, error = %err, "provider failed");
                err.kind().status(format!("the model could not answer: {}", err.kind_label()))
            })?;

        let (tx, rx) = tokio::sync::mpsc::channel(32);
        let model = self.provider.model().to_owned();
        let metrics = self.metrics.clone();
        tokio::spawn(
            async move {
                let mut full = String::new();
                loop {
                    let next = match tokio::time::timeout_at(deadline, text_stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            metrics.error("timeout");
                            let status =
                                ErrorKind::DeadlineExceeded.status("the model took too long");
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    match next {
                        Some(Ok(text)) => {
                            if full.is_empty() {
                                tracing::Span::current()
                                    .record("ttft_ms", started.elapsed().as_millis() as u64);
                                metrics.first_token.observe(started.elapsed().as_secs_f64());
                            }
                            full.push_str(&text);
                            let event =
                                ReplyEvent { event: Some(Event::Delta(TextDelta { text })) };
                            if tx.send(Ok(event)).await.is_err() {
                                tracing::debug!("caller went away; reply abandoned");
                                return;
                            }
                        }
                        Some(Err(err)) => {
                            metrics.error(err.metric_kind());
                            tracing::warn!(error = %err, "provider failed mid-reply");
                            let status = err.kind().status(format!(
                                "the model could not answer: {}",
                                err.kind_label()
                            ));
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                        None => break,
                    }
                }
                let full = full.trim().to_owned();
                tracing::Span::current().record("chars", full.chars().count() as u64);
                metrics.replies.inc();
                metrics.reply.observe(started.elapsed().as_secs_f64());
                let event = ReplyEvent {
                    event: Some(Event::Final(ReplyFinal {
                        text: full,
                        model,
                        latency_ms: started.elapsed().as_millis() as u32,
                    })),
                };
                let _ = tx.send(Ok(event)).await;
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl crate::provider::ProviderError {
    /// A short, non-sensitive label for the client.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate limited",
            Self::Unavailable(_) => "provider unavailable",
            Self::Timeout(_) => "provider timed out",
            Self::Rejected(_) => "request rejected",
        }
    }
}
