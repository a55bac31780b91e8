//! The contract every [`ColdStore`] passes: one suite, run against the in-memory store, SQLite
//! and the real Firestore emulator (see `tests/cold_contract.rs`).
//!
//! It pins the semantics where stores naturally differ: creating an existing document is an
//! error, a missing document reads as none, updates are transactional, lists have a defined
//! order, ids with `/` are refused, and times are UTC.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    ArchivedSession, ChildRecord, ColdError, ColdStore, ErasureCounts, FamilyLink, Lesson,
    LessonFilter, LessonStep, Permission, ProfileChange, ProgressUpdate,
};
use crate::record::SessionRecord;
use crate::timestamp::Timestamp;

/// A store under test.
pub type Store = Arc<dyn ColdStore>;

/// One check of the contract.
pub struct Case {
    /// What it checks.
    pub name: &'static str,
    /// Runs it against an empty store; panics on a breach.
    pub run: fn(Store) -> Pin<Box<dyn Future<Output = ()> + Send>>,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(Case { name: stringify!($name), run: |store| Box::pin($name(store)) }),*]
    };
}

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    cases![
        missing_documents_read_as_none,
        users_are_created_once_and_refreshed,
        user_updates_need_the_user,
        times_are_utc_with_milliseconds,
        creating_an_existing_child_fails,
        put_child_needs_the_child,
        children_are_fetched_in_one_batch_in_order,
        soft_delete_hides_nothing_and_keeps_the_first_time,
        links_are_created_only_if_absent,
        links_list_oldest_first,
        a_childs_members_list_oldest_first,
        users_are_found_by_email,
        a_deleted_user_is_gone_with_their_links,
        permissions_are_granted_and_revoked,
        ids_with_slashes_are_refused,
        progress_updates_are_transactional,
        progress_lists_most_recent_first,
        lessons_filter_and_order,
        archived_sessions_are_replaced_and_ordered,
        erasing_a_child_removes_everything_about_them,
    ]
}

/// Runs every case, each on a fresh store from `fresh`, naming the case that fails.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Store>,
{
    for case in cases() {
        let store = fresh().await;
        eprintln!("contract [{}] {}", store.kind(), case.name);
        (case.run)(store).await;
    }
}

fn child(id: &str, name: &str) -> ChildRecord {
    let now = Timestamp::now();
    ChildRecord {
        child_id: id.to_owned(),
        name: name.to_owned(),
        grade_level: 1,
        grade_as_text: false,
        current_level: "beginner".to_owned(),
        created_by: "parent-a".to_owned(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

fn link(user_id: &str, child_id: &str, permission: Permission) -> FamilyLink {
    FamilyLink {
        user_id: user_id.to_owned(),
        child_id: child_id.to_owned(),
        permission,
        granted_by: user_id.to_owned(),
        created_at: Timestamp::now(),
    }
}

fn archived(session_id: &str, child_id: &str, ended_at: &str) -> ArchivedSession {
    let ended_at: Timestamp = ended_at.parse().expect("an RFC 3339 time");
    ArchivedSession {
        session: SessionRecord {
            session_id: session_id.to_owned(),
            user_id: "parent-a".to_owned(),
            child_id: child_id.to_owned(),
            state: "ended".to_owned(),
            conversation_id: format!("conv-{session_id}"),
            mode: "conversation".to_owned(),
            paused: false,
            created_at: "2026-01-01T10:00:00.000Z".parse().unwrap(),
            last_activity_at: ended_at,
            connection_count: 2,
        },
        ended_at,
        turn_count: 3,
    }
}

fn lesson(id: &str, subject: &str, grade_level: i32, difficulty: &str) -> Lesson {
    Lesson {
        lesson_id: id.to_owned(),
        title: format!("Lesson {id}"),
        subject: subject.to_owned(),
        grade_level,
        difficulty: difficulty.to_owned(),
        description: "A lesson.".to_owned(),
        steps: vec![
            LessonStep {
                number: 1,
                kind: "explain".to_owned(),
                prompt: "Listen.".to_owned(),
                accepted_answers: vec![],
            },
            LessonStep {
                number: 2,
                kind: "ask".to_owned(),
                prompt: "Two plus two?".to_owned(),
                accepted_answers: vec!["4".to_owned(), "four".to_owned()],
            },
        ],
    }
}

/// Lets the clock move so times differ at millisecond precision.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

async fn missing_documents_read_as_none(store: Store) {
    assert_eq!(store.get_user("nobody").await.unwrap(), None);
    assert_eq!(store.get_child("no-child").await.unwrap(), None);
    assert_eq!(store.get_link("nobody", "no-child").await.unwrap(), None);
    assert_eq!(store.get_progress("no-child", "no-lesson").await.unwrap(), None);
    assert_eq!(store.get_lesson("no-lesson").await.unwrap(), None);
    assert!(store.list_links("nobody").await.unwrap().is_empty());
    assert!(store.list_progress("no-child").await.unwrap().is_empty());
    assert!(store.list_archived_sessions("no-child").await.unwrap().is_empty());
    assert!(store.get_children(&[]).await.unwrap().is_empty());
    assert_eq!(store.soft_delete_child("no-child").await.unwrap(), None);
    assert!(!store.revoke_link("nobody", "no-child").await.unwrap());
    store.ping().await.unwrap();
}

async fn users_are_created_once_and_refreshed(store: Store) {
    let first = store.upsert_user("u1", "a@example.com", "Ann").await.unwrap();
    assert_eq!((first.role.as_str(), first.email.as_str()), ("parent", "a@example.com"));
    assert_eq!(first.created_at, first.last_login_at);
    tick().await;
    let second = store.upsert_user("u1", "", "").await.unwrap();
    assert_eq!(second.created_at, first.created_at, "creation time is kept");
    assert_eq!((second.email.as_str(), second.display_name.as_str()), ("a@example.com", "Ann"));
    assert!(second.last_login_at > first.last_login_at, "sign-in time moves on");
    let third = store.upsert_user("u1", "new@example.com", "Annie").await.unwrap();
    assert_eq!(third.email, "new@example.com");
    assert_eq!(store.get_user("u1").await.unwrap(), Some(third));
}

async fn user_updates_need_the_user(store: Store) {
    assert!(matches!(store.update_last_login("ghost").await, Err(ColdError::NotFound(_))));
    let rename = |name: &str| ProfileChange {
        display_name: Some(name.to_owned()),
        ..ProfileChange::default()
    };
    assert!(matches!(
        store.update_profile("ghost", &rename("G")).await,
        Err(ColdError::NotFound(_))
    ));
    assert_eq!(store.get_user("ghost").await.unwrap(), None, "no user is created by an update");
    let user = store.upsert_user("u2", "b@example.com", "Bo").await.unwrap();
    tick().await;
    let later = store.update_last_login("u2").await.unwrap();
    assert!(later.last_login_at > user.last_login_at);
    let renamed = store.update_profile("u2", &rename("Bobby")).await.unwrap();
    assert_eq!(renamed.display_name, "Bobby");
    let stored = store.get_user("u2").await.unwrap().unwrap();
    assert_eq!((stored.display_name.as_str(), stored.email.as_str()), ("Bobby", "b@example.com"));
    assert_eq!(stored.last_login_at, later.last_login_at);
    let placed = ProfileChange {
        locale: Some("en-IN".to_owned()),
        timezone: Some("Asia/Kolkata".to_owned()),
        ..ProfileChange::default()
    };
    store.update_profile("u2", &placed).await.unwrap();
    let stored = store.get_user("u2").await.unwrap().unwrap();
    assert_eq!(
        (stored.display_name.as_str(), stored.locale.as_str(), stored.timezone.as_str()),
        ("Bobby", "en-IN", "Asia/Kolkata"),
        "only the fields given change"
    );
    let cleared = ProfileChange { locale: Some(String::new()), ..ProfileChange::default() };
    let stored = store.update_profile("u2", &cleared).await.unwrap();
    assert_eq!((stored.locale.as_str(), stored.timezone.as_str()), ("", "Asia/Kolkata"));
    assert_eq!(store.get_user("u2").await.unwrap(), Some(stored));
}

fn assert_utc(value: &Timestamp) {
    let value = value.to_string();
    let parsed = OffsetDateTime::parse(&value, &Rfc3339).unwrap_or_else(|e| panic!("{value}: {e}"));
    assert!(parsed.offset().is_utc(), "{value} is UTC");
    assert!(value.ends_with('Z') && value.len() == 24, "{value} is fixed-width with milliseconds");
}

async fn times_are_utc_with_milliseconds(store: Store) {
    let user = store.upsert_user("u3", "", "").await.unwrap();
    assert_utc(&user.created_at);
    assert_utc(&user.last_login_at);
    store.create_child(&child("c3", "Mia")).await.unwrap();
    let stored = store.get_child("c3").await.unwrap().unwrap();
    assert_utc(&stored.created_at);
    let progress = store.update_progress("c3", "l1", ProgressUpdate::Started).await.unwrap();
    assert_utc(&progress.updated_at);
    let deleted = store.soft_delete_child("c3").await.unwrap().unwrap();
    assert_utc(&deleted.deleted_at.unwrap());
}

async fn creating_an_existing_child_fails(store: Store) {
    store.create_child(&child("c1", "Mia")).await.unwrap();
    let again = store.create_child(&child("c1", "Other")).await;
    assert!(matches!(again, Err(ColdError::AlreadyExists(_))), "{again:?}");
    assert_eq!(store.get_child("c1").await.unwrap().unwrap().name, "Mia", "the first one stays");
}

async fn put_child_needs_the_child(store: Store) {
    let missing = store.put_child(&child("c9", "Nobody")).await;
    assert!(matches!(missing, Err(ColdError::NotFound(_))), "{missing:?}");
    assert_eq!(store.get_child("c9").await.unwrap(), None, "put creates nothing");
    store.create_child(&child("c9", "Noor")).await.unwrap();
    let mut changed = store.get_child("c9").await.unwrap().unwrap();
    changed.name = "Nora".to_owned();
    changed.grade_level = 2;
    changed.grade_as_text = true;
    changed.current_level = "intermediate".to_owned();
    store.put_child(&changed).await.unwrap();
    assert_eq!(store.get_child("c9").await.unwrap(), Some(changed));
}

async fn children_are_fetched_in_one_batch_in_order(store: Store) {
    for (id, name) in [("ca", "Ann"), ("cb", "Ben"), ("cc", "Cai")] {
        store.create_child(&child(id, name)).await.unwrap();
    }
    let ids: Vec<String> = ["cc", "missing", "ca", "cb"].iter().map(|s| s.to_string()).collect();
    let names: Vec<String> =
        store.get_children(&ids).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["Cai", "Ann", "Ben"]);
}

async fn soft_delete_hides_nothing_and_keeps_the_first_time(store: Store) {
    store.create_child(&child("cd", "Dee")).await.unwrap();
    let first = store.soft_delete_child("cd").await.unwrap().unwrap();
    let deleted_at = first.deleted_at.expect("deletion time set");
    tick().await;
    let second = store.soft_delete_child("cd").await.unwrap().unwrap();
    assert_eq!(second.deleted_at, Some(deleted_at));
    let stored = store.get_child("cd").await.unwrap().expect("a soft-deleted child is kept");
    assert_eq!(stored.deleted_at, Some(deleted_at));
    assert_eq!(stored.name, "Dee");
}

async fn links_are_created_only_if_absent(store: Store) {
    let (created, fresh) =
        store.create_link_if_absent(&link("pa", "c1", Permission::Manage)).await.unwrap();
    assert!(fresh);
    assert_eq!(created.permission, Permission::Manage);
    let (existing, fresh) =
        store.create_link_if_absent(&link("pa", "c1", Permission::View)).await.unwrap();
    assert!(!fresh, "second create finds the first");
    assert_eq!(existing.permission, Permission::Manage, "an existing link is not changed");
    assert_eq!(store.get_link("pa", "c1").await.unwrap().unwrap().permission, Permission::Manage);
    assert_eq!(store.get_link("pb", "c1").await.unwrap(), None, "links are per user");
}

async fn links_list_oldest_first(store: Store) {
    store.create_link_if_absent(&link("pa", "zz", Permission::Manage)).await.unwrap();
    tick().await;
    store.create_link_if_absent(&link("pa", "aa", Permission::View)).await.unwrap();
    tick().await;
    store.create_link_if_absent(&link("pa", "mm", Permission::Interact)).await.unwrap();
    store.create_link_if_absent(&link("pb", "other", Permission::Manage)).await.unwrap();
    let order: Vec<String> =
        store.list_links("pa").await.unwrap().into_iter().map(|l| l.child_id).collect();
    assert_eq!(order, ["zz", "aa", "mm"]);
}

async fn a_childs_members_list_oldest_first(store: Store) {
    store.create_link_if_absent(&link("zed", "c1", Permission::Manage)).await.unwrap();
    tick().await;
    store.create_link_if_absent(&link("amy", "c1", Permission::View)).await.unwrap();
    store.create_link_if_absent(&link("amy", "c2", Permission::Manage)).await.unwrap();
    let members: Vec<(String, Permission)> = store
        .list_child_links("c1")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.user_id, l.permission))
        .collect();
    assert_eq!(
        members,
        [("zed".to_owned(), Permission::Manage), ("amy".to_owned(), Permission::View)]
    );
    assert!(store.list_child_links("nobody").await.unwrap().is_empty());
}

async fn users_are_found_by_email(store: Store) {
    store.upsert_user("u-1", "ada@example.com", "Ada").await.unwrap();
    store.upsert_user("u-2", "bo@example.com", "Bo").await.unwrap();
    let found = store.find_user_by_email("ada@example.com").await.unwrap().unwrap();
    assert_eq!(found.user_id, "u-1");
    assert_eq!(store.find_user_by_email("cy@example.com").await.unwrap(), None);
    assert_eq!(store.find_user_by_email("").await.unwrap(), None);
}

async fn a_deleted_user_is_gone_with_their_links(store: Store) {
    store.upsert_user("u-1", "ada@example.com", "Ada").await.unwrap();
    store.upsert_user("u-2", "bo@example.com", "Bo").await.unwrap();
    store.create_link_if_absent(&link("u-1", "c1", Permission::Manage)).await.unwrap();
    store.create_link_if_absent(&link("u-2", "c1", Permission::View)).await.unwrap();
    assert!(store.delete_user("u-1").await.unwrap());
    assert_eq!(store.get_user("u-1").await.unwrap(), None);
    assert_eq!(store.find_user_by_email("ada@example.com").await.unwrap(), None);
    assert!(store.list_links("u-1").await.unwrap().is_empty());
    let members: Vec<String> =
        store.list_child_links("c1").await.unwrap().into_iter().map(|l| l.user_id).collect();
    assert_eq!(members, ["u-2"], "other members stay");
    assert!(store.get_user("u-2").await.unwrap().is_some());
    assert!(!store.delete_user("u-1").await.unwrap(), "deleting again finds nothing");
}

async fn permissions_are_granted_and_revoked(store: Store) {
    store.create_link_if_absent(&link("owner", "c1", Permission::Manage)).await.unwrap();
    let mut grant = link("grandma", "c1", Permission::View);
    grant.granted_by = "owner".to_owned();
    let granted = store.grant_permission(&grant).await.unwrap();
    assert_eq!((granted.permission, granted.granted_by.as_str()), (Permission::View, "owner"));
    grant.permission = Permission::Interact;
    let upgraded = store.grant_permission(&grant).await.unwrap();
    assert_eq!(upgraded.permission, Permission::Interact);
    assert_eq!(upgraded.created_at, granted.created_at, "a grant keeps the link's age");
    assert_eq!(
        store.get_link("grandma", "c1").await.unwrap().unwrap().permission,
        Permission::Interact
    );
    assert!(Permission::Manage > Permission::Interact && Permission::Interact > Permission::View);
    assert!(store.revoke_link("grandma", "c1").await.unwrap());
    assert_eq!(store.get_link("grandma", "c1").await.unwrap(), None, "revoked at once");
    assert!(!store.revoke_link("grandma", "c1").await.unwrap());
    assert!(store.get_link("owner", "c1").await.unwrap().is_some(), "other links stay");
}

async fn ids_with_slashes_are_refused(store: Store) {
    fn refused<T: std::fmt::Debug>(result: Result<T, ColdError>) {
        assert!(matches!(result, Err(ColdError::InvalidId(_))), "{result:?}");
    }
    refused(store.get_user("a/b").await);
    refused(store.upsert_user("a/b", "", "").await);
    refused(store.upsert_user("", "", "").await);
    refused(store.upsert_user(&"x".repeat(129), "", "").await);
    refused(store.get_child("../etc").await);
    refused(store.create_child(&child("x/y", "Slash")).await);
    refused(store.get_link("u", "c/1").await);
    refused(store.create_link_if_absent(&link("u/1", "c", Permission::View)).await);
    refused(store.update_progress("c", "l/1", ProgressUpdate::Started).await);
    refused(store.put_lesson(&lesson("a/b", "math", 1, "easy")).await);
    refused(store.get_children(&["ok".to_owned(), "no/t".to_owned()]).await);
    refused(store.erase_child("c/1").await);
    assert_eq!(store.get_user("a").await.unwrap(), None, "nothing was written");
    assert!(store.upsert_user(&"x".repeat(128), "", "").await.is_ok(), "128 bytes are fine");
}

async fn progress_updates_are_transactional(store: Store) {
    const UPDATES: u32 = 20;
    let started = store.update_progress("kid", "lesson-1", ProgressUpdate::Started).await.unwrap();
    assert_eq!((started.status.as_str(), started.attempts), ("in_progress", 1));
    let mut tasks = Vec::new();
    for step in 0..UPDATES {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let update = ProgressUpdate::StepCompleted { step: step % 5 + 1, score: step * 5 };
            store.update_progress("kid", "lesson-1", update).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let progress = store.get_progress("kid", "lesson-1").await.unwrap().unwrap();
    assert_eq!(progress.updates, UPDATES + 1, "no concurrent update was lost");
    let mut steps = progress.completed_steps.clone();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2, 3, 4, 5]);
    assert_eq!(progress.best_score, (UPDATES - 1) * 5);
    let done = store
        .update_progress("kid", "lesson-1", ProgressUpdate::Completed { score: 250 })
        .await
        .unwrap();
    assert_eq!((done.status.as_str(), done.best_score), ("completed", 100));
    assert!(done.completed_at.is_some());
}

async fn progress_lists_most_recent_first(store: Store) {
    for lesson in ["b-lesson", "a-lesson", "c-lesson"] {
        store.update_progress("kid", lesson, ProgressUpdate::Started).await.unwrap();
        tick().await;
    }
    store.update_progress("other-kid", "a-lesson", ProgressUpdate::Started).await.unwrap();
    tick().await;
    store
        .update_progress("kid", "b-lesson", ProgressUpdate::Completed { score: 90 })
        .await
        .unwrap();
    let order: Vec<String> =
        store.list_progress("kid").await.unwrap().into_iter().map(|p| p.lesson_id).collect();
    assert_eq!(order, ["b-lesson", "c-lesson", "a-lesson"]);
}

async fn lessons_filter_and_order(store: Store) {
    store.put_lesson(&lesson("m2", "math", 1, "medium")).await.unwrap();
    store.put_lesson(&lesson("m1", "math", 0, "easy")).await.unwrap();
    store.put_lesson(&lesson("r1", "reading", 0, "easy")).await.unwrap();
    let ids = |lessons: Vec<Lesson>| lessons.into_iter().map(|l| l.lesson_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_lessons(&LessonFilter::default()).await.unwrap()),
        ["m1", "m2", "r1"]
    );
    let math = LessonFilter { subject: Some("math".to_owned()), ..LessonFilter::default() };
    assert_eq!(ids(store.list_lessons(&math).await.unwrap()), ["m1", "m2"]);
    let easy_k = LessonFilter {
        grade_level: Some(0),
        difficulty: Some("easy".to_owned()),
        ..LessonFilter::default()
    };
    assert_eq!(ids(store.list_lessons(&easy_k).await.unwrap()), ["m1", "r1"]);
    let mut changed = lesson("m1", "math", 0, "hard");
    changed.title = "Harder".to_owned();
    store.put_lesson(&changed).await.unwrap();
    let stored = store.get_lesson("m1").await.unwrap().unwrap();
    assert_eq!(stored, changed, "put replaces, steps included");
    assert_eq!(stored.steps[1].accepted_answers, ["4", "four"]);
}

async fn archived_sessions_are_replaced_and_ordered(store: Store) {
    store.archive_session(&archived("s1", "kid", "2026-01-01T10:00:00.000Z")).await.unwrap();
    store.archive_session(&archived("s2", "kid", "2026-01-02T10:00:00.000Z")).await.unwrap();
    store.archive_session(&archived("s3", "other", "2026-01-03T10:00:00.000Z")).await.unwrap();
    let mut again = archived("s1", "kid", "2026-01-03T09:00:00.000Z");
    again.turn_count = 7;
    store.archive_session(&again).await.unwrap();
    let found = store.list_archived_sessions("kid").await.unwrap();
    let order: Vec<&str> = found.iter().map(|s| s.session.session_id.as_str()).collect();
    assert_eq!(order, ["s1", "s2"]);
    assert_eq!(found[0], again, "archiving again replaces the first copy");
}

async fn erasing_a_child_removes_everything_about_them(store: Store) {
    store.create_child(&child("kid", "Kai")).await.unwrap();
    store.create_child(&child("sibling", "Sia")).await.unwrap();
    for (user_id, permission) in
        [("mum", Permission::Manage), ("dad", Permission::Manage), ("nan", Permission::View)]
    {
        store.create_link_if_absent(&link(user_id, "kid", permission)).await.unwrap();
    }
    store.create_link_if_absent(&link("mum", "sibling", Permission::Manage)).await.unwrap();
    for lesson in ["l1", "l2"] {
        store.update_progress("kid", lesson, ProgressUpdate::Started).await.unwrap();
    }
    store.update_progress("sibling", "l1", ProgressUpdate::Started).await.unwrap();
    store.archive_session(&archived("s1", "kid", "2026-01-01T10:00:00.000Z")).await.unwrap();
    store.archive_session(&archived("s2", "sibling", "2026-01-01T10:00:00.000Z")).await.unwrap();

    let counts = store.erase_child("kid").await.unwrap();
    assert_eq!(counts, ErasureCounts { children: 1, family_links: 3, progress: 2, sessions: 1 });
    assert_eq!(store.get_child("kid").await.unwrap(), None);
    for user_id in ["mum", "dad", "nan"] {
        assert_eq!(store.get_link(user_id, "kid").await.unwrap(), None);
    }
    assert!(store.list_progress("kid").await.unwrap().is_empty());
    assert!(store.list_archived_sessions("kid").await.unwrap().is_empty());

    // The sibling is untouched.
    assert!(store.get_child("sibling").await.unwrap().is_some());
    assert!(store.get_link("mum", "sibling").await.unwrap().is_some());
    assert_eq!(store.list_progress("sibling").await.unwrap().len(), 1);
    assert_eq!(store.list_archived_sessions("sibling").await.unwrap().len(), 1);

    assert_eq!(store.erase_child("kid").await.unwrap(), ErasureCounts::default());
}
