//! `POST /api/v1/auth/token-exchange`: a parent's Firebase ID token becomes a backend token.

use axum::extract::State;
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ChildView, UserProfile};
use super::{AuthUser, auth_error};
use crate::auth::firebase::FirebaseIdentity;
use crate::envelope::{ApiError, ApiJson, ApiOk, ErrorCode};
use crate::state::AppState;

/// Every route under `/api/v1` of this resource, registered once for the router and the
/// OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token_exchange))
        .routes(routes!(local_sign_in))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeRequest {
    /// A Firebase ID token.
    pub firebase_token: String,
}

/// The response data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenExchangeResponse {
    /// The backend access token (Bearer).
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The signed-in user.
    pub user: UserProfile,
    /// The user's children, oldest link first.
    pub children: Vec<ChildView>,
}

/// Verifies the Firebase token, gets or creates the user, and issues the backend token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/token-exchange",
    tag = "auth",
    summary = "Exchange a Firebase ID token for a backend token",
    request_body = TokenExchangeRequest,
    responses(
        (status = 200, description = "The backend token, the user and their children", body = TokenExchangeResponse),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID: the Firebase token"),
        (status = 403, description = "FORBIDDEN: an anonymous account, or an email not yet verified"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn token_exchange(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenExchangeRequest>,
) -> Result<ApiOk<TokenExchangeResponse>, ApiError> {
    exchange(&state, body.firebase_token.trim()).await
}

/// `POST /api/v1/auth/local-sign-in` request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalSignInRequest {
    /// The parent's email; the same email is always the same account.
    pub email: String,
    /// Display name (default "Local Parent").
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Signs a parent in by email alone, for trying Blob on a local stack (the CLI and the browser
/// console use it). Only a gateway with `AUTH_PROVIDER=local` (a `demo-*` project) has it; any
/// other answers `NOT_FOUND`. The token comes from the local development issuer and takes the
/// same path as a Firebase token through the exchange.
#[utoipa::path(
    post,
    path = "/api/v1/auth/local-sign-in",
    tag = "auth",
    summary = "Local mode only: sign in by email and get a backend token",
    request_body = LocalSignInRequest,
    responses(
        (status = 200, description = "The backend token, the user and their children", body = TokenExchangeResponse),
        (status = 400, description = "VALIDATION_ERROR: email (details.field)"),
        (status = 404, description = "NOT_FOUND: the gateway is not in local mode"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn local_sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LocalSignInRequest>,
) -> Result<ApiOk<TokenExchangeResponse>, ApiError> {
    if state.config.auth_provider != crate::config::AuthProvider::Local {
        return Err(ApiError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    let email = body.email.trim();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    if !valid {
        return Err(ApiError::validation("email", "email must be an email address"));
    }
    let name = body.display_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let id_token = crate::auth::dev::id_token(
        &state.config.firebase_project_id,
        email,
        name.unwrap_or("Local Parent"),
    )
    .map_err(|err| {
        tracing::error!(error = %format!("{err:#}"), "signing a local token");
        ApiError::new(ErrorCode::Internal, "could not sign in")
    })?;
    exchange(&state, &id_token).await
}

/// Verifies a Firebase-format ID token, gets or creates the user, and issues the backend token.
async fn exchange(
    state: &AppState,
    firebase_token: &str,
) -> Result<ApiOk<TokenExchangeResponse>, ApiError> {
    let identity = state.firebase.verify(firebase_token).await.map_err(auth_error)?;
    tracing::Span::current().record("user_id", identity.uid.as_str());
    admissible(state, &identity)?;
    let mut families = state.families.clone();
    let user = families
        .upsert_user(state.request(pb::UpsertUserRequest {
            user_id: identity.uid.clone(),
            email: identity.email,
            display_name: identity.display_name,
        }))
        .await?
        .into_inner();
    let children = families
        .list_children(state.request(pb::ListChildrenRequest { user_id: user.user_id.clone() }))
        .await?
        .into_inner()
        .children;
    let children: Vec<ChildView> =
        children.into_iter().filter_map(ChildView::from_access).collect();
    let generation = token_generation(state, &user.user_id).await?;
    let token = state.tokens.issue_access(&user.user_id, &user.email, generation);
    tracing::info!(children = children.len(), "token exchanged");
    Ok(ApiOk(
        StatusCode::OK,
        TokenExchangeResponse {
            token,
            expires_in: state.tokens.ttl().as_secs(),
            user: user.into(),
            children,
        },
    ))
}

/// `POST /api/v1/auth/refresh` response data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefreshResponse {
    /// A new backend access token (Bearer).
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
}

/// Issues a new backend token for a still-valid Firebase ID token. Nothing else changes: no
/// session, socket or stored state is touched.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    summary = "A new backend token; nothing else changes",
    request_body = TokenExchangeRequest,
    responses(
        (status = 200, description = "A new backend token", body = RefreshResponse),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID; also for a user who never exchanged a token"),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenExchangeRequest>,
) -> Result<ApiOk<RefreshResponse>, ApiError> {
    let identity = state.firebase.verify(body.firebase_token.trim()).await.map_err(auth_error)?;
    tracing::Span::current().record("user_id", identity.uid.as_str());
    admissible(&state, &identity)?;
    let mut families = state.families.clone();
    let user = families
        .get_user(state.request(pb::GetUserRequest { user_id: identity.uid.clone() }))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => ApiError::new(
                crate::envelope::ErrorCode::TokenInvalid,
                "no account yet: sign in with /api/v1/auth/token-exchange first",
            ),
            _ => ApiError::from(status),
        })?
        .into_inner();
    let generation = token_generation(&state, &user.user_id).await?;
    let token = state.tokens.issue_access(&user.user_id, &user.email, generation);
    Ok(ApiOk(StatusCode::OK, RefreshResponse { token, expires_in: state.tokens.ttl().as_secs() }))
}

/// Refuses anonymous accounts (unless `FIREBASE_ALLOW_ANONYMOUS`) and accounts whose email the
/// provider has not verified (unless `FIREBASE_REQUIRE_VERIFIED_EMAIL=false`): a family's
/// children are behind this sign-in.
fn admissible(state: &AppState, identity: &FirebaseIdentity) -> Result<(), ApiError> {
    if identity.sign_in_provider == "anonymous" && !state.config.allow_anonymous {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "anonymous accounts cannot sign in: sign in with an email or a provider account",
        ));
    }
    let unverified = identity.sign_in_provider != "anonymous"
        && (identity.email.is_empty() || !identity.email_verified);
    if unverified && state.config.require_verified_email {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the account's email is not verified: verify it, then sign in again",
        ));
    }
    Ok(())
}

/// The user's current token generation, which new tokens carry.
async fn token_generation(state: &AppState, user_id: &str) -> Result<u64, ApiError> {
    Ok(state
        .guard
        .clone()
        .check_token(
            state.request(pb::CheckTokenRequest {
                user_id: user_id.to_owned(),
                token_generation: 0,
            }),
        )
        .await?
        .into_inner()
        .current_generation)
}

/// `POST /api/v1/auth/logout` response data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogoutResponse {
    /// Always true: every backend token issued to the user so far is refused from now on.
    pub signed_out: bool,
    /// Sessions the user held that were ended (their sockets closed).
    pub sessions_ended: u32,
}

/// Signs the parent out everywhere: every backend and session token issued so far stops
/// working (REST and voice socket), and the sessions they hold end.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    summary = "Sign out everywhere: every token issued so far is refused",
    responses(
        (status = 200, description = "Signed out", body = LogoutResponse),
        (status = 401, description = "TOKEN_EXPIRED or TOKEN_INVALID"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn logout(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<ApiOk<LogoutResponse>, ApiError> {
    let signed_out = state
        .guard
        .clone()
        .sign_out(state.request(pb::SignOutRequest { user_id: user.sub.clone() }))
        .await?
        .into_inner();
    tracing::info!(generation = signed_out.generation, "signed out");
    Ok(ApiOk(
        StatusCode::OK,
        LogoutResponse { signed_out: true, sessions_ended: signed_out.sessions_ended },
    ))
}
