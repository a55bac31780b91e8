//! Cold state in process memory: lasts as long as the process. For fast unit tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::{
    ArchivedSession, ChildRecord, ColdError, ColdStore, ErasureCounts, FamilyLink, Lesson,
    LessonFilter, LessonProgress, ProfileChange, ProgressUpdate, UserRecord, check_id, new_user,
    refresh_user, sort_archived, sort_links, sort_progress,
};
use crate::timestamp::Timestamp;

/// Cold state in process memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryColdStore {
    inner: Arc<RwLock<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    users: HashMap<String, UserRecord>,
    /// (user_id, child_id) → link.
    links: BTreeMap<(String, String), FamilyLink>,
    children: HashMap<String, ChildRecord>,
    /// `{child_id}_{lesson_id}` → progress.
    progress: HashMap<String, LessonProgress>,
    lessons: BTreeMap<String, Lesson>,
    sessions: HashMap<String, ArchivedSession>,
}

#[async_trait]
impl ColdStore for MemoryColdStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), ColdError> {
        Ok(())
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, ColdError> {
        check_id("user_id", user_id)?;
        Ok(self.inner.read().await.users.get(user_id).cloned())
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        let mut inner = self.inner.write().await;
        inner.links.retain(|(uid, _), _| uid != user_id);
        Ok(inner.users.remove(user_id).is_some())
    }

    async fn upsert_user(
        &self,
        user_id: &str,
        email: &str,
        display_name: &str,
    ) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let now = Timestamp::now();
        let mut memory = self.inner.write().await;
        let user = match memory.users.get_mut(user_id) {
            Some(user) => {
                refresh_user(user, email, display_name, now);
                user.clone()
            }
            None => {
                let user = new_user(user_id, email, display_name, now);
                memory.users.insert(user_id.to_owned(), user.clone());
                user
            }
        };
        Ok(user)
    }

    async fn update_last_login(&self, user_id: &str) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let mut memory = self.inner.write().await;
        let user =
            memory.users.get_mut(user_id).ok_or_else(|| ColdError::NotFound(user_id.into()))?;
        user.last_login_at = Timestamp::now();
        Ok(user.clone())
    }

    async fn update_profile(
        &self,
        user_id: &str,
        change: &ProfileChange,
    ) -> Result<UserRecord, ColdError> {
        check_id("user_id", user_id)?;
        let mut memory = self.inner.write().await;
        let user =
            memory.users.get_mut(user_id).ok_or_else(|| ColdError::NotFound(user_id.into()))?;
        change.apply(user);
        Ok(user.clone())
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, ColdError> {
        if email.is_empty() {
            return Ok(None);
        }
        let memory = self.inner.read().await;
        let mut found: Vec<&UserRecord> =
            memory.users.values().filter(|u| u.email == email).collect();
        found.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(found.first().map(|u| (*u).clone()))
    }

    async fn list_child_links(&self, child_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("child_id", child_id)?;
        let memory = self.inner.read().await;
        let mut links: Vec<FamilyLink> =
            memory.links.values().filter(|l| l.child_id == child_id).cloned().collect();
        super::sort_child_links(&mut links);
        Ok(links)
    }

    async fn list_links(&self, user_id: &str) -> Result<Vec<FamilyLink>, ColdError> {
        check_id("user_id", user_id)?;
        let memory = self.inner.read().await;
        let mut links: Vec<FamilyLink> =
            memory.links.values().filter(|l| l.user_id == user_id).cloned().collect();
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
        let key = (user_id.to_owned(), child_id.to_owned());
        Ok(self.inner.read().await.links.get(&key).cloned())
    }

    async fn create_link_if_absent(
        &self,
        link: &FamilyLink,
    ) -> Result<(FamilyLink, bool), ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let key = (link.user_id.clone(), link.child_id.clone());
        let mut memory = self.inner.write().await;
        if let Some(existing) = memory.links.get(&key) {
            return Ok((existing.clone(), false));
        }
        memory.links.insert(key, link.clone());
        Ok((link.clone(), true))
    }

    async fn grant_permission(&self, link: &FamilyLink) -> Result<FamilyLink, ColdError> {
        check_id("user_id", &link.user_id)?;
        check_id("child_id", &link.child_id)?;
        let key = (link.user_id.clone(), link.child_id.clone());
        let mut memory = self.inner.write().await;
        let stored = memory.links.entry(key).or_insert_with(|| link.clone());
        stored.permission = link.permission;
        stored.granted_by.clone_from(&link.granted_by);
        Ok(stored.clone())
    }

    async fn revoke_link(&self, user_id: &str, child_id: &str) -> Result<bool, ColdError> {
        check_id("user_id", user_id)?;
        check_id("child_id", child_id)?;
        let key = (user_id.to_owned(), child_id.to_owned());
        Ok(self.inner.write().await.links.remove(&key).is_some())
    }

    async fn get_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        Ok(self.inner.read().await.children.get(child_id).cloned())
    }

    async fn get_children(&self, child_ids: &[String]) -> Result<Vec<ChildRecord>, ColdError> {
        for id in child_ids {
            check_id("child_id", id)?;
        }
        let memory = self.inner.read().await;
        Ok(child_ids.iter().filter_map(|id| memory.children.get(id).cloned()).collect())
    }

    async fn create_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        let mut memory = self.inner.write().await;
        if memory.children.contains_key(&child.child_id) {
            return Err(ColdError::AlreadyExists(format!("children/{}", child.child_id)));
        }
        memory.children.insert(child.child_id.clone(), child.clone());
        Ok(())
    }

    async fn put_child(&self, child: &ChildRecord) -> Result<(), ColdError> {
        check_id("child_id", &child.child_id)?;
        let mut memory = self.inner.write().await;
        match memory.children.get_mut(&child.child_id) {
            Some(stored) => {
                *stored = child.clone();
                Ok(())
            }
            None => Err(ColdError::NotFound(format!("children/{}", child.child_id))),
        }
    }

    async fn soft_delete_child(&self, child_id: &str) -> Result<Option<ChildRecord>, ColdError> {
        check_id("child_id", child_id)?;
        let now = Timestamp::now();
        let mut memory = self.inner.write().await;
        Ok(memory.children.get_mut(child_id).map(|child| {
            if child.deleted_at.is_none() {
                child.deleted_at = Some(now);
                child.updated_at = now;
            }
            child.clone()
        }))
    }

    async fn get_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
    ) -> Result<Option<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        check_id("lesson_id", lesson_id)?;
        let key = LessonProgress::document_id(child_id, lesson_id);
        Ok(self.inner.read().await.progress.get(&key).cloned())
    }

    async fn list_progress(&self, child_id: &str) -> Result<Vec<LessonProgress>, ColdError> {
        check_id("child_id", child_id)?;
        let memory = self.inner.read().await;
        let mut found: Vec<LessonProgress> =
            memory.progress.values().filter(|p| p.child_id == child_id).cloned().collect();
        sort_progress(&mut found);
        Ok(found)
    }

    async fn update_progress(
        &self,
        child_id: &str,
        lesson_id: &str,
        update: ProgressUpdate,
    ) -> Result<LessonProgress, ColdError> {
        check_id("child_id", child_id)?;
        check_id("lesson_id", lesson_id)?;
        let key = LessonProgress::document_id(child_id, lesson_id);
        let mut memory = self.inner.write().await;
        let progress =
            memory.progress.entry(key).or_insert_with(|| LessonProgress::new(child_id, lesson_id));
        progress.apply(update, Timestamp::now());
        Ok(progress.clone())
    }

    async fn list_lessons(&self, filter: &LessonFilter) -> Result<Vec<Lesson>, ColdError> {
        let memory = self.inner.read().await;
        Ok(memory.lessons.values().filter(|l| filter.matches(l)).cloned().collect())
    }

    async fn get_lesson(&self, lesson_id: &str) -> Result<Option<Lesson>, ColdError> {
        check_id("lesson_id", lesson_id)?;
        Ok(self.inner.read().await.lessons.get(lesson_id).cloned())
    }

    async fn put_lesson(&self, lesson: &Lesson) -> Result<(), ColdError> {
        check_id("lesson_id", &lesson.lesson_id)?;
        self.inner.write().await.lessons.insert(lesson.lesson_id.clone(), lesson.clone());
        Ok(())
    }

    async fn archive_session(&self, session: &ArchivedSession) -> Result<(), ColdError> {
        check_id("session_id", &session.session.session_id)?;
        let mut memory = self.inner.write().await;
        memory.sessions.insert(session.session.session_id.clone(), session.clone());
        Ok(())
    }

    async fn list_archived_sessions(
        &self,
        child_id: &str,
    ) -> Result<Vec<ArchivedSession>, ColdError> {
        check_id("child_id", child_id)?;
        let memory = self.inner.read().await;
        let mut found: Vec<ArchivedSession> =
            memory.sessions.values().filter(|s| s.session.child_id == child_id).cloned().collect();
        sort_archived(&mut found);
        Ok(found)
    }

    async fn erase_child(&self, child_id: &str) -> Result<ErasureCounts, ColdError> {
        check_id("child_id", child_id)?;
        let mut memory = self.inner.write().await;
        let mut counts = ErasureCounts {
            children: u32::from(memory.children.remove(child_id).is_some()),
            ..ErasureCounts::default()
        };
        let before = memory.links.len();
        memory.links.retain(|(_, child), _| child != child_id);
        counts.family_links = (before - memory.links.len()) as u32;
        let before = memory.progress.len();
        memory.progress.retain(|_, p| p.child_id != child_id);
        counts.progress = (before - memory.progress.len()) as u32;
        let before = memory.sessions.len();
        memory.sessions.retain(|_, s| s.session.child_id != child_id);
        counts.sessions = (before - memory.sessions.len()) as u32;
        Ok(counts)
    }
}
