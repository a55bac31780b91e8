//! `/api/v1/children`: a parent's children, their access, progress and data.
//!
//! Every child-scoped route is checked by the session-service against the caller's stored
//! family link (`manage > interact > view`), never against the token's claims; another family's
//! child is reported as not found.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

use super::AuthUser;
use super::views::{ActiveSessionView, ChildView, ProgressView};
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

/// `PATCH /api/v1/children/{id}` body: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateChildRequest {
    /// New name (1-64 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// New school grade (-1 to 12).
    #[serde(default)]
    pub grade_level: Option<i32>,
}

/// `POST /api/v1/children/{id}/permissions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The user (Firebase uid) who receives access.
    pub user_id: String,
    /// `view`, `interact` or `manage`.
    pub permission: String,
}

/// One child with their latest progress and current session.
#[derive(Debug, Serialize)]
pub struct ChildDetail {
    /// The child.
    #[serde(flatten)]
    pub child: ChildView,
    /// The most recently updated lesson progress, if any.
    pub latest_progress: Option<ProgressView>,
    /// The child's active, paused or suspended session, if any.
    pub active_session: Option<ActiveSessionView>,
}

/// A family link in responses.
#[derive(Debug, Serialize)]
pub struct LinkView {
    /// Who has access.
    pub user_id: String,
    /// To which child.
    pub child_id: String,
    /// `view`, `interact` or `manage`.
    pub permission: &'static str,
    /// Who granted it.
    pub granted_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// `DELETE /api/v1/children/{id}/permissions/{user_id}` result.
#[derive(Debug, Serialize)]
pub struct RevokeView {
    /// Whether there was a link to remove.
    pub revoked: bool,
}

/// What `DELETE /api/v1/children/{id}/data` erased.
#[derive(Debug, Serialize)]
pub struct ErasureView {
    /// The child.
    pub child_id: String,
    /// Counts of what was removed.
    pub deleted: ErasureCounts,
    /// RFC 3339 UTC.
    pub erased_at: String,
}

/// Counts in an erasure receipt.
#[derive(Debug, Serialize)]
pub struct ErasureCounts {
    /// The profile (0 or 1).
    pub children: u32,
    /// Family links, of every user.
    pub family_links: u32,
    /// Lesson progress records.
    pub progress: u32,
    /// Archived sessions.
    pub archived_sessions: u32,
    /// Live or suspended sessions.
    pub active_sessions: u32,
    /// Conversations.
    pub conversations: u32,
}

fn check_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::validation(
            "name",
            format!("name must be 1-{MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

fn check_grade(grade_level: i32) -> Result<(), ApiError> {
    if (-1..=12).contains(&grade_level) {
        Ok(())
    } else {
        Err(ApiError::validation("grade_level", "grade_level must be between -1 and 12"))
    }
}

/// The wire permission as the gRPC enum.
pub fn parse_permission(value: &str) -> Option<pb::Permission> {
    match value {
        "view" => Some(pb::Permission::View),
        "interact" => Some(pb::Permission::Interact),
        "manage" => Some(pb::Permission::Manage),
        _ => None,
    }
}

fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error")
}

fn child_ref(user: &AuthUser, child_id: &str) -> pb::ChildRef {
    pb::ChildRef { user_id: user.0.sub.clone(), child_id: child_id.to_owned() }
}

/// Creates a child; the caller gets a `manage` link to it.
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn create_child(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<CreateChildRequest>,
) -> Result<ApiOk<ChildView>, ApiError> {
    let name = check_name(&body.name)?;
    check_grade(body.grade_level)?;
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
    Ok(ApiOk(StatusCode::CREATED, ChildView::from_access(access).ok_or_else(internal)?))
}

/// Lists the caller's children (deleted ones excluded), oldest link first.
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
    Ok(ApiOk(StatusCode::OK, children.into_iter().filter_map(ChildView::from_access).collect()))
}

/// One child (view access), with the latest progress and the current session.
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn get_child(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ChildDetail>, ApiError> {
    let mut sessions = state.sessions.clone();
    let access = sessions
        .get_child(state.request(pb::GetChildRequest {
            user_id: user.0.sub.clone(),
            child_id: child_id.clone(),
        }))
        .await?
        .into_inner();
    let (mut progress_client, mut session_client) = (sessions.clone(), sessions);
    let (progress, session) = tokio::join!(
        progress_client.list_progress(state.request(child_ref(&user, &child_id))),
        session_client.get_child_session(state.request(child_ref(&user, &child_id))),
    );
    let latest_progress = progress?.into_inner().progress.into_iter().next().map(Into::into);
    let active_session = session?.into_inner().session.map(Into::into);
    Ok(ApiOk(
        StatusCode::OK,
        ChildDetail {
            child: ChildView::from_access(access).ok_or_else(internal)?,
            latest_progress,
            active_session,
        },
    ))
}

/// Changes a child's name or grade (manage access).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn update_child(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(child_id): Path<String>,
    ApiJson(body): ApiJson<UpdateChildRequest>,
) -> Result<ApiOk<ChildView>, ApiError> {
    if body.name.is_none() && body.grade_level.is_none() {
        return Err(ApiError::validation("body", "give name, grade_level or both"));
    }
    let name = body.name.as_deref().map(check_name).transpose()?.map(str::to_owned);
    if let Some(grade_level) = body.grade_level {
        check_grade(grade_level)?;
    }
    let access = state
        .sessions
        .clone()
        .update_child(state.request(pb::UpdateChildRequest {
            user_id: user.sub.clone(),
            child_id,
            name,
            grade_level: body.grade_level,
        }))
        .await?
        .into_inner();
    Ok(ApiOk(StatusCode::OK, ChildView::from_access(access).ok_or_else(internal)?))
}

/// Deletes a child's profile (soft; manage access); the child's session ends.
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn delete_child(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ChildView>, ApiError> {
    let access =
        state.sessions.clone().delete_child(state.request(child_ref(&user, &child_id))).await?;
    Ok(ApiOk(StatusCode::OK, ChildView::from_access(access.into_inner()).ok_or_else(internal)?))
}

/// Gives another user access to the child (manage access).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn grant_permission(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(child_id): Path<String>,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<ApiOk<LinkView>, ApiError> {
    let grantee = body.user_id.trim();
    if grantee.is_empty() || grantee.len() > 128 || grantee.contains('/') {
        return Err(ApiError::validation("user_id", "user_id must be a user's id"));
    }
    let permission = parse_permission(&body.permission).ok_or_else(|| {
        ApiError::validation("permission", "permission must be view, interact or manage")
    })?;
    let link = state
        .sessions
        .clone()
        .grant_permission(state.request(pb::GrantPermissionRequest {
            user_id: user.sub.clone(),
            child_id,
            grantee_user_id: grantee.to_owned(),
            permission: permission.into(),
        }))
        .await?
        .into_inner();
    Ok(ApiOk(
        StatusCode::OK,
        LinkView {
            permission: super::permission_name(link.permission),
            created_at: rfc3339_ms(link.created_at_ms),
            user_id: link.user_id,
            child_id: link.child_id,
            granted_by: link.granted_by,
        },
    ))
}

/// Takes a user's access to the child away, at once (manage access).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn revoke_permission(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((child_id, grantee)): Path<(String, String)>,
) -> Result<ApiOk<RevokeView>, ApiError> {
    let revoked = state
        .sessions
        .clone()
        .revoke_permission(state.request(pb::RevokePermissionRequest {
            user_id: user.sub.clone(),
            child_id,
            grantee_user_id: grantee,
        }))
        .await?
        .into_inner()
        .revoked;
    Ok(ApiOk(StatusCode::OK, RevokeView { revoked }))
}

/// Erases everything kept about the child and returns the receipt (manage access).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn erase_child_data(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ErasureView>, ApiError> {
    let receipt = state
        .sessions
        .clone()
        .erase_child_data(state.request(child_ref(&user, &child_id)))
        .await?
        .into_inner();
    tracing::info!(?receipt, "child data erased");
    Ok(ApiOk(
        StatusCode::OK,
        ErasureView {
            child_id: receipt.child_id,
            deleted: ErasureCounts {
                children: receipt.children,
                family_links: receipt.family_links,
                progress: receipt.progress,
                archived_sessions: receipt.archived_sessions,
                active_sessions: receipt.hot_sessions,
                conversations: receipt.conversations,
            },
            erased_at: rfc3339_ms(receipt.erased_at_ms),
        },
    ))
}

/// The child's progress in every lesson, most recent first (view access).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn list_progress(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<Vec<ProgressView>>, ApiError> {
    let progress =
        state.sessions.clone().list_progress(state.request(child_ref(&user, &child_id))).await?;
    Ok(ApiOk(StatusCode::OK, progress.into_inner().progress.into_iter().map(Into::into).collect()))
}

/// The child's progress in one lesson (view access; 404 if never started).
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id, %lesson_id))]
pub async fn get_progress(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((child_id, lesson_id)): Path<(String, String)>,
) -> Result<ApiOk<ProgressView>, ApiError> {
    let progress = state
        .sessions
        .clone()
        .get_progress(state.request(pb::GetProgressRequest {
            user_id: user.sub.clone(),
            child_id,
            lesson_id,
        }))
        .await?
        .into_inner();
    Ok(ApiOk(StatusCode::OK, progress.into()))
}
