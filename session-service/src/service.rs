//! The `blob.session.v1.SessionStore` gRPC service.

use std::sync::Arc;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::session_store_server::SessionStore;
use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::cold::{ChildRecord, ColdError, ColdStore, UserRecord};
use crate::hot::{EventRecord, HotError, HotStore, OpenOutcome, Transition};
use crate::metrics::SessionMetrics;
use crate::record::{TurnRecord, unix_ms};
use crate::signals::Signals;

/// Longest child name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Grades accepted: pre-kindergarten (-1) to grade 12.
const GRADES: std::ops::RangeInclusive<i32> = -1..=12;
/// Most turns one append may carry.
const MAX_TURNS_PER_APPEND: usize = 16;
/// Longest text of one turn, in bytes.
const MAX_TURN_BYTES: usize = 16 * 1024;

/// Most events one `RecordEvents` call may carry.
const MAX_EVENTS_PER_CALL: usize = 64;
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

    async fn require_permission(
        &self,
        user_id: &str,
        child_id: &str,
        at_least: pb::Permission,
    ) -> Result<(ChildRecord, pb::Permission), Status> {
        match self.cold.child_for(user_id, child_id).await.map_err(|e| self.cold_error(e))? {
            // Another family's child looks exactly like a child that does not exist.
            None => Err(ErrorKind::NotFound.status("child not found")),
            Some((_, permission)) if permission < at_least => {
                Err(ErrorKind::PermissionDenied
                    .status("this account may not do that for this child"))
            }
            Some(found) => Ok(found),
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
            ErrorKind::Unavailable.status("session store unavailable")
        }
        HotError::Corrupt(detail) => {
            tracing::error!(%detail, "unreadable hot state");
            ErrorKind::Internal.status("internal error")
        }
    }
}

fn cold_status(err: ColdError) -> Status {
    tracing::error!(error = %err, "cold store failure");
    ErrorKind::Unavailable.status("cold store unavailable")
}

fn user_proto(user: UserRecord) -> pb::User {
    pb::User {
        uid: user.uid,
        email: user.email,
        display_name: user.display_name,
        role: user.role,
        created_at_ms: unix_ms(&user.created_at),
        last_login_at_ms: unix_ms(&user.last_login_at),
    }
}

fn access_proto(child: ChildRecord, permission: pb::Permission) -> pb::ChildAccess {
    pb::ChildAccess {
        child: Some(pb::Child {
            created_at_ms: unix_ms(&child.created_at),
            child_id: child.child_id,
            name: child.name,
            grade_level: child.grade_level,
        }),
        permission: permission.into(),
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
        if req.uid.len() > 128 || req.uid.contains('/') {
            return Err(
                ErrorKind::InvalidArgument.status("uid must be 1-128 characters without '/'")
            );
        }
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
        let children =
            self.cold.list_children(&req.user_id).await.map_err(|e| self.cold_error(e))?;
        Ok(Response::new(pb::ListChildrenResponse {
            children: children.into_iter().map(|(c, p)| access_proto(c, p)).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn create_child(
        &self,
        request: Request<pb::CreateChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let name = required(req.name.trim(), "name")?;
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ErrorKind::InvalidArgument
                .status(format!("name must be at most {MAX_NAME_CHARS} characters")));
        }
        if !GRADES.contains(&req.grade_level) {
            return Err(ErrorKind::InvalidArgument.status("grade_level must be between -1 and 12"));
        }
        let child = self
            .cold
            .create_child(&req.user_id, name, req.grade_level)
            .await
            .map_err(|e| self.cold_error(e))?;
        Ok(Response::new(access_proto(child, pb::Permission::Manage)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_child(
        &self,
        request: Request<pb::GetChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (child, permission) =
            self.require_permission(&req.user_id, &req.child_id, pb::Permission::View).await?;
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
        self.require_permission(&req.user_id, &req.child_id, pb::Permission::Interact).await?;
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
        // Archive first: if the cold store fails, the hot state is still there to retry with.
        self.cold.archive_session(&record).await.map_err(|e| self.cold_error(e))?;
        self.hot.remove(&record).await.map_err(|e| self.hot_error(e))?;
        if let Err(err) = self.hot.publish_ended(&record.session_id).await {
            tracing::warn!(error = %err, "could not announce the end of the session");
        }
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
        let turn_count = self
            .hot
            .append(&req.session_id, &req.user_id, &turns)
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
}
