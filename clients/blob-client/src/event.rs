//! Server messages on the voice socket, typed (`docs/ws-messages.md`, "Server → client").

use serde_json::Value;

/// One server message: the typed event and the envelope it came in.
#[derive(Debug, Clone)]
pub struct Message {
    /// What it says.
    pub event: Event,
    /// `meta.seq` (absent on `audio_ack`, `ping` and `pong`).
    pub seq: Option<u64>,
    /// `meta.request_id`: the voice turn, or the echoed request.
    pub request_id: Option<String>,
    /// The whole message as sent.
    pub raw: Value,
}

/// Every server message the catalogue lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first message of a new session.
    SessionCreated {
        /// The session.
        session_id: String,
        /// Whether it starts paused.
        paused: bool,
    },
    /// A later socket continues the session (`reason: reconnected`, with `replayed` messages
    /// following), or the session was unpaused (`reason: unpaused`).
    SessionResumed {
        /// `reconnected` or `unpaused`.
        reason: String,
        /// Exchanges so far (on reconnect).
        resumed_turns_count: Option<u64>,
        /// Stored messages replayed after this one (on reconnect).
        replayed: Option<u64>,
        /// Whether the session is paused.
        paused: bool,
    },
    /// The session was paused.
    SessionPaused,
    /// `LISTENING`, `TRANSCRIBING`, `THINKING`, `RESPONDING` or `IDLE`.
    State(String),
    /// One audio frame acknowledged.
    AudioAck {
        /// The frame's sequence number.
        sequence: u64,
        /// `ok`, `high`, `paused` or `late`.
        buffer_state: String,
        /// Frames lost so far on this socket.
        lost_frames: u64,
    },
    /// What the child said.
    SttResult {
        /// The words.
        transcript: String,
        /// 0..1.
        confidence: f64,
        /// Speech length.
        duration_ms: u64,
    },
    /// Speech heard but not used.
    SttRejected {
        /// `too_short`, `low_confidence`, `empty`, `hallucination`, `unrecognised`.
        reason: String,
        /// Speech length.
        duration_ms: u64,
    },
    /// One sentence of Blob's reply.
    ReplyChunk {
        /// The sentence.
        text: String,
        /// 0, 1, …
        index: u64,
    },
    /// Blob's whole reply, after its chunks.
    Reply {
        /// The reply.
        text: String,
        /// `{voice, speed, language}` for the phone's speech synthesis.
        tts_hint: Value,
    },
    /// The child spoke over Blob: the reply stopped.
    ReplyCancelled {
        /// What had been sent, all that is kept.
        sent_text: String,
    },
    /// The server's heartbeat (the client answers `pong`; [`crate::Voice`] does).
    Ping,
    /// The answer to a request (`pong`, `pause`, `resume`, `playback.progress`, `turn.end`).
    Response {
        /// The request's action.
        action: String,
        /// Its payload.
        payload: Value,
    },
    /// An `error` event: `{code, message}`.
    Error {
        /// The stable code (`STT_BUSY`, `INVALID_FRAME`...).
        code: String,
        /// For developers.
        message: String,
    },
    /// A message this client does not know (newer server).
    Other {
        /// Its action.
        action: String,
        /// Its payload.
        payload: Value,
    },
}

impl Message {
    /// Types a server message; `None` when it is not the envelope.
    pub fn parse(raw: Value) -> Option<Self> {
        let kind = raw["type"].as_str()?.to_owned();
        let action = raw["action"].as_str()?.to_owned();
        let p = &raw["payload"];
        let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
        let number = |key: &str| p[key].as_u64().unwrap_or_default();
        let event = match (kind.as_str(), action.as_str()) {
            ("error", _) => Event::Error { code: text("code"), message: text("message") },
            ("event", "session.created") => Event::SessionCreated {
                session_id: text("session_id"),
                paused: p["paused"].as_bool().unwrap_or(false),
            },
            ("event", "session.resumed") => Event::SessionResumed {
                reason: text("reason"),
                resumed_turns_count: p["resumed_turns_count"].as_u64(),
                replayed: p["replayed"].as_u64(),
                paused: p["paused"].as_bool().unwrap_or(false),
            },
            ("event", "session.paused") => Event::SessionPaused,
            ("event", "conversation.state") => Event::State(text("state")),
            ("event", "audio_ack") => Event::AudioAck {
                sequence: number("sequence"),
                buffer_state: text("buffer_state"),
                lost_frames: number("lost_frames"),
            },
            ("event", "stt_result") => Event::SttResult {
                transcript: text("transcript"),
                confidence: p["confidence"].as_f64().unwrap_or_default(),
                duration_ms: number("duration_ms"),
            },
            ("event", "stt_rejected") => {
                Event::SttRejected { reason: text("reason"), duration_ms: number("duration_ms") }
            }
            ("event", "ai_response.chunk") => {
                Event::ReplyChunk { text: text("text"), index: number("index") }
            }
            ("response", "ai_response") => {
                Event::Reply { text: text("text"), tts_hint: p["tts_hint"].clone() }
            }
            ("event", "ai_response.cancelled") => {
                Event::ReplyCancelled { sent_text: text("sent_text") }
            }
            ("request", "ping") => Event::Ping,
            ("response", _) => Event::Response { action, payload: p.clone() },
            _ => Event::Other { action, payload: p.clone() },
        };
        Some(Self {
            event,
            seq: raw["meta"]["seq"].as_u64(),
            request_id: raw["meta"]["request_id"].as_str().map(str::to_owned),
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalogue_messages_are_typed() {
        let stt = Message::parse(json!({
            "type": "event", "action": "stt_result",
            "payload": {"transcript": "Why is the sky blue?", "confidence": 0.9, "language": "en", "duration_ms": 2100},
            "meta": {"seq": 7, "request_id": "r1", "session_id": "s", "conversation_id": "c", "timestamp": "t"}
        }))
        .unwrap();
        assert_eq!(
            stt.event,
            Event::SttResult {
                transcript: "Why is the sky blue?".into(),
                confidence: 0.9,
                duration_ms: 2100
            }
        );
        assert_eq!((stt.seq, stt.request_id.as_deref()), (Some(7), Some("r1")));
        let error = Message::parse(json!({
            "type": "error", "action": "error", "payload": {"code": "STT_BUSY", "message": "busy"}, "meta": {}
        }))
        .unwrap();
        assert_eq!(error.event, Event::Error { code: "STT_BUSY".into(), message: "busy".into() });
        let reply = Message::parse(json!({
            "type": "response", "action": "ai_response",
            "payload": {"text": "Hi!", "tts_hint": {"voice": "v", "speed": 1.0, "language": "en"}}, "meta": {"seq": 9}
        }))
        .unwrap();
        assert!(matches!(reply.event, Event::Reply { ref text, .. } if text == "Hi!"));
        assert!(Message::parse(json!({"hello": 1})).is_none());
    }
}
