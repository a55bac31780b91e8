//! Server messages on the voice socket, typed by the protocol crate
//! (`docs/ws-messages.md`, "Server → client").

use serde_json::Value;

pub use blob_voice_protocol::ServerEvent as Event;
use blob_voice_protocol::{ParseError, ServerMessage};

/// One server message: the typed event, its envelope's correlation and the message as sent.
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

impl Message {
    /// Types a server message, checking it against the catalogue.
    pub fn parse(raw: Value) -> Result<Self, ParseError> {
        let typed = ServerMessage::from_value(raw.clone())?;
        Ok(Self { event: typed.event, seq: typed.meta.seq, request_id: typed.meta.request_id, raw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blob_voice_protocol::{ErrorCode, SttResult};
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
            Event::SttResult(SttResult {
                transcript: "Why is the sky blue?".into(),
                confidence: 0.9,
                language: "en".into(),
                duration_ms: 2100
            })
        );
        assert_eq!((stt.seq, stt.request_id.as_deref()), (Some(7), Some("r1")));
        let error = Message::parse(json!({
            "type": "error", "action": "error", "payload": {"code": "STT_BUSY", "message": "busy"}, "meta": {}
        }))
        .unwrap();
        assert_eq!(error.event.error_code(), Some(ErrorCode::SttBusy));
        let reply = Message::parse(json!({
            "type": "response", "action": "ai_response",
            "payload": {"text": "Hi!", "tts_hint": {"voice": "v", "speed": 1.0, "language": "en"}}, "meta": {"seq": 9}
        }))
        .unwrap();
        assert!(matches!(reply.event, Event::Reply(ref r) if r.text == "Hi!"));
        assert!(Message::parse(json!({"hello": 1})).is_err());
    }
}
