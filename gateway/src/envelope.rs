//! The REST envelope: `{success, data, meta}` on success, `{success, error, meta}` on failure,
//! with `meta = {request_id, timestamp, version}`. The request id comes from `x-request-id`
//! (or is generated), is echoed in the response header and in `meta`, and tags the logs.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blob_kit::ErrorKind;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The contract version in every `meta`.
pub const API_VERSION: &str = "4.0";
/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Middleware: accept or make the request id, and make it visible to the envelope and logs.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("checked to be visible ASCII");
    request.headers_mut().insert(REQUEST_ID_HEADER, header.clone());
    let mut response = REQUEST_ID.scope(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

/// The id of the request being handled (a fresh one outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

/// `meta` of every response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Meta {
    /// The request's id.
    pub request_id: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// [`API_VERSION`].
    pub version: &'static str,
}

impl Meta {
    /// Meta for the current request.
    pub fn now() -> Self {
        Self { request_id: current_request_id(), timestamp: now_rfc3339(), version: API_VERSION }
    }
}

/// The current time, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339_ms(time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

/// A successful response: `{success: true, data, meta}`.
#[derive(Debug)]
pub struct ApiOk<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for ApiOk<T> {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<T> {
            success: bool,
            data: T,
            meta: Meta,
        }
        (self.0, axum::Json(Body { success: true, data: self.1, meta: Meta::now() }))
            .into_response()
    }
}

/// The stable error codes of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 401: the token's time is up; sign in again (or refresh).
    TokenExpired,
    /// 401: the token is missing, malformed, forged or for another audience.
    TokenInvalid,
    /// 403: signed in, but not allowed to do this.
    Forbidden,
    /// 404: no such resource (or it belongs to another family).
    NotFound,
    /// 400 (or 413, 415): the request body or parameters are wrong.
    ValidationError,
    /// 409: the resource's state does not allow this.
    Conflict,
    /// 429: too many requests.
    RateLimited,
    /// 409: the session is paused.
    SessionPaused,
    /// 503/504: a service behind the gateway is down or slow; retry later.
    ServiceUnavailable,
    /// 503: the durable store (Firestore, or the embedded store) is unreachable; retry later.
    FirestoreUnavailable,
    /// 500: our fault.
    Internal,
}

impl ErrorCode {
    /// The HTTP status the code is sent with by default.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TokenExpired | Self::TokenInvalid => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Conflict | Self::SessionPaused => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable | Self::FirestoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A failed request: `{success: false, error: {code, message, details?}, meta}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Safe to show a developer; never internal details.
    pub message: String,
    /// Structured extra information (e.g. which field).
    pub details: Option<serde_json::Value>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with the code's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// A 400 `VALIDATION_ERROR` naming the field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let mut err = Self::new(ErrorCode::ValidationError, message);
        err.details = Some(serde_json::json!({ "field": field }));
        err
    }

    /// A value that breaks the shared rules for names and grades, as `VALIDATION_ERROR`.
    pub fn invalid(err: blob_kit::validate::Invalid) -> Self {
        Self::validation(err.field, err.message)
    }

    /// Maps a downstream gRPC status with the kit's error table.
    pub fn from_status(status: &tonic::Status) -> Self {
        let kind = ErrorKind::from_grpc_code(status.code());
        let code = match kind {
            ErrorKind::InvalidArgument => ErrorCode::ValidationError,
            ErrorKind::Unauthenticated => ErrorCode::TokenInvalid,
            ErrorKind::PermissionDenied => ErrorCode::Forbidden,
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::Conflict | ErrorKind::FailedPrecondition => ErrorCode::Conflict,
            ErrorKind::ResourceExhausted => ErrorCode::RateLimited,
            ErrorKind::Unavailable
                if blob_kit::error::unavailable_dependency(status) == Some("cold_store") =>
            {
                ErrorCode::FirestoreUnavailable
            }
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => ErrorCode::ServiceUnavailable,
            ErrorKind::Internal => ErrorCode::Internal,
        };
        let message = match kind {
            // Internal text of a failure never reaches the client; the log has it.
            ErrorKind::Internal => {
                tracing::error!(code = ?status.code(), message = %status.message(), "downstream failure");
                "internal error".to_owned()
            }
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
                tracing::warn!(code = ?status.code(), message = %status.message(), "downstream unavailable");
                "a service is temporarily unavailable; please retry".to_owned()
            }
            _ => status.message().to_owned(),
        };
        Self { status: kind.http_status(), code, message, details: None, retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Error {
            code: ErrorCode,
            message: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Body {
            success: bool,
            error: Error,
            meta: Meta,
        }
        let body = Body {
            success: false,
            error: Error { code: self.code, message: self.message, details: self.details },
            meta: Meta::now(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

/// A JSON body whose rejections (bad JSON, wrong types, unknown fields, too large) use the
/// envelope.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected Content-Type: application/json".to_owned()
        }
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
        JsonRejection::JsonDataError(err) => format!("invalid body: {}", err.body_text()),
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "the body is too large".to_owned()
        }
        other => other.body_text(),
    };
    ApiError { status, code: ErrorCode::ValidationError, message, details: None, retry_after: None }
}

/// Fallback for unknown routes: 404 in the envelope.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}
