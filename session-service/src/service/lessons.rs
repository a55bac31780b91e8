//! `blob.session.v1.Lessons`: the lessons catalogue and each child's progress in it.

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::lessons_server::Lessons;
use tonic::{Request, Response, Status};

use super::{Core, required};
use crate::cold::{LessonFilter, Permission, ProgressUpdate};
use crate::convert::{lesson_proto, progress_proto};

/// The lessons service.
#[derive(Clone)]
pub struct LessonsService(pub(super) Core);

#[tonic::async_trait]
impl Lessons for LessonsService {
    #[tracing::instrument(skip_all)]
    async fn list_lessons(
        &self,
        request: Request<pb::ListLessonsRequest>,
    ) -> Result<Response<pb::ListLessonsResponse>, Status> {
        let req = request.into_inner();
        let filter = LessonFilter {
            subject: req.subject.filter(|s| !s.is_empty()),
            grade_level: req.grade_level,
            difficulty: req.difficulty.filter(|d| !d.is_empty()),
        };
        let lessons = self.0.cold.list_lessons(&filter).await?;
        Ok(Response::new(pb::ListLessonsResponse {
            lessons: lessons.into_iter().map(lesson_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(lesson_id = %request.get_ref().lesson_id))]
    async fn get_lesson(
        &self,
        request: Request<pb::GetLessonRequest>,
    ) -> Result<Response<pb::Lesson>, Status> {
        let req = request.into_inner();
        required(&req.lesson_id, "lesson_id")?;
        let lesson = self.0.cold.get_lesson(&req.lesson_id).await?;
        let lesson = lesson.ok_or_else(|| ErrorKind::NotFound.status("lesson not found"))?;
        Ok(Response::new(lesson_proto(lesson)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn list_progress(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ListProgressResponse>, Status> {
        let req = request.into_inner();
        self.0.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        let progress = self.0.cold.list_progress(&req.child_id).await?;
        Ok(Response::new(pb::ListProgressResponse {
            progress: progress.into_iter().map(progress_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_progress(
        &self,
        request: Request<pb::GetProgressRequest>,
    ) -> Result<Response<pb::LessonProgress>, Status> {
        let req = request.into_inner();
        self.0.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        required(&req.lesson_id, "lesson_id")?;
        let progress = self
            .0
            .cold
            .get_progress(&req.child_id, &req.lesson_id)
            .await?
            .ok_or_else(|| ErrorKind::NotFound.status("no progress in that lesson"))?;
        Ok(Response::new(progress_proto(progress)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn record_progress(
        &self,
        request: Request<pb::RecordProgressRequest>,
    ) -> Result<Response<pb::LessonProgress>, Status> {
        use pb::record_progress_request::Update;
        let req = request.into_inner();
        self.0.require_permission(&req.user_id, &req.child_id, Permission::Interact).await?;
        required(&req.lesson_id, "lesson_id")?;
        let lesson = self.0.cold.get_lesson(&req.lesson_id).await?;
        let lesson = lesson.ok_or_else(|| ErrorKind::NotFound.status("lesson not found"))?;
        let update = match req.update {
            Some(Update::Started(true)) => ProgressUpdate::Started,
            Some(Update::StepCompleted(step)) => {
                if step.step == 0 || step.step as usize > lesson.steps.len() || step.score > 100 {
                    return Err(ErrorKind::InvalidArgument
                        .status("step must be one of the lesson's steps and score 0-100"));
                }
                ProgressUpdate::StepCompleted { step: step.step, score: step.score }
            }
            Some(Update::CompletedScore(score)) if score <= 100 => {
                ProgressUpdate::Completed { score }
            }
            _ => return Err(ErrorKind::InvalidArgument.status("an update is required")),
        };
        let progress = self.0.cold.update_progress(&req.child_id, &req.lesson_id, update).await?;
        Ok(Response::new(progress_proto(progress)))
    }
}
