//! Cold state: users, family links, children, lesson progress, lessons and archived sessions.
//!
//! Everything the service keeps durably goes through [`ColdStore`], a trait of domain-level
//! operations. Three stores implement it and pass one contract suite ([`contract`]):
//!
//! - [`FirestoreColdStore`]: Cloud Firestore, for production;
//! - [`SqliteColdStore`]: one SQLite file, the embedded default for a single machine;
//! - [`MemoryColdStore`]: process memory, for fast unit tests.
//!
//! The documents are the same in every store. In Firestore they live at `users/{user_id}`,
//! `users/{user_id}/family_links/{child_id}`, `children/{child_id}`,
//! `lesson_progress/{child_id}_{lesson_id}`, `sessions/{session_id}` and `lessons/{lesson_id}`.
//! Times are [`Timestamp`]s, stored as RFC 3339 UTC strings with milliseconds (fixed width, so
//! they also sort as text).

use async_trait::async_trait;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::record::SessionRecord;
use crate::timestamp::Timestamp;

pub mod catalogue;
pub mod contract;
mod firestore;
mod memory;
mod sqlite;

pub use self::firestore::FirestoreColdStore;
pub use self::memory::MemoryColdStore;
pub use self::sqlite::SqliteColdStore;

/// Longest id accepted for any document, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// A parent account: `users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's id (their Firebase uid), stored as `uid`.
    #[serde(rename = "uid")]
    pub user_id: String,
    /// As given by the identity provider.
    pub email: String,
    /// As given by the identity provider, or changed by the parent.
    pub display_name: String,
    /// `parent`.
    pub role: String,
    /// The first sign-in.
    pub created_at: Timestamp,
    /// The latest sign-in.
    pub last_login_at: Timestamp,
    /// A BCP 47 language tag set by the parent, or empty.
    #[serde(default)]
    pub locale: String,
    /// An IANA time zone set by the parent, or empty.
    #[serde(default)]
    pub timezone: String,
}

/// A change to a user's own profile: the fields given are set, the others kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    /// The new display name.
    pub display_name: Option<String>,
    /// The new locale.
    pub locale: Option<String>,
    /// The new time zone.
    pub timezone: Option<String>,
}

impl ProfileChange {
    /// The stored fields this change writes.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("display_name", self.display_name.is_some()),
            ("locale", self.locale.is_some()),
            ("timezone", self.timezone.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect()
    }

    /// Applies the change to a user.
    pub fn apply(&self, user: &mut UserRecord) {
        if let Some(display_name) = &self.display_name {
            user.display_name.clone_from(display_name);
        }
        if let Some(locale) = &self.locale {
            user.locale.clone_from(locale);
        }
        if let Some(timezone) = &self.timezone {
            user.timezone.clone_from(timezone);
        }
    }
}

/// What a user may do for a child, weakest first, so `>=` compares strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// See the child, their progress and sessions.
    View,
    /// Also talk: open sessions for the child.
    Interact,
    /// Also change and delete the child, and grant others access.
    Manage,
}

impl Permission {
    /// The gRPC enum.
    pub fn to_proto(self) -> pb::Permission {
        match self {
            Self::View => pb::Permission::View,
            Self::Interact => pb::Permission::Interact,
            Self::Manage => pb::Permission::Manage,
        }
    }

    /// From the gRPC enum (`None` for unspecified or unknown values).
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::Permission::try_from(value).ok()? {
            pb::Permission::View => Some(Self::View),
            pb::Permission::Interact => Some(Self::Interact),
            pb::Permission::Manage => Some(Self::Manage),
            pb::Permission::Unspecified => None,
        }
    }
}

/// A family link: `users/{user_id}/family_links/{child_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyLink {
    /// The user the link gives access to, stored as `uid`.
    #[serde(rename = "uid")]
    pub user_id: String,
    /// The child.
    pub child_id: String,
    /// What the user may do.
    pub permission: Permission,
    /// Who granted it (the user themself for the child's creator).
    pub granted_by: String,
    /// When it was granted.
    pub created_at: Timestamp,
}

/// A child profile: `children/{child_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    /// UUID.
    pub child_id: String,
    /// First name or nickname, as Blob says it.
    pub name: String,
    /// School grade, 0 = kindergarten, -1 = pre-kindergarten.
    pub grade_level: i32,
    /// The app gave the grade as its name (`pre_k`, `grade_3`), so it is answered as a name.
    #[serde(default)]
    pub grade_as_text: bool,
    /// Where the child stands, as the app names it (`beginner` unless set).
    #[serde(default = "default_level")]
    pub current_level: String,
    /// The user who created the profile.
    pub created_by: String,
    /// When the profile was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Set when the profile was deleted (soft): the child is then invisible to every call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
}

fn default_level() -> String {
    blob_kit::validate::DEFAULT_LEVEL.to_owned()
}

/// Where a child stands in a lesson: `lesson_progress/{child_id}_{lesson_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonProgress {
    /// The child.
    pub child_id: String,
    /// The lesson.
    pub lesson_id: String,
    /// `not_started`, `in_progress` or `completed`.
    pub status: String,
    /// Steps completed so far, in order of completion, each once.
    pub completed_steps: Vec<u32>,
    /// Best score, 0–100.
    pub best_score: u32,
    /// Times the lesson was started from the beginning.
    pub attempts: u32,
    /// Every recorded update, so concurrent updates can be counted.
    pub updates: u32,
    /// The latest update.
    pub updated_at: Timestamp,
    /// Once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

/// One change to a child's progress in a lesson, applied transactionally by
/// [`ColdStore::update_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUpdate {
    /// The child began (or began again) the lesson.
    Started,
    /// A step was completed, with a score for it.
    StepCompleted {
        /// The step's number (1-based).
        step: u32,
        /// 0–100.
        score: u32,
    },
    /// The whole lesson was completed, with an overall score.
    Completed {
        /// 0–100.
        score: u32,
    },
}

impl LessonProgress {
    /// Progress before anything happened.
    pub fn new(child_id: &str, lesson_id: &str) -> Self {
        Self {
            child_id: child_id.to_owned(),
            lesson_id: lesson_id.to_owned(),
            status: "not_started".to_owned(),
            completed_steps: Vec::new(),
            best_score: 0,
            attempts: 0,
            updates: 0,
            updated_at: Timestamp::now(),
            completed_at: None,
        }
    }

    /// Applies one update, as every store does inside its transaction.
    pub fn apply(&mut self, update: ProgressUpdate, now: Timestamp) {
        match update {
            ProgressUpdate::Started => {
                self.attempts += 1;
                if self.status == "not_started" {
                    self.status = "in_progress".to_owned();
                }
            }
            ProgressUpdate::StepCompleted { step, score } => {
                if !self.completed_steps.contains(&step) {
                    self.completed_steps.push(step);
                }
                self.best_score = self.best_score.max(score.min(100));
                if self.status == "not_started" {
                    self.status = "in_progress".to_owned();
                }
            }
            ProgressUpdate::Completed { score } => {
                self.best_score = self.best_score.max(score.min(100));
                self.status = "completed".to_owned();
                self.completed_at.get_or_insert(now);
            }
        }
        self.updates += 1;
        self.updated_at = now;
    }

    /// The document id: `{child_id}_{lesson_id}`.
    pub fn document_id(child_id: &str, lesson_id: &str) -> String {
        format!("{child_id}_{lesson_id}")
    }
}

/// One step of a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonStep {
    /// 1-based position.
    pub number: u32,
    /// `explain`, `ask` or `practice`.
    pub kind: String,
    /// What Blob says or asks.
    pub prompt: String,
    /// Answers Blob accepts, for `ask` and `practice` steps.
    #[serde(default)]
    pub accepted_answers: Vec<String>,
}

/// A lesson of the catalogue: `lessons/{lesson_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lesson {
    /// Stable slug.
    pub lesson_id: String,
    /// Shown to parents.
    pub title: String,
    /// `reading`, `math`, `science`, `social`…
    pub subject: String,
    /// School grade it is written for (-1 to 12).
    pub grade_level: i32,
    /// `easy`, `medium` or `hard`.
    pub difficulty: String,
    /// What the child learns.
    pub description: String,
    /// In order.
    pub steps: Vec<LessonStep>,
}

/// Which lessons to list; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LessonFilter {
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact grade.
    pub grade_level: Option<i32>,
    /// Exact difficulty.
    pub difficulty: Option<String>,
}

impl LessonFilter {
    /// Whether a lesson passes the filter.
    pub fn matches(&self, lesson: &Lesson) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == lesson.subject)
            && self.grade_level.is_none_or(|g| g == lesson.grade_level)
            && self.difficulty.as_ref().is_none_or(|d| *d == lesson.difficulty)
    }
}

/// An ended session as archived: `sessions/{session_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSession {
    /// The session as it was when it ended, `state: "ended"`.
    pub session: SessionRecord,
    /// When it ended.
    pub ended_at: Timestamp,
    /// Exchanges in its conversation when it ended.
    pub turn_count: u32,
}

/// What [`ColdStore::erase_child`] removed, as a receipt for the parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    /// The child's profile (0 or 1).
    pub children: u32,
    /// Family links, across every user.
    pub family_links: u32,
    /// Lesson progress documents.
    pub progress: u32,
    /// Archived sessions.
    pub sessions: u32,
}

/// A failure of the cold store.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// `UNAVAILABLE`: the store cannot be reached or did not answer in time.
    #[error("cold store unavailable: {0}")]
    Unavailable(String),
    /// `ALREADY_EXISTS`: a create found the document there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// `NOT_FOUND`: an update found no document.
    #[error("not found: {0}")]
    NotFound(String),
    /// `INVALID_ARGUMENT`: an id the stores cannot hold (empty, too long, or with `/`).
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// `INTERNAL`: a stored document could not be read.
    #[error("corrupt document: {0}")]
    Corrupt(String),
}

/// Checks an id before it reaches a store: 1–128 bytes, no `/`, not `.` or `..`, no control
/// characters. Firestore would read a `/` as a path separator; every store refuses the same ids.
pub fn check_id(kind: &str, id: &str) -> Result<(), ColdError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.contains('/')
        && id != "."
        && id != ".."
        && !id.chars().any(char::is_control)
        && !(id.starts_with("__") && id.ends_with("__"));
    if ok { Ok(()) } else { Err(ColdError::InvalidId(format!("{kind} {id:?}"))) }
}

/// Durable, domain-level state operations.
///
/// Reads of a missing document return `None`; creates of an existing one fail with
/// [`ColdError::AlreadyExists`]; lists come back in a defined order.
#[async_trait]
pub trait ColdStore: Send + Sync + 'static {
    /// Which store this is, for logs and `/health/services`.
    fn kind(&self) -> &'static str;

    /// Answers when the store is reachable.
    async fn ping(&self) -> Result<(), ColdError>;

    /// The user, if they ever signed in.
    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, ColdError>;

    /// Deletes the user's record and any family link still under it; whether there was a
    /// record. (Their children are the caller's business: erased or left first.)
    async fn delete_user(&self, user_id: &str) -> Result<bool, ColdError>;

    /// Creates the user on first sign-in, or refreshes the email and display name (empty values
    /// leave the stored ones) and the last sign-in time. Returns the stored user.
    async fn upsert_user(
        &self,
        user_id: &str,
        email: &str,
        display_name: &str,
    ) -> Result<UserRecord, ColdError>;

    /// Records a sign-in now. [`ColdError::NotFound`] for an unknown user.
    async fn update_last_login(&self, user_id: &str) -> Result<UserRecord, ColdError>;

    /// Changes the user's own profile fields. [`ColdError::NotFound`] for an unknown user.
    async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
    ) -> Result<UserRecord, ColdError>;

    /// The user who signed in with this email (compared as stored, lower-cased by callers),
    /// if any.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, ColdError>;

    /// The user's family links, oldest first (ties by child id).
    async fn list_links(&self, user_id: &str) -> Result<Vec<FamilyLink>, ColdError>;

    /// Every family link to the child (its members), oldest first (ties by user id).
    async fn list_child_links(&self, child_id: &str) -> Result<Vec<FamilyLink>, ColdError>;

    /// One family link.
    async fn get_link(
        &self,
        user_id: &str,
        child_id: &str,
    ) -> Result<Option<FamilyLink>, ColdError>;

    /// Creates the link unless one exists; returns the stored link and whether it was created.
    async fn create_link_if_absent(
        &self,
        link: &FamilyLink,
    ) -> Result<(FamilyLink, bool), ColdError>;

    /// Sets the user's permission on the child, creating the link if needed.
    async fn grant_permission(&self, link: &FamilyLink) -> Result<FamilyLink, ColdError>;

    /// Removes a link; returns whether there was one.
    async fn revoke_link(&self, user_id: &str, child_id: &str) -> Result<bool, ColdError>;

    /// The child's profile, deleted or not (callers check `deleted_at`).
    async fn get_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError>;

    /// Several profiles in one round trip, in the order asked, missing ones left out.
    async fn get_children(&self, child_ids: &[String]) -> Result<Vec<ChildRecord>, ColdError>;

    /// Creates a profile. [`ColdError::AlreadyExists`] if the id is taken.
    async fn create_child(&self, child: &ChildRecord) -> Result<(), ColdError>;

    /// Replaces an existing profile. [`ColdError::NotFound`] if there is none.
    async fn put_child(&self, child: &ChildRecord) -> Result<(), ColdError>;

    /// Marks the profile deleted; returns it, or `None` if there was none. Deleting twice keeps
    /// the first deletion time.
    async fn soft_delete_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError>;

    /// The child's progress in one lesson.
    async fn get_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
    ) -> Result<Option<LessonProgress>, ColdError>;

    /// The child's progress in every lesson, most recently updated first (ties by lesson id).
    async fn list_progress(&self, child_id: &str) -> Result<Vec<LessonProgress>, ColdError>;

    /// Reads, applies and writes one update as a transaction: concurrent updates all count.
    async fn update_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
        update: ProgressUpdate,
    ) -> Result<LessonProgress, ColdError>;

    /// Lessons matching the filter, by lesson id.
    async fn list_lessons(&self, filter: &LessonFilter) -> Result<Vec<Lesson>, ColdError>;

    /// One lesson with its steps.
    async fn get_lesson(&self, lesson_id: &str) -> Result<Option<Lesson>, ColdError>;

    /// Creates or replaces a lesson (catalogue seeding).
    async fn put_lesson(&self, lesson: &Lesson) -> Result<(), ColdError>;

    /// Keeps an ended session. Archiving the same session again replaces the first copy.
    async fn archive_session(&self, session: &ArchivedSession) -> Result<(), ColdError>;

    /// The child's archived sessions, most recently ended first.
    async fn list_archived_sessions(
        &self,
        child_id: &str,
    ) -> Result<Vec<ArchivedSession>, ColdError>;

    /// Erases everything kept about the child: profile, every family link, progress and
    /// archived sessions. Erasing twice removes nothing the second time.
    async fn erase_child(&self, child_id: &str) -> Result<ErasureCounts, ColdError>;
}

/// Sorts progress most recently updated first, ties by lesson id.
pub(crate) fn sort_progress(progress: &mut [LessonProgress]) {
    progress.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.lesson_id.cmp(&b.lesson_id)));
}

/// Sorts a child's links oldest first, ties by user id.
pub(crate) fn sort_child_links(links: &mut [FamilyLink]) {
    links.sort_by(|a, b| (a.created_at, &a.user_id).cmp(&(b.created_at, &b.user_id)));
}

/// Sorts links oldest first, ties by child id.
pub(crate) fn sort_links(links: &mut [FamilyLink]) {
    links.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.child_id.cmp(&b.child_id)));
}

/// Sorts archived sessions most recently ended first, ties by session id.
pub(crate) fn sort_archived(sessions: &mut [ArchivedSession]) {
    sessions.sort_by(|a, b| {
        b.ended_at.cmp(&a.ended_at).then(a.session.session_id.cmp(&b.session.session_id))
    });
}

/// A new user document.
pub(crate) fn new_user(
    user_id: &str,
    email: &str,
    display_name: &str,
    now: Timestamp,
) -> UserRecord {
    UserRecord {
        user_id: user_id.to_owned(),
        email: email.to_owned(),
        display_name: display_name.to_owned(),
        role: "parent".to_owned(),
        created_at: now,
        last_login_at: now,
        locale: String::new(),
        timezone: String::new(),
    }
}

/// Refreshes a returning user's profile and sign-in time.
pub(crate) fn refresh_user(user: &mut UserRecord, email: &str, display_name: &str, now: Timestamp) {
    if !email.is_empty() {
        user.email = email.to_owned();
    }
    if !display_name.is_empty() {
        user.display_name = display_name.to_owned();
    }
    user.last_login_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_written_before_the_profile_fields_still_read() {
        let user: UserRecord = serde_json::from_str(
            r#"{"uid":"u","email":"a@b.c","display_name":"A","role":"parent",
                "created_at":"2026-01-01T00:00:00.000Z","last_login_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!((user.locale.as_str(), user.timezone.as_str()), ("", ""));
        let child: ChildRecord = serde_json::from_str(
            r#"{"child_id":"c","name":"Mia","grade_level":-1,"created_by":"u",
                "created_at":"2026-01-01T00:00:00.000Z","updated_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert!(!child.grade_as_text);
        assert_eq!(child.current_level, "beginner");
    }
}
