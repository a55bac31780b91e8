//! One reply of Blob: streamed from the llm-service, cut into sentences as they complete.

use blob_kit::grpc::TracedChannel;
use blob_proto::llm::v1 as llm;
use blob_proto::llm::v1::companion_client::CompanionClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use blob_kit::sentences::SentenceSplitter;

/// What a reply task reports to its connection.
#[derive(Debug)]
pub enum TurnUpdate {
    /// The model's first text arrived.
    FirstToken {
        /// The turn.
        request_id: String,
    },
    /// The next complete sentence.
    Sentence {
        /// The turn.
        request_id: String,
        /// The sentence.
        text: String,
    },
    /// The reply is complete (the full text) or failed.
    Done {
        /// The turn.
        request_id: String,
        /// The full reply, or why there is none.
        result: Result<String, tonic::Status>,
    },
}

/// Starts a reply task; aborting the handle cancels the llm-service call (barge-in).
pub fn spawn(
    client: CompanionClient<TracedChannel>,
    request: llm::GenerateReplyRequest,
    updates: mpsc::Sender<TurnUpdate>,
    turn: &tracing::Span,
) -> JoinHandle<()> {
    let request_id = request.request_id.clone();
    let span = tracing::info_span!(parent: turn, "voice.turn.reply", request_id = %request_id);
    tokio::spawn(
        async move {
            let result = stream_reply(client, request, &updates, &request_id).await;
            let _ = updates.send(TurnUpdate::Done { request_id, result }).await;
        }
        .instrument(span),
    )
}

async fn stream_reply(
    mut client: CompanionClient<TracedChannel>,
    request: llm::GenerateReplyRequest,
    updates: &mpsc::Sender<TurnUpdate>,
    request_id: &str,
) -> Result<String, tonic::Status> {
    let mut stream = client.generate_reply(request).await?.into_inner();
    let mut splitter = SentenceSplitter::default();
    let mut full = String::new();
    let sentence = |text: String| TurnUpdate::Sentence { request_id: request_id.to_owned(), text };
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(llm::reply_event::Event::Delta(delta)) => {
                if full.is_empty() {
                    let first = TurnUpdate::FirstToken { request_id: request_id.to_owned() };
                    let _ = updates.send(first).await;
                }
                full.push_str(&delta.text);
                for text in splitter.push(&delta.text) {
                    if updates.send(sentence(text)).await.is_err() {
                        return Err(tonic::Status::cancelled("connection closed"));
                    }
                }
            }
            Some(llm::reply_event::Event::Final(reply)) => {
                if let Some(text) = splitter.finish() {
                    let _ = updates.send(sentence(text)).await;
                }
                return Ok(reply.text);
            }
            None => {}
        }
    }
    Err(tonic::Status::unavailable("the reply ended without its final event"))
}
