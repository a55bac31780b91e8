//! Response shapes shared by several routes, and their conversion from the gRPC messages.

use blob_proto::session::v1 as pb;
use serde::Serialize;

use super::permission_name;
use super::sessions::state_name;
use crate::envelope::rfc3339_ms;

/// A user in responses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserProfile {
    /// Firebase uid.
    pub uid: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `parent`.
    pub role: String,
    /// Always true: a signed-in account is active.
    pub is_active: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub last_login_at: String,
}

impl From<pb::User> for UserProfile {
    fn from(user: pb::User) -> Self {
        Self {
            created_at: rfc3339_ms(user.created_at_ms),
            last_login_at: rfc3339_ms(user.last_login_at_ms),
            uid: user.user_id,
            email: user.email,
            display_name: user.display_name,
            role: user.role,
            is_active: true,
        }
    }
}

/// A child in responses, with the caller's permission.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChildView {
    /// The child's id.
    pub child_id: String,
    /// Name.
    pub name: String,
    /// School grade: -1 = preschool, 0 = kindergarten, up to 12.
    pub grade_level: i32,
    /// The caller's permission: `view`, `interact` or `manage`.
    pub permission: &'static str,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl ChildView {
    /// From a child access message (`None` when it names no child).
    pub fn from_access(access: pb::ChildAccess) -> Option<Self> {
        let child = access.child?;
        Some(Self {
            created_at: rfc3339_ms(child.created_at_ms),
            updated_at: rfc3339_ms(child.updated_at_ms.max(child.created_at_ms)),
            child_id: child.child_id,
            name: child.name,
            grade_level: child.grade_level,
            permission: permission_name(access.permission),
        })
    }
}

/// A child's current session, as shown beside the child (no socket token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveSessionView {
    /// The session's id.
    pub session_id: String,
    /// The child.
    pub child_id: String,
    /// The parent who opened it.
    pub user_id: String,
    /// `active`, `paused` or `suspended`.
    pub state: &'static str,
    /// The same as `state` (the proof of concept's name).
    pub status: &'static str,
    /// The conversation it continues.
    pub conversation_id: String,
    /// The same as `conversation_id`.
    pub active_conversation_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The same as `created_at`.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub last_activity_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// Always true: the app talks to Blob over the voice socket.
    pub ws_required: bool,
}

impl From<pb::Session> for ActiveSessionView {
    fn from(session: pb::Session) -> Self {
        let state = state_name(&session);
        let created_at = rfc3339_ms(session.created_at_ms);
        Self {
            state,
            status: state,
            started_at: created_at.clone(),
            created_at,
            last_activity_at: rfc3339_ms(session.last_activity_at_ms),
            expires_at: rfc3339_ms(session.expires_at_ms),
            session_id: session.session_id,
            child_id: session.child_id,
            user_id: session.user_id,
            conversation_id: session.conversation_id.clone(),
            active_conversation_id: session.conversation_id,
            ws_required: true,
        }
    }
}

/// A child's progress in one lesson.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    /// The child.
    pub child_id: String,
    /// The lesson.
    pub lesson_id: String,
    /// `not_started`, `in_progress` or `completed`.
    pub status: String,
    /// Steps completed, each once, in the order completed.
    pub completed_steps: Vec<u32>,
    /// Best score, 0–100.
    pub best_score: u32,
    /// Times the lesson was started.
    pub attempts: u32,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// RFC 3339 UTC, once completed.
    pub completed_at: Option<String>,
}

impl From<pb::LessonProgress> for ProgressView {
    fn from(progress: pb::LessonProgress) -> Self {
        Self {
            updated_at: rfc3339_ms(progress.updated_at_ms),
            completed_at: (progress.completed_at_ms > 0)
                .then(|| rfc3339_ms(progress.completed_at_ms)),
            child_id: progress.child_id,
            lesson_id: progress.lesson_id,
            status: progress.status,
            completed_steps: progress.completed_steps,
            best_score: progress.best_score,
            attempts: progress.attempts,
        }
    }
}
