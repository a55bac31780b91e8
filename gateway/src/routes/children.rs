//! `/api/v1/children`: a parent's children, their profiles and the erasure of their data.
//!
//! Every child-scoped route is checked by the session-service against the caller's stored
//! family link (`manage > interact > view`), never against the token's claims; another family's
//! child is reported as not found.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_kit::validate;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ActiveSessionView, ChildView, GradeLevel, ProgressSummary, ProgressView};
use super::{AuthUser, child_ref};
use crate::envelope::{ApiError, ApiJson, ApiOk, ErrorCode, rfc3339_ms};
use crate::state::AppState;

/// The routes, registered once for the router and the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_child, list_children))
        .routes(routes!(get_child, update_child, delete_child))
        .routes(routes!(erase_child_data))
}

/// `POST /api/v1/children` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChildRequest {
    /// First name or nickname (1-64 characters).
    pub name: String,
    /// School grade: a name (`pre_k`, `kindergarten`, `grade_1` … `grade_12`) or a number
    /// (-1 = preschool, 0 = kindergarten, up to 12). Answered in the form given.
    pub grade_level: GradeLevel,
    /// Where the child stands: 1-32 lowercase letters, digits or underscores (`beginner` when
    /// left out).
    #[serde(default)]
    pub current_level: Option<String>,
}

/// `PATCH /api/v1/children/{id}` body: the fields to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChildRequest {
    /// New name (1-64 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// New school grade, a name or a number as for creation.
    #[serde(default)]
    pub grade_level: Option<GradeLevel>,
    /// New level.
    #[serde(default)]
    pub current_level: Option<String>,
}

/// One child with their lessons at a glance and current session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChildDetail {
    /// The child.
    pub child: ChildView,
    /// The child's lessons at a glance.
    pub latest_progress: ProgressSummary,
    /// The most recently updated lesson's own progress, if any.
    pub latest_lesson: Option<ProgressView>,
    /// The child's active, paused or suspended session, if any.
    pub active_session: Option<ActiveSessionView>,
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
    /// Conversations, whether their session was live, suspended, expired or archived.
    pub conversations: u32,
    /// Replay logs of the sessions' messages.
    pub event_logs: u32,
}

fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error")
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
    let (grade_level, grade_as_text) = body.grade_level.resolve().map_err(ApiError::invalid)?;
    let current_level = body
        .current_level
        .as_deref()
        .map(validate::current_level)
        .transpose()
        .map_err(ApiError::invalid)?
        .unwrap_or(validate::DEFAULT_LEVEL);
    let access = state
        .families
        .clone()
        .create_child(state.request(pb::CreateChildRequest {
            user_id: user.sub.clone(),
            name: name.to_owned(),
            grade_level,
            grade_as_text,
            current_level: current_level.to_owned(),
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
    let progress = progress?.into_inner().progress;
    let active_session =
        session?.into_inner().session.map(|s| ActiveSessionView::new(s, &user.0.sub));
    Ok(ApiOk(
        StatusCode::OK,
        ChildDetail {
            child: ChildView::from_access(access).ok_or_else(internal)?,
            latest_progress: ProgressSummary::of(&progress),
            latest_lesson: progress.into_iter().max_by_key(|p| p.updated_at_ms).map(Into::into),
            active_session,
        },
    ))
}

/// Changes a child's name, grade or level (manage access).
#[utoipa::path(
    patch,
    path = "/api/v1/children/{child_id}",
    tag = "children",
    summary = "Change a child's name, grade or level (manage)",
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
    if body.name.is_none() && body.grade_level.is_none() && body.current_level.is_none() {
        return Err(ApiError::validation("body", "give name, grade_level or current_level"));
    }
    let name = body
        .name
        .as_deref()
        .map(validate::child_name)
        .transpose()
        .map_err(ApiError::invalid)?
        .map(str::to_owned);
    let grade = body.grade_level.as_ref().map(GradeLevel::resolve).transpose();
    let grade = grade.map_err(ApiError::invalid)?;
    let current_level = body
        .current_level
        .as_deref()
        .map(validate::current_level)
        .transpose()
        .map_err(ApiError::invalid)?
        .map(str::to_owned);
    let access = state
        .families
        .clone()
        .update_child(state.request(pb::UpdateChildRequest {
            user_id: user.sub.clone(),
            child_id,
            name,
            grade_level: grade.map(|(grade, _)| grade),
            grade_as_text: grade.is_some_and(|(_, as_text)| as_text),
            current_level,
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
    Ok(ApiOk(StatusCode::OK, receipt.into()))
}

impl From<pb::ErasureReceipt> for ErasureView {
    fn from(receipt: pb::ErasureReceipt) -> Self {
        Self {
            child_id: receipt.child_id,
            deleted: ErasureCounts {
                children: receipt.children,
                family_links: receipt.family_links,
                progress: receipt.progress,
                archived_sessions: receipt.archived_sessions,
                active_sessions: receipt.hot_sessions,
                conversations: receipt.conversations,
                event_logs: receipt.event_logs,
            },
            erased_at: rfc3339_ms(receipt.erased_at_ms),
        }
    }
}
