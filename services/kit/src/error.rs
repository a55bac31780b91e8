//! The one table that maps an error's kind to an HTTP status and a gRPC code, both ways.
//!
//! Services return `tonic::Status` built from an [`ErrorKind`]; the gateway maps a downstream
//! `Status` back to an HTTP status with the same table.

use http::StatusCode;
use tonic::Code;

/// What went wrong, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400, `INVALID_ARGUMENT`.
    InvalidArgument,
    /// 401, `UNAUTHENTICATED`.
    Unauthenticated,
    /// 403, `PERMISSION_DENIED`.
    PermissionDenied,
    /// 404, `NOT_FOUND`.
    NotFound,
    /// 409, `ALREADY_EXISTS`.
    Conflict,
    /// 409, `FAILED_PRECONDITION`.
    FailedPrecondition,
    /// 429, `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// 503, `UNAVAILABLE`.
    Unavailable,
    /// 504, `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// 500, `INTERNAL`.
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict | Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code for this kind.
    pub fn grpc_code(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::NotFound => Code::NotFound,
            Self::Conflict => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unavailable => Code::Unavailable,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Internal => Code::Internal,
        }
    }

    /// The kind a downstream gRPC code stands for (the reverse of [`ErrorKind::grpc_code`]).
    pub fn from_grpc_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists | Code::Aborted => Self::Conflict,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::ResourceExhausted => Self::ResourceExhausted,
            Code::Unavailable => Self::Unavailable,
            Code::DeadlineExceeded | Code::Cancelled => Self::DeadlineExceeded,
            _ => Self::Internal,
        }
    }

    /// A `tonic::Status` of this kind.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }
}

/// gRPC metadata naming the dependency behind an `UNAVAILABLE` status, so the edge can tell a
/// client which part is down (`redis` or `cold_store`).
pub const DEPENDENCY_METADATA: &str = "x-blob-dependency";

/// An `UNAVAILABLE` status naming the dependency that failed.
pub fn dependency_unavailable(
    dependency: &'static str,
    message: impl Into<String>,
) -> tonic::Status {
    let mut status = ErrorKind::Unavailable.status(message);
    status
        .metadata_mut()
        .insert(DEPENDENCY_METADATA, tonic::metadata::MetadataValue::from_static(dependency));
    status
}

/// The dependency an `UNAVAILABLE` status names, if any.
pub fn unavailable_dependency(status: &tonic::Status) -> Option<&str> {
    status.metadata().get(DEPENDENCY_METADATA).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::FailedPrecondition,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Internal,
    ];

    #[test]
    fn grpc_codes_round_trip() {
        for kind in ALL {
            assert_eq!(ErrorKind::from_grpc_code(kind.grpc_code()), kind);
        }
    }

    #[test]
    fn http_statuses_follow_the_table() {
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::PermissionDenied.http_status(), 403);
        assert_eq!(ErrorKind::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorKind::ResourceExhausted.http_status(), 429);
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
        assert_eq!(ErrorKind::DeadlineExceeded.http_status(), 504);
    }
}
