//! `blob.session.v1.EdgeGuard`: what the gateway needs beside the data: each user's request
//! budget, idempotency keys, and the health of this service's stores.

use std::time::Instant;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::edge_guard_server::EdgeGuard;
use tonic::{Request, Response, Status};

use super::{Core, required};
use crate::hot::Idempotency;

/// Largest response kept for an idempotency key, in bytes (the gateway keeps bodies up to
/// 16 KiB, sealed and base64-encoded).
const MAX_IDEMPOTENT_BODY_BYTES: usize = 32 * 1024;

/// The edge guard service.
#[derive(Clone)]
pub struct EdgeGuardService(pub(super) Core);

/// Keys are scoped to the user who sent them: one user's key never meets another's.
fn check_idempotency_key(key: &str, owner: &str) -> Result<(), Status> {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ErrorKind::InvalidArgument
            .status("an idempotency key is 1-128 visible ASCII characters"));
    }
    required(owner, "owner")?;
    if owner.len() > 128 || !owner.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ErrorKind::InvalidArgument.status("owner is a user id"));
    }
    Ok(())
}

#[tonic::async_trait]
impl EdgeGuard for EdgeGuardService {
    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn throttle(
        &self,
        request: Request<pb::ThrottleRequest>,
    ) -> Result<Response<pb::ThrottleResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let counted = req.limit > 0;
        if counted && req.window_seconds == 0 {
            return Err(ErrorKind::InvalidArgument.status("window_seconds must be set"));
        }
        let found = self
            .0
            .hot
            .throttle(&req.user_id, req.window_seconds, counted, req.token_generation)
            .await?;
        let allowed = !found.signed_out && (!counted || found.count <= u64::from(req.limit));
        Ok(Response::new(pb::ThrottleResponse {
            allowed,
            remaining: u64::from(req.limit).saturating_sub(found.count) as u32,
            retry_after_seconds: found.seconds_left,
            signed_out: found.signed_out,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn check_token(
        &self,
        request: Request<pb::CheckTokenRequest>,
    ) -> Result<Response<pb::CheckTokenResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let current = self.0.hot.token_generation(&req.user_id).await?;
        Ok(Response::new(pb::CheckTokenResponse {
            valid: req.token_generation >= current,
            current_generation: current,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let req = request.into_inner();
        required(&req.user_id, "user_id")?;
        let generation =
            self.0.hot.sign_out(&req.user_id, super::TOKEN_GENERATION_KEEP_SECONDS).await?;
        // The sessions they hold end too: a signed-out phone stops talking.
        let mut sessions_ended = 0;
        for link in self.0.cold.list_links(&req.user_id).await? {
            if let Some(session) = self.0.hot.child_session(&link.child_id).await?
                && session.user_id == req.user_id
            {
                self.0.finish_session(&session).await?;
                sessions_ended += 1;
            }
        }
        tracing::info!(generation, sessions_ended, "signed out everywhere");
        Ok(Response::new(pb::SignOutResponse { generation, sessions_ended }))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_idempotent(
        &self,
        request: Request<pb::BeginIdempotentRequest>,
    ) -> Result<Response<pb::BeginIdempotentResponse>, Status> {
        let req = request.into_inner();
        check_idempotency_key(&req.key, &req.owner)?;
        required(&req.fingerprint, "fingerprint")?;
        let claim = req.claim_seconds.clamp(1, 300);
        let found =
            self.0.hot.begin_idempotent(&req.owner, &req.key, &req.fingerprint, claim).await?;
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
        check_idempotency_key(&req.key, &req.owner)?;
        // Too large to keep: the claim is released, so a retry runs the request again.
        let store = req.store && req.body.len() <= MAX_IDEMPOTENT_BODY_BYTES;
        let response = store.then_some((req.status, req.body.as_str()));
        let ttl = req.ttl_seconds.clamp(1, 7 * 86_400);
        let ours = self
            .0
            .hot
            .complete_idempotent(&req.owner, &req.key, &req.fingerprint, response, ttl)
            .await?;
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
        let started = Instant::now();
        let redis = self.0.hot.ping().await;
        let redis_ms = started.elapsed().as_millis() as u32;
        let started = Instant::now();
        let cold = self.0.cold.ping().await;
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
                    cold.map(drop).map_err(|_| format!("{} unreachable", self.0.cold.kind())),
                    cold_ms,
                ),
            ],
        }))
    }
}
