//! `GET /api/v1/conversations/{id}`: a conversation, for its owner only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AuthUser;
use crate::envelope::{ApiError, ApiOk, rfc3339_ms};
use crate::state::AppState;

/// Every route under `/api/v1` of this resource, registered once for the router and the
/// OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_conversation))
}

/// Longest preview of the last exchange, in characters.
const PREVIEW_CHARS: usize = 120;

/// A conversation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    /// Its id.
    pub conversation_id: String,
    /// Every exchange, oldest first.
    pub turns: Vec<TurnView>,
    /// At a glance.
    pub summary: Summary,
}

/// One exchange.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnView {
    /// The voice turn it came from.
    pub request_id: String,
    /// What the child said.
    pub user_text: String,
    /// What Blob answered (what was heard, when interrupted).
    pub assistant_text: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Blob was cut off.
    pub interrupted: bool,
}

/// The conversation at a glance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Exchanges so far.
    pub turn_count: usize,
    /// When the first exchange happened (RFC 3339 UTC), if any.
    pub started_at: Option<String>,
    /// When the last exchange happened (RFC 3339 UTC), if any.
    pub last_turn_at: Option<String>,
    /// The child's last words, shortened.
    pub last_user_text: Option<String>,
    /// Exchanges in which Blob was interrupted.
    pub interrupted_count: usize,
}

fn preview(text: &str) -> String {
    let mut short: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().count() > PREVIEW_CHARS {
        short.push('…');
    }
    short
}

/// The conversation; another user's conversation is reported as not found.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{conversation_id}",
    tag = "conversations",
    summary = "A conversation, for its owner",
    params(
        ("conversation_id" = String, Path, description = "The conversation")
    ),
    responses(
        (status = 200, description = "The conversation", body = ConversationView),
        (status = 404, description = "NOT_FOUND: another user's conversation"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %conversation_id))]
pub async fn get_conversation(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(conversation_id): Path<String>,
) -> Result<ApiOk<ConversationView>, ApiError> {
    let conversation = state
        .sessions
        .clone()
        .get_conversation(
            state
                .request(pb::GetConversationRequest { conversation_id, user_id: user.sub.clone() }),
        )
        .await?
        .into_inner();
    let turns: Vec<TurnView> = conversation
        .turns
        .into_iter()
        .map(|t| TurnView {
            timestamp: rfc3339_ms(t.created_at_ms),
            request_id: t.request_id,
            user_text: t.user_text,
            assistant_text: t.assistant_text,
            interrupted: t.interrupted,
        })
        .collect();
    let summary = Summary {
        turn_count: turns.len(),
        started_at: turns.first().map(|t| t.timestamp.clone()),
        last_turn_at: turns.last().map(|t| t.timestamp.clone()),
        last_user_text: turns.last().map(|t| preview(&t.user_text)),
        interrupted_count: turns.iter().filter(|t| t.interrupted).count(),
    };
    Ok(ApiOk(
        StatusCode::OK,
        ConversationView { conversation_id: conversation.conversation_id, turns, summary },
    ))
}
