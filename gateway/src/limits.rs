//! Abuse limits of the REST API: the per-user rate limit, `Idempotency-Key` on POSTs, the
//! request timeout and CORS. Counters and stored responses live in the session-service's Redis
//! (`rl:{user_id}`, `idempotency:{key}`), so every gateway instance shares them.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blob_proto::session::v1 as pb;
use sha2::{Digest as _, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::envelope::{ApiError, ErrorCode};
use crate::state::AppState;

/// Largest REST request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Where the REST API is served.
const API_ROOT: &str = "/api/v1";

/// The request header naming an idempotent POST.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// How long a claimed key waits for its first response before it may be claimed again.
const CLAIM_SECONDS: u32 = 60;

/// Counts a request of `user_id` against the per-minute limit; `429 RATE_LIMITED` with
/// `Retry-After` once it is spent.
pub async fn throttle(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let limit = state.config.http.rate_limit_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let verdict = state
        .guard
        .clone()
        .throttle(state.request(pb::ThrottleRequest {
            user_id: user_id.to_owned(),
            limit,
            window_seconds: 60,
        }))
        .await?
        .into_inner();
    if verdict.allowed {
        return Ok(());
    }
    state.metrics.rate_limited.inc();
    let mut err = ApiError::new(
        ErrorCode::RateLimited,
        format!("more than {limit} requests in a minute; retry after the given seconds"),
    );
    err.retry_after = Some(verdict.retry_after_seconds.max(1));
    Err(err)
}

/// Whether a response may be replayed for the same key. Failures that a retry could fix
/// (authentication, rate limit, server errors) release the key instead.
fn storable(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 400 | 403 | 404 | 409 | 413 | 415 | 422)
}

/// Middleware: a POST with `Idempotency-Key` runs once; repeating it (same key, same user, same
/// method, path and body) replays the first response for `IDEMPOTENCY_TTL_SECONDS`, and the
/// same key with a different request is `409 CONFLICT`.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    match idempotent(state, key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn idempotent(
    state: AppState,
    key: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 128 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                "Idempotency-Key must be 1-128 visible ASCII characters",
            )
            .into_response()
        })?;
    // Keys are scoped to their sender: another user's key never replays to you.
    let owner = bearer(&request)
        .and_then(|token| state.tokens.verify_access(token).ok())
        .map(|claims| claims.sub)
        .unwrap_or_else(|| "anonymous".to_owned());
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        let mut err = ApiError::new(ErrorCode::ValidationError, "the body is too large");
        err.status = StatusCode::PAYLOAD_TOO_LARGE;
        err.into_response()
    })?;
    let mut digest = Sha256::new();
    digest.update(parts.method.as_str().as_bytes());
    digest.update(b" ");
    // The path within the API (`/children`, not `/api/v1/children`): a fingerprint does not
    // depend on where the API is mounted.
    let path = parts.uri.path();
    digest.update(path.strip_prefix(API_ROOT).unwrap_or(path).as_bytes());
    digest.update(b"\n");
    digest.update(&body);
    let fingerprint = hex::encode(digest.finalize());

    let begun = state
        .guard
        .clone()
        .begin_idempotent(state.request(pb::BeginIdempotentRequest {
            key: key.clone(),
            owner: owner.clone(),
            fingerprint: fingerprint.clone(),
            claim_seconds: CLAIM_SECONDS,
        }))
        .await
        .map_err(|status| ApiError::from(status).into_response())?
        .into_inner();
    match pb::IdempotencyOutcome::try_from(begun.outcome) {
        Ok(pb::IdempotencyOutcome::Claimed) => {}
        Ok(pb::IdempotencyOutcome::Replay) => {
            let status = StatusCode::from_u16(begun.status as u16).unwrap_or(StatusCode::OK);
            let mut response = (status, begun.body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            return Ok(response);
        }
        Ok(pb::IdempotencyOutcome::InProgress) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response());
        }
        _ => {
            let mut err = ApiError::new(
                ErrorCode::Conflict,
                "this Idempotency-Key was already used for a different request",
            );
            err.details = Some(serde_json::json!({ "header": "Idempotency-Key" }));
            return Err(err.into_response());
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let store = storable(parts.status);
    let completed = state
        .guard
        .clone()
        .complete_idempotent(state.request(pb::CompleteIdempotentRequest {
            key,
            owner,
            fingerprint,
            store,
            status: u32::from(parts.status.as_u16()),
            body: if store { String::from_utf8_lossy(&bytes).into_owned() } else { String::new() },
            ttl_seconds: state.config.http.idempotency_ttl.as_secs() as u32,
        }))
        .await;
    if let Err(status) = completed {
        // The request itself succeeded; only its replay is lost (the claim expires by itself).
        tracing::warn!(code = ?status.code(), "could not store the idempotent response");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Middleware: a REST request that takes longer than `REQUEST_TIMEOUT_SECONDS` is answered with
/// `504 SERVICE_UNAVAILABLE`.
pub async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(state.config.http.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request timed out");
            let mut err =
                ApiError::new(ErrorCode::ServiceUnavailable, "the request took too long; retry");
            err.status = StatusCode::GATEWAY_TIMEOUT;
            err.into_response()
        }
    }
}

/// CORS for browsers, from `CORS_ALLOWED_ORIGINS` (none: no CORS headers at all).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static(IDEMPOTENCY_KEY),
                header::HeaderName::from_static(crate::envelope::REQUEST_ID_HEADER),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static(IDEMPOTENT_REPLAYED),
                header::HeaderName::from_static(crate::envelope::REQUEST_ID_HEADER),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
