//! The stable codes of the voice socket: `error` event codes and close codes.

use crate::names::wire_names;

wire_names! {
    /// `payload.code` of an `error` event. The socket stays open after every one of them except
    /// `STT_UNAVAILABLE`, which is followed by a close with [`CloseCode::Internal`].
    pub enum ErrorCode {
        /// A binary message shorter than the frame header, or not starting with `0xB1`.
        InvalidFrame = "INVALID_FRAME",
        /// A frame of a version other than 4.
        UnsupportedVersion = "UNSUPPORTED_VERSION",
        /// PCM of odd length, or `audio_stream` audio that is not base64.
        InvalidAudio = "INVALID_AUDIO",
        /// More PCM than one frame may carry.
        FrameTooLarge = "FRAME_TOO_LARGE",
        /// `audio_stream` while the session is paused.
        SessionPaused = "SESSION_PAUSED",
        /// Text that is not a request envelope, or a request whose payload is incomplete.
        InvalidMessage = "INVALID_MESSAGE",
        /// A request action the server does not know.
        UnknownAction = "UNKNOWN_ACTION",
        /// `playback.progress` for a reply the server does not know.
        UnknownTurn = "UNKNOWN_TURN",
        /// Blob could not answer; the child may say it again.
        LlmUnavailable = "LLM_UNAVAILABLE",
        /// Blob took too long to answer.
        LlmTimeout = "LLM_TIMEOUT",
        /// The answer was delivered but the exchange (or a pause, or a trim) was not saved.
        StateUnavailable = "STATE_UNAVAILABLE",
        /// Speech recognition is overloaded: the utterance was lost, the socket stays.
        SttBusy = "STT_BUSY",
        /// Speech recognition is unavailable: the socket closes with 1011.
        SttUnavailable = "STT_UNAVAILABLE",
        /// The recogniser stopped (a restart, a rollout): the utterance in progress was lost;
        /// the socket stays while a recogniser comes back, then the child may speak again.
        SttInterrupted = "STT_INTERRUPTED",
        /// Audio arrives faster than `WS_MAX_AUDIO_SPEED` × real time: it is dropped, and if it
        /// goes on the socket closes with 4429.
        AudioTooFast = "AUDIO_TOO_FAST",
    }
}

/// A close code of the voice socket, with the reason the server sends beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the session was ended.
    Normal,
    /// 1001: the server is shutting down; reconnect (the session waits in the reconnect window).
    GoingAway,
    /// 1008: the token is missing, malformed or forged, or is for another session.
    Policy,
    /// 1009: a message over the size limit (sent by the WebSocket layer itself).
    TooBig,
    /// 1011: a service behind the gateway failed; reconnect later.
    Internal,
    /// 1013: the gateway or the recogniser is at capacity; reconnect after a moment (the
    /// session waits in the reconnect window).
    TryAgainLater,
    /// 4001: the token has expired: exchange a new one.
    TokenExpired,
    /// 4002: no active or suspended session with that id.
    SessionNotFound,
    /// 4003: the session belongs to another user.
    UserMismatch,
    /// 4008: no sign of life from the client for the configured number of heartbeats.
    HeartbeatTimeout,
    /// 4009: a newer socket took this session over.
    TakenOver,
    /// 4408: the client reads too slowly: its outbound queue stayed full.
    SlowClient,
    /// 4429: too many messages per second.
    RateLimited,
}

impl CloseCode {
    /// Every close code, in catalogue order.
    pub const ALL: &'static [Self] = &[
        Self::Normal,
        Self::GoingAway,
        Self::Policy,
        Self::TooBig,
        Self::Internal,
        Self::TryAgainLater,
        Self::TokenExpired,
        Self::SessionNotFound,
        Self::UserMismatch,
        Self::HeartbeatTimeout,
        Self::TakenOver,
        Self::SlowClient,
        Self::RateLimited,
    ];

    /// The number in the close frame.
    pub const fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Internal => 1011,
            Self::TryAgainLater => 1013,
            Self::TokenExpired => 4001,
            Self::SessionNotFound => 4002,
            Self::UserMismatch => 4003,
            Self::HeartbeatTimeout => 4008,
            Self::TakenOver => 4009,
            Self::SlowClient => 4408,
            Self::RateLimited => 4429,
        }
    }

    /// The close code with this number.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Whether the session stays suspended, to be continued, after a close with this code
    /// (every close but a takeover and the session's end).
    pub const fn keeps_session(self) -> bool {
        !matches!(self, Self::TakenOver | Self::Normal)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_form() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
        }
        for close in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(close.code()), Some(*close));
        }
        assert!(serde_json::from_str::<ErrorCode>("\"NOPE\"").is_err());
    }
}
