//! Cold state: users, children, family links and archived sessions.
//!
//! Everything the service needs from durable storage goes through [`ColdStore`], a trait of
//! domain-level operations, so the storage behind it can change without touching the service.
//! [`MemoryColdStore`] keeps everything in process memory: state lasts as long as the process.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use blob_proto::session::v1::Permission;
use tokio::sync::RwLock;

use crate::record::{SessionRecord, now_rfc3339};

/// A parent account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Firebase uid.
    pub uid: String,
    /// As given by the identity provider.
    pub email: String,
    /// As given by the identity provider.
    pub display_name: String,
    /// `parent`.
    pub role: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub last_login_at: String,
}

/// A child profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRecord {
    /// UUID.
    pub child_id: String,
    /// First name or nickname, as Blob says it.
    pub name: String,
    /// School grade, 0 = kindergarten.
    pub grade_level: i32,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A failure of the cold store.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// `UNAVAILABLE`: the store cannot be reached.
    #[error("cold store unavailable: {0}")]
    Unavailable(String),
}

/// Durable, domain-level state operations.
#[async_trait]
pub trait ColdStore: Send + Sync + 'static {
    /// Gets or creates the user and records the sign-in time.
    async fn upsert_user(
        &self,
        uid: &str,
        email: &str,
        display_name: &str,
    ) -> Result<UserRecord, ColdError>;
    /// The children linked to a user, with each link's permission, oldest first.
    async fn list_children(&self, uid: &str) -> Result<Vec<(ChildRecord, Permission)>, ColdError>;
    /// Creates a child and a `manage` family link from `uid`.
    async fn create_child(
        &self,
        uid: &str,
        name: &str,
        grade_level: i32,
    ) -> Result<ChildRecord, ColdError>;
    /// The child with the user's permission on it, or `None` without a family link.
    async fn child_for(
        &self,
        uid: &str,
        child_id: &str,
    ) -> Result<Option<(ChildRecord, Permission)>, ColdError>;
    /// Keeps an ended session.
    async fn archive_session(&self, session: &SessionRecord) -> Result<(), ColdError>;
}

/// Cold state in process memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryColdStore {
    inner: Arc<RwLock<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    users: HashMap<String, UserRecord>,
    children: HashMap<String, ChildRecord>,
    /// uid → [(child_id, permission)] in creation order.
    links: HashMap<String, Vec<(String, Permission)>>,
    sessions: HashMap<String, SessionRecord>,
}

#[async_trait]
impl ColdStore for MemoryColdStore {
    async fn upsert_user(
        &self,
        uid: &str,
        email: &str,
        display_name: &str,
    ) -> Result<UserRecord, ColdError> {
        let now = now_rfc3339();
        let mut memory = self.inner.write().await;
        let user = memory.users.entry(uid.to_owned()).or_insert_with(|| UserRecord {
            uid: uid.to_owned(),
            email: email.to_owned(),
            display_name: display_name.to_owned(),
            role: "parent".to_owned(),
            created_at: now.clone(),
            last_login_at: now.clone(),
        });
        user.last_login_at = now;
        if !email.is_empty() {
            user.email = email.to_owned();
        }
        if !display_name.is_empty() {
            user.display_name = display_name.to_owned();
        }
        Ok(user.clone())
    }

    async fn list_children(&self, uid: &str) -> Result<Vec<(ChildRecord, Permission)>, ColdError> {
        let memory = self.inner.read().await;
        let links = memory.links.get(uid).map(Vec::as_slice).unwrap_or_default();
        Ok(links
            .iter()
            .filter_map(|(id, permission)| Some((memory.children.get(id)?.clone(), *permission)))
            .collect())
    }

    async fn create_child(
        &self,
        uid: &str,
        name: &str,
        grade_level: i32,
    ) -> Result<ChildRecord, ColdError> {
        let child = ChildRecord {
            child_id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            grade_level,
            created_at: now_rfc3339(),
        };
        let mut memory = self.inner.write().await;
        memory.children.insert(child.child_id.clone(), child.clone());
        memory
            .links
            .entry(uid.to_owned())
            .or_default()
            .push((child.child_id.clone(), Permission::Manage));
        Ok(child)
    }

    async fn child_for(
        &self,
        uid: &str,
        child_id: &str,
    ) -> Result<Option<(ChildRecord, Permission)>, ColdError> {
        let memory = self.inner.read().await;
        let permission = memory
            .links
            .get(uid)
            .and_then(|links| links.iter().find(|(id, _)| id == child_id))
            .map(|(_, permission)| *permission);
        Ok(permission.and_then(|p| Some((memory.children.get(child_id)?.clone(), p))))
    }

    async fn archive_session(&self, session: &SessionRecord) -> Result<(), ColdError> {
        let mut archived = session.clone();
        archived.state = "ended".to_owned();
        self.inner.write().await.sessions.insert(archived.session_id.clone(), archived);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_scope_children_to_their_family() {
        let store = MemoryColdStore::default();
        let child = store.create_child("parent-a", "Mia", 1).await.unwrap();
        let (found, permission) =
            store.child_for("parent-a", &child.child_id).await.unwrap().unwrap();
        assert_eq!((found.name.as_str(), permission), ("Mia", Permission::Manage));
        assert!(store.child_for("parent-b", &child.child_id).await.unwrap().is_none());
        assert!(store.list_children("parent-b").await.unwrap().is_empty());
        assert_eq!(store.list_children("parent-a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn upsert_keeps_creation_time_and_updates_login() {
        let store = MemoryColdStore::default();
        let first = store.upsert_user("u1", "a@example.com", "A").await.unwrap();
        let second = store.upsert_user("u1", "", "").await.unwrap();
        assert_eq!(first.created_at, second.created_at);
        assert_eq!(second.email, "a@example.com");
        assert!(second.last_login_at >= first.last_login_at);
    }
}
