//! Server → client: every message the server sends, typed (`docs/ws-messages.md`, "Server →
//! client"). A message is `{type, action, payload, meta}`; [`ServerEvent`] is the action with
//! its payload, [`Meta`] the correlation, and the `type` follows from the action.

use serde::{Deserialize, Serialize};

use crate::WireIn;
use crate::codes::ErrorCode;
use crate::names::wire_names;

wire_names! {
    /// `type` of a message.
    pub enum MessageType {
        /// A request: from the client, or the server's heartbeat `ping`.
        Request = "request",
        /// The answer to a request, or to the child's speech (`ai_response`).
        Response = "response",
        /// News.
        Event = "event",
        /// An `error` event.
        Error = "error",
    }
}

wire_names! {
    /// `conversation.state {state}`: where the turn is.
    pub enum ConversationState {
        /// The child is speaking.
        Listening = "LISTENING",
        /// The child stopped; the words are being recognised.
        Transcribing = "TRANSCRIBING",
        /// Blob is being asked.
        Thinking = "THINKING",
        /// Blob's first sentence is coming.
        Responding = "RESPONDING",
        /// The turn is over.
        Idle = "IDLE",
    }
}

wire_names! {
    /// `audio_ack.buffer_state`, the proof of concept's field: always `buffering` (the chunk
    /// was received); `queue_state` says what became of it.
    pub enum BufferState {
        /// The chunk was received.
        Buffering = "buffering",
    }
}

wire_names! {
    /// `audio_ack.queue_state`: what became of the chunk.
    pub enum QueueState {
        /// The frame went to the recogniser.
        Ok = "ok",
        /// The frame went to the recogniser, which is behind.
        High = "high",
        /// The session is paused: the frame was dropped.
        Paused = "paused",
        /// The frame came after a later one: dropped, counted as reordered.
        Late = "late",
    }
}

wire_names! {
    /// `stt_rejected.reason`: why heard speech was not used.
    pub enum RejectReason {
        /// Too little speech.
        TooShort = "too_short",
        /// The recogniser was unsure.
        LowConfidence = "low_confidence",
        /// No words.
        Empty = "empty",
        /// Words whisper invents from silence or noise, or a repeating loop.
        Hallucination = "hallucination",
        /// Anything else.
        Unrecognised = "unrecognised",
    }
}

wire_names! {
    /// `session.resumed.reason`.
    pub enum ResumeReason {
        /// A later socket continues the session.
        Reconnected = "reconnected",
        /// The session was unpaused.
        Unpaused = "unpaused",
    }
}

/// `meta` of a server message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The session.
    #[serde(default)]
    pub session_id: String,
    /// The conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The voice turn, or the echoed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The audio thread (from the frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// RFC 3339 UTC.
    #[serde(default)]
    pub timestamp: String,
    /// Per-session sequence number (absent on `audio_ack`, `ping` and `pong`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// An empty payload, `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `session.created`: the first message of a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The session.
    pub session_id: String,
    /// Whether it starts paused.
    pub paused: bool,
}

/// `session.resumed`: a later socket continues the session, or the session was unpaused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResumed {
    /// The session.
    pub session_id: String,
    /// Exchanges so far (on reconnect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_turns_count: Option<u64>,
    /// Whether the session is paused (on reconnect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Stored messages replayed after this one (on reconnect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// Why.
    pub reason: ResumeReason,
}

/// `session.paused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPaused {
    /// The session.
    pub session_id: String,
}

/// `conversation.state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// Where the turn is.
    pub state: ConversationState,
    /// The conversation (also in `meta`): set on every message the server sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// `audio_ack`: one audio chunk acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioAck {
    /// The chunk's sequence number.
    pub sequence: u32,
    /// `buffering`: received.
    pub buffer_state: BufferState,
    /// What became of it.
    pub queue_state: QueueState,
    /// Frames lost so far on this socket.
    pub lost_frames: u64,
    /// Frames that came too late so far on this socket.
    pub reordered_frames: u64,
}

/// `stt_result`: what the child said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SttResult {
    /// The words.
    pub transcript: String,
    /// 0..1, to three decimals.
    pub confidence: f64,
    /// The language recognised.
    pub language: String,
    /// Speech length.
    pub duration_ms: u32,
}

/// `stt_rejected`: speech heard but not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SttRejected {
    /// Why.
    pub reason: RejectReason,
    /// Speech length.
    pub duration_ms: u32,
    /// 0..1, to three decimals.
    pub confidence: f64,
}

/// `ai_response.chunk`: one complete sentence of Blob's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyChunk {
    /// The sentence.
    pub text: String,
    /// 0, 1, … in speaking order.
    pub index: u32,
}

/// How the phone should speak a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtsHint {
    /// The voice.
    pub voice: String,
    /// The rate (1.0 = normal).
    pub speed: f32,
    /// The language.
    pub language: String,
}

/// `ai_response`: Blob's whole reply, after its chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The reply.
    pub text: String,
    /// For the phone's speech synthesis.
    pub tts_hint: TtsHint,
}

/// `ai_response.cancelled`: the child spoke over Blob and the reply stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCancelled {
    /// The turn.
    pub request_id: String,
    /// What had been sent, all that is kept as Blob's turn.
    pub sent_text: String,
}

/// `pause` and `resume` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseAnswer {
    /// Whether the session is now paused.
    pub paused: bool,
}

/// `playback.progress`, the request's payload and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackProgress {
    /// The reply whose speech was cut off.
    pub request_id: String,
    /// Characters (Unicode code points) the phone spoke.
    pub chars_spoken: u64,
}

/// The `turn.end` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnEndAnswer {
    /// Whether a speech stream was open to end the utterance (false while paused).
    pub flushed: bool,
}

/// The `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// The stable code.
    pub code: ErrorCode,
    /// For developers.
    pub message: String,
}

/// Every server message: its action and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "payload")]
pub enum ServerEvent {
    /// `event session.created`.
    #[serde(rename = "session.created")]
    SessionCreated(SessionCreated),
    /// `event session.resumed`.
    #[serde(rename = "session.resumed")]
    SessionResumed(SessionResumed),
    /// `event session.paused`.
    #[serde(rename = "session.paused")]
    SessionPaused(SessionPaused),
    /// `event conversation.state`.
    #[serde(rename = "conversation.state")]
    State(StateChange),
    /// `response audio_ack` (the proof of concept's type: the answer to an audio chunk).
    #[serde(rename = "audio_ack")]
    AudioAck(AudioAck),
    /// `event stt_result`.
    #[serde(rename = "stt_result")]
    SttResult(SttResult),
    /// `event stt_rejected`.
    #[serde(rename = "stt_rejected")]
    SttRejected(SttRejected),
    /// `event ai_response.chunk`.
    #[serde(rename = "ai_response.chunk")]
    ReplyChunk(ReplyChunk),
    /// `response ai_response`.
    #[serde(rename = "ai_response")]
    Reply(Reply),
    /// `event ai_response.cancelled`.
    #[serde(rename = "ai_response.cancelled")]
    ReplyCancelled(ReplyCancelled),
    /// `request ping`: the server's heartbeat; answer `pong`.
    #[serde(rename = "ping")]
    Ping(Empty),
    /// `response pong`: the answer to the client's `ping`.
    #[serde(rename = "pong")]
    Pong(Empty),
    /// `response pause`.
    #[serde(rename = "pause")]
    Paused(PauseAnswer),
    /// `response resume`.
    #[serde(rename = "resume")]
    Resumed(PauseAnswer),
    /// `response playback.progress`.
    #[serde(rename = "playback.progress")]
    PlaybackProgress(PlaybackProgress),
    /// `response turn.end`.
    #[serde(rename = "turn.end")]
    TurnEnded(TurnEndAnswer),
    /// `error error`.
    #[serde(rename = "error")]
    Error(ErrorPayload),
}

impl ServerEvent {
    /// Every `(type, action)` the server sends, in catalogue order.
    pub const CATALOGUE: &'static [(MessageType, &'static str)] = &[
        (MessageType::Event, "session.created"),
        (MessageType::Event, "session.resumed"),
        (MessageType::Event, "session.paused"),
        (MessageType::Event, "conversation.state"),
        (MessageType::Response, "audio_ack"),
        (MessageType::Event, "stt_result"),
        (MessageType::Event, "stt_rejected"),
        (MessageType::Event, "ai_response.chunk"),
        (MessageType::Response, "ai_response"),
        (MessageType::Event, "ai_response.cancelled"),
        (MessageType::Request, "ping"),
        (MessageType::Response, "pong"),
        (MessageType::Response, "pause"),
        (MessageType::Response, "resume"),
        (MessageType::Response, "playback.progress"),
        (MessageType::Response, "turn.end"),
        (MessageType::Error, "error"),
    ];

    /// The message's `action`.
    pub const fn action(&self) -> &'static str {
        match self {
            Self::SessionCreated(_) => "session.created",
            Self::SessionResumed(_) => "session.resumed",
            Self::SessionPaused(_) => "session.paused",
            Self::State(_) => "conversation.state",
            Self::AudioAck(_) => "audio_ack",
            Self::SttResult(_) => "stt_result",
            Self::SttRejected(_) => "stt_rejected",
            Self::ReplyChunk(_) => "ai_response.chunk",
            Self::Reply(_) => "ai_response",
            Self::ReplyCancelled(_) => "ai_response.cancelled",
            Self::Ping(_) => "ping",
            Self::Pong(_) => "pong",
            Self::Paused(_) => "pause",
            Self::Resumed(_) => "resume",
            Self::PlaybackProgress(_) => "playback.progress",
            Self::TurnEnded(_) => "turn.end",
            Self::Error(_) => "error",
        }
    }

    /// The message's `type`.
    pub const fn message_type(&self) -> MessageType {
        match self {
            Self::Ping(_) => MessageType::Request,
            Self::Reply(_)
            | Self::AudioAck(_)
            | Self::Pong(_)
            | Self::Paused(_)
            | Self::Resumed(_)
            | Self::PlaybackProgress(_)
            | Self::TurnEnded(_) => MessageType::Response,
            Self::Error(_) => MessageType::Error,
            _ => MessageType::Event,
        }
    }

    /// Whether the message is numbered (`meta.seq`) and kept for replay: everything but the
    /// heartbeat and acknowledgements.
    pub const fn replayable(&self) -> bool {
        !matches!(self, Self::AudioAck(_) | Self::Ping(_) | Self::Pong(_))
    }

    /// Whether the message may be dropped when the client reads too slowly (acknowledgements
    /// only).
    pub const fn droppable(&self) -> bool {
        matches!(self, Self::AudioAck(_))
    }

    /// `conversation.state` with `state` (the conversation is added when the message is
    /// stamped).
    pub const fn state(state: ConversationState) -> Self {
        Self::State(StateChange { state, conversation_id: None })
    }

    /// An `error` event.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorPayload { code, message: message.into() })
    }

    /// The error code, on an `error` event.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Error(error) => Some(error.code),
            _ => None,
        }
    }
}

/// A confidence as sent: three decimals.
pub fn round_confidence(value: f32) -> f64 {
    (f64::from(value) * 1000.0).round() / 1000.0
}

/// One whole server message.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerMessage {
    /// What it says.
    pub event: ServerEvent,
    /// Correlation.
    pub meta: Meta,
}

/// Why a text message is not a server message this crate knows.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not the `{type, action, payload, meta}` envelope.
    #[error("not the message envelope: {0}")]
    Envelope(serde_json::Error),
    /// An action this version does not know (a newer server).
    #[error("unknown action {action:?}")]
    UnknownAction {
        /// The action.
        action: String,
    },
    /// A known action whose payload does not have its documented shape.
    #[error("{action}: payload does not match the catalogue: {source}")]
    Payload {
        /// The action.
        action: String,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// A known action sent with another `type` than the catalogue's.
    #[error("{action} must have type {expected}, not {found:?}")]
    WrongType {
        /// The action.
        action: String,
        /// The catalogue's type.
        expected: MessageType,
        /// The type sent.
        found: String,
    },
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "type")]
    kind: MessageType,
    #[serde(flatten)]
    event: &'a ServerEvent,
    meta: &'a Meta,
}

impl ServerMessage {
    /// The JSON text sent on the socket.
    pub fn to_json(&self) -> String {
        let wire =
            WireOut { kind: self.event.message_type(), event: &self.event, meta: &self.meta };
        serde_json::to_string(&wire).expect("server messages always serialise")
    }

    /// Types a JSON server message, checking its type and payload against the catalogue.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let value = serde_json::from_str(text).map_err(ParseError::Envelope)?;
        Self::from_value(value)
    }

    /// [`ServerMessage::parse`] from parsed JSON.
    pub fn from_value(value: serde_json::Value) -> Result<Self, ParseError> {
        let wire: WireIn<Meta> = serde_json::from_value(value).map_err(ParseError::Envelope)?;
        if !ServerEvent::CATALOGUE.iter().any(|(_, action)| *action == wire.action) {
            return Err(ParseError::UnknownAction { action: wire.action });
        }
        let tagged = serde_json::json!({ "action": wire.action, "payload": wire.payload });
        let event: ServerEvent = serde_json::from_value(tagged)
            .map_err(|source| ParseError::Payload { action: wire.action.clone(), source })?;
        let expected = event.message_type();
        if wire.kind != expected.as_str() {
            return Err(ParseError::WrongType { action: wire.action, expected, found: wire.kind });
        }
        Ok(Self { event, meta: wire.meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            session_id: "s".into(),
            conversation_id: Some("c".into()),
            request_id: Some("r".into()),
            thread_id: Some("t".into()),
            timestamp: "2026-11-22T04:20:00.123Z".into(),
            seq: Some(3),
        }
    }

    #[test]
    fn ai_response_has_the_seed_shape() {
        let tts = TtsHint { voice: "v".into(), speed: 1.0, language: "en-IN".into() };
        let reply = ServerEvent::Reply(Reply { text: "Hi!".into(), tts_hint: tts });
        let json = ServerMessage { event: reply, meta: meta() }.to_json();
        let message: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(message["type"], "response");
        assert_eq!(message["action"], "ai_response");
        assert_eq!(message["payload"]["text"], "Hi!");
        assert_eq!(message["payload"]["tts_hint"]["voice"], "v");
        assert_eq!(message["payload"]["tts_hint"]["speed"], 1.0);
        for key in ["session_id", "conversation_id", "request_id", "thread_id", "timestamp"] {
            assert!(message["meta"][key].is_string(), "meta.{key} missing: {message}");
        }
        assert_eq!(message["meta"]["seq"], 3);
    }

    #[test]
    fn every_catalogue_entry_round_trips_with_its_type() {
        let events = [
            ServerEvent::SessionCreated(SessionCreated { session_id: "s".into(), paused: false }),
            ServerEvent::SessionResumed(SessionResumed {
                session_id: "s".into(),
                resumed_turns_count: Some(2),
                paused: Some(false),
                replayed: Some(1),
                reason: ResumeReason::Reconnected,
            }),
            ServerEvent::SessionPaused(SessionPaused { session_id: "s".into() }),
            ServerEvent::state(ConversationState::Thinking),
            ServerEvent::AudioAck(AudioAck {
                sequence: 4,
                buffer_state: BufferState::Buffering,
                queue_state: QueueState::High,
                lost_frames: 1,
                reordered_frames: 0,
            }),
            ServerEvent::SttResult(SttResult {
                transcript: "Why is the sky blue?".into(),
                confidence: 0.917,
                language: "en".into(),
                duration_ms: 2100,
            }),
            ServerEvent::SttRejected(SttRejected {
                reason: RejectReason::TooShort,
                duration_ms: 300,
                confidence: 0.0,
            }),
            ServerEvent::ReplyChunk(ReplyChunk { text: "Hi.".into(), index: 0 }),
            ServerEvent::Reply(Reply {
                text: "Hi.".into(),
                tts_hint: TtsHint { voice: "v".into(), speed: 1.0, language: "en".into() },
            }),
            ServerEvent::ReplyCancelled(ReplyCancelled {
                request_id: "r".into(),
                sent_text: "Hi.".into(),
            }),
            ServerEvent::Ping(Empty {}),
            ServerEvent::Pong(Empty {}),
            ServerEvent::Paused(PauseAnswer { paused: true }),
            ServerEvent::Resumed(PauseAnswer { paused: false }),
            ServerEvent::PlaybackProgress(PlaybackProgress {
                request_id: "r".into(),
                chars_spoken: 12,
            }),
            ServerEvent::TurnEnded(TurnEndAnswer { flushed: true }),
            ServerEvent::error(ErrorCode::SttBusy, "busy"),
        ];
        assert_eq!(events.len(), ServerEvent::CATALOGUE.len(), "one example per catalogue entry");
        for (event, (kind, action)) in events.into_iter().zip(ServerEvent::CATALOGUE) {
            assert_eq!((event.message_type(), event.action()), (*kind, *action));
            let message = ServerMessage { event, meta: meta() };
            let json = message.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["type"], kind.as_str(), "{json}");
            assert_eq!(value["action"], *action, "{json}");
            assert!(value["payload"].is_object(), "payload is an object: {json}");
            assert_eq!(ServerMessage::parse(&json).unwrap(), message);
        }
    }

    #[test]
    fn the_unpaused_resume_carries_only_its_reason() {
        let event = ServerEvent::SessionResumed(SessionResumed {
            session_id: "s".into(),
            resumed_turns_count: None,
            paused: None,
            replayed: None,
            reason: ResumeReason::Unpaused,
        });
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["payload"], serde_json::json!({"session_id": "s", "reason": "unpaused"}));
    }

    #[test]
    fn what_is_not_in_the_catalogue_is_refused_with_its_reason() {
        let unknown = r#"{"type":"event","action":"sparkles","payload":{},"meta":{}}"#;
        assert!(matches!(ServerMessage::parse(unknown), Err(ParseError::UnknownAction { .. })));
        let wrong_type = r#"{"type":"event","action":"ai_response","payload":{"text":"x","tts_hint":{"voice":"v","speed":1.0,"language":"en"}},"meta":{}}"#;
        assert!(matches!(ServerMessage::parse(wrong_type), Err(ParseError::WrongType { .. })));
        let bad_payload = r#"{"type":"event","action":"conversation.state","payload":{"state":"DANCING"},"meta":{}}"#;
        assert!(matches!(ServerMessage::parse(bad_payload), Err(ParseError::Payload { .. })));
        assert!(matches!(ServerMessage::parse("{\"hello\":1}"), Err(ParseError::Envelope(_))));
    }
}
