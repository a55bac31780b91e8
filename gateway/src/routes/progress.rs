//! `/api/v1/children/{id}/progress`: a child's progress in the lessons (view access).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::ProgressView;
use super::{AuthUser, child_ref};
use crate::envelope::{ApiError, ApiOk};
use crate::state::AppState;

/// The routes, registered once for the router and the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_progress)).routes(routes!(get_progress))
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
