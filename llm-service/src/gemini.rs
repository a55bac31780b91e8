//! The Gemini REST API (`streamGenerateContent?alt=sse`), spoken exactly as documented: the
//! request carries `systemInstruction`, `contents`, `safetySettings` and `generationConfig`; the
//! key travels in `x-goog-api-key`; each server-sent event is a `GenerateContentResponse`.

use async_trait::async_trait;
use blob_proto::llm::v1::{GenerateReplyRequest, Role};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::adc::AccessTokens;
use crate::config::{GeminiAuth, GeminiConfig};
use crate::persona::system_instruction;
use crate::provider::{ProviderError, ReplyProvider, TextStream};
use crate::sse::{Step, relay};

/// Most earlier turns sent with a request; older ones are left out.
pub const MAX_HISTORY_TURNS: usize = 20;

/// The Gemini provider, on the Gemini API or on Vertex AI: one shared HTTP client, cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    http: reqwest::Client,
    config: GeminiConfig,
    /// Vertex AI's OAuth tokens.
    tokens: Option<Arc<AccessTokens>>,
}

impl GeminiProvider {
    /// A provider using `http` (built once at start). Vertex credentials are read here.
    pub fn new(http: reqwest::Client, config: GeminiConfig) -> anyhow::Result<Self> {
        let tokens = match &config.auth {
            GeminiAuth::ApiKey(_) => None,
            GeminiAuth::Vertex { credentials, metadata_base, .. } => {
                Some(Arc::new(AccessTokens::application_default(
                    http.clone(),
                    credentials.as_deref(),
                    metadata_base,
                )?))
            }
        };
        Ok(Self { http, config, tokens })
    }

    /// The streaming endpoint of the configured backend.
    pub fn url(&self) -> String {
        let (base, model) = (&self.config.api_base, &self.config.model);
        match &self.config.auth {
            GeminiAuth::ApiKey(_) => {
                format!("{base}/v1beta/models/{model}:streamGenerateContent?alt=sse")
            }
            GeminiAuth::Vertex { project, location, .. } => format!(
                "{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent?alt=sse"
            ),
        }
    }

    /// The request body for a reply.
    pub fn body(&self, request: &GenerateReplyRequest) -> GenerateContentRequest {
        let skip = request.history.len().saturating_sub(MAX_HISTORY_TURNS);
        let mut contents: Vec<Content> = request.history[skip..]
            .iter()
            .filter(|turn| !turn.text.trim().is_empty())
            .map(|turn| Content {
                role: if turn.role == i32::from(Role::Assistant) { "model" } else { "user" }
                    .to_owned(),
                parts: vec![Part { text: turn.text.clone() }],
            })
            .collect();
        contents.push(Content {
            role: "user".to_owned(),
            parts: vec![Part { text: request.user_text.clone() }],
        });
        GenerateContentRequest {
            system_instruction: SystemInstruction {
                parts: vec![Part { text: system_instruction(request.child.as_ref()) }],
            },
            contents,
            safety_settings: SAFETY_CATEGORIES
                .iter()
                .map(|category| SafetySetting {
                    category: (*category).to_owned(),
                    threshold: "BLOCK_LOW_AND_ABOVE".to_owned(),
                })
                .collect(),
            generation_config: GenerationConfig {
                max_output_tokens: self.config.max_output_tokens,
                temperature: self.config.temperature,
            },
        }
    }
}

/// Every adjustable harm category, blocked from low probability up: the listeners are children.
const SAFETY_CATEGORIES: [&str; 4] = [
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
];

/// What Blob says when the provider blocks its own answer for safety.
pub const SAFE_FALLBACK: &str =
    "Hmm, let's talk about something else! What is your favourite animal?";

#[async_trait]
impl ReplyProvider for GeminiProvider {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn reply(&self, request: &GenerateReplyRequest) -> Result<TextStream, ProviderError> {
        let mut call = self.http.post(self.url()).json(&self.body(request));
        call = match (&self.config.auth, &self.tokens) {
            (GeminiAuth::ApiKey(key), _) => call.header("x-goog-api-key", key.expose_secret()),
            (GeminiAuth::Vertex { .. }, Some(tokens)) => call.bearer_auth(tokens.token().await?),
            (GeminiAuth::Vertex { .. }, None) => {
                return Err(ProviderError::Rejected("Vertex AI without credentials".into()));
            }
        };
        let response = call.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = error_message(&body).unwrap_or_else(|| status.to_string());
            return Err(match status.as_u16() {
                429 => ProviderError::RateLimited(message),
                500..=599 => ProviderError::Unavailable(message),
                _ => ProviderError::Rejected(format!("{status}: {message}")),
            });
        }

        let bytes = response.bytes_stream();
        let stream = async_stream(move |tx| async move {
            let mut produced = false;
            relay(bytes, tx, move |data| match parse_chunk(data) {
                Ok(Chunk::Text(text)) if !text.is_empty() => {
                    produced = true;
                    Step::Continue(vec![Ok(text)])
                }
                Ok(Chunk::Text(_)) => Step::Continue(Vec::new()),
                Ok(Chunk::Blocked(reason)) => {
                    tracing::warn!(%reason, "reply blocked by the provider's safety filter");
                    let fallback =
                        if produced { vec![] } else { vec![Ok(SAFE_FALLBACK.to_owned())] };
                    Step::Stop(fallback)
                }
                Err(err) => Step::Stop(vec![Err(err)]),
            })
            .await;
        });
        Ok(stream)
    }
}

/// Runs `body` as a task feeding a bounded channel and returns the channel as a stream.
/// Dropping the stream closes the channel, which ends the task at its next send.
pub(crate) fn async_stream<F, Fut>(body: F) -> TextStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<String, ProviderError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

enum Chunk {
    Text(String),
    Blocked(String),
}

fn parse_chunk(data: &str) -> Result<Chunk, ProviderError> {
    let response: GenerateContentResponse = serde_json::from_str(data)
        .map_err(|e| ProviderError::Rejected(format!("unreadable response chunk: {e}")))?;
    if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
        return Ok(Chunk::Blocked(reason));
    }
    let Some(candidate) = response.candidates.into_iter().next() else {
        return Ok(Chunk::Text(String::new()));
    };
    let text: String = candidate
        .content
        .map(|c| c.parts.into_iter().filter_map(|p| p.text).collect())
        .unwrap_or_default();
    match candidate.finish_reason.as_deref() {
        Some("SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII") if text.is_empty() => {
            Ok(Chunk::Blocked(candidate.finish_reason.unwrap_or_default()))
        }
        _ => Ok(Chunk::Text(text)),
    }
}

fn error_message(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        message: String,
    }
    serde_json::from_str::<Envelope>(body).ok().map(|e| e.error.message)
}

// === The wire format ===

/// `GenerateContentRequest`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// Blob's persona.
    pub system_instruction: SystemInstruction,
    /// The conversation, oldest first, ending with the child's new words.
    pub contents: Vec<Content>,
    /// Harm thresholds.
    pub safety_settings: Vec<SafetySetting>,
    /// Length and sampling.
    pub generation_config: GenerationConfig,
}

/// `systemInstruction`.
#[derive(Debug, Serialize)]
pub struct SystemInstruction {
    /// Text parts.
    pub parts: Vec<Part>,
}

/// One message of `contents`.
#[derive(Debug, Serialize)]
pub struct Content {
    /// `user` or `model`.
    pub role: String,
    /// Text parts.
    pub parts: Vec<Part>,
}

/// A text part.
#[derive(Debug, Serialize)]
pub struct Part {
    /// The text.
    pub text: String,
}

/// One entry of `safetySettings`.
#[derive(Debug, Serialize)]
pub struct SafetySetting {
    /// `HARM_CATEGORY_*`.
    pub category: String,
    /// `BLOCK_*`.
    pub threshold: String,
}

/// `generationConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Upper bound on the reply's length.
    pub max_output_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<ResponseContent>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Debug, Deserialize)]
struct ResponsePart {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use blob_proto::llm::v1::{ChildProfile, Turn};

    fn provider() -> GeminiProvider {
        GeminiProvider::new(
            reqwest::Client::new(),
            GeminiConfig {
                api_base: "http://127.0.0.1:9".into(),
                auth: GeminiAuth::ApiKey("k".to_owned().into()),
                model: "gemini-test".into(),
                max_output_tokens: 100,
                temperature: 0.5,
            },
        )
        .expect("an API key needs no set-up")
    }

    #[test]
    fn body_has_the_documented_shape() {
        let request = GenerateReplyRequest {
            conversation_id: "c".into(),
            request_id: "r".into(),
            child: Some(ChildProfile { name: "Mia".into(), grade_level: 1 }),
            history: vec![
                Turn { role: Role::User.into(), text: "hi".into() },
                Turn { role: Role::Assistant.into(), text: "hello Mia".into() },
            ],
            user_text: "tell me a story".into(),
        };
        let body = serde_json::to_value(provider().body(&request)).unwrap();
        assert_eq!(body["contents"][0]["role"], "user");
        assert_eq!(body["contents"][1]["role"], "model");
        assert_eq!(body["contents"][2]["parts"][0]["text"], "tell me a story");
        assert!(body["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("Mia"));
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
        assert_eq!(body["safetySettings"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn history_is_capped() {
        let request = GenerateReplyRequest {
            history: (0..50).map(|i| Turn { role: 1, text: format!("t{i}") }).collect(),
            user_text: "now".into(),
            ..Default::default()
        };
        let body = provider().body(&request);
        assert_eq!(body.contents.len(), MAX_HISTORY_TURNS + 1);
        assert_eq!(body.contents[0].parts[0].text, "t30");
    }

    #[test]
    fn chunks_parse() {
        let text = r#"{"candidates":[{"content":{"parts":[{"text":"Once "},{"text":"upon"}],"role":"model"}}]}"#;
        assert!(matches!(parse_chunk(text), Ok(Chunk::Text(t)) if t == "Once upon"));
        let blocked = r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#;
        assert!(matches!(parse_chunk(blocked), Ok(Chunk::Blocked(_))));
        let finished = r#"{"candidates":[{"finishReason":"SAFETY"}]}"#;
        assert!(matches!(parse_chunk(finished), Ok(Chunk::Blocked(_))));
        assert!(parse_chunk("not json").is_err());
    }
}
