//! `LLM_PROVIDER=openai`: any OpenAI-compatible chat endpoint (Ollama, a llama.cpp server,
//! vLLM, Groq…) by base URL: `POST {OPENAI_API_BASE}/chat/completions` with `stream: true`,
//! read as server-sent events (`data: {choices: [{delta: {content}}]}` … `data: [DONE]`).

use async_trait::async_trait;
use blob_proto::llm::v1::{GenerateReplyRequest, Role};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::gemini::{SAFE_FALLBACK, async_stream};
use crate::persona::system_instruction;
use crate::provider::{ProviderError, ReplyProvider, TextStream};
use crate::sse::{Step, relay};

/// Settings of the OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `OPENAI_API_BASE`, e.g. `http://127.0.0.1:11434/v1` for Ollama.
    pub api_base: String,
    /// `OPENAI_API_KEY`, sent as a bearer token when set.
    pub api_key: Option<SecretString>,
    /// `OPENAI_MODEL`.
    pub model: String,
    /// `LLM_MAX_OUTPUT_TOKENS`.
    pub max_output_tokens: u32,
    /// `LLM_TEMPERATURE`.
    pub temperature: f32,
}

/// Replies from an OpenAI-compatible chat endpoint.
pub struct OpenAiProvider {
    http: reqwest::Client,
    config: OpenAiConfig,
}

/// The request body.
#[derive(Debug, Serialize)]
pub struct ChatRequest {
    /// Model id.
    pub model: String,
    /// System, history, then the child's words.
    pub messages: Vec<ChatMessage>,
    /// Always true.
    pub stream: bool,
    /// Reply length bound.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

/// One message.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

#[derive(Debug, Deserialize)]
struct ChatChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

impl OpenAiProvider {
    /// A provider for `config`.
    pub fn new(http: reqwest::Client, config: OpenAiConfig) -> Self {
        Self { http, config }
    }

    /// The request body for a reply.
    pub fn body(&self, request: &GenerateReplyRequest) -> ChatRequest {
        let mut messages = vec![ChatMessage {
            role: "system".to_owned(),
            content: system_instruction(request.child.as_ref()),
        }];
        for turn in request.history.iter().filter(|t| !t.text.trim().is_empty()) {
            let role = if turn.role == i32::from(Role::Assistant) { "assistant" } else { "user" };
            messages.push(ChatMessage { role: role.to_owned(), content: turn.text.clone() });
        }
        messages.push(ChatMessage { role: "user".to_owned(), content: request.user_text.clone() });
        ChatRequest {
            model: self.config.model.clone(),
            messages,
            stream: true,
            max_tokens: self.config.max_output_tokens,
            temperature: self.config.temperature,
        }
    }
}

#[async_trait]
impl ReplyProvider for OpenAiProvider {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn reply(&self, request: &GenerateReplyRequest) -> Result<TextStream, ProviderError> {
        let url = format!("{}/chat/completions", self.config.api_base);
        let mut call = self.http.post(url).json(&self.body(request));
        if let Some(key) = &self.config.api_key {
            call = call.bearer_auth(key.expose_secret());
        }
        let response = call.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            return Err(match status.as_u16() {
                429 => ProviderError::RateLimited(message),
                500..=599 => ProviderError::Unavailable(message),
                _ => ProviderError::Rejected(format!("{status}: {message}")),
            });
        }
        let bytes = response.bytes_stream();
        Ok(async_stream(move |tx| async move {
            let mut produced = false;
            relay(bytes, tx, move |data| {
                if data.trim() == "[DONE]" {
                    return Step::Stop(Vec::new());
                }
                let chunk: ChatChunk = match serde_json::from_str(data) {
                    Ok(chunk) => chunk,
                    Err(err) => {
                        let message = format!("unreadable stream chunk: {err}");
                        return Step::Stop(vec![Err(ProviderError::Rejected(message))]);
                    }
                };
                let mut pieces = Vec::new();
                for choice in chunk.choices {
                    if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                        produced = true;
                        pieces.push(Ok(text));
                    }
                    if choice.finish_reason.as_deref() == Some("content_filter") && !produced {
                        pieces.push(Ok(SAFE_FALLBACK.to_owned()));
                        return Step::Stop(pieces);
                    }
                }
                Step::Continue(pieces)
            })
            .await;
        }))
    }
}
