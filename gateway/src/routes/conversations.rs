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
    /// The latest session that carried it.
    pub session_id: String,
    /// The child it is with.
    pub child_id: String,
    /// `active` while a live session carries it, `suspended` while that session waits for its
    /// socket, `idle` otherwise (a new session may continue it with `conversation_id`).
    pub status: String,
    /// Messages: the child's and Blob's, two per exchange (one when Blob was cut off before
    /// saying anything).
    pub message_count: usize,
    /// Exchanges.
    pub turn_count: usize,
    /// The latest exchange, or when a session last took it up (RFC 3339 UTC).
    pub last_activity_at: String,
    /// When it began (RFC 3339 UTC).
    pub created_at: String,
    /// One line: `N exchange(s) — started with: "…" / last response: "…"`.
    pub summary: String,
    /// Every exchange, oldest first.
    pub turns: Vec<TurnView>,
    /// At a glance, as numbers and times.
    pub overview: Summary,
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

/// Longest quote in the one-line summary, in characters.
const QUOTE_CHARS: usize = 60;

/// The one-line summary: `5 exchange(s) — started with: "tell me a story" / last response:
/// "once upon a time..."`.
fn summary_line(turns: &[TurnView]) -> String {
    let mut line = format!("{} exchange(s)", turns.len());
    if let (Some(first), Some(last)) = (turns.first(), turns.last()) {
        line.push_str(&format!(
            " — started with: \"{}\" / last response: \"{}\"",
            quote(&first.user_text),
            quote(&last.assistant_text)
        ));
    }
    line
}

fn quote(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= QUOTE_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(QUOTE_CHARS).collect();
    short.truncate(short.trim_end().len());
    short.push_str("...");
    short
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
    let message_count = turns.iter().map(|t| 1 + usize::from(!t.assistant_text.is_empty())).sum();
    Ok(ApiOk(
        StatusCode::OK,
        ConversationView {
            conversation_id: conversation.conversation_id,
            session_id: conversation.session_id,
            child_id: conversation.child_id,
            status: conversation.status,
            message_count,
            turn_count: turns.len(),
            last_activity_at: rfc3339_ms(conversation.last_activity_at_ms),
            created_at: rfc3339_ms(conversation.created_at_ms),
            summary: summary_line(&turns),
            turns,
            overview: summary,
        },
    ))
}
