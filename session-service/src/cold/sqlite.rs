//! Cold state in one SQLite file: the embedded default for `make run` and single machines.
//!
//! Each document is stored as the same JSON as in Firestore, beside the columns its queries
//! need. The file is opened in WAL mode with `synchronous=NORMAL`; every call runs on the
//! blocking pool, never on the async runtime's threads, and a multi-step change is one
//! `BEGIN IMMEDIATE` transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ArchivedSession, ChildRecord, ColdError, ColdStore, ErasureCounts, FamilyLink, Lesson,
    LessonFilter, LessonProgress, ProfileChange, ProgressUpdate, UserRecord, check_id, new_user,
    refresh_user,
};
use crate::timestamp::Timestamp;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    uid TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS users_by_email ON users (json_extract(doc, '$.email'));
CREATE TABLE IF NOT EXISTS family_links (
    uid TEXT NOT NULL,
    child_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (uid, child_id)
);
CREATE INDEX IF NOT EXISTS family_links_by_child ON family_links (child_id);
CREATE TABLE IF NOT EXISTS children (
    child_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lesson_progress (
    id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL,
    lesson_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lesson_progress_by_child ON lesson_progress (child_id);
CREATE TABLE IF NOT EXISTS lessons (
    lesson_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    child_id TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_child ON sessions (child_id);
";

/// Cold state in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteColdStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteColdStore {
    /// Opens (creating if needed) the database file and its tables.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, ColdError> {
        let path = path.as_ref().to_path_buf();
        let opened = path.clone();
        let connection = tokio::task::spawn_blocking(move || -> rusqlite::Result<Connection> {
            if let Some(dir) = opened.parent().filter(|d| !d.as_os_str().is_empty()) {
                // A missing directory is reported by SQLite itself below.
                let _ = std::fs::create_dir_all(dir);
            }
            let connection = Connection::open(&opened)?;
            connection.busy_timeout(Duration::from_secs(5))?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
            connection.execute_batch(SCHEMA)?;
            Ok(connection)
        })
        .await
        .map_err(|e| ColdError::Unavailable(e.to_string()))?
        .map_err(|e| ColdError::Unavailable(format!("opening {}: {e}", path.display())))?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes an existing user in one transaction; [`ColdError::NotFound`] if there is none.
    async fn update_user(
        &self,
        user_id: &str,
        change: impl FnOnce(&mut UserRecord) + Send + 'static,
    ) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let user_id = user_id.to_owned();
        self.with(move |c| {
            transaction(c, |tx| {
                let mut user: UserRecord =
                    one(tx, "SELECT doc FROM users WHERE uid = ?1", [&user_id])?
                        .ok_or_else(|| ColdError::NotFound(format!("users/{user_id}")))?;
                change(&mut user);
                write_user(tx, &user)?;
                Ok(user)
            })
        })
        .await
    }

    /// Runs `work` with the connection on the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, ColdError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ColdError> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|e| ColdError::Unavailable(format!("sqlite task failed: {e}")))?
    }
}

fn db_error(err: rusqlite::Error) -> ColdError {
    ColdError::Unavailable(format!("sqlite: {err}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ColdError> {
    serde_json::to_string(value).map_err(|e| ColdError::Corrupt(e.to_string()))
}

fn from_json<T: DeserializeOwned>(raw: &str) -> Result<T, ColdError> {
    serde_json::from_str(raw).map_err(|e| ColdError::Corrupt(e.to_string()))
}

/// One document by key, decoded.
fn one<T: DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>, ColdError> {
    let raw: Option<String> =
        connection.query_row(sql, params, |row| row.get(0)).optional().map_err(db_error)?;
    raw.as_deref().map(from_json).transpose()
}

/// Every document a query returns, decoded, in the query's order.
fn all<T: DeserializeOwned>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, ColdError> {
    let mut statement = connection.prepare_cached(sql).map_err(db_error)?;
    let rows = statement.query_map(params, |row| row.get::<_, String>(0)).map_err(db_error)?;
    rows.map(|raw| from_json(&raw.map_err(db_error)?)).collect()
}

fn write_user(connection: &Connection, user: &UserRecord) -> Result<(), ColdError> {
    connection
        .execute(
            "INSERT INTO users (uid, doc) VALUES (?1, ?2)
             ON CONFLICT (uid) DO UPDATE SET doc = excluded.doc",
            params![user.user_id, to_json(user)?],
        )
        .map_err(db_error)?;
    Ok(())
}

fn write_link(connection: &Connection, link: &FamilyLink) -> Result<(), ColdError> {
    connection
        .execute(
            "INSERT INTO family_links (uid, child_id, created_at, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (uid, child_id) DO UPDATE SET doc = excluded.doc",
            params![link.user_id, link.child_id, link.created_at.to_string(), to_json(link)?],
        )
        .map_err(db_error)?;
    Ok(())
}

fn write_progress(connection: &Connection, progress: &LessonProgress) -> Result<(), ColdError> {
    connection
        .execute(
            "INSERT INTO lesson_progress (id, child_id, lesson_id, updated_at, doc)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, doc = excluded.doc",
            params![
                LessonProgress::document_id(&progress.child_id, &progress.lesson_id),
                progress.child_id,
                progress.lesson_id,
                progress.updated_at.to_string(),
                to_json(progress)?
            ],
        )
        .map_err(db_error)?;
    Ok(())
}

/// Runs `work` inside one `BEGIN IMMEDIATE` transaction, committed only if it succeeds.
fn transaction<T>(
    connection: &mut Connection,
    work: impl FnOnce(&Connection) -> Result<T, ColdError>,
) -> Result<T, ColdError> {
    let tx =
        connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    let value = work(&tx)?;
    tx.commit().map_err(db_error)?;
    Ok(value)
}

#[async_trait]
impl ColdStore for SqliteColdStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), ColdError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error)).await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, ColdError> {
        check_id("user_id", user_id)?;
        let user_id = user_id.to_owned();
        self.with(move |c| one(c, "SELECT doc FROM users WHERE uid = ?1", [user_id])).await
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        let user_id = user_id.to_owned();
        self.with(move |c| {
            transaction(c, |tx| {
                tx.execute("DELETE FROM family_links WHERE uid = ?1", [&user_id])
                    .map_err(db_error)?;
                tx.execute("DELETE FROM users WHERE uid = ?1", [&user_id])
                    .map(|n| n > 0)
                    .map_err(db_error)
            })
        })
        .await
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
        self.with(move |c| {
            transaction(c, |tx| {
                let now = Timestamp::now();
                let user = match one::<UserRecord>(
                    tx,
                    "SELECT doc FROM users WHERE uid = ?1",
                    [&user_id],
                )? {
                    Some(mut user) => {
                        refresh_user(&mut user, &email, &display_name, now);
                        user
                    }
                    None => new_user(&user_id, &email, &display_name, now),
                };
                write_user(tx, &user)?;
                Ok(user)
            })
        })
        .await
    }

    async fn update_last_login(&self, user_id: &str) -> Result<UserRecord, ColdError> {
        self.update_user(user_id, |user| user.last_login_at = Timestamp::now()).await
    }

    async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
    ) -> Result<UserRecord, ColdError> {
        let change = change.clone();
        self.update_user(user_id, move |user| change.apply(user)).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, ColdError> {
        if email.is_empty() {
            return Ok(None);
        }
        let email = email.to_owned();
        self.with(move |c| {
            one(c, "SELECT doc FROM users WHERE json_extract(doc, '$.email') = ?1 LIMIT 1", [email])
        })
        .await
    }

    async fn list_child_links(&self, child_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| {
            all(
                c,
                "SELECT doc FROM family_links WHERE child_id = ?1 ORDER BY created_at, uid",
                [child_id],
            )
        })
        .await
    }

    async fn list_links(&self, user_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("user_id", user_id)?;
        let user_id = user_id.to_owned();
        self.with(move |c| {
            all(
                c,
                "SELECT doc FROM family_links WHERE uid = ?1 ORDER BY created_at, child_id",
                [user_id],
            )
        })
        .await
    }

    async fn get_link(
        &self,
        user_id: &str,
        child_id: &str,
    ) -> Result<Option<FamilyLink>, ColdError> {
        check_id("user_id", user_id)?;
        check_id("child_id", child_id)?;
        let (user_id, child_id) = (user_id.to_owned(), child_id.to_owned());
        self.with(move |c| {
            one(
                c,
                "SELECT doc FROM family_links WHERE uid = ?1 AND child_id = ?2",
                [user_id, child_id],
            )
        })
        .await
    }

    async fn create_link_if_absent(
        &self,
        link: &FamilyLink,
    ) -> Result<(FamilyLink, bool), ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let link = link.clone();
        self.with(move |c| {
            transaction(c, |tx| {
                let existing: Option<FamilyLink> = one(
                    tx,
                    "SELECT doc FROM family_links WHERE uid = ?1 AND child_id = ?2",
                    [&link.user_id, &link.child_id],
                )?;
                if let Some(existing) = existing {
                    return Ok((existing, false));
                }
                write_link(tx, &link)?;
                Ok((link, true))
            })
        })
        .await
    }

    async fn grant_permission(&self, link: &FamilyLink) -> Result<FamilyLink, ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let link = link.clone();
        self.with(move |c| {
            transaction(c, |tx| {
                let stored = match one::<FamilyLink>(
                    tx,
                    "SELECT doc FROM family_links WHERE uid = ?1 AND child_id = ?2",
                    [&link.user_id, &link.child_id],
                )? {
                    Some(mut stored) => {
                        stored.permission = link.permission;
                        stored.granted_by = link.granted_by;
                        stored
                    }
                    None => link,
                };
                write_link(tx, &stored)?;
                Ok(stored)
            })
        })
        .await
    }

    async fn revoke_link(&self, user_id: &str, child_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        check_id("child_id", child_id)?;
        let (user_id, child_id) = (user_id.to_owned(), child_id.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM family_links WHERE uid = ?1 AND child_id = ?2",
                [user_id, child_id],
            )
            .map(|n| n > 0)
            .map_err(db_error)
        })
        .await
    }

    async fn get_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| one(c, "SELECT doc FROM children WHERE child_id = ?1", [child_id])).await
    }

    async fn get_children(&self, child_ids: &[String]) -> Result<Vec<ChildRecord>, ColdError> {
        for id in child_ids {
            check_id("child_id", id)?;
        }
        let ids = child_ids.to_vec();
        self.with(move |c| {
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(child) = one(c, "SELECT doc FROM children WHERE child_id = ?1", [id])? {
                    found.push(child);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn create_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        let (id, doc) = (child.child_id.clone(), to_json(child)?);
        self.with(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO children (child_id, doc) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    [&id, &doc],
                )
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(ColdError::AlreadyExists(format!("children/{id}")));
            }
            Ok(())
        })
        .await
    }

    async fn put_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        let (id, doc) = (child.child_id.clone(), to_json(child)?);
        self.with(move |c| {
            let updated = c
                .execute("UPDATE children SET doc = ?2 WHERE child_id = ?1", [&id, &doc])
                .map_err(db_error)?;
            if updated == 0 {
                return Err(ColdError::NotFound(format!("children/{id}")));
            }
            Ok(())
        })
        .await
    }

    async fn soft_delete_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| {
            transaction(c, |tx| {
                let Some(mut child) = one::<ChildRecord>(
                    tx,
                    "SELECT doc FROM children WHERE child_id = ?1",
                    [&child_id],
                )?
                else {
                    return Ok(None);
                };
                if child.deleted_at.is_none() {
                    let now = Timestamp::now();
                    child.deleted_at = Some(now);
                    child.updated_at = now;
                    tx.execute(
                        "UPDATE children SET doc = ?2 WHERE child_id = ?1",
                        [&child_id, &to_json(&child)?],
                    )
                    .map_err(db_error)?;
                }
                Ok(Some(child))
            })
        })
        .await
    }

    async fn get_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
    ) -> Result<Option<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        check_id("lesson_id", lesson_id)?;
        let id = LessonProgress::document_id(child_id, lesson_id);
        self.with(move |c| one(c, "SELECT doc FROM lesson_progress WHERE id = ?1", [id])).await
    }

    async fn list_progress(&self, child_id: &str) -> Result<Vec<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| {
            all(
                c,
                "SELECT doc FROM lesson_progress WHERE child_id = ?1
                 ORDER BY updated_at DESC, lesson_id",
                [child_id],
            )
        })
        .await
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
        self.with(move |c| {
            transaction(c, |tx| {
                let id = LessonProgress::document_id(&child_id, &lesson_id);
                let mut progress = one::<LessonProgress>(
                    tx,
                    "SELECT doc FROM lesson_progress WHERE id = ?1",
                    [&id],
                )?
                .unwrap_or_else(|| LessonProgress::new(&child_id, &lesson_id));
                progress.apply(update, Timestamp::now());
                write_progress(tx, &progress)?;
                Ok(progress)
            })
        })
        .await
    }

    async fn list_lessons(&self, filter: &LessonFilter) -> Result<Vec<Lesson>, ColdError> {
        let filter = filter.clone();
        let lessons: Vec<Lesson> =
            self.with(|c| all(c, "SELECT doc FROM lessons ORDER BY lesson_id", [])).await?;
        Ok(lessons.into_iter().filter(|l| filter.matches(l)).collect())
    }

    async fn get_lesson(&self, lesson_id: &str) -> Result<Option<Lesson>, ColdError> {
        check_id("lesson_id", lesson_id)?;
        let lesson_id = lesson_id.to_owned();
        self.with(move |c| one(c, "SELECT doc FROM lessons WHERE lesson_id = ?1", [lesson_id]))
            .await
    }

    async fn put_lesson(&self, lesson: &Lesson) -> Result<(), ColdError> {
        check_id("lesson_id", &lesson.lesson_id)?;
        let (id, doc) = (lesson.lesson_id.clone(), to_json(lesson)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO lessons (lesson_id, doc) VALUES (?1, ?2)
                 ON CONFLICT (lesson_id) DO UPDATE SET doc = excluded.doc",
                [id, doc],
            )
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    async fn archive_session(&self, session: &ArchivedSession) -> Result<(), ColdError> {
        check_id("session_id", &session.session.session_id)?;
        let doc = to_json(session)?;
        let (id, child_id, ended_at) = (
            session.session.session_id.clone(),
            session.session.child_id.clone(),
            session.ended_at,
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO sessions (session_id, child_id, ended_at, doc) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (session_id) DO UPDATE
                 SET child_id = excluded.child_id, ended_at = excluded.ended_at, doc = excluded.doc",
                [id, child_id, ended_at.to_string(), doc],
            )
            .map(drop)
            .map_err(db_error)
        })
        .await
    }

    async fn list_archived_sessions(
        &self,
        child_id: &str,
    ) -> Result<Vec<ArchivedSession>, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| {
            all(
                c,
                "SELECT doc FROM sessions WHERE child_id = ?1 ORDER BY ended_at DESC, session_id",
                [child_id],
            )
        })
        .await
    }

    async fn erase_child(&self, child_id: &str) -> Result<ErasureCounts, ColdError> {
        check_id("child_id", child_id)?;
        let child_id = child_id.to_owned();
        self.with(move |c| {
            transaction(c, |tx| {
                let delete = |sql: &str| -> Result<u32, ColdError> {
                    tx.execute(sql, [&child_id]).map(|n| n as u32).map_err(db_error)
                };
                Ok(ErasureCounts {
                    children: delete("DELETE FROM children WHERE child_id = ?1")?,
                    family_links: delete("DELETE FROM family_links WHERE child_id = ?1")?,
                    progress: delete("DELETE FROM lesson_progress WHERE child_id = ?1")?,
                    sessions: delete("DELETE FROM sessions WHERE child_id = ?1")?,
                })
            })
        })
        .await
    }
}
