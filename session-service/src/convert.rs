//! Conversions between the stored documents and the gRPC messages.

use blob_proto::session::v1 as pb;

use crate::cold::{ChildRecord, FamilyLink, Lesson, LessonProgress, Permission, UserRecord};
use crate::timestamp::Timestamp;

/// The user message.
pub fn user_proto(user: UserRecord) -> pb::User {
    pb::User {
        created_at_ms: user.created_at.unix_ms(),
        last_login_at_ms: user.last_login_at.unix_ms(),
        user_id: user.user_id,
        email: user.email,
        display_name: user.display_name,
        role: user.role,
        locale: user.locale,
        timezone: user.timezone,
    }
}

/// A child with the caller's permission on it.
pub fn access_proto(child: ChildRecord, permission: Permission) -> pb::ChildAccess {
    pb::ChildAccess {
        child: Some(pb::Child {
            created_at_ms: child.created_at.unix_ms(),
            updated_at_ms: child.updated_at.unix_ms(),
            child_id: child.child_id,
            name: child.name,
            grade_level: child.grade_level,
            grade_as_text: child.grade_as_text,
            current_level: child.current_level,
            created_by: child.created_by,
        }),
        permission: permission.to_proto().into(),
    }
}

/// A family link.
pub fn link_proto(link: FamilyLink) -> pb::FamilyLink {
    pb::FamilyLink {
        created_at_ms: link.created_at.unix_ms(),
        permission: link.permission.to_proto().into(),
        user_id: link.user_id,
        child_id: link.child_id,
        granted_by: link.granted_by,
        email: String::new(),
    }
}

/// A child's progress in a lesson.
pub fn progress_proto(progress: LessonProgress) -> pb::LessonProgress {
    pb::LessonProgress {
        updated_at_ms: progress.updated_at.unix_ms(),
        completed_at_ms: progress.completed_at.map(Timestamp::unix_ms).unwrap_or_default(),
        child_id: progress.child_id,
        lesson_id: progress.lesson_id,
        status: progress.status,
        completed_steps: progress.completed_steps,
        best_score: progress.best_score,
        attempts: progress.attempts,
    }
}

/// A lesson with its steps.
pub fn lesson_proto(lesson: Lesson) -> pb::Lesson {
    pb::Lesson {
        lesson_id: lesson.lesson_id,
        title: lesson.title,
        subject: lesson.subject,
        grade_level: lesson.grade_level,
        difficulty: lesson.difficulty,
        description: lesson.description,
        steps: lesson
            .steps
            .into_iter()
            .map(|s| pb::LessonStep {
                number: s.number,
                kind: s.kind,
                prompt: s.prompt,
                accepted_answers: s.accepted_answers,
            })
            .collect(),
    }
}

/// How a permission is named in messages.
pub fn required_permission(permission: Permission) -> &'static str {
    match permission {
        Permission::View => "view",
        Permission::Interact => "interact",
        Permission::Manage => "manage",
    }
}
