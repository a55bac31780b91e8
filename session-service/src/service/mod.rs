//! The session contract's four gRPC services, one file each, over one shared [`Core`]:
//! - [`families`]: users, children and family links (`blob.session.v1.Families`);
//! - [`sessions`]: sessions, their signals, events and conversations (`blob.session.v1.Sessions`);
//! - [`lessons`]: the lessons catalogue and progress (`blob.session.v1.Lessons`);
//! - [`edge`]: request budgets, idempotency keys and store health (`blob.session.v1.EdgeGuard`).
//!
//! Who may act on a child, and whose a session is, are decided here, in [`Core`], and nowhere
//! else. Store errors become statuses through `From` ([`errors`]).

mod edge;
mod errors;
mod families;
mod lessons;
mod sessions;

use std::sync::Arc;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::edge_guard_server::EdgeGuardServer;
use blob_proto::session::v1::families_server::FamiliesServer;
use blob_proto::session::v1::lessons_server::LessonsServer;
use blob_proto::session::v1::sessions_server::SessionsServer;
use tonic::Status;
use tonic::service::RoutesBuilder;

pub use self::edge::EdgeGuardService;
pub use self::errors::CountStoreErrors;
pub use self::families::FamiliesService;
pub use self::lessons::LessonsService;
pub use self::sessions::SessionsService;
use crate::cold::{ArchivedSession, ChildRecord, ColdStore, Permission};
use crate::convert::required_permission;
use crate::hot::{HotError, HotStore};
use crate::metrics::SessionMetrics;
use crate::record::SessionRecord;
use crate::signals::Signals;
use crate::timestamp::Timestamp;

/// The fully qualified names of the four services (for health and reflection).
pub const SERVICE_NAMES: [&str; 4] = [
    "blob.session.v1.Families",
    "blob.session.v1.Sessions",
    "blob.session.v1.Lessons",
    "blob.session.v1.EdgeGuard",
];

/// How long a raised token generation is kept: longer than the longest backend token lives
/// (`BACKEND_JWT_TTL_SECONDS` is at most a day), so no token from before a sign-out revives.
pub(super) const TOKEN_GENERATION_KEEP_SECONDS: u64 = 2 * 86_400;

/// What every service works with: hot state in Redis, cold state behind a trait object,
/// signals fanned out.
#[derive(Clone)]
pub struct Core {
    hot: HotStore,
    cold: Arc<dyn ColdStore>,
    signals: Arc<Signals>,
    metrics: SessionMetrics,
}

/// Whose call ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller<'a> {
    /// A signed-in user, who must own the session.
    User(&'a str),
    /// The platform itself (no user named): any session.
    Platform,
}

impl Core {
    /// A core over the two stores and the signal fan-out.
    pub fn new(
        hot: HotStore,
        cold: Arc<dyn ColdStore>,
        signals: Arc<Signals>,
        metrics: SessionMetrics,
    ) -> Self {
        Self { hot, cold, signals, metrics }
    }

    /// Adds the four services to `routes`, each counting its failed-store answers.
    pub fn add_services(self, routes: &mut RoutesBuilder) {
        let metrics = self.metrics.clone();
        routes
            .add_service(CountStoreErrors::new(
                FamiliesServer::new(FamiliesService(self.clone())),
                metrics.clone(),
            ))
            .add_service(CountStoreErrors::new(
                SessionsServer::new(SessionsService(self.clone())),
                metrics.clone(),
            ))
            .add_service(CountStoreErrors::new(
                LessonsServer::new(LessonsService(self.clone())),
                metrics.clone(),
            ))
            .add_service(CountStoreErrors::new(
                EdgeGuardServer::new(EdgeGuardService(self)),
                metrics,
            ));
    }

    /// The child and the caller's permission on it, read from the stored family link on every
    /// call (never from token claims), so a revoked link stops access at once.
    async fn require_permission(
        &self,
        user_id: &str,
        child_id: &str,
        at_least: Permission,
    ) -> Result<(ChildRecord, Permission), Status> {
        let permission = self.link(user_id, child_id).await?;
        let child = self.cold.get_child(child_id).await?;
        let Some(child) = child.filter(|c| c.deleted_at.is_none()) else {
            return Err(child_not_found());
        };
        Ok((child, at_least_as(permission, at_least)?))
    }

    /// The caller's permission on a child, from the family link alone: also for a profile that
    /// was deleted (which whoever manages it may still erase).
    async fn link_permission(
        &self,
        user_id: &str,
        child_id: &str,
        at_least: Permission,
    ) -> Result<Permission, Status> {
        at_least_as(self.link(user_id, child_id).await?, at_least)
    }

    /// The permission the caller's family link gives on the child.
    async fn link(&self, user_id: &str, child_id: &str) -> Result<Permission, Status> {
        required(user_id, "user_id")?;
        required(child_id, "child_id")?;
        // Another family's child looks exactly like a child that does not exist.
        let link = self.cold.get_link(user_id, child_id).await?.ok_or_else(child_not_found)?;
        Ok(link.permission)
    }

    /// The session as stored, when `caller` may act on it.
    async fn owned_session(
        &self,
        session_id: &str,
        caller: Caller<'_>,
    ) -> Result<SessionRecord, Status> {
        required(session_id, "session_id")?;
        let record = self.hot.get(session_id).await?;
        match caller {
            Caller::User(user_id) if record.user_id != user_id => Err(HotError::Forbidden.into()),
            _ => Ok(record),
        }
    }

    /// Ends a session: archives it, removes its hot keys, and tells its sockets.
    async fn finish_session(&self, record: &SessionRecord) -> Result<(), Status> {
        let turn_count = match self.hot.conversation(&record.conversation_id, &record.user_id).await
        {
            Ok(conversation) => conversation.turns.len() as u32,
            Err(HotError::NoConversation) => 0,
            Err(other) => return Err(other.into()),
        };
        let mut archived = record.clone();
        archived.state = "ended".to_owned();
        let now = Timestamp::now();
        archived.last_activity_at = now;
        let archived = ArchivedSession { session: archived, ended_at: now, turn_count };
        // Archive first: if the cold store fails, the hot state is still there to retry with.
        self.cold.archive_session(&archived).await?;
        self.hot.remove(record).await?;
        self.announce_end(&record.session_id).await;
        Ok(())
    }

    async fn announce_end(&self, session_id: &str) {
        if let Err(err) = self.hot.publish_ended(session_id).await {
            tracing::warn!(error = %err, "could not announce the end of the session");
        }
    }

    fn session(&self, record: &SessionRecord) -> pb::Session {
        record.to_proto(self.hot.ttl())
    }
}

fn at_least_as(permission: Permission, needed: Permission) -> Result<Permission, Status> {
    if permission < needed {
        return Err(ErrorKind::PermissionDenied
            .status(format!("this needs {} access to the child", required_permission(needed))));
    }
    Ok(permission)
}

fn child_not_found() -> Status {
    ErrorKind::NotFound.status("child not found")
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(ErrorKind::InvalidArgument.status(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// A name or grade that breaks the shared rules, as `INVALID_ARGUMENT`.
fn invalid(err: blob_kit::validate::Invalid) -> Status {
    ErrorKind::InvalidArgument.status(err.message)
}
