//! `/api/v1/users/me`: the signed-in parent, their children and what is live now.

use axum::extract::State;
use axum::http::StatusCode;
use blob_proto::session::v1 as pb;
use serde::{Deserialize, Serialize};

use super::AuthUser;
use super::views::{ActiveSessionView, ChildView, UserProfile};
use crate::envelope::{ApiError, ApiJson, ApiOk};
use crate::state::AppState;
use blob_kit::validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Every route under `/api/v1` of this resource, registered once for the router and the
/// OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, update_me, delete_me))
}

/// `GET /api/v1/users/me`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The user.
    pub user: UserProfile,
    /// Every child the user may see, oldest link first.
    pub children: Vec<ChildView>,
    /// The child with a live session (the most recently active one), if any.
    pub active_child: Option<ChildView>,
    /// That child's session.
    pub active_session: Option<ActiveSessionView>,
    /// What this backend supports, for the app to adapt to.
    pub feature_flags: FeatureFlags,
}

/// Switches the app reads.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureFlags {
    /// Blob's free conversation (the `companion` session mode) is available.
    pub companion_mode: bool,
    /// Biometric unlock is offered by the backend (it is not).
    pub biometric_enabled: bool,
    /// Lesson sessions (a session mode of their own) are available (they are not; lessons and
    /// progress are served over REST, see `lessons`).
    pub lesson_mode_enabled: bool,
    /// The voice socket is available.
    pub voice: bool,
    /// Lessons and progress are available.
    pub lessons: bool,
    /// The socket accepts the legacy `audio_stream` JSON and raw PCM frames.
    pub legacy_audio: bool,
}

/// `PATCH /api/v1/users/me` body: the fields to change (at least one).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// The name Blob and the app use for the parent (0-128 characters).
    #[serde(default)]
    pub display_name: Option<String>,
    /// A BCP 47 language tag such as `en-IN` (empty clears it).
    #[serde(default)]
    pub locale: Option<String>,
    /// An IANA time zone such as `Asia/Kolkata` (empty clears it).
    #[serde(default)]
    pub timezone: Option<String>,
}

/// What `DELETE /api/v1/users/me` erased.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountErasureView {
    /// The account.
    pub user_id: String,
    /// The children nobody else could see, each erased as by `DELETE /children/{id}/data`.
    pub erased_children: Vec<super::children::ErasureView>,
    /// The children shared with others, which the account left (their data stays with them).
    pub left_children: Vec<String>,
    /// Sessions the account held for the children it left, ended.
    pub sessions_ended: u32,
    /// Stored responses to the account's idempotent requests, removed.
    pub idempotent_responses: u32,
    /// Whether the user record was deleted (false: it was already gone).
    pub user_record: bool,
    /// RFC 3339 UTC.
    pub erased_at: String,
}

/// The user, children and active sessions, fetched in parallel.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "users",
    summary = "The signed-in parent, their children and what is live",
    responses(
        (status = 200, description = "The user", body = Me),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn get_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<ApiOk<Me>, ApiError> {
    let (mut users, mut children) = (state.families.clone(), state.families.clone());
    let (profile, listed) = tokio::join!(
        users.get_user(state.request(pb::GetUserRequest { user_id: user.sub.clone() })),
        children
            .list_children(state.request(pb::ListChildrenRequest { user_id: user.sub.clone() })),
    );
    let profile = profile?.into_inner();
    let children: Vec<ChildView> =
        listed?.into_inner().children.into_iter().filter_map(ChildView::from_access).collect();
    let lookups = children.iter().map(|child| {
        let mut client = state.sessions.clone();
        let request = state
            .request(pb::ChildRef { user_id: user.sub.clone(), child_id: child.child_id.clone() });
        async move { client.get_child_session(request).await }
    });
    // The child whose session was active most recently.
    let mut latest: Option<(usize, pb::Session)> = None;
    for (i, found) in futures::future::join_all(lookups).await.into_iter().enumerate() {
        if let Some(session) = found?.into_inner().session
            && latest
                .as_ref()
                .is_none_or(|(_, l)| session.last_activity_at_ms > l.last_activity_at_ms)
        {
            latest = Some((i, session));
        }
    }
    let (active_child, active_session) = match latest {
        Some((i, session)) => {
            (Some(children[i].clone()), Some(ActiveSessionView::new(session, &user.sub)))
        }
        None => (None, None),
    };
    Ok(ApiOk(
        StatusCode::OK,
        Me {
            user: profile.into(),
            children,
            active_child,
            active_session,
            feature_flags: FeatureFlags {
                companion_mode: true,
                biometric_enabled: false,
                lesson_mode_enabled: false,
                voice: true,
                lessons: true,
                legacy_audio: state.config.ws.legacy_binary,
            },
        },
    ))
}

/// Changes the display name, locale or time zone.
#[utoipa::path(
    patch,
    path = "/api/v1/users/me",
    tag = "users",
    summary = "Change the display name, locale or time zone",
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The user", body = crate::routes::views::UserProfile),
        (status = 400, description = "VALIDATION_ERROR: a field's value (details.field)"),
        (status = 422, description = "VALIDATION_ERROR: wrong types, missing or unknown fields"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn update_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> Result<ApiOk<UserProfile>, ApiError> {
    if body.display_name.is_none() && body.locale.is_none() && body.timezone.is_none() {
        return Err(ApiError::validation("body", "give display_name, locale or timezone"));
    }
    let display_name = body.display_name.as_deref().map(validate::display_name).transpose();
    let display_name = display_name.map_err(ApiError::invalid)?.map(str::to_owned);
    let locale = body.locale.as_deref().map(validate::locale).transpose();
    let locale = locale.map_err(ApiError::invalid)?;
    let timezone = body.timezone.as_deref().map(validate::timezone).transpose();
    let timezone = timezone.map_err(ApiError::invalid)?.map(str::to_owned);
    let updated = state
        .families
        .clone()
        .update_user(state.request(pb::UpdateUserRequest {
            user_id: user.sub.clone(),
            display_name,
            locale,
            timezone,
        }))
        .await?
        .into_inner();
    Ok(ApiOk(StatusCode::OK, updated.into()))
}

/// Deletes the parent's account and everything only they can reach, and returns the receipt.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me",
    tag = "users",
    summary = "Delete the account and everything only it can reach",
    description = "Every child nobody else can see is erased (as `DELETE /children/{id}/data`); \
        the account leaves the children shared with others; every token issued to it is refused \
        from now on; its user record is deleted. A later sign-in starts a new, empty account. \
        The Firebase account itself is the app's to delete.",
    responses(
        (status = 200, description = "The erasure receipt", body = AccountErasureView),
        (status = 409, description = "CONFLICT: the account is the only manager of a child others can see; nothing was changed"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn delete_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<ApiOk<AccountErasureView>, ApiError> {
    let receipt = state
        .families
        .clone()
        .delete_user(state.request(pb::DeleteUserRequest { user_id: user.sub.clone() }))
        .await?
        .into_inner();
    tracing::info!(
        erased = receipt.children.len(),
        left = receipt.left_child_ids.len(),
        "account deleted"
    );
    Ok(ApiOk(
        StatusCode::OK,
        AccountErasureView {
            user_id: receipt.user_id,
            erased_children: receipt.children.into_iter().map(Into::into).collect(),
            left_children: receipt.left_child_ids,
            sessions_ended: receipt.sessions_ended,
            idempotent_responses: receipt.idempotent_responses,
            user_record: receipt.user_record,
            erased_at: crate::envelope::rfc3339_ms(receipt.erased_at_ms),
        },
    ))
}
