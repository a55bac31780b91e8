//! `/api/v1/lessons`: the lessons catalogue.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::Serialize;

use super::AuthUser;
use crate::envelope::{ApiError, ApiOk};
use crate::state::AppState;
use blob_kit::validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every route under `/api/v1` of this resource, registered once for the router and the
/// OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_lessons)).routes(routes!(get_lesson))
}

/// A lesson in the list (no steps).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LessonSummary {
    /// Stable id.
    pub lesson_id: String,
    /// Shown to parents.
    pub title: String,
    /// `math`, `reading`, `science`, `social`…
    pub subject: String,
    /// School grade it is written for.
    pub grade_level: i32,
    /// `easy`, `medium` or `hard`.
    pub difficulty: String,
    /// What the child learns.
    pub description: String,
    /// How many steps it has.
    pub step_count: usize,
}

/// A lesson with its steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LessonView {
    /// The lesson.
    #[serde(flatten)]
    pub summary: LessonSummary,
    /// In order.
    pub steps: Vec<StepView>,
}

/// One step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    /// 1-based position.
    pub number: u32,
    /// `explain`, `ask` or `practice`.
    pub kind: String,
    /// What Blob says or asks.
    pub prompt: String,
    /// Answers Blob accepts.
    pub accepted_answers: Vec<String>,
}

fn summary(lesson: &pb::Lesson) -> LessonSummary {
    LessonSummary {
        lesson_id: lesson.lesson_id.clone(),
        title: lesson.title.clone(),
        subject: lesson.subject.clone(),
        grade_level: lesson.grade_level,
        difficulty: lesson.difficulty.clone(),
        description: lesson.description.clone(),
        step_count: lesson.steps.len(),
    }
}

/// Lists lessons, filtered by `subject`, `grade` and `difficulty` (each optional).
#[utoipa::path(
    get,
    path = "/api/v1/lessons",
    tag = "lessons",
    summary = "The lessons catalogue",
    params(
        ("subject" = Option<String>, Query, description = "math, reading, science, social…"),
        ("grade" = Option<String>, Query, description = "pre_k, kindergarten, grade_1 ... grade_12, or -1 to 12"),
        ("difficulty" = Option<String>, Query, description = "easy, medium or hard")
    ),
    responses(
        (status = 200, description = "Matching lessons, by id", body = Vec<LessonSummary>),
        (status = 400, description = "VALIDATION_ERROR: a bad or unknown query parameter"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn list_lessons(
    State(state): State<AppState>,
    _user: AuthUser,
    Query(query): Query<HashMap<String, String>>,
) -> Result<ApiOk<Vec<LessonSummary>>, ApiError> {
    let mut filter = pb::ListLessonsRequest::default();
    for (key, value) in query {
        match key.as_str() {
            "subject" => filter.subject = Some(value),
            "difficulty" => {
                if !["easy", "medium", "hard"].contains(&value.as_str()) {
                    return Err(ApiError::validation(
                        "difficulty",
                        "difficulty must be easy, medium or hard",
                    ));
                }
                filter.difficulty = Some(value);
            }
            "grade" | "grade_level" => {
                let grade = match value.parse::<i32>() {
                    Ok(number) => Some(number).filter(|g| validate::GRADES.contains(g)),
                    Err(_) => validate::grade_from_name(&value).ok(),
                };
                filter.grade_level = Some(grade.ok_or_else(|| {
                    ApiError::validation(
                        "grade",
                        "grade must be pre_k, kindergarten, grade_1 ... grade_12, or a whole \
                         number from -1 to 12",
                    )
                })?);
            }
            other => {
                return Err(ApiError::validation(
                    other,
                    format!("unknown query parameter {other:?}: use subject, grade, difficulty"),
                ));
            }
        }
    }
    let lessons = state.lessons.clone().list_lessons(state.request(filter)).await?;
    Ok(ApiOk(StatusCode::OK, lessons.into_inner().lessons.iter().map(summary).collect()))
}

/// One lesson with its steps.
#[utoipa::path(
    get,
    path = "/api/v1/lessons/{lesson_id}",
    tag = "lessons",
    summary = "One lesson with its steps",
    params(
        ("lesson_id" = String, Path, description = "The lesson")
    ),
    responses(
        (status = 200, description = "The lesson", body = LessonView),
        (status = 404, description = "NOT_FOUND"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %lesson_id))]
pub async fn get_lesson(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(lesson_id): Path<String>,
) -> Result<ApiOk<LessonView>, ApiError> {
    let lesson = state
        .lessons
        .clone()
        .get_lesson(state.request(pb::GetLessonRequest { lesson_id }))
        .await?
        .into_inner();
    Ok(ApiOk(
        StatusCode::OK,
        LessonView {
            summary: summary(&lesson),
            steps: lesson
                .steps
                .into_iter()
                .map(|s| StepView {
                    number: s.number,
                    kind: s.kind,
                    prompt: s.prompt,
                    accepted_answers: s.accepted_answers,
                })
                .collect(),
        },
    ))
}
