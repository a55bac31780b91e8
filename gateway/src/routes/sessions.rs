//! `POST /api/v1/sessions`: create or discover the session of a child.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AuthUser;
use crate::auth::backend::BackendClaims;
use crate::envelope::{ApiError, ApiJson, ApiOk, ErrorCode, rfc3339_ms};
use crate::state::AppState;

/// Every route under `/api/v1` of this resource, registered once for the router and the
/// OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_session))
        .routes(routes!(get_session))
        .routes(routes!(pause_session))
        .routes(routes!(resume_session))
        .routes(routes!(end_session))
}

/// Longest conversation id accepted, in bytes.
const MAX_ID_BYTES: usize = 128;

/// The one session mode: Blob and the child talk freely.
const COMPANION: &str = "companion";

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionRequest {
    /// The child the session is for.
    pub child_id: String,
    /// `companion` (the default: free conversation with Blob); `conversation` is taken as
    /// `companion`.
    #[serde(default)]
    pub mode: Option<String>,
    /// An earlier conversation of this child to continue (after the reconnect window has
    /// passed): Blob is given its turns again. It must be the caller's, with the same child, and
    /// still kept (`CONVERSATION_TTL_SECONDS`). Ignored when the child's session is still
    /// active or suspended: that session keeps its own conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// A session as the app sees it (the seed contract's fields).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session's id.
    pub session_id: String,
    /// A token for this session's voice socket only.
    pub session_token: String,
    /// The child.
    pub child_id: String,
    /// `conversation`.
    pub mode: String,
    /// The conversation the session continues.
    pub active_conversation_id: String,
    /// `active`, `suspended` (waiting for its socket to come back) or `ended` (after `/end`).
    /// A paused session is `active` with `paused` set.
    pub state: &'static str,
    /// Lifetime without activity.
    pub ttl_seconds: u32,
    /// How long a closed socket's session waits to be resumed.
    pub reconnect_window_seconds: u32,
    /// The voice socket's address (`PUBLIC_WS_URL`); the app adds `?token=…&session_id=…`.
    pub ws_url: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// `created`, `reattached` (a new session continuing the `conversation_id` asked for),
    /// `discovered` or `resumed` (`ended` after `/end`).
    pub outcome: &'static str,
    /// Paused: audio is ignored until resumed.
    pub paused: bool,
}

/// Returns the child's active session, resumes its suspended one, or creates a new one.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    tag = "sessions",
    summary = "Create or discover the child's session (interact)",
    request_body = OpenSessionRequest,
    responses(
        (status = 201, description = "A new session", body = SessionView),
        (status = 200, description = "The child's existing session, resumed if it was suspended", body = SessionView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this, or conversation_id is another child's"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's; or no such conversation_id (expired, or another user's)"),
        (status = 409, description = "CONFLICT: the child's live session belongs to another account"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, child_id = %body.child_id))]
pub async fn open_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<OpenSessionRequest>,
) -> Result<ApiOk<SessionView>, ApiError> {
    if body.child_id.trim().is_empty() {
        return Err(ApiError::validation("child_id", "child_id is required"));
    }
    let mode = match body.mode.as_deref() {
        None | Some(COMPANION | "conversation") => COMPANION.to_owned(),
        Some(_) => return Err(ApiError::validation("mode", "mode must be \"companion\"")),
    };
    let conversation_id = match body.conversation_id.as_deref().map(str::trim) {
        None | Some("") => String::new(),
        Some(id)
            if id.len() > MAX_ID_BYTES || id.contains('/') || id.chars().any(char::is_control) =>
        {
            return Err(ApiError::validation(
                "conversation_id",
                format!("conversation_id must be an id of at most {MAX_ID_BYTES} bytes"),
            ));
        }
        Some(id) => id.to_owned(),
    };
    let response = state
        .sessions
        .clone()
        .open_session(state.request(pb::OpenSessionRequest {
            user_id: user.sub.clone(),
            child_id: body.child_id.trim().to_owned(),
            mode,
            conversation_id,
        }))
        .await?
        .into_inner();
    let session =
        response.session.ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?;
    if session.user_id != user.sub {
        // The child's live session was opened by another parent of the same family.
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this child is already in a session opened by another account",
        ));
    }
    let (status, outcome) = match pb::OpenOutcome::try_from(response.outcome) {
        Ok(pb::OpenOutcome::Created) => (StatusCode::CREATED, "created"),
        Ok(pb::OpenOutcome::Reattached) => (StatusCode::CREATED, "reattached"),
        Ok(pb::OpenOutcome::Resumed) => (StatusCode::OK, "resumed"),
        _ => (StatusCode::OK, "discovered"),
    };
    tracing::info!(session_id = %session.session_id, outcome, "session opened");
    Ok(ApiOk(status, session_view(&state, session, outcome, user.tgen)))
}

/// The wire name of a session's state.
pub fn state_name(session: &pb::Session) -> &'static str {
    match pb::SessionState::try_from(session.state).unwrap_or(pb::SessionState::Unspecified) {
        pb::SessionState::Active => "active",
        pb::SessionState::Suspended => "suspended",
        pb::SessionState::Ended => "ended",
        pb::SessionState::Unspecified => "unknown",
    }
}

/// The session as answered to its owner, whose token (of `generation`) asked.
fn session_view(
    state: &AppState,
    session: pb::Session,
    outcome: &'static str,
    generation: u64,
) -> SessionView {
    let token_ttl = Duration::from_secs(u64::from(session.ttl_seconds));
    SessionView {
        session_token: state.tokens.issue_session(
            &session.user_id,
            &session.session_id,
            token_ttl,
            generation,
        ),
        // The app adds `?token=…&session_id=…` itself.
        ws_url: state.config.public_ws_url.clone(),
        state: state_name(&session),
        created_at: rfc3339_ms(session.created_at_ms),
        expires_at: rfc3339_ms(session.expires_at_ms),
        session_id: session.session_id,
        child_id: session.child_id,
        mode: session.mode,
        active_conversation_id: session.conversation_id,
        ttl_seconds: session.ttl_seconds,
        reconnect_window_seconds: session.reconnect_window_seconds,
        outcome,
        paused: session.paused,
    }
}

/// `GET /api/v1/sessions/{id}`: the caller's active or suspended session.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{session_id}",
    tag = "sessions",
    summary = "The caller's session",
    params(
        ("session_id" = String, Path, description = "The session's id")
    ),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "NOT_FOUND: no such session, or another user's"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, session_id = %session_id))]
pub async fn get_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> Result<ApiOk<SessionView>, ApiError> {
    let session = owned_session(&state, &user.sub, &session_id).await?;
    Ok(ApiOk(StatusCode::OK, session_view(&state, session, "discovered", user.tgen)))
}

/// `POST /api/v1/sessions/{id}/pause`: the live socket, wherever it is, stops listening.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{session_id}/pause",
    tag = "sessions",
    summary = "Pause: the live socket stops listening",
    params(
        ("session_id" = String, Path, description = "The session's id")
    ),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "NOT_FOUND: no such session, or another user's"),
    ),
    security(("bearer" = []))
)]
pub async fn pause_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> Result<ApiOk<SessionView>, ApiError> {
    set_paused(&state, &user, &session_id, true).await
}

/// `POST /api/v1/sessions/{id}/resume`: the live socket listens again.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{session_id}/resume",
    tag = "sessions",
    summary = "Resume: the live socket listens again",
    params(
        ("session_id" = String, Path, description = "The session's id")
    ),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "NOT_FOUND: no such session, or another user's"),
    ),
    security(("bearer" = []))
)]
pub async fn resume_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> Result<ApiOk<SessionView>, ApiError> {
    set_paused(&state, &user, &session_id, false).await
}

/// `POST /api/v1/sessions/{id}/end`: archives the session; its socket closes with 1000.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{session_id}/end",
    tag = "sessions",
    summary = "End and archive the session; its socket closes",
    params(
        ("session_id" = String, Path, description = "The session's id")
    ),
    responses(
        (status = 200, description = "The ended session", body = SessionView),
        (status = 404, description = "NOT_FOUND: no such session, or another user's"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, session_id = %session_id))]
pub async fn end_session(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> Result<ApiOk<SessionView>, ApiError> {
    owned_session(&state, &user.sub, &session_id).await?;
    let ended = state
        .sessions
        .clone()
        .end_session(state.request(pb::SessionRef {
            session_id: session_id.clone(),
            user_id: user.sub.clone(),
            epoch: 0,
        }))
        .await
        .map_err(not_found_for_others)?
        .into_inner();
    Ok(ApiOk(StatusCode::OK, session_view(&state, ended, "ended", user.tgen)))
}

#[tracing::instrument(skip(state, user), fields(user_id = %user.sub))]
async fn set_paused(
    state: &AppState,
    user: &BackendClaims,
    session_id: &str,
    paused: bool,
) -> Result<ApiOk<SessionView>, ApiError> {
    let user_id = user.sub.as_str();
    let session = state
        .sessions
        .clone()
        .set_paused(state.request(pb::SetPausedRequest {
            session_id: session_id.to_owned(),
            user_id: user_id.to_owned(),
            paused,
        }))
        .await
        .map_err(not_found_for_others)?
        .into_inner();
    Ok(ApiOk(StatusCode::OK, session_view(state, session, "discovered", user.tgen)))
}

/// The session, if it exists and belongs to `user_id`; another family's is reported missing.
async fn owned_session(
    state: &AppState,
    user_id: &str,
    session_id: &str,
) -> Result<pb::Session, ApiError> {
    let session = state
        .sessions
        .clone()
        .get_session(state.request(pb::GetSessionRequest { session_id: session_id.to_owned() }))
        .await?
        .into_inner();
    if session.user_id != user_id {
        return Err(ApiError::new(ErrorCode::NotFound, "session not found"));
    }
    Ok(session)
}

/// Another user's session looks exactly like one that does not exist.
fn not_found_for_others(status: tonic::Status) -> ApiError {
    if status.code() == tonic::Code::PermissionDenied {
        ApiError::new(ErrorCode::NotFound, "session not found")
    } else {
        ApiError::from(status)
    }
}
