//! Admitting a voice socket: the documented checks in their documented order, then attaching
//! the socket to its session.

use std::collections::HashMap;

use blob_proto::llm::v1 as llm;
use blob_proto::session::v1 as session;
use tonic::Code;

use blob_voice_protocol::CloseCode;
use futures::StreamExt as _;

use super::capacity::UserSlot;
use super::downstream::EventStream;
use crate::auth::AuthError;
use crate::state::AppState;

/// Who is connecting, to which session, with what history.
pub struct Admitted {
    /// The signed-in parent.
    pub user_id: String,
    /// The session as attached.
    pub session: session::Session,
    /// The client continues a conversation.
    pub resumed: bool,
    /// The exchanges so far.
    pub turns: Vec<session::ConversationTurn>,
    /// The child, for Blob's persona.
    pub child: llm::ChildProfile,
    /// This socket's epoch: a later socket has a higher one.
    pub epoch: u32,
    /// The last sequence number used on this session's events.
    pub last_event_seq: u64,
    /// Events after the client's `last_seq`, to send again.
    pub replay: Vec<session::StoredEvent>,
    /// The child's pauses kept with the conversation, for the end-of-turn detection.
    pub pauses_ms: Vec<u32>,
    /// Pause, resume, takeover and end signals for this session.
    pub signals: EventStream<session::SessionSignal>,
}

/// A refusal: the close code and its reason.
pub type Refusal = (CloseCode, &'static str);

/// Checks token, the account's socket cap, session and owner, in that order, then attaches.
/// The account's place is held as long as the returned [`UserSlot`].
pub async fn admit(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<(Admitted, UserSlot), Refusal> {
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or((CloseCode::Policy, "missing token"))?;
    let claims = state.tokens.verify(token).map_err(|err| match err {
        AuthError::Expired => (CloseCode::TokenExpired, "token expired"),
        _ => (CloseCode::Policy, "invalid token"),
    })?;
    let session_id = params
        .get("session_id")
        .filter(|s| !s.is_empty())
        .ok_or((CloseCode::SessionNotFound, "missing session_id"))?;
    if claims.sid.as_ref().is_some_and(|sid| sid != session_id) {
        return Err((CloseCode::Policy, "token is for another session"));
    }
    // A token from before the parent signed out is refused like an expired one.
    let checked = state
        .guard
        .clone()
        .check_token(state.request(session::CheckTokenRequest {
            user_id: claims.sub.clone(),
            token_generation: claims.tgen,
        }))
        .await
        .map_err(refusal)?
        .into_inner();
    if !checked.valid {
        return Err((CloseCode::TokenExpired, "token signed out"));
    }
    let place = state
        .capacity
        .try_user(&claims.sub, session_id)
        .ok_or((CloseCode::RateLimited, "too many voice sockets for this account"))?;
    let replay_after_seq = match params.get("last_seq") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| (CloseCode::Policy, "invalid last_seq"))?),
    };

    let mut sessions = state.sessions.clone();
    let stored = sessions
        .get_session(state.request(session::GetSessionRequest { session_id: session_id.clone() }))
        .await
        .map_err(refusal)?
        .into_inner();
    if stored.user_id != claims.sub {
        return Err((CloseCode::UserMismatch, "session belongs to another user"));
    }
    // Watch before attaching, so no signal after our own attach can be missed.
    let signals = sessions
        .watch_session(session::WatchSessionRequest {
            session_id: session_id.clone(),
            user_id: claims.sub.clone(),
        })
        .await
        .map_err(refusal)?
        .into_inner()
        .boxed();
    let attached = sessions
        .attach_session(state.request(session::AttachSessionRequest {
            session_id: session_id.clone(),
            user_id: claims.sub.clone(),
            replay_after_seq,
        }))
        .await
        .map_err(refusal)?
        .into_inner();
    let session =
        attached.session.ok_or((CloseCode::Internal, "session service answered nothing"))?;
    let child = state
        .families
        .clone()
        .get_child(state.request(session::GetChildRequest {
            user_id: claims.sub.clone(),
            child_id: session.child_id.clone(),
        }))
        .await
        .map_err(refusal)?
        .into_inner()
        .child
        .map(|c| llm::ChildProfile { name: c.name, grade_level: c.grade_level })
        .unwrap_or_default();
    let admitted = Admitted {
        user_id: claims.sub,
        session,
        resumed: attached.resumed,
        turns: attached.turns,
        child,
        epoch: attached.epoch,
        last_event_seq: attached.last_event_seq,
        replay: attached.replay,
        pauses_ms: attached.pause_profile.map(|p| p.pauses_ms).unwrap_or_default(),
        signals,
    };
    Ok((admitted, place))
}

fn refusal(status: tonic::Status) -> Refusal {
    match status.code() {
        Code::NotFound => (CloseCode::SessionNotFound, "session not found"),
        Code::PermissionDenied => (CloseCode::UserMismatch, "session belongs to another user"),
        _ => {
            tracing::error!(%status, "session-service failed during admission");
            (CloseCode::Internal, "session service unavailable")
        }
    }
}
