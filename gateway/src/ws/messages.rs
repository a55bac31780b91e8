//! Stamping server messages: the voice protocol crate types every message; a connection adds
//! the `meta` that correlates it (session, conversation, turn, audio thread, time).

use blob_voice_protocol::{Meta, ServerEvent, ServerMessage, TtsHint};

use crate::config;
use crate::envelope::now_rfc3339;

/// The ids a connection stamps on its messages.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The session.
    pub session_id: String,
    /// The conversation.
    pub conversation_id: String,
}

impl Stamp {
    /// `event` with this connection's ids, the turn's `request_id` and the audio thread.
    pub fn message(
        &self,
        mut event: ServerEvent,
        request_id: Option<&str>,
        thread_id: Option<&str>,
    ) -> ServerMessage {
        if let ServerEvent::State(change) = &mut event {
            change.conversation_id.get_or_insert_with(|| self.conversation_id.clone());
        }
        let meta = Meta {
            session_id: self.session_id.clone(),
            conversation_id: Some(self.conversation_id.clone()),
            request_id: request_id.map(str::to_owned),
            thread_id: thread_id.map(str::to_owned),
            timestamp: now_rfc3339(),
            seq: None,
        };
        ServerMessage { event, meta }
    }

    /// `event` with this connection's ids only.
    pub fn event(&self, event: ServerEvent) -> ServerMessage {
        self.message(event, None, None)
    }
}

impl From<&config::TtsHint> for TtsHint {
    fn from(hint: &config::TtsHint) -> Self {
        Self { voice: hint.voice.clone(), speed: hint.speed, language: hint.language.clone() }
    }
}
