//! `BYPASSLLM=true`: a fixed, friendly reply for running Blob without any model or key.

use async_trait::async_trait;
use blob_proto::llm::v1::GenerateReplyRequest;

use crate::provider::{ProviderError, ReplyProvider, TextStream};

/// Always answers with the same two kind sentences, naming the child when known.
#[derive(Debug, Default, Clone, Copy)]
pub struct BypassProvider;

impl BypassProvider {
    /// The reply for a request.
    pub fn text_for(request: &GenerateReplyRequest) -> [String; 2] {
        let name = request
            .child
            .as_ref()
            .map(|c| c.name.trim())
            .filter(|n| !n.is_empty())
            .unwrap_or("friend");
        [format!("That sounds wonderful, {name}! "), "Can you tell me more about it?".to_owned()]
    }
}

#[async_trait]
impl ReplyProvider for BypassProvider {
    fn model(&self) -> &str {
        "bypass"
    }

    async fn reply(&self, request: &GenerateReplyRequest) -> Result<TextStream, ProviderError> {
        let pieces = Self::text_for(request);
        Ok(Box::pin(futures::stream::iter(pieces.into_iter().map(Ok))))
    }
}
