//! `/api/v1/children`: a parent's children.

use axum::extract::State;
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

use super::AuthUser;
use super::auth::{ChildSummary, child_summary};
use crate::envelope::{ApiError, ApiJson, ApiOk, ErrorCode, rfc3339_ms};
use crate::state::AppState;

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// `POST /api/v1/children` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChildRequest {
    /// First name or nickname (1-64 characters).
    pub name: String,
    /// School grade: -1 = preschool, 0 = kindergarten, up to 12.
    pub grade_level: i32,
}

/// A child in responses.
#[derive(Debug, Serialize)]
pub struct ChildView {
    /// The child's id.
    pub child_id: String,
    /// Name.
    pub name: String,
    /// School grade.
    pub grade_level: i32,
    /// The caller's permission.
    pub permission: &'static str,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// Creates a child; the caller gets a `manage` link to it.
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn create_child(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<CreateChildRequest>,
) -> Result<ApiOk<ChildView>, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            "name",
            format!("name must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    if !(-1..=12).contains(&body.grade_level) {
        return Err(ApiError::validation("grade_level", "grade_level must be between -1 and 12"));
    }
    let access = state
        .sessions
        .clone()
        .create_child(state.request(pb::CreateChildRequest {
            user_id: user.sub.clone(),
            name: name.to_owned(),
            grade_level: body.grade_level,
        }))
        .await?
        .into_inner();
    let created_at = access.child.as_ref().map(|c| c.created_at_ms).unwrap_or_default();
    let summary = child_summary(access)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))?;
    Ok(ApiOk(StatusCode::CREATED, child_view(summary, created_at)))
}

/// Lists the caller's children.
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn list_children(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<ApiOk<Vec<ChildView>>, ApiError> {
    let children = state
        .sessions
        .clone()
        .list_children(state.request(pb::ListChildrenRequest { user_id: user.sub.clone() }))
        .await?
        .into_inner()
        .children;
    let views = children
        .into_iter()
        .filter_map(|access| {
            let created_at = access.child.as_ref().map(|c| c.created_at_ms).unwrap_or_default();
            child_summary(access).map(|summary| child_view(summary, created_at))
        })
        .collect();
    Ok(ApiOk(StatusCode::OK, views))
}

fn child_view(summary: ChildSummary, created_at_ms: i64) -> ChildView {
    ChildView {
        child_id: summary.child_id,
        name: summary.name,
        grade_level: summary.grade_level,
        permission: summary.permission,
        created_at: rfc3339_ms(created_at_ms),
    }
}
