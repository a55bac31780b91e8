//! The provider trait: one child utterance in, a stream of reply text out.

use async_trait::async_trait;
use blob_kit::ErrorKind;
use blob_proto::llm::v1::GenerateReplyRequest;
use futures::stream::BoxStream;

/// Why a provider could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// `RESOURCE_EXHAUSTED`: the provider's quota or rate limit was hit.
    #[error("provider rate limit: {0}")]
    RateLimited(String),
    /// `UNAVAILABLE`: the provider could not be reached or failed on its side.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// `DEADLINE_EXCEEDED`: the provider did not answer in time.
    #[error("provider timed out: {0}")]
    Timeout(String),
    /// `INTERNAL`: the provider refused our request (bad key, bad request) or answered nonsense.
    #[error("provider rejected the request: {0}")]
    Rejected(String),
}

impl ProviderError {
    /// The metric label of this error.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Rejected(_) => "rejected",
        }
    }

    /// The error table's kind for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::RateLimited(_) => ErrorKind::ResourceExhausted,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Timeout(_) => ErrorKind::DeadlineExceeded,
            Self::Rejected(_) => ErrorKind::Internal,
        }
    }
}

impl From<reqwest::Error> for ProviderError {
    fn from(err: reqwest::Error) -> Self {
        let timeout = err.is_timeout();
        let text = err.without_url().to_string();
        if timeout { Self::Timeout(text) } else { Self::Unavailable(text) }
    }
}

/// Pieces of reply text in order; their concatenation is the reply.
pub type TextStream = BoxStream<'static, Result<String, ProviderError>>;

/// Something that writes Blob's replies.
#[async_trait]
pub trait ReplyProvider: Send + Sync + 'static {
    /// The model name reported in the final event.
    fn model(&self) -> &str;

    /// Starts a reply; the stream ends when the reply is complete.
    async fn reply(&self, request: &GenerateReplyRequest) -> Result<TextStream, ProviderError>;
}
