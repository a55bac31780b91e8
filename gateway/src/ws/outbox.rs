//! The outbound side of one voice socket.
//!
//! Messages are numbered (`meta.seq`, per session) and kept for replay, then queued to a writer
//! task that owns the socket's sink. The queue is bounded, so a client that reads too slowly
//! cannot grow the server's memory: acknowledgements may use at most half of it and are dropped
//! beyond that; every other message waits for room, and if none comes within
//! [`SLOW_CLIENT_TIMEOUT`] the socket is closed with 4408. Nothing but acknowledgements is ever
//! dropped.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use blob_proto::session::v1 as session;
use blob_voice_protocol::{CloseCode, ServerMessage};
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::downstream::Downstream;

/// How long an important message may wait for room in the queue.
pub const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closed socket's writer may wait for a client that stopped reading before the
/// connection is cut.
const WRITER_GRACE: Duration = Duration::from_secs(30);
/// Events buffered towards the replay store.
const RECORD_QUEUE: usize = 256;
/// Most events stored in one call.
const RECORD_BATCH: usize = 64;

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The socket is gone.
    Closed,
    /// The client has not read anything for [`SLOW_CLIENT_TIMEOUT`].
    TooSlow,
}

/// The numbered, bounded, recorded outbound queue of one socket.
pub struct Outbox {
    queue: mpsc::Sender<Message>,
    /// A close frame that jumps the queue (when the queue is full).
    urgent: mpsc::Sender<Message>,
    capacity: usize,
    next_seq: u64,
    recorder: mpsc::Sender<session::StoredEvent>,
    dropped_acks: u64,
    writer: JoinHandle<()>,
    recorder_task: JoinHandle<()>,
}

impl Outbox {
    /// Starts the writer and the recorder; numbering continues after `last_seq`.
    pub fn start<S, D>(
        sink: S,
        capacity: usize,
        last_seq: u64,
        downstream: D,
        session_id: String,
        user_id: String,
    ) -> Self
    where
        S: Sink<Message> + Send + Unpin + 'static,
        D: Downstream,
    {
        let (queue, rx) = mpsc::channel(capacity);
        let (urgent, urgent_rx) = mpsc::channel(1);
        let (recorder, events) = mpsc::channel(RECORD_QUEUE);
        Self {
            queue,
            urgent,
            capacity,
            next_seq: last_seq + 1,
            recorder,
            dropped_acks: 0,
            writer: tokio::spawn(write(sink, rx, urgent_rx)),
            recorder_task: tokio::spawn(record(downstream, session_id, user_id, events)),
        }
    }

    /// Numbers, records and queues a message.
    pub async fn send(&mut self, mut message: ServerMessage) -> Result<(), SendError> {
        if message.event.replayable() {
            message.meta.seq = Some(self.next_seq);
            self.next_seq += 1;
        }
        let json = message.to_json();
        if let Some(seq) = message.meta.seq {
            let event = session::StoredEvent { seq, json: json.clone() };
            if self.recorder.try_send(event).is_err() {
                tracing::warn!(seq, "replay store is behind; event not kept for replay");
            }
        }
        let frame = Message::Text(json.into());
        if message.event.droppable() {
            // Acknowledgements never take more than half of the queue.
            if self.queue.capacity() <= self.capacity / 2 {
                self.dropped_acks += 1;
                return Ok(());
            }
            return match self.queue.try_send(frame) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped_acks += 1;
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            };
        }
        self.queue_frame(frame).await
    }

    /// Queues an already numbered message (a replayed event) as it was first sent.
    pub async fn send_raw(&mut self, json: String) -> Result<(), SendError> {
        self.queue_frame(Message::Text(json.into())).await
    }

    async fn queue_frame(&mut self, frame: Message) -> Result<(), SendError> {
        match tokio::time::timeout(SLOW_CLIENT_TIMEOUT, self.queue.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SendError::Closed),
            Err(_) => Err(SendError::TooSlow),
        }
    }

    /// Acknowledgements dropped so far because the client read slowly.
    pub fn dropped_acks(&self) -> u64 {
        self.dropped_acks
    }

    /// Sends the close frame (when given) after everything queued, or ahead of it when the
    /// queue is full, and waits, bounded, for the writer and for the replay store to catch up.
    ///
    /// The socket then lingers in the background: it reads on until the client answers the
    /// close, because closing a connection with unread data makes the kernel reset it, which
    /// would destroy the close frame still in flight. A client that reads nothing is cut off
    /// after [`WRITER_GRACE`].
    pub async fn close<R, E>(self, close: Option<(CloseCode, &'static str)>, mut reader: R)
    where
        R: Stream<Item = Result<Message, E>> + Send + Unpin + 'static,
        E: Send + 'static,
    {
        if let Some((code, reason)) = close {
            let frame = Message::Close(Some(CloseFrame {
                code: code.code(),
                reason: Utf8Bytes::from_static(reason),
            }));
            if let Err(mpsc::error::TrySendError::Full(frame)) = self.queue.try_send(frame) {
                let _ = self.urgent.try_send(frame);
            }
        }
        drop(self.queue);
        drop(self.urgent);
        drop(self.recorder);
        let mut writer = self.writer;
        let lingering = tokio::spawn(async move {
            let finish = async {
                let _ = (&mut writer).await;
                while let Some(Ok(message)) = reader.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            };
            if tokio::time::timeout(WRITER_GRACE, finish).await.is_err() {
                writer.abort();
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), lingering).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.recorder_task).await;
    }
}

async fn write<S>(
    mut sink: S,
    mut queue: mpsc::Receiver<Message>,
    mut urgent: mpsc::Receiver<Message>,
) where
    S: Sink<Message> + Unpin,
{
    loop {
        let message = tokio::select! {
            biased;
            Some(close) = urgent.recv() => close,
            message = queue.recv() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Stores events for replay in order, batching what has piled up.
async fn record<D: Downstream>(
    downstream: D,
    session_id: String,
    user_id: String,
    mut events: mpsc::Receiver<session::StoredEvent>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while events.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let request = session::RecordEventsRequest {
            session_id: session_id.clone(),
            user_id: user_id.clone(),
            events: std::mem::take(&mut batch),
        };
        if let Err(status) = downstream.record_events(request).await {
            tracing::warn!(%status, "could not keep events for replay");
        }
    }
}
