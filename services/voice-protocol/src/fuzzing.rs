//! The properties every message off the socket keeps, whatever its bytes: the bodies of the
//! fuzz targets (`fuzz/`, run by `make fuzz` and `make test`) and of the corpus test that
//! replays their committed corpus on every `cargo test`.

use crate::client::{MAX_ERROR_MESSAGE_LEN, valid_request_id};
use crate::frame::{AudioFrame, MAX_PCM_BYTES};
use crate::{ClientMessage, ClientRequest};

/// A binary message: parsing never panics; a frame it accepts has even PCM within the limit and
/// encodes back to the same bytes; a refusal has its stable code and a message.
pub fn check_frame(bytes: &[u8]) {
    match AudioFrame::parse(bytes) {
        Ok(frame) => {
            assert!(frame.pcm.len().is_multiple_of(2), "odd PCM accepted");
            assert!(frame.pcm.len() <= MAX_PCM_BYTES, "oversized PCM accepted");
            let encoded = AudioFrame::encode(frame.sequence, frame.thread_id, frame.pcm);
            assert_eq!(encoded, bytes, "a frame does not encode back to its bytes");
        }
        Err(err) => {
            let _ = err.code();
            assert!(!err.to_string().is_empty());
        }
    }
}

/// A text message: parsing never panics; what it accepts encodes to JSON that parses to the same
/// request; a request id it keeps (to echo and store) is always a valid one; the error message
/// sent back is bounded, whatever the input quoted into it.
pub fn check_client_text(text: &str) {
    match ClientMessage::parse(text) {
        Ok(message) => {
            if let Some(id) = &message.request_id {
                assert!(valid_request_id(id), "an invalid request id kept: {id:?}");
            }
            if let ClientRequest::PlaybackProgress(progress) = &message.request {
                assert!(valid_request_id(&progress.request_id));
            }
            let again = ClientMessage::parse(&message.to_json())
                .unwrap_or_else(|err| panic!("{message:?} encodes to JSON it refuses: {err}"));
            assert_eq!(again, message, "a request changed through encoding");
        }
        Err(err) => {
            if let Some(id) = &err.request_id {
                assert!(valid_request_id(id), "an invalid request id echoed: {id:?}");
            }
            assert!(
                err.message.len() <= MAX_ERROR_MESSAGE_LEN,
                "an error message of {} bytes",
                err.message.len()
            );
        }
    }
}

/// Any bytes as a text message, as the fuzz target reads them (a WebSocket text message is
/// UTF-8; anything else never reaches the parser).
pub fn check_client_bytes(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_client_text(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_string_quoted_by_the_parser_is_cut_short_in_the_error() {
        let long = "é".repeat(30_000);
        for text in [
            format!(r#"{{"type":"request","action":"ping","meta":"{long}"}}"#),
            format!(r#"{{"type":"{long}","action":"ping"}}"#),
            format!(r#"{{"type":"request","action":"{long}"}}"#),
        ] {
            let err = ClientMessage::parse(&text).unwrap_err();
            assert!(err.message.len() <= MAX_ERROR_MESSAGE_LEN, "{} bytes", err.message.len());
            check_client_text(&text);
        }
    }
}
