//! Abuse limits of the REST API: the per-user rate limit, `Idempotency-Key` on POSTs, the
//! request timeout and CORS. Counters and stored responses live in the session-service's Redis
//! (`rl:{user_id}`, `idempotency:{user_id}:{key}`), so every gateway instance shares them.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use blob_proto::session::v1 as pb;
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::backend::BackendClaims;
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

/// Refuses a token from before the user signed out (`401 TOKEN_INVALID`), then counts the
/// request against the per-minute limit: `429 RATE_LIMITED` with `Retry-After` once it is
/// spent. One call to the session-service either way.
pub async fn throttle(state: &AppState, claims: &BackendClaims) -> Result<(), ApiError> {
    let limit = state.config.http.rate_limit_per_minute;
    let verdict = state
        .guard
        .clone()
        .throttle(state.request(pb::ThrottleRequest {
            user_id: claims.sub.clone(),
            limit,
            window_seconds: 60,
            token_generation: claims.tgen,
        }))
        .await?
        .into_inner();
    if verdict.signed_out {
        return Err(ApiError::new(
            ErrorCode::TokenInvalid,
            "the token was signed out; sign in again",
        ));
    }
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

/// The routes anyone may call without a token, limited per client address (sign-in, token
/// exchange and refresh verify a token or mint one; the services check fans out to every store).
const ADDRESS_LIMITED: [&str; 4] = [
    "/api/v1/auth/token-exchange",
    "/api/v1/auth/refresh",
    "/api/v1/auth/local-sign-in",
    "/health/services",
];

/// Middleware: `RATE_LIMIT_PER_ADDRESS_PER_MINUTE` calls per client address a minute to the
/// routes that need no token (`rl:addr:{address}`, shared by every gateway); then `429
/// RATE_LIMITED` with `Retry-After`. IPv6 addresses count per /64.
pub async fn address_limit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.http.rate_limit_per_address_per_minute;
    if limit == 0 || !ADDRESS_LIMITED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Some(address) =
        client_address(&request, state.config.http.client_address_header.as_deref())
    else {
        return next.run(request).await;
    };
    let verdict = state
        .guard
        .clone()
        .throttle(state.request(pb::ThrottleRequest {
            user_id: format!("addr:{address}"),
            limit,
            window_seconds: 60,
            token_generation: 0,
        }))
        .await;
    match verdict {
        Ok(verdict) if !verdict.get_ref().allowed => {
            state.metrics.rate_limited.inc();
            let mut err = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {limit} calls a minute from this address; retry after the given seconds"
                ),
            );
            err.retry_after = Some(60);
            err.into_response()
        }
        // A failed check does not lock everyone out of signing in.
        Ok(_) | Err(_) => next.run(request).await,
    }
}

/// The client's address: the last entry of `header` when configured (the one the trusted proxy
/// in front added), else the peer's. IPv6 is reduced to its /64.
fn client_address(request: &Request, header: Option<&str>) -> Option<std::net::IpAddr> {
    let from_header = header.and_then(|name| {
        let value = request.headers().get(name)?.to_str().ok()?;
        value.rsplit(',').next()?.trim().parse::<std::net::IpAddr>().ok()
    });
    let peer = || {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
    };
    Some(match from_header.or_else(peer)? {
        std::net::IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(segments))
        }
        v4 => v4,
    })
}

/// Whether a response may be replayed for the same key. Failures that a retry could fix
/// (authentication, rate limit, server errors) release the key instead.
fn storable(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 400 | 403 | 404 | 409 | 413 | 415 | 422)
}

/// Middleware: an authenticated POST with `Idempotency-Key` runs once; repeating it (same key,
/// same user, same method, path and body) replays the first response for
/// `IDEMPOTENCY_TTL_SECONDS`, and the same key with a different request is `409 CONFLICT`.
///
/// Keys belong to the user of the access token: a request without a valid one (sign-in, token
/// exchange, or a request the handler will refuse with 401) runs as if it had no key, so nobody
/// can fill the store without signing in. Only successes and deliberate 4xx answers are kept, at
/// most [`MAX_STORED_BODY_BYTES`], sealed with a key derived from `BACKEND_JWT_SECRET`: the store
/// never holds a session token in clear.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    let Some(owner) = bearer(&request)
        .and_then(|token| state.tokens.verify_access(token).ok())
        .map(|claims| claims.sub)
    else {
        return next.run(request).await;
    };
    match idempotent(state, owner, key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

/// Largest response body kept for replay; a larger one is answered but its key is released.
pub const MAX_STORED_BODY_BYTES: usize = 16 * 1024;

async fn idempotent(
    state: AppState,
    owner: String,
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
    let seal = Seal::new(state.config.jwt_secret.expose_secret(), &owner, &fingerprint);

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
            let Some(body) = seal.open(&begun.body) else {
                // Sealed under another BACKEND_JWT_SECRET: the first answer cannot be shown.
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this Idempotency-Key was used before the server's keys changed; use a new key",
                )
                .into_response());
            };
            let status = StatusCode::from_u16(begun.status as u16).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
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
    let store = storable(parts.status) && bytes.len() <= MAX_STORED_BODY_BYTES;
    let completed = state
        .guard
        .clone()
        .complete_idempotent(state.request(pb::CompleteIdempotentRequest {
            key,
            owner,
            fingerprint,
            store,
            status: u32::from(parts.status.as_u16()),
            body: if store { seal.close(&bytes) } else { String::new() },
            ttl_seconds: state.config.http.idempotency_ttl.as_secs() as u32,
        }))
        .await;
    if let Err(status) = completed {
        // The request itself succeeded; only its replay is lost (the claim expires by itself).
        tracing::warn!(code = ?status.code(), "could not store the idempotent response");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Seals a stored response (AES-256-GCM, a random nonce, bound to its owner and request) so
/// the shared store keeps neither the session tokens nor the children's data in clear.
struct Seal {
    key: ring::aead::LessSafeKey,
    bound_to: Vec<u8>,
}

impl Seal {
    const PREFIX: &'static str = "sealed1:";

    fn new(secret: &str, owner: &str, fingerprint: &str) -> Self {
        let mut derive = Sha256::new();
        derive.update(b"blob idempotent responses\n");
        derive.update(secret.as_bytes());
        let derived = derive.finalize();
        let key =
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &derived).expect("a 32-byte key");
        Self {
            key: ring::aead::LessSafeKey::new(key),
            bound_to: format!("{owner}\n{fingerprint}").into_bytes(),
        }
    }

    fn close(&self, body: &[u8]) -> String {
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut sealed = body.to_vec();
        self.key
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(&self.bound_to),
                &mut sealed,
            )
            .expect("AES-GCM seals any body below its size limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}{}", Self::PREFIX, BASE64.encode(out))
    }

    fn open(&self, stored: &str) -> Option<Vec<u8>> {
        let raw = BASE64.decode(stored.strip_prefix(Self::PREFIX)?).ok()?;
        if raw.len() < ring::aead::NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(ring::aead::NONCE_LEN);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let body = self
            .key
            .open_in_place(nonce, ring::aead::Aad::from(&self.bound_to), &mut sealed)
            .ok()?;
        Some(body.to_vec())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_response_opens_only_for_its_owner_and_request() {
        let seal = Seal::new("s".repeat(32).as_str(), "u1", "f1");
        let body = br#"{"data":{"session_token":"eyJhbGciOi.secret"}}"#;
        let stored = seal.close(body);
        assert!(stored.starts_with(Seal::PREFIX));
        assert!(!stored.contains("session_token") && !stored.contains("secret"), "{stored}");
        assert_eq!(seal.open(&stored).as_deref(), Some(&body[..]));
        assert_ne!(seal.close(body), stored, "a fresh nonce each time");
        for other in [
            Seal::new("s".repeat(32).as_str(), "u2", "f1"),
            Seal::new("s".repeat(32).as_str(), "u1", "f2"),
            Seal::new("t".repeat(32).as_str(), "u1", "f1"),
        ] {
            assert_eq!(other.open(&stored), None);
        }
        assert_eq!(seal.open("not sealed"), None);
        assert_eq!(seal.open("sealed1:AAAA"), None);
    }
}
