//! The voice socket's wire protocol (`/ws/voice`, catalogued in `docs/ws-messages.md`), typed
//! once for the server, the client library and the tests:
//!
//! - [`ServerEvent`] and [`ServerMessage`]: everything the server sends, in the
//!   `{type, action, payload, meta}` envelope;
//! - [`ClientRequest`] and [`ClientMessage`]: the JSON requests a client sends, and the
//!   [`RequestError`] a malformed one gets;
//! - [`ErrorCode`] and [`CloseCode`]: the stable codes;
//! - [`AudioFrame`]: the v4 binary audio frame, parsed and encoded;
//! - [`fuzzing`]: the properties the fuzz targets check on any input.

pub mod catalogue;
pub mod client;
pub mod codes;
pub mod frame;
pub mod fuzzing;
mod names;
pub mod server;

/// A message as read off the socket, before its action and payload are typed; `M` is the
/// part of `meta` the reader needs.
#[derive(serde::Deserialize)]
struct WireIn<M> {
    #[serde(rename = "type")]
    kind: String,
    action: String,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    meta: M,
}

pub use client::{AudioStream, ClientMessage, ClientRequest, RequestError};
pub use codes::{CloseCode, ErrorCode};
pub use frame::{AudioFrame, FrameError};
pub use server::{
    AudioAck, BufferState, ConversationState, Empty, ErrorPayload, MessageType, Meta, ParseError,
    PauseAnswer, PlaybackProgress, QueueState, RejectReason, Reply, ReplyCancelled, ReplyChunk,
    ResumeReason, ServerEvent, ServerMessage, SessionCreated, SessionPaused, SessionResumed,
    StateChange, SttRejected, SttResult, TtsHint, TurnEndAnswer, round_confidence,
};
