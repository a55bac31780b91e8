//! The `blob.session.v1.SessionStore` gRPC service.

use std::sync::Arc;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::session_store_server::SessionStore;
use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::cold::{
    ArchivedSession, ChildRecord, ColdError, ColdStore, FamilyLink, LessonFilter, Permission,
    ProgressUpdate,
};
use crate::convert::{
    access_proto, lesson_proto, link_proto, progress_proto, required_permission, user_proto,
};
use crate::hot::{EventRecord, HotError, HotStore, Idempotency, OpenOutcome, Transition};
use crate::metrics::SessionMetrics;
use crate::record::{SessionRecord, TurnRecord, now_rfc3339, unix_ms};
use crate::signals::Signals;

/// Longest child name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest display name accepted, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// Grades accepted: pre-kindergarten (-1) to grade 12.
const GRADES: std::ops::RangeInclusive<i32> = -1..=12;
/// Most turns one append may carry.
const MAX_TURNS_PER_APPEND: usize = 16;
/// Longest text of one turn, in bytes.
const MAX_TURN_BYTES: usize = 16 * 1024;
/// Pauses kept with a conversation (the stt-service sends its newest 32).
const MAX_PAUSES: usize = 32;

/// Most events one `RecordEvents` call may carry.
const MAX_EVENTS_PER_CALL: usize = 64;
/// Largest response kept for an idempotency key, in bytes.
const MAX_IDEMPOTENT_BODY_BYTES: usize = 256 * 1024;
/// Largest stored event, in bytes.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The service: hot state in Redis, cold state behind a trait object, signals fanned out.
#[derive(Clone)]
pub struct SessionService {
    hot: HotStore,
    cold: Arc<dyn ColdStore>,
    signals: Arc<Signals>,
    metrics: SessionMetrics,
}

impl SessionService {
    /// A service over the two stores and the signal fan-out.
    pub fn new(
        hot: HotStore,
        cold: Arc<dyn ColdStore>,
        signals: Arc<Signals>,
        metrics: SessionMetrics,
    ) -> Self {
        Self { hot, cold, signals, metrics }
    }

    fn hot_error(&self, err: HotError) -> Status {
        if matches!(err, HotError::Unavailable(_) | HotError::Corrupt(_)) {
            self.metrics.store_error("redis");
        }
        hot_status(err)
    }

    fn cold_error(&self, err: ColdError) -> Status {
        self.metrics.store_error("cold");
        cold_status(err)
    }

    /// The child and the caller's permission on it, read from the stored family link on every
    /// call (never from token claims), so a revoked link stops access at once.
    async fn require_permission(
        &self,
        user_id: &str,
        child_id: &str,
        at_least: Permission,
    ) -> Result<(ChildRecord, Permission), Status> {
        required(user_id, "user_id")?;
        required(child_id, "child_id")?;
        let link = self.cold.get_link(user_id, child_id).await.map_err(|e| self.cold_error(e))?;
        // Another family's child looks exactly like a child that does not exist.
        let not_found = || ErrorKind::NotFound.status("child not found");
        let Some(link) = link else { return Err(not_found()) };
        let child = self.cold.get_child(child_id).await.map_err(|e| self.cold_error(e))?;
        let Some(child) = child.filter(|c| c.deleted_at.is_none()) else {
            return Err(not_found());
        };
        if link.permission < at_least {
            return Err(ErrorKind::PermissionDenied.status(format!(
                "this needs {} access to the child",
                required_permission(at_least)
            )));
        }
        Ok((child, link.permission))
    }

    /// Ends a session: archives it, removes its hot keys, and tells its sockets.
    async fn finish_session(&self, record: &SessionRecord) -> Result<(), Status> {
        let turn_count = match self.hot.conversation(&record.conversation_id, &record.user_id).await
        {
            Ok(conversation) => conversation.turns.len() as u32,
            Err(HotError::NotFound) => 0,
            Err(other) => return Err(self.hot_error(other)),
        };
        let mut archived = record.clone();
        archived.state = "ended".to_owned();
        let now = now_rfc3339();
        archived.last_activity_at.clone_from(&now);
        let archived = ArchivedSession { session: archived, ended_at: now, turn_count };
        // Archive first: if the cold store fails, the hot state is still there to retry with.
        self.cold.archive_session(&archived).await.map_err(|e| self.cold_error(e))?;
        self.hot.remove(record).await.map_err(|e| self.hot_error(e))?;
        self.announce_end(&record.session_id).await;
        Ok(())
    }

    async fn announce_end(&self, session_id: &str) {
        if let Err(err) = self.hot.publish_ended(session_id).await {
            tracing::warn!(error = %err, "could not announce the end of the session");
        }
    }

    fn session(&self, record: &crate::record::SessionRecord) -> pb::Session {
        record.to_proto(self.hot.ttl())
    }
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(ErrorKind::InvalidArgument.status(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

fn check_idempotency_key(key: &str) -> Result<(), Status> {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ErrorKind::InvalidArgument
            .status("an idempotency key is 1-128 visible ASCII characters"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<&str, Status> {
    let name = required(name.trim(), "name")?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ErrorKind::InvalidArgument
            .status(format!("name must be at most {MAX_NAME_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ErrorKind::InvalidArgument.status("name must not contain control characters"));
    }
    Ok(name)
}

fn check_grade(grade_level: i32) -> Result<(), Status> {
    if GRADES.contains(&grade_level) {
        Ok(())
    } else {
        Err(ErrorKind::InvalidArgument.status("grade_level must be between -1 and 12"))
    }
}

fn hot_status(err: HotError) -> Status {
    match err {
        HotError::NotFound => ErrorKind::NotFound.status("session not found"),
        HotError::Forbidden => {
            ErrorKind::PermissionDenied.status("session belongs to another user")
        }
        HotError::Stale => {
            ErrorKind::FailedPrecondition.status("a newer connection holds this session")
        }
        HotError::Unavailable(err) => {
            tracing::error!(error = %err, "redis unavailable");
            blob_kit::error::dependency_unavailable("redis", "session store unavailable")
        }
        HotError::Corrupt(detail) => {
            tracing::error!(%detail, "unreadable hot state");
            ErrorKind::Internal.status("internal error")
        }
    }
}

fn cold_status(err: ColdError) -> Status {
    match err {
        ColdError::InvalidId(detail) => ErrorKind::InvalidArgument.status(detail),
        ColdError::NotFound(_) => ErrorKind::NotFound.status("not found"),
        ColdError::AlreadyExists(_) => ErrorKind::Conflict.status("already exists"),
        ColdError::Corrupt(detail) => {
            tracing::error!(%detail, "unreadable cold state");
            ErrorKind::Internal.status("internal error")
        }
        ColdError::Unavailable(detail) => {
            tracing::error!(%detail, "cold store unavailable");
            blob_kit::error::dependency_unavailable("cold_store", "cold store unavailable")
        }
    }
}

#[tonic::async_trait]
impl SessionStore for SessionService {
    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().uid))]
    async fn upsert_user(
        &self,
        request: Request<pb::UpsertUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.uid, "uid")?;
        let user = self
            .cold
            .upsert_user(&req.uid, &req.email, &req.display_name)
            .await
            .map_err(|e| self.cold_error(e))?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn list_children(
        &self,
        request: Request<pb::ListChildrenRequest>,
    ) -> Result<Response<pb::ListChildrenResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let links = self.cold.list_links(&req.user_id).await.map_err(|e| self.cold_error(e))?;
        let ids: Vec<String> = links.iter().map(|l| l.child_id.clone()).collect();
        let children = self.cold.get_children(&ids).await.map_err(|e| self.cold_error(e))?;
        let mut by_id: std::collections::HashMap<String, ChildRecord> =
            children.into_iter().map(|c| (c.child_id.clone(), c)).collect();
        let children = links
            .into_iter()
            .filter_map(|link| {
                let child = by_id.remove(&link.child_id)?;
                child.deleted_at.is_none().then(|| access_proto(child, link.permission))
            })
            .collect();
        Ok(Response::new(pb::ListChildrenResponse { children }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn create_child(
        &self,
        request: Request<pb::CreateChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let name = check_name(&req.name)?;
        check_grade(req.grade_level)?;
        let now = now_rfc3339();
        let child = ChildRecord {
            child_id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            grade_level: req.grade_level,
            created_by: req.user_id.clone(),
            created_at: now.clone(),
            updated_at: now.clone(),
            deleted_at: None,
        };
        self.cold.create_child(&child).await.map_err(|e| self.cold_error(e))?;
        let link = FamilyLink {
            uid: req.user_id.clone(),
            child_id: child.child_id.clone(),
            permission: Permission::Manage,
            granted_by: req.user_id,
            created_at: now,
        };
        // Without its link the new profile is unreachable by anyone: a retry creates another.
        self.cold.create_link_if_absent(&link).await.map_err(|e| self.cold_error(e))?;
        Ok(Response::new(access_proto(child, Permission::Manage)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_child(
        &self,
        request: Request<pb::GetChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (child, permission) =
            self.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        Ok(Response::new(access_proto(child, permission)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        required(&req.child_id, "child_id")?;
        self.require_permission(&req.user_id, &req.child_id, Permission::Interact).await?;
        let mode = if req.mode.is_empty() { "conversation" } else { req.mode.as_str() };
        let (outcome, record) = self
            .hot
            .open(&req.user_id, &req.child_id, mode)
            .await
            .map_err(|e| self.hot_error(e))?;
        tracing::info!(session_id = %record.session_id, ?outcome, "session opened");
        let label = match outcome {
            OpenOutcome::Created => "created",
            OpenOutcome::Discovered => "discovered",
            OpenOutcome::Resumed => "resumed",
        };
        self.metrics.opened.get_or_create(&vec![("outcome", label)]).inc();
        let outcome = match outcome {
            OpenOutcome::Created => pb::OpenOutcome::Created,
            OpenOutcome::Discovered => pb::OpenOutcome::Discovered,
            OpenOutcome::Resumed => pb::OpenOutcome::Resumed,
        };
        Ok(Response::new(pb::OpenSessionResponse {
            session: Some(self.session(&record)),
            outcome: outcome.into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        let record = self.hot.get(&req.session_id).await.map_err(|e| self.hot_error(e))?;
        Ok(Response::new(self.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn attach_session(
        &self,
        request: Request<pb::AttachSessionRequest>,
    ) -> Result<Response<pb::AttachSessionResponse>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        // The family link is checked on every attach, so revoked access cannot reconnect.
        let current = self.hot.get(&req.session_id).await.map_err(|e| self.hot_error(e))?;
        if current.user_id != req.user_id {
            return Err(hot_status(HotError::Forbidden));
        }
        self.require_permission(&req.user_id, &current.child_id, Permission::Interact).await?;
        let (was_suspended, record) = self
            .hot
            .transition(&req.session_id, &req.user_id, Transition::Attach, 0)
            .await
            .map_err(|e| self.hot_error(e))?;
        let conversation = self
            .hot
            .conversation(&record.conversation_id, &record.user_id)
            .await
            .map_err(|e| self.hot_error(e))?;
        let (last_event_seq, replay) = self
            .hot
            .events_after(&req.session_id, req.replay_after_seq)
            .await
            .map_err(|e| self.hot_error(e))?;
        let resumed =
            was_suspended || record.connection_count > 1 || !conversation.turns.is_empty();
        tracing::info!(
            resumed,
            epoch = record.connection_count,
            turns = conversation.turns.len(),
            replayed = replay.len(),
            "socket attached"
        );
        Ok(Response::new(pb::AttachSessionResponse {
            session: Some(self.session(&record)),
            resumed,
            turns: conversation.turns.iter().map(TurnRecord::to_proto).collect(),
            epoch: record.connection_count,
            last_event_seq,
            replay: replay
                .into_iter()
                .map(|e| pb::StoredEvent { seq: e.seq, json: e.json })
                .collect(),
            pause_profile: Some(pb::PauseProfile { pauses_ms: conversation.pauses_ms }),
        }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn suspend_session(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        let (_, record) = self
            .hot
            .transition(&req.session_id, &req.user_id, Transition::Suspend, req.epoch)
            .await
            .map_err(|e| self.hot_error(e))?;
        Ok(Response::new(self.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn resume_session(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        let (_, record) = self
            .hot
            .transition(&req.session_id, &req.user_id, Transition::Resume, 0)
            .await
            .map_err(|e| self.hot_error(e))?;
        Ok(Response::new(self.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn end_session(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        let mut record = self.hot.get(&req.session_id).await.map_err(|e| self.hot_error(e))?;
        if !req.user_id.is_empty() && record.user_id != req.user_id {
            return Err(hot_status(HotError::Forbidden));
        }
        self.finish_session(&record).await?;
        record.state = "ended".to_owned();
        Ok(Response::new(self.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn set_paused(
        &self,
        request: Request<pb::SetPausedRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        let transition = if req.paused { Transition::Pause } else { Transition::Unpause };
        let (_, record) = self
            .hot
            .transition(&req.session_id, &req.user_id, transition, 0)
            .await
            .map_err(|e| self.hot_error(e))?;
        Ok(Response::new(self.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %request.get_ref().conversation_id))]
    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let req = request.into_inner();
        required(&req.conversation_id, "conversation_id")?;
        required(&req.user_id, "user_id")?;
        let record = self.hot.conversation(&req.conversation_id, &req.user_id).await.map_err(
            |err| match err {
                // Someone else's conversation is reported like a missing one.
                HotError::Forbidden => ErrorKind::NotFound.status("conversation not found"),
                other => hot_status(other),
            },
        )?;
        Ok(Response::new(pb::Conversation {
            conversation_id: record.conversation_id,
            owner_user_id: record.owner_user_id,
            turns: record.turns.iter().map(TurnRecord::to_proto).collect(),
        }))
    }

    #[tracing::instrument(name = "session.append_turn", skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn append_turns(
        &self,
        request: Request<pb::AppendTurnsRequest>,
    ) -> Result<Response<pb::AppendTurnsResponse>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        if req.turns.is_empty() || req.turns.len() > MAX_TURNS_PER_APPEND {
            return Err(ErrorKind::InvalidArgument
                .status(format!("append 1 to {MAX_TURNS_PER_APPEND} turns at a time")));
        }
        let mut turns = Vec::with_capacity(req.turns.len());
        for turn in &req.turns {
            if turn.user_text.len() + turn.assistant_text.len() > MAX_TURN_BYTES {
                return Err(ErrorKind::InvalidArgument.status("turn text too long"));
            }
            if turn.user_text.trim().is_empty() {
                return Err(ErrorKind::InvalidArgument.status("user_text is required"));
            }
            turns.push(TurnRecord::from_proto(turn));
        }
        let pauses = req.pause_profile.map(|profile| profile.pauses_ms);
        if pauses.as_ref().is_some_and(|p| p.len() > MAX_PAUSES || p.iter().any(|&ms| ms > 60_000))
        {
            return Err(ErrorKind::InvalidArgument
                .status(format!("pause_profile holds at most {MAX_PAUSES} pauses of up to 60 s")));
        }
        let turn_count = self
            .hot
            .append(&req.session_id, &req.user_id, &turns, pauses.as_deref())
            .await
            .map_err(|e| self.hot_error(e))?;
        Ok(Response::new(pb::AppendTurnsResponse { turn_count }))
    }

    type WatchSessionStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SessionSignal, Status>> + Send>>;

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        // Subscribe before checking, so nothing published in between is missed.
        let receiver = self.signals.watch(&req.session_id);
        let record = self.hot.get(&req.session_id).await.map_err(|e| self.hot_error(e))?;
        if record.user_id != req.user_id {
            return Err(hot_status(HotError::Forbidden));
        }
        let stream = tokio_stream::wrappers::BroadcastStream::new(receiver)
            .filter_map(|item| std::future::ready(item.ok().map(Ok)));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn record_events(
        &self,
        request: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        if req.events.is_empty() || req.events.len() > MAX_EVENTS_PER_CALL {
            return Err(ErrorKind::InvalidArgument
                .status(format!("record 1 to {MAX_EVENTS_PER_CALL} events at a time")));
        }
        if req.events.iter().any(|e| e.json.len() > MAX_EVENT_BYTES || e.seq == 0) {
            return Err(ErrorKind::InvalidArgument.status("events need a seq and at most 64 KiB"));
        }
        let events: Vec<EventRecord> =
            req.events.into_iter().map(|e| EventRecord { seq: e.seq, json: e.json }).collect();
        self.hot
            .record_events(&req.session_id, &req.user_id, &events)
            .await
            .map_err(|e| self.hot_error(e))?;
        let last_event_seq = events.iter().map(|e| e.seq).max().unwrap_or_default();
        Ok(Response::new(pb::RecordEventsResponse { last_event_seq }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn trim_turn(
        &self,
        request: Request<pb::TrimTurnRequest>,
    ) -> Result<Response<pb::AppendTurnsResponse>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        required(&req.request_id, "request_id")?;
        let session = self.hot.get(&req.session_id).await.map_err(|e| self.hot_error(e))?;
        let conversation = self
            .hot
            .conversation(&session.conversation_id, &req.user_id)
            .await
            .map_err(|e| self.hot_error(e))?;
        let turn = conversation
            .turns
            .iter()
            .rev()
            .find(|t| t.request_id == req.request_id)
            .ok_or_else(|| ErrorKind::NotFound.status("no exchange with that request_id"))?;
        let heard: String =
            turn.assistant_text.chars().take(req.assistant_chars as usize).collect();
        let turn_count = self
            .hot
            .trim(&req.session_id, &req.user_id, &req.request_id, &heard)
            .await
            .map_err(|e| self.hot_error(e))?;
        Ok(Response::new(pb::AppendTurnsResponse { turn_count }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().uid))]
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.uid, "uid")?;
        let user = self.cold.get_user(&req.uid).await.map_err(|e| self.cold_error(e))?;
        let user = user.ok_or_else(|| ErrorKind::NotFound.status("user not found"))?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().uid))]
    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.uid, "uid")?;
        let user = match req.display_name {
            Some(name) => {
                let name = name.trim();
                if name.chars().count() > MAX_DISPLAY_NAME_CHARS
                    || name.chars().any(char::is_control)
                {
                    return Err(ErrorKind::InvalidArgument.status(format!(
                        "display_name must be at most {MAX_DISPLAY_NAME_CHARS} printable characters"
                    )));
                }
                self.cold.set_display_name(&req.uid, name).await
            }
            None => self
                .cold
                .get_user(&req.uid)
                .await
                .and_then(|u| u.ok_or_else(|| ColdError::NotFound(req.uid.clone()))),
        };
        let user = user.map_err(|e| match e {
            ColdError::NotFound(_) => ErrorKind::NotFound.status("user not found"),
            other => self.cold_error(other),
        })?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn update_child(
        &self,
        request: Request<pb::UpdateChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (mut child, permission) =
            self.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        if let Some(name) = &req.name {
            child.name = check_name(name)?.to_owned();
        }
        if let Some(grade_level) = req.grade_level {
            check_grade(grade_level)?;
            child.grade_level = grade_level;
        }
        child.updated_at = now_rfc3339();
        self.cold.put_child(&child).await.map_err(|e| match e {
            ColdError::NotFound(_) => ErrorKind::NotFound.status("child not found"),
            other => self.cold_error(other),
        })?;
        Ok(Response::new(access_proto(child, permission)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn delete_child(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (_, permission) =
            self.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        // The child's conversation ends with the profile.
        if let Some(session) =
            self.hot.child_session(&req.child_id).await.map_err(|e| self.hot_error(e))?
        {
            self.finish_session(&session).await?;
        }
        let child = self
            .cold
            .soft_delete_child(&req.child_id)
            .await
            .map_err(|e| self.cold_error(e))?
            .ok_or_else(|| ErrorKind::NotFound.status("child not found"))?;
        tracing::info!("child profile deleted");
        Ok(Response::new(access_proto(child, permission)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn grant_permission(
        &self,
        request: Request<pb::GrantPermissionRequest>,
    ) -> Result<Response<pb::FamilyLink>, Status> {
        let req = request.into_inner();
        self.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        required(&req.grantee_user_id, "grantee_user_id")?;
        let permission = Permission::from_proto(req.permission)
            .ok_or_else(|| ErrorKind::InvalidArgument.status("permission is required"))?;
        if req.grantee_user_id == req.user_id {
            return Err(ErrorKind::InvalidArgument.status("you cannot change your own access"));
        }
        let link = FamilyLink {
            uid: req.grantee_user_id,
            child_id: req.child_id,
            permission,
            granted_by: req.user_id,
            created_at: now_rfc3339(),
        };
        let stored = self.cold.grant_permission(&link).await.map_err(|e| self.cold_error(e))?;
        tracing::info!(grantee = %stored.uid, ?permission, "permission granted");
        Ok(Response::new(link_proto(stored)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn revoke_permission(
        &self,
        request: Request<pb::RevokePermissionRequest>,
    ) -> Result<Response<pb::RevokePermissionResponse>, Status> {
        let req = request.into_inner();
        self.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        required(&req.grantee_user_id, "grantee_user_id")?;
        if req.grantee_user_id == req.user_id {
            return Err(ErrorKind::InvalidArgument.status("you cannot revoke your own access"));
        }
        let revoked = self
            .cold
            .revoke_link(&req.grantee_user_id, &req.child_id)
            .await
            .map_err(|e| self.cold_error(e))?;
        // A session the revoked user holds for the child ends now, closing their socket.
        if let Some(session) =
            self.hot.child_session(&req.child_id).await.map_err(|e| self.hot_error(e))?
            && session.user_id == req.grantee_user_id
        {
            self.finish_session(&session).await?;
        }
        tracing::info!(grantee = %req.grantee_user_id, revoked, "permission revoked");
        Ok(Response::new(pb::RevokePermissionResponse { revoked }))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn erase_child_data(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ErasureReceipt>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        required(&req.child_id, "child_id")?;
        // A soft-deleted profile can still be erased by whoever manages it.
        let link = self
            .cold
            .get_link(&req.user_id, &req.child_id)
            .await
            .map_err(|e| self.cold_error(e))?;
        match link {
            None => return Err(ErrorKind::NotFound.status("child not found")),
            Some(link) if link.permission < Permission::Manage => {
                return Err(
                    ErrorKind::PermissionDenied.status("this needs manage access to the child")
                );
            }
            Some(_) => {}
        }
        // Hot state first, so no socket keeps talking while the rest goes.
        let mut conversations = Vec::new();
        let mut hot_sessions = 0;
        if let Some(session) =
            self.hot.child_session(&req.child_id).await.map_err(|e| self.hot_error(e))?
        {
            if self.hot.remove(&session).await.map_err(|e| self.hot_error(e))? {
                hot_sessions += 1;
            }
            self.announce_end(&session.session_id).await;
            conversations.push(session.conversation_id);
        }
        let archived = self
            .cold
            .list_archived_sessions(&req.child_id)
            .await
            .map_err(|e| self.cold_error(e))?;
        conversations.extend(archived.into_iter().map(|a| a.session.conversation_id));
        conversations.sort_unstable();
        conversations.dedup();
        let removed_conversations =
            self.hot.delete_conversations(&conversations).await.map_err(|e| self.hot_error(e))?;
        let counts = self.cold.erase_child(&req.child_id).await.map_err(|e| self.cold_error(e))?;
        tracing::info!(?counts, hot_sessions, removed_conversations, "child data erased");
        Ok(Response::new(pb::ErasureReceipt {
            child_id: req.child_id,
            children: counts.children,
            family_links: counts.family_links,
            progress: counts.progress,
            archived_sessions: counts.sessions,
            hot_sessions,
            conversations: removed_conversations,
            erased_at_ms: unix_ms(&now_rfc3339()),
        }))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn list_progress(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ListProgressResponse>, Status> {
        let req = request.into_inner();
        self.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        let progress =
            self.cold.list_progress(&req.child_id).await.map_err(|e| self.cold_error(e))?;
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
        self.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        required(&req.lesson_id, "lesson_id")?;
        let progress = self
            .cold
            .get_progress(&req.child_id, &req.lesson_id)
            .await
            .map_err(|e| self.cold_error(e))?
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
        self.require_permission(&req.user_id, &req.child_id, Permission::Interact).await?;
        required(&req.lesson_id, "lesson_id")?;
        let lesson = self.cold.get_lesson(&req.lesson_id).await.map_err(|e| self.cold_error(e))?;
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
        let progress = self
            .cold
            .update_progress(&req.child_id, &req.lesson_id, update)
            .await
            .map_err(|e| self.cold_error(e))?;
        Ok(Response::new(progress_proto(progress)))
    }

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
        let lessons = self.cold.list_lessons(&filter).await.map_err(|e| self.cold_error(e))?;
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
        let lesson = self.cold.get_lesson(&req.lesson_id).await.map_err(|e| self.cold_error(e))?;
        let lesson = lesson.ok_or_else(|| ErrorKind::NotFound.status("lesson not found"))?;
        Ok(Response::new(lesson_proto(lesson)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_child_session(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ChildSessionResponse>, Status> {
        let req = request.into_inner();
        self.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        let session = self.hot.child_session(&req.child_id).await.map_err(|e| self.hot_error(e))?;
        Ok(Response::new(pb::ChildSessionResponse {
            session: session.as_ref().map(|s| self.session(s)),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn throttle(
        &self,
        request: Request<pb::ThrottleRequest>,
    ) -> Result<Response<pb::ThrottleResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        if req.limit == 0 || req.window_seconds == 0 {
            return Err(ErrorKind::InvalidArgument.status("limit and window_seconds must be set"));
        }
        let (count, seconds_left) = self
            .hot
            .throttle(&req.user_id, req.window_seconds)
            .await
            .map_err(|e| self.hot_error(e))?;
        let allowed = count <= u64::from(req.limit);
        Ok(Response::new(pb::ThrottleResponse {
            allowed,
            remaining: u64::from(req.limit).saturating_sub(count) as u32,
            retry_after_seconds: seconds_left,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_idempotent(
        &self,
        request: Request<pb::BeginIdempotentRequest>,
    ) -> Result<Response<pb::BeginIdempotentResponse>, Status> {
        let req = request.into_inner();
        check_idempotency_key(&req.key)?;
        required(&req.fingerprint, "fingerprint")?;
        let claim = req.claim_seconds.clamp(1, 300);
        let fingerprint = format!("{}:{}", req.owner, req.fingerprint);
        let found = self
            .hot
            .begin_idempotent(&req.key, &fingerprint, claim)
            .await
            .map_err(|e| self.hot_error(e))?;
        let (outcome, status, body) = match found {
            Idempotency::Claimed => (pb::IdempotencyOutcome::Claimed, 0, String::new()),
            Idempotency::InProgress => (pb::IdempotencyOutcome::InProgress, 0, String::new()),
            Idempotency::Mismatch => (pb::IdempotencyOutcome::Mismatch, 0, String::new()),
            Idempotency::Replay { status, body } => (pb::IdempotencyOutcome::Replay, status, body),
        };
        Ok(Response::new(pb::BeginIdempotentResponse { outcome: outcome.into(), status, body }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_idempotent(
        &self,
        request: Request<pb::CompleteIdempotentRequest>,
    ) -> Result<Response<pb::CompleteIdempotentResponse>, Status> {
        let req = request.into_inner();
        check_idempotency_key(&req.key)?;
        if req.body.len() > MAX_IDEMPOTENT_BODY_BYTES {
            return Err(ErrorKind::InvalidArgument.status("response too large to keep"));
        }
        let fingerprint = format!("{}:{}", req.owner, req.fingerprint);
        let response = req.store.then_some((req.status, req.body.as_str()));
        let ttl = req.ttl_seconds.clamp(1, 7 * 86_400);
        let ours = self
            .hot
            .complete_idempotent(&req.key, &fingerprint, response, ttl)
            .await
            .map_err(|e| self.hot_error(e))?;
        if !ours {
            tracing::warn!("idempotency claim expired before its response was stored");
        }
        Ok(Response::new(pb::CompleteIdempotentResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn check_stores(
        &self,
        _request: Request<pb::CheckStoresRequest>,
    ) -> Result<Response<pb::CheckStoresResponse>, Status> {
        let started = std::time::Instant::now();
        let redis = self.hot.ping().await;
        let redis_ms = started.elapsed().as_millis() as u32;
        let started = std::time::Instant::now();
        let cold = self.cold.ping().await;
        let cold_ms = started.elapsed().as_millis() as u32;
        let health = |name: &str, result: Result<(), String>, latency_ms| pb::StoreHealth {
            name: name.to_owned(),
            ok: result.is_ok(),
            latency_ms,
            detail: result.err().unwrap_or_default(),
        };
        Ok(Response::new(pb::CheckStoresResponse {
            stores: vec![
                health("redis", redis.map_err(|_| "unreachable".to_owned()), redis_ms),
                health(
                    "cold_store",
                    cold.map(drop).map_err(|_| format!("{} unreachable", self.cold.kind())),
                    cold_ms,
                ),
            ],
        }))
    }
}
