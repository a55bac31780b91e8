//! `blob.session.v1.EdgeGuard`: what the gateway needs beside the data: each user's request
//! budget, idempotency keys, and the health of this service's stores.

use std::time::Instant;

use blob_kit::ErrorKind;
use blob_proto::session::v1 as pb;
use blob_proto::session::v1::edge_guard_server::EdgeGuard;
use tonic::{Request, Response, Status};

use super::{Core, required};
use crate::hot::Idempotency;

/// Largest response kept for an idempotency key, in bytes.
const MAX_IDEMPOTENT_BODY_BYTES: usize = 256 * 1024;

/// The edge guard service.
#[derive(Clone)]
pub struct EdgeGuardService(pub(super) Core);

fn check_idempotency_key(key: &str) -> Result<(), Status> {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ErrorKind::InvalidArgument
            .status("an idempotency key is 1-128 visible ASCII characters"));
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
        if req.limit == 0 || req.window_seconds == 0 {
            return Err(ErrorKind::InvalidArgument.status("limit and window_seconds must be set"));
        }
        let (count, seconds_left) = self.0.hot.throttle(&req.user_id, req.window_seconds).await?;
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
        let found = self.0.hot.begin_idempotent(&req.key, &fingerprint, claim).await?;
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
        let ours = self.0.hot.complete_idempotent(&req.key, &fingerprint, response, ttl).await?;
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
