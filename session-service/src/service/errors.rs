//! Store errors as gRPC statuses, and the count of store failures.
//!
//! `?` turns a [`HotError`] or a [`ColdError`] into its status. A failure of a store itself
//! (unreachable, or an answer that cannot be read) names the store in the status's
//! `x-blob-dependency` metadata; [`CountStoreErrors`] counts those statuses per store as they
//! leave the server, so no handler has to remember to.

use std::task::{Context, Poll};

use blob_kit::ErrorKind;
use blob_kit::error::{DEPENDENCY_METADATA, dependency_unavailable};
use futures::future::BoxFuture;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;

use crate::cold::ColdError;
use crate::hot::HotError;
use crate::metrics::SessionMetrics;

/// The dependency names the statuses carry, and the metric's `store` label for each.
const STORES: [(&str, &str); 2] = [("redis", "redis"), ("cold_store", "cold")];

impl From<HotError> for Status {
    fn from(err: HotError) -> Self {
        match err {
            HotError::NotFound => ErrorKind::NotFound.status("session not found"),
            HotError::Forbidden => {
                ErrorKind::PermissionDenied.status("session belongs to another user")
            }
            HotError::Stale => {
                ErrorKind::FailedPrecondition.status("a newer connection holds this session")
            }
            HotError::NoConversation => ErrorKind::NotFound.status("conversation not found"),
            HotError::OtherChild => {
                ErrorKind::PermissionDenied.status("the conversation is with another child")
            }
            HotError::Unavailable(err) => {
                tracing::error!(error = %err, "redis unavailable");
                dependency_unavailable("redis", "session store unavailable")
            }
            HotError::Corrupt(detail) => {
                tracing::error!(%detail, "unreadable hot state");
                internal("redis")
            }
        }
    }
}

impl From<ColdError> for Status {
    fn from(err: ColdError) -> Self {
        match err {
            ColdError::InvalidId(detail) => ErrorKind::InvalidArgument.status(detail),
            ColdError::NotFound(_) => ErrorKind::NotFound.status("not found"),
            ColdError::AlreadyExists(_) => ErrorKind::Conflict.status("already exists"),
            ColdError::Corrupt(detail) => {
                tracing::error!(%detail, "unreadable cold state");
                internal("cold_store")
            }
            ColdError::Unavailable(detail) => {
                tracing::error!(%detail, "cold store unavailable");
                dependency_unavailable("cold_store", "cold store unavailable")
            }
        }
    }
}

/// `INTERNAL` for a store whose answer could not be read, naming the store.
fn internal(store: &'static str) -> Status {
    let mut status = ErrorKind::Internal.status("internal error");
    status.metadata_mut().insert(DEPENDENCY_METADATA, MetadataValue::from_static(store));
    status
}

/// A gRPC service whose answers naming a failed store are counted in
/// `blob_session_store_errors_total`.
#[derive(Clone)]
pub struct CountStoreErrors<S> {
    inner: S,
    metrics: SessionMetrics,
}

impl<S> CountStoreErrors<S> {
    /// Counts the failed-store answers of `inner`.
    pub fn new(inner: S, metrics: SessionMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl<S: NamedService> NamedService for CountStoreErrors<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower::Service<http::Request<B>> for CountStoreErrors<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = response.await?;
            // An error answer carries its status in the headers (a trailers-only response).
            let store = response
                .headers()
                .get(DEPENDENCY_METADATA)
                .and_then(|value| value.to_str().ok())
                .and_then(|name| STORES.iter().find(|(dependency, _)| *dependency == name));
            if let Some((_, label)) = store {
                metrics.store_error(label);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blob_kit::error::unavailable_dependency;

    #[test]
    fn store_failures_name_their_store_and_other_errors_do_not() {
        let redis = redis::RedisError::from(std::io::Error::other("refused"));
        let status = Status::from(HotError::Unavailable(redis));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(unavailable_dependency(&status), Some("redis"));
        let status = Status::from(ColdError::Corrupt("bad".into()));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.metadata().get(DEPENDENCY_METADATA).unwrap(), "cold_store");
        for status in [
            Status::from(HotError::NotFound),
            Status::from(HotError::Forbidden),
            Status::from(ColdError::NotFound("x".into())),
            Status::from(ColdError::InvalidId("x".into())),
        ] {
            assert!(status.metadata().get(DEPENDENCY_METADATA).is_none(), "{status:?}");
        }
        assert_eq!(Status::from(HotError::Stale).code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            Status::from(ColdError::AlreadyExists("x".into())).code(),
            tonic::Code::AlreadyExists
        );
    }
}
