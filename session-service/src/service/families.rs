//! `blob.session.v1.Families`: users, children and the family links between them.

use std::collections::HashMap;

use blob_kit::{ErrorKind, validate};
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::families_server::Families;
use tonic::{Request, Response, Status};

use super::{Core, invalid, required};
use crate::cold::{ChildRecord, ColdError, FamilyLink, Permission, ProfileChange};
use crate::convert::{access_proto, link_proto, user_proto};
use crate::timestamp::Timestamp;

/// Most children one account may be linked to, its own and those shared with it (the backend
/// token and every list stay bounded).
pub(super) const MAX_LINKS_PER_USER: usize = 20;
/// Most people one child may be shared with, its managers included.
pub(super) const MAX_MEMBERS_PER_CHILD: usize = 8;

/// The families service.
#[derive(Clone)]
pub struct FamiliesService(pub(super) Core);

impl FamiliesService {
    /// A user who signed in, by id or (when the id is empty) by email.
    async fn member(
        &self,
        user_id: &str,
        email: &str,
    ) -> Result<Option<crate::cold::UserRecord>, Status> {
        let email = email.trim().to_lowercase();
        Ok(match (user_id, email.as_str()) {
            ("", "") => {
                return Err(ErrorKind::InvalidArgument
                    .status("grantee_user_id or grantee_email is required"));
            }
            ("", email) => {
                if email.len() > 254 || !email.contains('@') {
                    return Err(ErrorKind::InvalidArgument.status("grantee_email is not an email"));
                }
                self.0.cold.find_user_by_email(email).await?
            }
            (user_id, _) => self.0.cold.get_user(user_id).await?,
        })
    }
}

#[tonic::async_trait]
impl Families for FamiliesService {
    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn upsert_user(
        &self,
        request: Request<pb::UpsertUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        // Emails are kept lower-cased: a co-parent is found by email whatever its case.
        let email = req.email.trim().to_lowercase();
        let user = self.0.cold.upsert_user(&req.user_id, &email, &req.display_name).await?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let user = self.0.cold.get_user(&req.user_id).await?;
        let user = user.ok_or_else(|| ErrorKind::NotFound.status("user not found"))?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let change = ProfileChange {
            display_name: req
                .display_name
                .as_deref()
                .map(|name| validate::display_name(name).map(str::to_owned))
                .transpose()
                .map_err(invalid)?,
            locale: req.locale.as_deref().map(validate::locale).transpose().map_err(invalid)?,
            timezone: req
                .timezone
                .as_deref()
                .map(|zone| validate::timezone(zone).map(str::to_owned))
                .transpose()
                .map_err(invalid)?,
        };
        let user = if change == ProfileChange::default() {
            self.0
                .cold
                .get_user(&req.user_id)
                .await
                .and_then(|u| u.ok_or_else(|| ColdError::NotFound(req.user_id.clone())))
        } else {
            self.0.cold.update_profile(&req.user_id, &change).await
        };
        let user = user.map_err(|e| match e {
            ColdError::NotFound(_) => ErrorKind::NotFound.status("user not found"),
            other => other.into(),
        })?;
        Ok(Response::new(user_proto(user)))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn list_children(
        &self,
        request: Request<pb::ListChildrenRequest>,
    ) -> Result<Response<pb::ListChildrenResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let links = self.0.cold.list_links(&req.user_id).await?;
        let ids: Vec<String> = links.iter().map(|l| l.child_id.clone()).collect();
        let children = self.0.cold.get_children(&ids).await?;
        let mut by_id: HashMap<String, ChildRecord> =
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
        let name = validate::child_name(&req.name).map_err(invalid)?;
        let grade_level = validate::grade_level(req.grade_level).map_err(invalid)?;
        let current_level = match req.current_level.as_str() {
            "" => validate::DEFAULT_LEVEL,
            level => validate::current_level(level).map_err(invalid)?,
        };
        if self.0.cold.list_links(&req.user_id).await?.len() >= MAX_LINKS_PER_USER {
            return Err(ErrorKind::FailedPrecondition.status(format!(
                "an account can have at most {MAX_LINKS_PER_USER} children, own and shared"
            )));
        }
        let now = Timestamp::now();
        let child = ChildRecord {
            child_id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            grade_level,
            grade_as_text: req.grade_as_text,
            current_level: current_level.to_owned(),
            created_by: req.user_id.clone(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        self.0.cold.create_child(&child).await?;
        let link = FamilyLink {
            user_id: req.user_id.clone(),
            child_id: child.child_id.clone(),
            permission: Permission::Manage,
            granted_by: req.user_id,
            created_at: now,
        };
        // Without its link the new profile is unreachable by anyone: a retry creates another.
        self.0.cold.create_link_if_absent(&link).await?;
        Ok(Response::new(access_proto(child, Permission::Manage)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn get_child(
        &self,
        request: Request<pb::GetChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (child, permission) =
            self.0.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        Ok(Response::new(access_proto(child, permission)))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn update_child(
        &self,
        request: Request<pb::UpdateChildRequest>,
    ) -> Result<Response<pb::ChildAccess>, Status> {
        let req = request.into_inner();
        let (mut child, permission) =
            self.0.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        if let Some(name) = &req.name {
            child.name = validate::child_name(name).map_err(invalid)?.to_owned();
        }
        if let Some(grade_level) = req.grade_level {
            child.grade_level = validate::grade_level(grade_level).map_err(invalid)?;
            child.grade_as_text = req.grade_as_text;
        }
        if let Some(level) = &req.current_level {
            child.current_level = validate::current_level(level).map_err(invalid)?.to_owned();
        }
        child.updated_at = Timestamp::now();
        self.0.cold.put_child(&child).await.map_err(|e| match e {
            ColdError::NotFound(_) => ErrorKind::NotFound.status("child not found"),
            other => other.into(),
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
            self.0.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        // The child's conversation ends with the profile.
        if let Some(session) = self.0.hot.child_session(&req.child_id).await? {
            self.0.finish_session(&session).await?;
        }
        let child = self
            .0
            .cold
            .soft_delete_child(&req.child_id)
            .await?
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
        self.0.require_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        let permission = Permission::from_proto(req.permission)
            .ok_or_else(|| ErrorKind::InvalidArgument.status("permission is required"))?;
        // Only someone who signed in to Blob can be given access: nobody is added to a family
        // they never joined.
        let grantee = self.member(&req.grantee_user_id, &req.grantee_email).await?.ok_or_else(
            || {
                ErrorKind::FailedPrecondition.status(
                    "nobody with that id or email has signed in to Blob yet: they sign in once, then you can share",
                )
            },
        )?;
        if grantee.user_id == req.user_id {
            return Err(ErrorKind::InvalidArgument.status("you cannot change your own access"));
        }
        let cold = &self.0.cold;
        let members = cold.list_child_links(&req.child_id).await?;
        if !members.iter().any(|l| l.user_id == grantee.user_id) {
            if members.len() >= MAX_MEMBERS_PER_CHILD {
                return Err(ErrorKind::FailedPrecondition.status(format!(
                    "a child can be shared with at most {MAX_MEMBERS_PER_CHILD} people"
                )));
            }
            if cold.list_links(&grantee.user_id).await?.len() >= MAX_LINKS_PER_USER {
                return Err(ErrorKind::FailedPrecondition.status(format!(
                    "that person already has {MAX_LINKS_PER_USER} children, the most one account may have"
                )));
            }
        }
        let link = FamilyLink {
            user_id: grantee.user_id,
            child_id: req.child_id,
            permission,
            granted_by: req.user_id,
            created_at: Timestamp::now(),
        };
        let stored = cold.grant_permission(&link).await?;
        // Down to view: a session the grantee holds for the child ends, closing their socket.
        if permission < Permission::Interact
            && let Some(session) = self.0.hot.child_session(&stored.child_id).await?
            && session.user_id == stored.user_id
        {
            self.0.finish_session(&session).await?;
        }
        tracing::info!(grantee = %stored.user_id, ?permission, "permission granted");
        let mut link = link_proto(stored);
        link.email = grantee.email;
        Ok(Response::new(link))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn revoke_permission(
        &self,
        request: Request<pb::RevokePermissionRequest>,
    ) -> Result<Response<pb::RevokePermissionResponse>, Status> {
        let req = request.into_inner();
        let (_, own) =
            self.0.require_permission(&req.user_id, &req.child_id, Permission::View).await?;
        let leaving = req.grantee_user_id == req.user_id
            || (req.grantee_user_id.is_empty() && req.grantee_email.is_empty());
        let grantee = if leaving {
            // Anyone may leave a child they were given; the last manager may not orphan it.
            if own == Permission::Manage {
                let managers = self
                    .0
                    .cold
                    .list_child_links(&req.child_id)
                    .await?
                    .into_iter()
                    .filter(|l| l.permission == Permission::Manage)
                    .count();
                if managers <= 1 {
                    return Err(ErrorKind::FailedPrecondition.status(
                        "you are the child's only manager: give manage to someone else first, or erase the child's data",
                    ));
                }
            }
            req.user_id.clone()
        } else {
            if own < Permission::Manage {
                return Err(ErrorKind::PermissionDenied
                    .status("only a manager can take someone else's access away"));
            }
            match self.member(&req.grantee_user_id, &req.grantee_email).await? {
                Some(user) if user.user_id == req.user_id => {
                    return Err(ErrorKind::InvalidArgument
                        .status("to leave, revoke your own access by your own id"));
                }
                Some(user) => user.user_id,
                // Never signed in: there is no link to remove.
                None if !req.grantee_user_id.is_empty() => req.grantee_user_id.clone(),
                None => return Ok(Response::new(pb::RevokePermissionResponse { revoked: false })),
            }
        };
        let revoked = self.0.cold.revoke_link(&grantee, &req.child_id).await?;
        // A session the revoked user holds for the child ends now, closing their socket.
        if let Some(session) = self.0.hot.child_session(&req.child_id).await?
            && session.user_id == grantee
        {
            self.0.finish_session(&session).await?;
        }
        tracing::info!(%grantee, leaving, revoked, "permission revoked");
        Ok(Response::new(pb::RevokePermissionResponse { revoked }))
    }

    #[tracing::instrument(skip_all, fields(child_id = %request.get_ref().child_id))]
    async fn erase_child_data(
        &self,
        request: Request<pb::ChildRef>,
    ) -> Result<Response<pb::ErasureReceipt>, Status> {
        let req = request.into_inner();
        // A soft-deleted profile can still be erased by whoever manages it.
        self.0.link_permission(&req.user_id, &req.child_id, Permission::Manage).await?;
        Ok(Response::new(self.erase(&req.child_id).await?))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::AccountErasureReceipt>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let cold = &self.0.cold;
        // Decide for every child first, so a refusal changes nothing.
        let mut erase = Vec::new();
        let mut leave = Vec::new();
        for link in cold.list_links(&req.user_id).await? {
            let others: Vec<FamilyLink> = cold
                .list_child_links(&link.child_id)
                .await?
                .into_iter()
                .filter(|l| l.user_id != req.user_id)
                .collect();
            if others.is_empty() {
                erase.push(link.child_id);
            } else if link.permission == Permission::Manage
                && !others.iter().any(|l| l.permission == Permission::Manage)
            {
                return Err(ErrorKind::FailedPrecondition.status(format!(
                    "you are the only manager of child {}, whom others can still see: give manage to one of them first, or erase the child's data",
                    link.child_id
                )));
            } else {
                leave.push(link.child_id);
            }
        }
        // Tokens first: nothing issued before this call works while the rest goes.
        let token_generation =
            self.0.hot.sign_out(&req.user_id, super::TOKEN_GENERATION_KEEP_SECONDS).await?;
        let mut children = Vec::with_capacity(erase.len());
        for child_id in &erase {
            children.push(self.erase(child_id).await?);
        }
        let mut sessions_ended = 0;
        for child_id in &leave {
            cold.revoke_link(&req.user_id, child_id).await?;
            if let Some(session) = self.0.hot.child_session(child_id).await?
                && session.user_id == req.user_id
            {
                self.0.finish_session(&session).await?;
                sessions_ended += 1;
            }
        }
        let idempotent_responses = self.0.hot.forget_idempotency(&req.user_id).await?;
        let user_record = cold.delete_user(&req.user_id).await?;
        tracing::info!(
            erased = children.len(),
            left = leave.len(),
            sessions_ended,
            idempotent_responses,
            "account deleted"
        );
        Ok(Response::new(pb::AccountErasureReceipt {
            user_id: req.user_id,
            children,
            left_child_ids: leave,
            sessions_ended,
            idempotent_responses: u32::try_from(idempotent_responses).unwrap_or(u32::MAX),
            user_record,
            erased_at_ms: Timestamp::now().unix_ms(),
            token_generation,
        }))
    }
}

impl FamiliesService {
    /// Erases everything kept about a child, hot and cold; the receipt counts it.
    async fn erase(&self, child_id: &str) -> Result<pb::ErasureReceipt, Status> {
        let (hot, cold) = (&self.0.hot, &self.0.cold);
        // Hot state first, so no socket keeps talking while the rest goes. The child's index
        // names every session, replay log and conversation it had in Redis, expired sessions'
        // conversations included; archived sessions name theirs too.
        let live = hot.child_session(child_id).await?;
        let mut extra: Vec<String> = cold
            .list_archived_sessions(child_id)
            .await?
            .into_iter()
            .map(|a| format!("conversation:{}", a.session.conversation_id))
            .collect();
        if let Some(session) = &live {
            let id = &session.session_id;
            extra.extend([
                format!("session:{id}"),
                format!("suspended:{id}"),
                format!("events:{id}"),
                format!("conversation:{}", session.conversation_id),
            ]);
        }
        let erased = hot.erase_child(child_id, &extra).await?;
        if let Some(session) = &live {
            self.0.announce_end(&session.session_id).await;
        }
        let counts = cold.erase_child(child_id).await?;
        tracing::info!(?counts, ?erased, "child data erased");
        Ok(pb::ErasureReceipt {
            child_id: child_id.to_owned(),
            children: counts.children,
            family_links: counts.family_links,
            progress: counts.progress,
            archived_sessions: counts.sessions,
            hot_sessions: erased.sessions,
            conversations: erased.conversations,
            event_logs: erased.event_logs,
            erased_at_ms: Timestamp::now().unix_ms(),
        })
    }
}
