//! Outbound and inbound JSON messages of the voice socket: `{type, action, payload, meta}`.
//! The catalogue with every action is `docs/ws-messages.md`.

use serde::{Deserialize, Serialize};

use crate::config::TtsHint;
use crate::envelope::now_rfc3339;

/// Close codes of the voice socket.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; reconnect (the session waits in the reconnect window).
    pub const GOING_AWAY: u16 = 1001;
    /// The token is missing, malformed or forged, or is for another session.
    pub const POLICY: u16 = 1008;
    /// A service behind the gateway failed; reconnect later.
    pub const INTERNAL: u16 = 1011;
    /// The token has expired: exchange a new one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// No active or suspended session with that id.
    pub const SESSION_NOT_FOUND: u16 = 4002;
    /// The session belongs to another user.
    pub const USER_MISMATCH: u16 = 4003;
    /// No sign of life from the client for the configured number of heartbeats.
    pub const HEARTBEAT_TIMEOUT: u16 = 4008;
    /// A newer socket took this session over.
    pub const TAKEN_OVER: u16 = 4009;
    /// The client reads too slowly: its outbound queue stayed full.
    pub const SLOW_CLIENT: u16 = 4408;
    /// Too many messages per second.
    pub const RATE_LIMITED: u16 = 4429;
}

/// `meta` of a message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Meta {
    /// The session.
    pub session_id: String,
    /// The conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The voice turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The audio thread (from the frames).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Per-session sequence number (absent on `audio_ack`, `ping` and `pong`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// One outbound message.
#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    /// `event`, `response` or `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What it is.
    pub action: &'static str,
    /// Its content.
    pub payload: serde_json::Value,
    /// Correlation.
    pub meta: Meta,
}

/// The ids a connection stamps on its messages.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The session.
    pub session_id: String,
    /// The conversation.
    pub conversation_id: String,
}

impl Stamp {
    fn meta(&self, request_id: Option<&str>, thread_id: Option<&str>) -> Meta {
        Meta {
            session_id: self.session_id.clone(),
            conversation_id: Some(self.conversation_id.clone()),
            request_id: request_id.map(str::to_owned),
            thread_id: thread_id.map(str::to_owned),
            timestamp: now_rfc3339(),
            seq: None,
        }
    }

    /// `session.created {session_id, paused}`.
    pub fn session_created(&self, paused: bool) -> Outbound {
        self.event(
            "session.created",
            serde_json::json!({ "session_id": self.session_id, "paused": paused }),
        )
    }

    /// `session.resumed {session_id, resumed_turns_count, paused, replayed, reason: "reconnected"}`.
    pub fn session_resumed(&self, turns: usize, paused: bool, replayed: usize) -> Outbound {
        self.event(
            "session.resumed",
            serde_json::json!({
                "session_id": self.session_id,
                "resumed_turns_count": turns,
                "paused": paused,
                "replayed": replayed,
                "reason": "reconnected",
            }),
        )
    }

    /// `session.paused {session_id}`.
    pub fn session_paused(&self) -> Outbound {
        self.event("session.paused", serde_json::json!({ "session_id": self.session_id }))
    }

    /// `session.resumed {session_id, reason: "unpaused"}`.
    pub fn session_unpaused(&self) -> Outbound {
        self.event(
            "session.resumed",
            serde_json::json!({ "session_id": self.session_id, "reason": "unpaused" }),
        )
    }

    /// `ai_response.chunk {text, index}`: one complete sentence of the reply.
    pub fn ai_chunk(
        &self,
        text: &str,
        index: u32,
        request_id: &str,
        thread_id: Option<&str>,
    ) -> Outbound {
        Outbound {
            kind: "event",
            action: "ai_response.chunk",
            payload: serde_json::json!({ "text": text, "index": index }),
            meta: self.meta(Some(request_id), thread_id),
        }
    }

    /// `ai_response.cancelled {request_id, sent_text}`: barge-in stopped the reply.
    pub fn ai_cancelled(&self, request_id: &str, sent_text: &str) -> Outbound {
        Outbound {
            kind: "event",
            action: "ai_response.cancelled",
            payload: serde_json::json!({ "request_id": request_id, "sent_text": sent_text }),
            meta: self.meta(Some(request_id), None),
        }
    }

    /// `audio_ack {sequence, buffer_state, lost_frames, reordered_frames}`.
    pub fn audio_ack(
        &self,
        sequence: u32,
        buffer_state: &str,
        lost: u64,
        reordered: u64,
    ) -> Outbound {
        Outbound {
            kind: "event",
            action: "audio_ack",
            payload: serde_json::json!({
                "sequence": sequence,
                "buffer_state": buffer_state,
                "lost_frames": lost,
                "reordered_frames": reordered,
            }),
            meta: self.meta(None, None),
        }
    }

    /// The server's heartbeat `ping`; answer with `pong`.
    pub fn ping(&self) -> Outbound {
        Outbound {
            kind: "request",
            action: "ping",
            payload: serde_json::json!({}),
            meta: self.meta(None, None),
        }
    }

    /// A `response` to a client request.
    pub fn response(
        &self,
        action: &'static str,
        payload: serde_json::Value,
        request_id: Option<&str>,
    ) -> Outbound {
        Outbound { kind: "response", action, payload, meta: self.meta(request_id, None) }
    }

    /// `conversation.state {state}`.
    pub fn state(&self, state: &str, request_id: Option<&str>) -> Outbound {
        Outbound {
            kind: "event",
            action: "conversation.state",
            payload: serde_json::json!({ "state": state }),
            meta: self.meta(request_id, None),
        }
    }

    /// `stt_result {transcript, confidence, language, duration_ms}`.
    pub fn stt_result(
        &self,
        transcript: &str,
        confidence: f32,
        language: &str,
        duration_ms: u32,
        request_id: &str,
        thread_id: Option<&str>,
    ) -> Outbound {
        Outbound {
            kind: "event",
            action: "stt_result",
            payload: serde_json::json!({
                "transcript": transcript,
                "confidence": round3(confidence),
                "language": language,
                "duration_ms": duration_ms,
            }),
            meta: self.meta(Some(request_id), thread_id),
        }
    }

    /// `stt_rejected {reason, duration_ms, confidence}`: speech was heard but not used.
    pub fn stt_rejected(&self, reason: &str, duration_ms: u32, confidence: f32) -> Outbound {
        self.event(
            "stt_rejected",
            serde_json::json!({
                "reason": reason,
                "duration_ms": duration_ms,
                "confidence": round3(confidence),
            }),
        )
    }

    /// `ai_response {text, tts_hint}`.
    pub fn ai_response(
        &self,
        text: &str,
        tts: &TtsHint,
        request_id: &str,
        thread_id: Option<&str>,
    ) -> Outbound {
        Outbound {
            kind: "response",
            action: "ai_response",
            payload: serde_json::json!({
                "text": text,
                "tts_hint": { "voice": tts.voice, "speed": tts.speed, "language": tts.language },
            }),
            meta: self.meta(Some(request_id), thread_id),
        }
    }

    /// `pong` in answer to `ping`.
    pub fn pong(&self, request_id: Option<&str>) -> Outbound {
        Outbound {
            kind: "response",
            action: "pong",
            payload: serde_json::json!({}),
            meta: self.meta(request_id, None),
        }
    }

    /// `error {code, message}`.
    pub fn error(&self, code: &str, message: &str, request_id: Option<&str>) -> Outbound {
        Outbound {
            kind: "error",
            action: "error",
            payload: serde_json::json!({ "code": code, "message": message }),
            meta: self.meta(request_id, None),
        }
    }

    fn event(&self, action: &'static str, payload: serde_json::Value) -> Outbound {
        Outbound { kind: "event", action, payload, meta: self.meta(None, None) }
    }
}

impl Outbound {
    /// Whether the message is numbered and kept for replay (everything but the heartbeat and
    /// acknowledgements).
    pub fn replayable(&self) -> bool {
        !matches!(self.action, "audio_ack" | "ping" | "pong")
    }

    /// Whether the message may be dropped when the client reads too slowly.
    pub fn droppable(&self) -> bool {
        self.action == "audio_ack"
    }
}

fn round3(value: f32) -> f64 {
    (f64::from(value) * 1000.0).round() / 1000.0
}

/// An inbound JSON message.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    /// `request` (the only type clients send).
    #[serde(rename = "type")]
    pub kind: String,
    /// What the client asks for.
    pub action: String,
    /// Arguments.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Correlation chosen by the client.
    #[serde(default)]
    pub meta: InboundMeta,
}

/// The parts of an inbound `meta` the server reads.
#[derive(Debug, Default, Deserialize)]
pub struct InboundMeta {
    /// Echoed in the answer.
    #[serde(default)]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_response_has_the_seed_shape() {
        let stamp = Stamp { session_id: "s".into(), conversation_id: "c".into() };
        let tts = TtsHint { voice: "v".into(), speed: 1.0, language: "en-IN".into() };
        let message = serde_json::to_value(stamp.ai_response("Hi!", &tts, "r", Some("t"))).unwrap();
        assert_eq!(message["type"], "response");
        assert_eq!(message["action"], "ai_response");
        assert_eq!(message["payload"]["text"], "Hi!");
        assert_eq!(message["payload"]["tts_hint"]["voice"], "v");
        for key in ["session_id", "conversation_id", "request_id", "thread_id", "timestamp"] {
            assert!(message["meta"][key].is_string(), "meta.{key} missing: {message}");
        }
    }
}
