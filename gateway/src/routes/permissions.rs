//! `/api/v1/children/{id}/permissions`: who else may see or talk for a child (manage access).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AuthUser;
use crate::envelope::{ApiError, ApiJson, ApiOk, rfc3339_ms};
use crate::state::AppState;

/// The routes, registered once for the router and the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(grant_permission)).routes(routes!(revoke_permission))
}

/// `POST /api/v1/children/{id}/permissions` body: who, by `email` (preferred) or `user_id`.
/// They must have signed in to Blob at least once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The email the other parent signs in with.
    #[serde(default)]
    pub email: Option<String>,
    /// Or their user id (Firebase uid), as the proof of concept sent it.
    #[serde(default)]
    pub user_id: Option<String>,
    /// `view`, `interact` or `manage`.
    pub permission: String,
}

/// A family link in responses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    /// Who has access, when the grant named them by user id (never revealed for a grant by
    /// email: parents do not see each other's Firebase uid).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// The member's email.
    pub email: String,
    /// To which child.
    pub child_id: String,
    /// `view`, `interact` or `manage`.
    pub permission: &'static str,
    /// Who granted it.
    pub granted_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// `DELETE /api/v1/children/{id}/permissions/{user_id}` result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevokeView {
    /// Whether there was a link to remove.
    pub revoked: bool,
}

/// The wire permission as the gRPC enum.
pub fn parse_permission(value: &str) -> Option<pb::Permission> {
    match value {
        "view" => Some(pb::Permission::View),
        "interact" => Some(pb::Permission::Interact),
        "manage" => Some(pb::Permission::Manage),
        _ => None,
    }
}

/// Gives another user access to the child (manage access).
#[utoipa::path(
    post,
    path = "/api/v1/children/{child_id}/permissions",
    tag = "children",
    summary = "Give another user access to the child (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id")
    ),
    request_body = GrantRequest,
    responses(
        (status = 200, description = "The family link", body = LinkView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 409, description = "CONFLICT: the person never signed in to Blob, or a limit on members or children is reached"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn grant_permission(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(child_id): Path<String>,
    ApiJson(body): ApiJson<GrantRequest>,
) -> Result<ApiOk<LinkView>, ApiError> {
    let (grantee_user_id, grantee_email) = match (&body.user_id, &body.email) {
        (Some(id), None) => {
            let id = id.trim();
            if id.is_empty() || id.len() > 128 || id.contains('/') {
                return Err(ApiError::validation("user_id", "user_id must be a user's id"));
            }
            (id.to_owned(), String::new())
        }
        (None, Some(email)) => {
            let email = email.trim();
            if email.len() > 254 || !email.contains('@') {
                return Err(ApiError::validation("email", "email must be an email address"));
            }
            (String::new(), email.to_owned())
        }
        _ => {
            return Err(ApiError::validation("email", "give exactly one of email and user_id"));
        }
    };
    let by_id = !grantee_user_id.is_empty();
    let permission = parse_permission(&body.permission).ok_or_else(|| {
        ApiError::validation("permission", "permission must be view, interact or manage")
    })?;
    let link = state
        .families
        .clone()
        .grant_permission(state.request(pb::GrantPermissionRequest {
            user_id: user.sub.clone(),
            child_id,
            grantee_user_id,
            grantee_email,
            permission: permission.into(),
        }))
        .await?
        .into_inner();
    Ok(ApiOk(
        StatusCode::OK,
        LinkView {
            permission: super::permission_name(link.permission),
            created_at: rfc3339_ms(link.created_at_ms),
            user_id: if by_id { link.user_id } else { String::new() },
            email: link.email,
            child_id: link.child_id,
            granted_by: link.granted_by,
        },
    ))
}

/// Takes a user's access to the child away, at once (manage access); `{user_id}` is their user
/// id or their email. A member leaves with their own id or `me` (any access; the only manager
/// cannot leave).
#[utoipa::path(
    delete,
    path = "/api/v1/children/{child_id}/permissions/{user_id}",
    tag = "children",
    summary = "Take a user's access away, at once (manage)",
    params(
        ("child_id" = String, Path, description = "The child's id"),
        ("user_id" = String, Path, description = "The user whose access ends: a user id, an email, or `me` to leave")
    ),
    responses(
        (status = 200, description = "Whether there was a link", body = RevokeView),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 403, description = "FORBIDDEN: the family link does not allow this"),
        (status = 404, description = "NOT_FOUND: no such child, or another family's"),
        (status = 409, description = "CONFLICT: the only manager cannot leave"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty, %child_id))]
pub async fn revoke_permission(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((child_id, grantee)): Path<(String, String)>,
) -> Result<ApiOk<RevokeView>, ApiError> {
    let (grantee_user_id, grantee_email) = match grantee.as_str() {
        "me" => (user.sub.clone(), String::new()),
        email if email.contains('@') => (String::new(), email.to_owned()),
        id => (id.to_owned(), String::new()),
    };
    let revoked = state
        .families
        .clone()
        .revoke_permission(state.request(pb::RevokePermissionRequest {
            user_id: user.sub.clone(),
            child_id,
            grantee_user_id,
            grantee_email,
        }))
        .await?
        .into_inner()
        .revoked;
    Ok(ApiOk(StatusCode::OK, RevokeView { revoked }))
}
