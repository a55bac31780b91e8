//! One reply of Blob, streamed from the llm-service sentence by sentence.

use blob_proto::llm::v1 as llm;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::downstream::Downstream;

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
pub fn spawn<D: Downstream>(
    downstream: D,
    request: llm::GenerateReplyRequest,
    updates: mpsc::Sender<TurnUpdate>,
    turn: &tracing::Span,
) -> JoinHandle<()> {
    let request_id = request.request_id.clone();
    let span = tracing::info_span!(parent: turn, "voice.turn.reply", request_id = %request_id);
    tokio::spawn(
        async move {
            let result = stream_reply(&downstream, request, &updates, &request_id).await;
            let _ = updates.send(TurnUpdate::Done { request_id, result }).await;
        }
        .instrument(span),
    )
}

async fn stream_reply<D: Downstream>(
    downstream: &D,
    request: llm::GenerateReplyRequest,
    updates: &mpsc::Sender<TurnUpdate>,
    request_id: &str,
) -> Result<String, tonic::Status> {
    let mut stream = downstream.reply(request).await?;
    let mut first = true;
    while let Some(event) = stream.next().await.transpose()? {
        match event.event {
            Some(llm::reply_event::Event::Sentence(sentence)) => {
                if std::mem::take(&mut first) {
                    let first = TurnUpdate::FirstToken { request_id: request_id.to_owned() };
                    let _ = updates.send(first).await;
                }
                let update =
                    TurnUpdate::Sentence { request_id: request_id.to_owned(), text: sentence.text };
                if updates.send(update).await.is_err() {
                    return Err(tonic::Status::cancelled("connection closed"));
                }
            }
            Some(llm::reply_event::Event::Final(reply)) => return Ok(reply.text),
            None => {}
        }
    }
    Err(tonic::Status::unavailable("the reply ended without its final event"))
}
