//! The REST API under `/api/v1` and the health routes. Each resource registers its handlers
//! once, in its `router()`: the HTTP router and the OpenAPI document are both made from them.

pub mod auth;
pub mod children;
pub mod conversations;
pub mod health;
pub mod lessons;
pub mod permissions;
pub mod progress;
pub mod sessions;
pub mod users;
pub mod views;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use blob_proto::session::v1 as pb;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::AuthError;
use crate::auth::backend::BackendClaims;
use crate::envelope::{ApiError, ErrorCode};
use crate::state::AppState;

/// Every route under `/api/v1` (the paths are absolute).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(children::router())
        .merge(permissions::router())
        .merge(progress::router())
        .merge(conversations::router())
        .merge(lessons::router())
        .merge(sessions::router())
}

/// The caller acting on a child.
pub fn child_ref(user: &AuthUser, child_id: &str) -> pb::ChildRef {
    pb::ChildRef { user_id: user.0.sub.clone(), child_id: child_id.to_owned() }
}

/// The signed-in parent, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser(pub BackendClaims);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::TokenInvalid, "missing bearer token"))?;
        let claims = state.tokens.verify_access(token).map_err(auth_error)?;
        tracing::Span::current().record("user_id", claims.sub.as_str());
        crate::limits::throttle(state, &claims).await?;
        Ok(Self(claims))
    }
}

/// The envelope error for a token problem.
pub fn auth_error(err: AuthError) -> ApiError {
    match err {
        AuthError::Expired => ApiError::new(ErrorCode::TokenExpired, "the token has expired"),
        AuthError::Invalid(reason) => {
            ApiError::new(ErrorCode::TokenInvalid, format!("the token is not valid: {reason}"))
        }
        AuthError::CertificatesUnavailable(reason) => {
            tracing::error!(%reason, "cannot fetch signing certificates");
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "sign-in is temporarily unavailable; please retry",
            )
        }
    }
}

/// The wire name of a permission.
pub fn permission_name(permission: i32) -> &'static str {
    use blob_proto::session::v1::Permission;
    match Permission::try_from(permission).unwrap_or(Permission::Unspecified) {
        Permission::Manage => "manage",
        Permission::Interact => "interact",
        Permission::View => "view",
        Permission::Unspecified => "none",
    }
}
