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
use blob_kit::validate;

/// `POST /api/v1/children` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChildRequest {
    /// First name or nickname (1-64 characters).
    pub name: String,
    /// School grade: -1 = preschool, 0 = kindergarten, up to 12.
    pub grade_level: i32,
}

/// `PATCH /api/v1/children/{id}` body: the fields to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The user (Firebase uid) who receives access.
    pub user_id: String,
    /// `view`, `interact` or `manage`.
    pub permission: String,
}

/// One child with their latest progress and current session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokeView {
    /// Whether there was a link to remove.
    pub revoked: bool,
}

/// What `DELETE /api/v1/children/{id}/data` erased.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureView {
    /// The child.
    pub child_id: String,
    /// Counts of what was removed.
    pub deleted: ErasureCounts,
    /// RFC 3339 UTC.
    pub erased_at: String,
}

/// Counts in an erasure receipt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    post,
    path = "/api/v1/children",
    tag = "children",
    summary = "Add a child (the caller manages it)",
    request_body = CreateChildRequest,
    responses(
        (status = 201, description = "The child", body = ChildView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 409, description = "CONFLICT: the Idempotency-Key was used for another request"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn create_child(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<CreateChildRequest>,
) -> Result<ApiOk<ChildView>, ApiError> {
    let name = validate::child_name(&body.name).map_err(ApiError::invalid)?;
    validate::grade_level(body.grade_level).map_err(ApiError::invalid)?;
    let access = state
        .families
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
#[utoipa::path(
    get,
    path = "/api/v1/children",
    tag = "children",
    summary = "The caller's children, oldest link first",
    responses(
        (status = 200, description = "The children", body = Vec<ChildView>),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn list_children(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<ApiOk<Vec<ChildView>>, ApiError> {
    let children = state
        .families
        .clone()
        .list_children(state.request(pb::ListChildrenRequest { user_id: user.sub.clone() }))
        .await?
        .into_inner()
        .children;
    Ok(ApiOk(StatusCode::OK, children.into_iter().filter_map(ChildView::from_access).collect()))
}

/// One child (view access), with the latest progress and the current session.
#[utoipa::path(
    get,
    path = "/api/v1/children/{child_id}",
    tag = "children",
    summary = "One child with the latest progress and current session (view)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    responses(
        (status = 200, description = "The child", body = ChildDetail),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn get_child(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ChildDetail>, ApiError> {
    let access = state
        .families
        .clone()
        .get_child(state.request(pb::GetChildRequest {
            user_id: user.0.sub.clone(),
            child_id: child_id.clone(),
        }))
        .await?
        .into_inner();
    let (mut progress_client, mut session_client) = (state.lessons.clone(), state.sessions.clone());
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
#[utoipa::path(
    patch,
    path = "/api/v1/children/{child_id}",
    tag = "children",
    summary = "Change a child's name or grade (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    request_body = UpdateChildRequest,
    responses(
        (status = 200, description = "The child", body = ChildView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
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
    let name = body
        .name
        .as_deref()
        .map(validate::child_name)
        .transpose()
        .map_err(ApiError::invalid)?
        .map(str::to_owned);
    if let Some(grade_level) = body.grade_level {
        validate::grade_level(grade_level).map_err(ApiError::invalid)?;
    }
    let access = state
        .families
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
#[utoipa::path(
    delete,
    path = "/api/v1/children/{child_id}",
    tag = "children",
    summary = "Delete a child's profile (soft; manage)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    responses(
        (status = 200, description = "The child as it was", body = ChildView),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn delete_child(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ChildView>, ApiError> {
    let access =
        state.families.clone().delete_child(state.request(child_ref(&user, &child_id))).await?;
    Ok(ApiOk(StatusCode::OK, ChildView::from_access(access.into_inner()).ok_or_else(internal)?))
}

/// Gives another user access to the child (manage access).
#[utoipa::path(
    post,
    path = "/api/v1/children/{child_id}/permissions",
    tag = "children",
    summary = "Give another user access to the child (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "The family link", body = LinkView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
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
        .families
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
#[utoipa::path(
    delete,
    path = "/api/v1/children/{child_id}/permissions/{user_id}",
    tag = "children",
    summary = "Take a user's access away, at once (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id"),
        ("user_id" = String, Path, description = "The user whose access ends")
    ),
    responses(
        (status = 200, description = "Whether there was a link", body = RevokeView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn revoke_permission(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((child_id, grantee)): Path<(String, String)>,
) -> Result<ApiOk<RevokeView>, ApiError> {
    let revoked = state
        .families
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
#[utoipa::path(
    delete,
    path = "/api/v1/children/{child_id}/data",
    tag = "children",
    summary = "Erase everything kept about the child (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    responses(
        (status = 200, description = "The erasure receipt", body = ErasureView),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn erase_child_data(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<ErasureView>, ApiError> {
    let receipt = state
        .families
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
#[utoipa::path(
    get,
    path = "/api/v1/children/{child_id}/progress",
    tag = "progress",
    summary = "The child's progress in every lesson (view)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    responses(
        (status = 200, description = "Most recently updated first", body = Vec<ProgressView>),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn list_progress(
    State(state): State<AppState>,
    user: AuthUser,
    Path(child_id): Path<String>,
) -> Result<ApiOk<Vec<ProgressView>>, ApiError> {
    let progress =
        state.lessons.clone().list_progress(state.request(child_ref(&user, &child_id))).await?;
    Ok(ApiOk(StatusCode::OK, progress.into_inner().progress.into_iter().map(Into::into).collect()))
}

/// The child's progress in one lesson (view access; 404 if never started).
#[utoipa::path(
    get,
    path = "/api/v1/children/{child_id}/progress/{lesson_id}",
    tag = "progress",
    summary = "The child's progress in one lesson (view)",
    params(
        ("child_id" = String, Path, description = "The child's id"),
        ("lesson_id" = String, Path, description = "The lesson")
    ),
    responses(
        (status = 200, description = "The progress", body = ProgressView),
        (status = 404, description = "NOT_FOUND: no such child (or another family's), or the lesson was never started"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
        (status = 429, description = "RATE_LIMITED, with Retry-After"),
        (status = 503, description = "SERVICE_UNAVAILABLE or FIRESTORE_UNAVAILABLE"),
        (status = 504, description = "SERVICE_UNAVAILABLE: the request took too long")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id, %lesson_id))]
pub async fn get_progress(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((child_id, lesson_id)): Path<(String, String)>,
) -> Result<ApiOk<ProgressView>, ApiError> {
    let progress = state
        .lessons
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
