//! Client → server: the JSON requests (`docs/ws-messages.md`, "Client → server"), typed, with
//! the error each malformed one gets.

use base64::Engine as _;
use serde::Deserialize;

use crate::WireIn;
use crate::codes::ErrorCode;
use crate::server::{MessageType, PlaybackProgress};

/// One request from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// `ping`: answered with `pong`.
    Ping,
    /// `pong`: the answer to the server's `ping` (accepted with any `type`).
    Pong,
    /// `pause`: no recognition or reply work until `resume`.
    Pause,
    /// `resume`.
    Resume,
    /// `audio_stream {audio: base64 PCM, sequence?}`: legacy audio.
    AudioStream(AudioStream),
    /// `playback.progress {request_id, chars_spoken}`: the phone's speech of a reply was cut
    /// off.
    PlaybackProgress(PlaybackProgress),
    /// `turn.end`: the child is done speaking.
    TurnEnd,
}

/// Legacy audio sent as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    /// The PCM, decoded from `payload.audio`.
    pub pcm: Vec<u8>,
    /// `payload.sequence`, when it is a number that fits a frame's.
    pub sequence: Option<u32>,
}

impl ClientRequest {
    /// Every action a client may send, in catalogue order.
    pub const ACTIONS: &'static [&'static str] =
        &["ping", "pong", "pause", "resume", "audio_stream", "playback.progress", "turn.end"];

    /// The request's `action`.
    pub const fn action(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Pong => "pong",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::AudioStream(_) => "audio_stream",
            Self::PlaybackProgress(_) => "playback.progress",
            Self::TurnEnd => "turn.end",
        }
    }

    fn payload(&self) -> serde_json::Value {
        match self {
            Self::AudioStream(stream) => {
                let audio = base64::engine::general_purpose::STANDARD.encode(&stream.pcm);
                let mut payload = serde_json::json!({ "audio": audio });
                if let Some(sequence) = stream.sequence {
                    payload["sequence"] = sequence.into();
                }
                payload
            }
            Self::PlaybackProgress(progress) => {
                serde_json::to_value(progress).expect("plain fields serialise")
            }
            _ => serde_json::json!({}),
        }
    }
}

/// One whole client message: the request and the id its answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// What the client asks for.
    pub request: ClientRequest,
    /// `meta.request_id`, echoed in the answer.
    pub request_id: Option<String>,
}

/// Why a text message is not a request the server takes: the `error` event it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RequestError {
    /// The `error` event code.
    pub code: ErrorCode,
    /// For developers.
    pub message: String,
    /// The request's `meta.request_id`, when it could be read.
    pub request_id: Option<String>,
}

/// Longest `meta.request_id` (and `playback.progress` `request_id`) taken: it is echoed in
/// answers and kept with the conversation.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a client's request id may be echoed and stored: 1 to [`MAX_REQUEST_ID_LEN`]
/// characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Longest error `message` sent back for a malformed request, whatever the request: the
/// parts of it that are quoted are cut short.
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;

/// `text` cut to 200 bytes and an ellipsis, at a character boundary.
fn bounded(text: &str) -> String {
    let room = 200;
    if text.len() <= room {
        return text.to_owned();
    }
    let mut end = room;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[derive(Default, Deserialize)]
struct WireMeta {
    #[serde(default)]
    request_id: Option<String>,
}

impl ClientMessage {
    /// A request with a fresh request id.
    pub fn new(request: ClientRequest) -> Self {
        Self { request, request_id: Some(uuid::Uuid::new_v4().to_string()) }
    }

    /// The JSON text sent on the socket:
    /// `{"type":"request","action":…,"payload":…,"meta":{"request_id":…}}`.
    pub fn to_json(&self) -> String {
        let mut meta = serde_json::Map::new();
        if let Some(id) = &self.request_id {
            meta.insert("request_id".into(), id.clone().into());
        }
        serde_json::json!({
            "type": MessageType::Request,
            "action": self.request.action(),
            "payload": self.request.payload(),
            "meta": meta,
        })
        .to_string()
    }

    /// Types a client's text message; a malformed one gets its `error` event.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let invalid = |message: String, request_id: Option<String>| RequestError {
            code: ErrorCode::InvalidMessage,
            message,
            request_id,
        };
        // The parser's message can quote the input (a wrongly typed string, whole): never
        // more than a line of it goes back.
        let wire: WireIn<WireMeta> = serde_json::from_str(text).map_err(|err| {
            invalid(format!("not a valid message: {}", bounded(&err.to_string())), None)
        })?;
        let request_id = wire.meta.request_id;
        if request_id.as_deref().is_some_and(|id| !valid_request_id(id)) {
            // Never echoed back: it is not ours to repeat.
            let message = format!(
                "meta.request_id must be 1-{MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ : -"
            );
            return Err(invalid(message, None));
        }
        let fail = |code, message: &str| RequestError {
            code,
            message: message.to_owned(),
            request_id: request_id.clone(),
        };
        if wire.action == "pong" {
            // The heartbeat's answer counts whatever its type says.
            return Ok(Self { request: ClientRequest::Pong, request_id });
        }
        if wire.kind != MessageType::Request.as_str() {
            let shown: String = wire.kind.chars().take(32).collect();
            let message = format!("clients send type \"request\", not {shown:?}");
            return Err(invalid(message, request_id));
        }
        let p = &wire.payload;
        let request = match wire.action.as_str() {
            "ping" => ClientRequest::Ping,
            "pause" => ClientRequest::Pause,
            "resume" => ClientRequest::Resume,
            "turn.end" => ClientRequest::TurnEnd,
            "audio_stream" => {
                let pcm = p["audio"]
                    .as_str()
                    .and_then(|audio| base64::engine::general_purpose::STANDARD.decode(audio).ok())
                    .ok_or_else(|| {
                        fail(ErrorCode::InvalidAudio, "payload.audio must be base64 PCM")
                    })?;
                let sequence = p["sequence"].as_u64().and_then(|s| u32::try_from(s).ok());
                ClientRequest::AudioStream(AudioStream { pcm, sequence })
            }
            "playback.progress" => match (p["request_id"].as_str(), p["chars_spoken"].as_u64()) {
                (Some(turn), Some(chars_spoken)) if valid_request_id(turn) => {
                    ClientRequest::PlaybackProgress(PlaybackProgress {
                        request_id: turn.to_owned(),
                        chars_spoken,
                    })
                }
                _ => {
                    return Err(fail(
                        ErrorCode::InvalidMessage,
                        "playback.progress needs request_id and chars_spoken",
                    ));
                }
            },
            action => {
                let shown: String = action.chars().take(32).collect();
                let message = format!("unknown action {shown:?}");
                return Err(RequestError { code: ErrorCode::UnknownAction, message, request_id });
            }
        };
        Ok(Self { request, request_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_and_never_echoed_when_refused() {
        let with_id = |id: &str| {
            serde_json::json!({"type": "request", "action": "ping", "meta": {"request_id": id}})
                .to_string()
        };
        let ok = ClientMessage::parse(&with_id("req-1:a_b.c")).unwrap();
        assert_eq!(ok.request_id.as_deref(), Some("req-1:a_b.c"));
        assert!(ClientMessage::parse(&with_id(&"a".repeat(MAX_REQUEST_ID_LEN))).is_ok());
        for bad in ["", "<script>", "a b", "é", &"a".repeat(MAX_REQUEST_ID_LEN + 1)] {
            let err = ClientMessage::parse(&with_id(bad)).unwrap_err();
            assert_eq!((err.code, err.request_id), (ErrorCode::InvalidMessage, None), "{bad:?}");
        }
        let progress = serde_json::json!({
            "type": "request", "action": "playback.progress",
            "payload": {"request_id": "x".repeat(1000), "chars_spoken": 3},
        });
        let err = ClientMessage::parse(&progress.to_string()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidMessage);
        let long_action = serde_json::json!({"type": "request", "action": "z".repeat(10_000)});
        let err = ClientMessage::parse(&long_action.to_string()).unwrap_err();
        assert!(err.message.len() < 100, "{}", err.message);
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            ClientRequest::Ping,
            ClientRequest::Pong,
            ClientRequest::Pause,
            ClientRequest::Resume,
            ClientRequest::AudioStream(AudioStream { pcm: vec![1, 0, 2, 0], sequence: Some(9) }),
            ClientRequest::PlaybackProgress(PlaybackProgress {
                request_id: "r".into(),
                chars_spoken: 5,
            }),
            ClientRequest::TurnEnd,
        ];
        assert_eq!(requests.len(), ClientRequest::ACTIONS.len());
        for (request, action) in requests.into_iter().zip(ClientRequest::ACTIONS) {
            assert_eq!(request.action(), *action);
            let message = ClientMessage { request, request_id: Some("q".into()) };
            let json = message.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["type"], "request");
            assert_eq!(value["meta"]["request_id"], "q");
            assert_eq!(ClientMessage::parse(&json).unwrap(), message);
        }
    }

    #[test]
    fn malformed_requests_get_their_codes() {
        let code = |text: &str| ClientMessage::parse(text).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"event","action":"ping"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"request","action":"dance"}"#), ErrorCode::UnknownAction);
        assert_eq!(
            code(r#"{"type":"request","action":"audio_stream","payload":{"audio":"%%"}}"#),
            ErrorCode::InvalidAudio
        );
        assert_eq!(
            code(r#"{"type":"request","action":"playback.progress","payload":{"request_id":"r"}}"#),
            ErrorCode::InvalidMessage
        );
        let echoed =
            ClientMessage::parse(r#"{"type":"request","action":"x","meta":{"request_id":"q"}}"#);
        assert_eq!(echoed.unwrap_err().request_id.as_deref(), Some("q"));
        // A pong counts whatever its type, and requests without payload need none.
        let pong = ClientMessage::parse(r#"{"type":"response","action":"pong"}"#).unwrap();
        assert_eq!(pong.request, ClientRequest::Pong);
        let ping = ClientMessage::parse(r#"{"type":"request","action":"ping"}"#).unwrap();
        assert_eq!((ping.request, ping.request_id), (ClientRequest::Ping, None));
    }
}
