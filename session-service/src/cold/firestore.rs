//! Cold state in Cloud Firestore, through the `firestore` crate (gRPC).
//!
//! Production authenticates with Application Default Credentials; with
//! `FIRESTORE_EMULATOR_HOST` set the client talks to the emulator instead.
//!
//! Queries use equality filters only and sort in the service, so no composite index is needed.
//! Erasing a child finds its family links with a collection-group query on `family_links` by
//! `child_id`, which needs that single-field collection-group index (see
//! `deploy/firestore.indexes.json`).

use std::time::Duration;

use async_trait::async_trait;
use firestore::errors::FirestoreError;
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreWritePrecondition};
use futures::TryStreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ArchivedSession, ChildRecord, ColdError, ColdStore, ErasureCounts, FamilyLink, Lesson,
    LessonFilter, LessonProgress, ProfileChange, ProgressUpdate, UserRecord, check_id, new_user,
    refresh_user, sort_archived, sort_links, sort_progress,
};
use crate::timestamp::Timestamp;

const USERS: &str = "users";
const FAMILY_LINKS: &str = "family_links";
const CHILDREN: &str = "children";
const PROGRESS: &str = "lesson_progress";
const LESSONS: &str = "lessons";
const SESSIONS: &str = "sessions";

/// Cold state in Firestore.
#[derive(Clone)]
pub struct FirestoreColdStore {
    db: FirestoreDb,
}

impl std::fmt::Debug for FirestoreColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreColdStore").finish_non_exhaustive()
    }
}

impl FirestoreColdStore {
    /// Connects to the project's database. Each request waits at most `request_timeout`.
    ///
    /// With `FIRESTORE_EMULATOR_HOST` in the environment the emulator is used and no
    /// credentials are looked up.
    pub async fn connect(
        project_id: &str,
        database_id: &str,
        request_timeout: Duration,
    ) -> Result<Self, ColdError> {
        let options = FirestoreDbOptions::new(project_id.to_owned())
            .with_database_id(database_id.to_owned())
            .with_max_retries(2)
            .with_request_timeout(request_timeout);
        let db = FirestoreDb::with_options(options).await.map_err(map_error)?;
        Ok(Self { db })
    }

    async fn get<T>(&self, collection: &str, id: &str) -> Result<Option<T>, ColdError>
    where
        T: DeserializeOwned + Send,
    {
        self.db.fluent().select().by_id_in(collection).obj().one(id).await.map_err(map_error)
    }

    async fn link_at(
        &self,
        user_id: &str,
        child_id: &str,
    ) -> Result<Option<FamilyLink>, ColdError> {
        let parent = self.db.parent_path(USERS, user_id).map_err(map_error)?;
        self.db
            .fluent()
            .select()
            .by_id_in(FAMILY_LINKS)
            .parent(&parent)
            .obj()
            .one(child_id)
            .await
            .map_err(map_error)
    }

    async fn write_link(&self, link: &FamilyLink) -> Result<(), ColdError> {
        let parent = self.db.parent_path(USERS, &link.user_id).map_err(map_error)?;
        self.db
            .fluent()
            .update()
            .in_col(FAMILY_LINKS)
            .document_id(&link.child_id)
            .parent(&parent)
            .object(link)
            .execute::<()>()
            .await
            .map_err(map_error)
    }

    /// Replaces a document (creating it if missing).
    async fn put<T>(&self, collection: &str, id: &str, value: &T) -> Result<(), ColdError>
    where
        T: Serialize + DeserializeOwned + Sync + Send,
    {
        self.db
            .fluent()
            .update()
            .in_col(collection)
            .document_id(id)
            .object(value)
            .execute::<()>()
            .await
            .map_err(map_error)
    }

    /// Changes one field of an existing user; [`ColdError::NotFound`] if there is none.
    async fn update_user(
        &self,
        user_id: &str,
        fields: &[&str],
        change: impl FnOnce(&mut UserRecord) + Send,
    ) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let mut user: UserRecord = self
            .get(USERS, user_id)
            .await?
            .ok_or_else(|| ColdError::NotFound(format!("users/{user_id}")))?;
        change(&mut user);
        self.db
            .fluent()
            .update()
            .fields(fields.iter().copied())
            .in_col(USERS)
            .precondition(FirestoreWritePrecondition::Exists(true))
            .document_id(user_id)
            .object(&user)
            .execute::<()>()
            .await
            .map_err(map_error)?;
        Ok(user)
    }

    /// Every document of a collection whose `field` equals `value`.
    async fn query_eq<T>(
        &self,
        collection: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<T>, ColdError>
    where
        T: DeserializeOwned + Send,
    {
        let (field, value) = (field.to_owned(), value.to_owned());
        self.db
            .fluent()
            .select()
            .from(collection)
            .filter(move |q| q.field(field.as_str()).eq(value.as_str()))
            .obj()
            .query()
            .await
            .map_err(map_error)
    }
}

/// Maps the client's errors to the store's.
fn map_error(err: FirestoreError) -> ColdError {
    match err {
        FirestoreError::DataConflictError(e) => ColdError::AlreadyExists(e.to_string()),
        FirestoreError::DataNotFoundError(e) => ColdError::NotFound(e.to_string()),
        FirestoreError::InvalidParametersError(e) => ColdError::InvalidId(e.to_string()),
        FirestoreError::DeserializeError(e) | FirestoreError::SerializeError(e) => {
            ColdError::Corrupt(e.to_string())
        }
        FirestoreError::ErrorInTransaction(e) => ColdError::Unavailable(e.to_string()),
        other => ColdError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl ColdStore for FirestoreColdStore {
    fn kind(&self) -> &'static str {
        "firestore"
    }

    async fn ping(&self) -> Result<(), ColdError> {
        self.get::<Lesson>(LESSONS, "ping").await.map(drop)
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, ColdError> {
        check_id("user_id", user_id)?;
        self.get(USERS, user_id).await
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        // A document's subcollections outlive it in Firestore: its links go first.
        for link in self.list_links(user_id).await? {
            self.revoke_link(user_id, &link.child_id).await?;
        }
        let existed = self.get_user(user_id).await?.is_some();
        self.db
            .fluent()
            .delete()
            .from(USERS)
            .document_id(user_id)
            .execute()
            .await
            .map_err(map_error)?;
        Ok(existed)
    }

    async fn upsert_user(
        &self,
        user_id: &str,
        email: &str,
        display_name: &str,
    ) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let (user_id, email, display_name) =
            (user_id.to_owned(), email.to_owned(), display_name.to_owned());
        self.db
            .run_transaction(|db, transaction| {
                let (user_id, email, display_name) =
                    (user_id.clone(), email.clone(), display_name.clone());
                Box::pin(async move {
                    let now = Timestamp::now();
                    let stored: Option<UserRecord> =
                        db.fluent().select().by_id_in(USERS).obj().one(&user_id).await?;
                    let user = match stored {
                        Some(mut user) => {
                            refresh_user(&mut user, &email, &display_name, now);
                            user
                        }
                        None => new_user(&user_id, &email, &display_name, now),
                    };
                    db.fluent()
                        .update()
                        .in_col(USERS)
                        .document_id(&user_id)
                        .object(&user)
                        .add_to_transaction(transaction)?;
                    Ok(user)
                })
            })
            .await
            .map_err(map_error)
    }

    async fn update_last_login(&self, user_id: &str) -> Result<UserRecord, ColdError> {
        self.update_user(user_id, &["last_login_at"], |user| user.last_login_at = Timestamp::now())
            .await
    }

    async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
    ) -> Result<UserRecord, ColdError> {
        self.update_user(user_id, &change.fields(), |user| change.apply(user)).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, ColdError> {
        if email.is_empty() {
            return Ok(None);
        }
        let mut found: Vec<UserRecord> = self.query_eq(USERS, "email", email).await?;
        found.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(found.into_iter().next())
    }

    async fn list_child_links(&self, child_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("child_id", child_id)?;
        let owned = child_id.to_owned();
        let mut links: Vec<FamilyLink> = self
            .db
            .fluent()
            .select()
            .from(FAMILY_LINKS)
            .all_descendants()
            .filter(move |q| q.field("child_id").eq(owned.as_str()))
            .obj()
            .query()
            .await
            .map_err(map_error)?;
        super::sort_child_links(&mut links);
        Ok(links)
    }

    async fn list_links(&self, user_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("user_id", user_id)?;
        let parent = self.db.parent_path(USERS, user_id).map_err(map_error)?;
        let mut links: Vec<FamilyLink> = self
            .db
            .fluent()
            .select()
            .from(FAMILY_LINKS)
            .parent(&parent)
            .obj()
            .query()
            .await
            .map_err(map_error)?;
        sort_links(&mut links);
        Ok(links)
    }

    async fn get_link(
        &self,
        user_id: &str,
        child_id: &str,
    ) -> Result<Option<FamilyLink>, ColdError> {
        check_id("user_id", user_id)?;
        check_id("child_id", child_id)?;
        self.link_at(user_id, child_id).await
    }

    async fn create_link_if_absent(
        &self,
        link: &FamilyLink,
    ) -> Result<(FamilyLink, bool), ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let parent = self.db.parent_path(USERS, &link.user_id).map_err(map_error)?;
        let created = self
            .db
            .fluent()
            .insert()
            .into(FAMILY_LINKS)
            .document_id(&link.child_id)
            .parent(&parent)
            .object(link)
            .execute::<()>()
            .await;
        match created.map_err(map_error) {
            Ok(()) => Ok((link.clone(), true)),
            Err(ColdError::AlreadyExists(_)) => {
                let stored = self.link_at(&link.user_id, &link.child_id).await?;
                // Revoked between the two calls: the caller's link was not created either.
                stored.map(|s| (s, false)).ok_or_else(|| {
                    ColdError::Unavailable("family link changed concurrently".to_owned())
                })
            }
            Err(other) => Err(other),
        }
    }

    async fn grant_permission(&self, link: &FamilyLink) -> Result<FamilyLink, ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let stored = match self.link_at(&link.user_id, &link.child_id).await? {
            Some(mut stored) => {
                stored.permission = link.permission;
                stored.granted_by.clone_from(&link.granted_by);
                stored
            }
            None => link.clone(),
        };
        self.write_link(&stored).await?;
        Ok(stored)
    }

    async fn revoke_link(&self, user_id: &str, child_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        check_id("child_id", child_id)?;
        if self.link_at(user_id, child_id).await?.is_none() {
            return Ok(false);
        }
        let parent = self.db.parent_path(USERS, user_id).map_err(map_error)?;
        self.db
            .fluent()
            .delete()
            .from(FAMILY_LINKS)
            .parent(&parent)
            .document_id(child_id)
            .execute()
            .await
            .map_err(map_error)?;
        Ok(true)
    }

    async fn get_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        self.get(CHILDREN, child_id).await
    }

    async fn get_children(&self, child_ids: &[String]) -> Result<Vec<ChildRecord>, ColdError> {
        for id in child_ids {
            check_id("child_id", id)?;
        }
        if child_ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<(String, Option<ChildRecord>)> = self
            .db
            .fluent()
            .select()
            .by_id_in(CHILDREN)
            .obj()
            .batch_with_errors(child_ids.iter().map(String::as_str))
            .await
            .map_err(map_error)?
            .try_collect()
            .await
            .map_err(map_error)?;
        let mut by_id: std::collections::HashMap<String, ChildRecord> =
            found.into_iter().filter_map(|(id, child)| Some((id, child?))).collect();
        Ok(child_ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn create_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        self.db
            .fluent()
            .insert()
            .into(CHILDREN)
            .document_id(&child.child_id)
            .object(child)
            .execute::<()>()
            .await
            .map_err(map_error)
    }

    async fn put_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        self.db
            .fluent()
            .update()
            .in_col(CHILDREN)
            .precondition(FirestoreWritePrecondition::Exists(true))
            .document_id(&child.child_id)
            .object(child)
            .execute::<()>()
            .await
            .map_err(map_error)
    }

    async fn soft_delete_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.db
            .run_transaction(|db, transaction| {
                let child_id = child_id.clone();
                Box::pin(async move {
                    let stored: Option<ChildRecord> =
                        db.fluent().select().by_id_in(CHILDREN).obj().one(&child_id).await?;
                    let Some(mut child) = stored else { return Ok(None) };
                    if child.deleted_at.is_none() {
                        let now = Timestamp::now();
                        child.deleted_at = Some(now);
                        child.updated_at = now;
                        db.fluent()
                            .update()
                            .in_col(CHILDREN)
                            .document_id(&child_id)
                            .object(&child)
                            .add_to_transaction(transaction)?;
                    }
                    Ok(Some(child))
                })
            })
            .await
            .map_err(map_error)
    }

    async fn get_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
    ) -> Result<Option<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        check_id("lesson_id", lesson_id)?;
        self.get(PROGRESS, &LessonProgress::document_id(child_id, lesson_id)).await
    }

    async fn list_progress(&self, child_id: &str) -> Result<Vec<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        let mut progress: Vec<LessonProgress> =
            self.query_eq(PROGRESS, "child_id", child_id).await?;
        sort_progress(&mut progress);
        Ok(progress)
    }

    async fn update_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
        update: ProgressUpdate,
    ) -> Result<LessonProgress, ColdError> {
        check_id("child_id", child_id)?;
        check_id("lesson_id", lesson_id)?;
        let (child_id, lesson_id) = (child_id.to_owned(), lesson_id.to_owned());
        let options = firestore::FirestoreTransactionOptions::new().with_max_retries(20);
        self.db
            .run_transaction_with_options(
                |db, transaction| {
                    let (child_id, lesson_id) = (child_id.clone(), lesson_id.clone());
                    Box::pin(async move {
                        let id = LessonProgress::document_id(&child_id, &lesson_id);
                        let stored: Option<LessonProgress> =
                            db.fluent().select().by_id_in(PROGRESS).obj().one(&id).await?;
                        let mut progress =
                            stored.unwrap_or_else(|| LessonProgress::new(&child_id, &lesson_id));
                        progress.apply(update, Timestamp::now());
                        db.fluent()
                            .update()
                            .in_col(PROGRESS)
                            .document_id(&id)
                            .object(&progress)
                            .add_to_transaction(transaction)?;
                        Ok(progress)
                    })
                },
                options,
            )
            .await
            .map_err(map_error)
    }

    async fn list_lessons(&self, filter: &LessonFilter) -> Result<Vec<Lesson>, ColdError> {
        let mut lessons: Vec<Lesson> =
            self.db.fluent().select().from(LESSONS).obj().query().await.map_err(map_error)?;
        lessons.retain(|l| filter.matches(l));
        lessons.sort_by(|a, b| a.lesson_id.cmp(&b.lesson_id));
        Ok(lessons)
    }

    async fn get_lesson(&self, lesson_id: &str) -> Result<Option<Lesson>, ColdError> {
        check_id("lesson_id", lesson_id)?;
        self.get(LESSONS, lesson_id).await
    }

    async fn put_lesson(&self, lesson: &Lesson) -> Result<(), ColdError> {
        check_id("lesson_id", &lesson.lesson_id)?;
        self.put(LESSONS, &lesson.lesson_id, lesson).await
    }

    async fn archive_session(&self, session: &ArchivedSession) -> Result<(), ColdError> {
        check_id("session_id", &session.session.session_id)?;
        self.put(SESSIONS, &session.session.session_id, session).await
    }

    async fn list_archived_sessions(
        &self,
        child_id: &str,
    ) -> Result<Vec<ArchivedSession>, ColdError> {
        check_id("child_id", child_id)?;
        let mut sessions: Vec<ArchivedSession> =
            self.query_eq(SESSIONS, "session.child_id", child_id).await?;
        sort_archived(&mut sessions);
        Ok(sessions)
    }

    async fn erase_child(&self, child_id: &str) -> Result<ErasureCounts, ColdError> {
        let links = self.list_child_links(child_id).await?;
        let progress: Vec<LessonProgress> = self.query_eq(PROGRESS, "child_id", child_id).await?;
        let sessions: Vec<ArchivedSession> =
            self.query_eq(SESSIONS, "session.child_id", child_id).await?;
        let child: Option<ChildRecord> = self.get(CHILDREN, child_id).await?;

        // One atomic commit per 400 deletes (Firestore allows 500 writes per commit).
        let mut targets: Vec<(Option<String>, &'static str, String)> = Vec::new();
        for link in &links {
            targets.push((Some(link.user_id.clone()), FAMILY_LINKS, link.child_id.clone()));
        }
        for p in &progress {
            targets.push((None, PROGRESS, LessonProgress::document_id(&p.child_id, &p.lesson_id)));
        }
        for s in &sessions {
            targets.push((None, SESSIONS, s.session.session_id.clone()));
        }
        if child.is_some() {
            targets.push((None, CHILDREN, child_id.to_owned()));
        }
        for chunk in targets.chunks(400) {
            let mut transaction = self.db.begin_transaction().await.map_err(map_error)?;
            for (user, collection, id) in chunk {
                let delete = self.db.fluent().delete().from(*collection);
                match user {
                    Some(user_id) => {
                        let parent = self.db.parent_path(USERS, user_id).map_err(map_error)?;
                        delete
                            .parent(&parent)
                            .document_id(id)
                            .add_to_transaction(&mut transaction)
                            .map_err(map_error)?;
                    }
                    None => {
                        delete
                            .document_id(id)
                            .add_to_transaction(&mut transaction)
                            .map_err(map_error)?;
                    }
                }
            }
            transaction.commit().await.map_err(map_error)?;
        }
        Ok(ErasureCounts {
            children: u32::from(child.is_some()),
            family_links: links.len() as u32,
            progress: progress.len() as u32,
            sessions: sessions.len() as u32,
        })
    }
}
