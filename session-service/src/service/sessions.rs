//! `blob.session.v1.Sessions`: sessions, their control signals, the events kept for replay, and
//! the conversations they carry.

use std::pin::Pin;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::sessions_server::Sessions;
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::{Caller, Core, required};
use crate::cold::Permission;
use crate::hot::{EventRecord, HotError, OpenOutcome, Transition};
use crate::record::{ConversationRecord, TurnRecord};
use crate::timestamp::Timestamp;

/// Most turns appended in one call.
const MAX_TURNS_PER_APPEND: usize = 16;
/// Longest turn (both texts), in bytes.
const MAX_TURN_BYTES: usize = 16 * 1024;
/// Most pauses kept with a conversation.
const MAX_PAUSES: usize = 32;
/// Most events recorded in one call.
const MAX_EVENTS_PER_CALL: usize = 64;
/// Largest stored event, in bytes.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The sessions service.
#[derive(Clone)]
pub struct SessionsService(pub(super) Core);

impl SessionsService {
    /// Applies a transition the session's owner asked for.
    async fn transition(
        &self,
        session_id: &str,
        user_id: &str,
        transition: Transition,
        epoch: u32,
    ) -> Result<Response<pb::Session>, Status> {
        required(session_id, "session_id")?;
        // The transition itself checks the owner, atomically with the change.
        let (_, record) = self.0.hot.transition(session_id, user_id, transition, epoch).await?;
        Ok(Response::new(self.0.session(&record)))
    }
}

#[tonic::async_trait]
impl Sessions for SessionsService {
    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let req = request.into_inner();
        self.0.require_permission(&req.user_id, &req.child_id, Permission::Interact).await?;
        let mode = if req.mode.is_empty() { "companion" } else { req.mode.as_str() };
        let reattach = (!req.conversation_id.is_empty()).then_some(req.conversation_id.as_str());
        if let Some(id) = reattach {
            crate::cold::check_id("conversation_id", id)?;
        }
        let (outcome, record) =
            self.0.hot.open(&req.user_id, &req.child_id, mode, reattach).await?;
        tracing::info!(session_id = %record.session_id, ?outcome, "session opened");
        let (label, outcome) = match outcome {
            OpenOutcome::Created => ("created", pb::OpenOutcome::Created),
            OpenOutcome::Reattached => ("reattached", pb::OpenOutcome::Reattached),
            OpenOutcome::Discovered => ("discovered", pb::OpenOutcome::Discovered),
            OpenOutcome::Resumed => ("resumed", pb::OpenOutcome::Resumed),
        };
        self.0.metrics.opened.get_or_create(&vec![("outcome", label)]).inc();
        Ok(Response::new(pb::OpenSessionResponse {
            session: Some(self.0.session(&record)),
            outcome: outcome.into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        let record = self.0.owned_session(&req.session_id, Caller::Platform).await?;
        Ok(Response::new(self.0.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_child_session(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ChildSessionResponse>, Status> {
        let req = request.into_inner();
        self.0.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        let session = self.0.hot.child_session(&req.child_id).await?;
        Ok(Response::new(pb::ChildSessionResponse {
            session: session.as_ref().map(|s| self.0.session(s)),
        }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn attach_session(
        &self,
        request: Request<pb::AttachSessionRequest>,
    ) -> Result<Response<pb::AttachSessionResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let current = self.0.owned_session(&req.session_id, Caller::User(&req.user_id)).await?;
        // The family link is checked on every attach, so revoked access cannot reconnect.
        self.0.require_permission(&req.user_id, &current.child_id, Permission::Interact).await?;
        let hot = &self.0.hot;
        let (was_suspended, record) =
            hot.transition(&req.session_id, &req.user_id, Transition::Attach, 0).await?;
        let conversation = match hot.conversation(&record.conversation_id, &record.user_id).await {
            // Nothing said yet, or the words have expired: the talk starts afresh.
            Err(HotError::NoConversation) => {
                ConversationRecord::empty(&record.conversation_id, &record.user_id)
            }
            other => other?,
        };
        let (last_event_seq, replay) =
            hot.events_after(&req.session_id, req.replay_after_seq).await?;
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
            session: Some(self.0.session(&record)),
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
        self.transition(&req.session_id, &req.user_id, Transition::Suspend, req.epoch).await
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn resume_session(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        self.transition(&req.session_id, &req.user_id, Transition::Resume, 0).await
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn end_session(
        &self,
        request: Request<pb::SessionRef>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        let caller =
            if req.user_id.is_empty() { Caller::Platform } else { Caller::User(&req.user_id) };
        let mut record = self.0.owned_session(&req.session_id, caller).await?;
        self.0.finish_session(&record).await?;
        record.state = "ended".to_owned();
        Ok(Response::new(self.0.session(&record)))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn set_paused(
        &self,
        request: Request<pb::SetPausedRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let req = request.into_inner();
        let transition = if req.paused { Transition::Pause } else { Transition::Unpause };
        self.transition(&req.session_id, &req.user_id, transition, 0).await
    }

    type WatchSessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionSignal, Status>> + Send>>;

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let req = request.into_inner();
        required(&req.session_id, "session_id")?;
        required(&req.user_id, "user_id")?;
        // Subscribe before checking, so nothing published in between is missed.
        let receiver = self.0.signals.watch(&req.session_id);
        self.0.owned_session(&req.session_id, Caller::User(&req.user_id)).await?;
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
        // The store checks the owner with the write.
        self.0.hot.record_events(&req.session_id, &req.user_id, &events).await?;
        let last_event_seq = events.iter().map(|e| e.seq).max().unwrap_or_default();
        Ok(Response::new(pb::RecordEventsResponse { last_event_seq }))
    }

    #[tracing::instrument(skip_all, fields(conversation_id = %request.get_ref().conversation_id))]
    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let req = request.into_inner();
        required(&req.conversation_id, "conversation_id")?;
        required(&req.user_id, "user_id")?;
        let hot = &self.0.hot;
        let record = hot.conversation(&req.conversation_id, &req.user_id).await.map_err(|err| {
            match err {
                // Someone else's conversation is reported like a missing one.
                HotError::Forbidden => HotError::NoConversation.into(),
                other => Status::from(other),
            }
        })?;
        let status = match hot.get(&record.session_id).await {
            Ok(session) if session.conversation_id == record.conversation_id => {
                if session.state == "suspended" { "suspended" } else { "active" }
            }
            Ok(_) | Err(HotError::NotFound) => "idle",
            Err(other) => return Err(other.into()),
        };
        let created_at = record.created_at.or(record.turns.first().map(|t| t.timestamp));
        let last_activity_at =
            record.last_activity_at.or(record.turns.last().map(|t| t.timestamp)).or(created_at);
        Ok(Response::new(pb::Conversation {
            turns: record.turns.iter().map(TurnRecord::to_proto).collect(),
            conversation_id: record.conversation_id,
            owner_user_id: record.owner_user_id,
            child_id: record.child_id,
            session_id: record.session_id,
            created_at_ms: created_at.map(Timestamp::unix_ms).unwrap_or_default(),
            last_activity_at_ms: last_activity_at.map(Timestamp::unix_ms).unwrap_or_default(),
            status: status.to_owned(),
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
        // The store checks the owner with the write.
        let turn_count =
            self.0.hot.append(&req.session_id, &req.user_id, &turns, pauses.as_deref()).await?;
        Ok(Response::new(pb::AppendTurnsResponse { turn_count }))
    }

    #[tracing::instrument(skip_all, fields(session_id = %request.get_ref().session_id))]
    async fn trim_turn(
        &self,
        request: Request<pb::TrimTurnRequest>,
    ) -> Result<Response<pb::AppendTurnsResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        required(&req.request_id, "request_id")?;
        let session = self.0.owned_session(&req.session_id, Caller::User(&req.user_id)).await?;
        let conversation = self.0.hot.conversation(&session.conversation_id, &req.user_id).await?;
        let turn = conversation
            .turns
            .iter()
            .rev()
            .find(|t| t.request_id == req.request_id)
            .ok_or_else(|| ErrorKind::NotFound.status("no exchange with that request_id"))?;
        let heard: String =
            turn.assistant_text.chars().take(req.assistant_chars as usize).collect();
        let turn_count =
            self.0.hot.trim(&req.session_id, &req.user_id, &req.request_id, &heard).await?;
        Ok(Response::new(pb::AppendTurnsResponse { turn_count }))
    }
}
