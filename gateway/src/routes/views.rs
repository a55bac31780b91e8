//! Response shapes shared by several routes, and their conversion from the gRPC messages.

use blob_kit::validate::{self, Invalid};
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

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
    /// The parent's language tag (`en-IN`), or empty until set.
    pub locale: String,
    /// The parent's IANA time zone (`Asia/Kolkata`), or empty until set.
    pub timezone: String,
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
            locale: user.locale,
            timezone: user.timezone,
        }
    }
}

/// A school grade as the app gives it: a name (`pre_k`, `kindergarten`, `grade_1` …
/// `grade_12`) or a number (-1 = preschool, 0 = kindergarten, up to 12). It is answered in the
/// form it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum GradeLevel {
    /// -1 to 12.
    Number(i32),
    /// `pre_k`, `kindergarten`, `grade_1` … `grade_12`.
    Name(String),
}

impl GradeLevel {
    /// The grade as a number, and whether it was given as a name.
    pub fn resolve(&self) -> Result<(i32, bool), Invalid> {
        match self {
            Self::Number(grade) => Ok((validate::grade_level(*grade)?, false)),
            Self::Name(name) => Ok((validate::grade_from_name(name)?, true)),
        }
    }

    /// The grade in the form it was stored.
    pub fn stored(grade: i32, as_text: bool) -> Self {
        match validate::grade_name(grade) {
            Some(name) if as_text => Self::Name(name.to_owned()),
            _ => Self::Number(grade),
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
    /// School grade, in the form the app gave it: a name (`pre_k`) or a number (-1).
    pub grade_level: GradeLevel,
    /// The same grade as a number: -1 = preschool, 0 = kindergarten, up to 12.
    pub grade: i32,
    /// The grade's name: `pre_k`, `kindergarten`, `grade_1` … `grade_12`.
    pub grade_name: String,
    /// Where the child stands (`beginner` unless set).
    pub current_level: String,
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
            grade_level: GradeLevel::stored(child.grade_level, child.grade_as_text),
            grade: child.grade_level,
            grade_name: validate::grade_name(child.grade_level).unwrap_or_default().to_owned(),
            current_level: child.current_level,
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
    /// Whether the caller opened it (another member's session is not theirs to continue;
    /// members never see each other's user id).
    pub opened_by_you: bool,
    /// `active`, or `suspended` while it waits for its socket to come back.
    pub state: &'static str,
    /// The same as `state` (the proof of concept's name).
    pub status: &'static str,
    /// Paused: audio is ignored until resumed.
    pub paused: bool,
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

impl ActiveSessionView {
    /// The session as `viewer` (a user id) sees it.
    pub fn new(session: pb::Session, viewer: &str) -> Self {
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
            opened_by_you: session.user_id == viewer,
            conversation_id: session.conversation_id.clone(),
            active_conversation_id: session.conversation_id,
            ws_required: true,
            paused: session.paused,
        }
    }
}

/// A child's lessons at a glance (the proof of concept's `latest_progress`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressSummary {
    /// The mean best score of the completed lessons, from 0 to 1 (0 before the first).
    pub mastery_score: f64,
    /// Lessons completed.
    pub lessons_completed: u32,
    /// The lesson worked on most recently, if any.
    pub last_lesson_id: Option<String>,
    /// When it was last worked on (RFC 3339 UTC), if ever.
    pub last_accessed: Option<String>,
}

impl ProgressSummary {
    /// From every lesson's progress, most recently updated first.
    pub fn of(progress: &[pb::LessonProgress]) -> Self {
        let completed: Vec<&pb::LessonProgress> =
            progress.iter().filter(|p| p.status == "completed").collect();
        let mastery = match completed.len() {
            0 => 0.0,
            n => {
                completed.iter().map(|p| f64::from(p.best_score.min(100))).sum::<f64>()
                    / (100.0 * n as f64)
            }
        };
        let latest = progress.iter().max_by_key(|p| p.updated_at_ms);
        Self {
            mastery_score: (mastery * 100.0).round() / 100.0,
            lessons_completed: u32::try_from(completed.len()).unwrap_or(u32::MAX),
            last_lesson_id: latest.map(|p| p.lesson_id.clone()),
            last_accessed: latest.map(|p| rfc3339_ms(p.updated_at_ms)),
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
