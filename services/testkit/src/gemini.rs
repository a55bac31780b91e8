//! A local server that speaks the Gemini REST API's wire format
//! (`models/{model}:generateContent` and `:streamGenerateContent?alt=sse`), records every
//! request, and answers with a scripted reply, so the production client runs unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The key the fake accepts in `x-goog-api-key`.
pub const API_KEY: &str = "test-gemini-key";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `models/<model>:<method>`, as in the path.
    pub model_and_method: String,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// How the fake answers one request.
#[derive(Debug, Clone)]
pub enum Script {
    /// The text, split into three chunks sent at once.
    Reply(String),
    /// These chunks, with `pause` before each chunk after the first.
    Slow {
        /// The chunks' texts.
        chunks: Vec<String>,
        /// Wait before every chunk but the first.
        pause: std::time::Duration,
    },
    /// An error status with Google's error body.
    Fail(u16),
    /// This exact response body, sent as server-sent events (for malformed or unusual data).
    Raw(String),
}

#[derive(Default)]
struct Shared {
    requests: Vec<RecordedRequest>,
    scripts: Vec<Script>,
    /// Streamed replies whose client went away before the last chunk.
    abandoned: usize,
}

/// The running fake.
pub struct FakeGemini {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

/// The reply used when none was scripted.
pub const DEFAULT_REPLY: &str =
    "Once upon a time, a friendly dragon learned to share. What should the dragon do next?";

impl FakeGemini {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1beta/models/{*model_and_method}", post(handle))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, task }
    }

    /// The API base (`GEMINI_API_BASE`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues the text of the next reply (then the default again).
    pub fn push_reply(&self, text: &str) {
        self.push(Script::Reply(text.to_owned()));
    }

    /// Queues how the next request is answered.
    pub fn push(&self, script: Script) {
        self.shared.lock().expect("lock").scripts.push(script);
    }

    /// Streamed replies the client disconnected from before they were complete.
    pub fn abandoned(&self) -> usize {
        self.shared.lock().expect("lock").abandoned
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().expect("lock").requests.clone()
    }
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(model_and_method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return google_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "API key not valid.");
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload.");
    };
    if !body["contents"].is_array() {
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "contents is required.");
    }
    let Some((model, method)) = model_and_method.split_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method.");
    };
    let model = model.to_owned();
    let script = {
        let mut shared = shared.lock().expect("lock");
        shared.requests.push(RecordedRequest { model_and_method: model_and_method.clone(), body });
        if shared.scripts.is_empty() {
            Script::Reply(DEFAULT_REPLY.to_owned())
        } else {
            shared.scripts.remove(0)
        }
    };
    let (chunks, pause) = match script {
        Script::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return google_error(status, "UNAVAILABLE", "The model is overloaded.");
        }
        Script::Raw(body) => {
            return ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response();
        }
        Script::Reply(reply) => (split_in_three(&reply), std::time::Duration::ZERO),
        Script::Slow { chunks, pause } => (chunks, pause),
    };
    match method {
        "generateContent" => {
            axum::Json(chunk(&chunks.concat(), Some("STOP"), &model)).into_response()
        }
        "streamGenerateContent" if query.get("alt").map(String::as_str) == Some("sse") => {
            let count = chunks.len();
            let guard = AbandonGuard { shared: Arc::clone(&shared), complete: false };
            let events = futures::stream::unfold((0usize, guard), move |(i, guard)| {
                let chunks = chunks.clone();
                let model = model.clone();
                async move {
                    if i >= count {
                        guard.finish();
                        return None;
                    }
                    if i > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    let finish = (i == count - 1).then_some("STOP");
                    let event = format!("data: {}\r\n\r\n", chunk(&chunks[i], finish, &model));
                    Some((Ok::<_, std::convert::Infallible>(event), (i + 1, guard)))
                }
            });
            ([(header::CONTENT_TYPE, "text/event-stream")], axum::body::Body::from_stream(events))
                .into_response()
        }
        _ => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method."),
    }
}

/// Counts a streamed reply as abandoned when it is dropped before its end.
struct AbandonGuard {
    shared: Arc<Mutex<Shared>>,
    complete: bool,
}

impl AbandonGuard {
    fn finish(mut self) {
        self.complete = true;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.complete
            && let Ok(mut shared) = self.shared.lock()
        {
            shared.abandoned += 1;
        }
    }
}

/// Splits a reply at arbitrary points, as the real service's chunks fall.
fn split_in_three(reply: &str) -> Vec<String> {
    let boundary = |from: usize| {
        (from..reply.len()).find(|i| reply.is_char_boundary(*i)).unwrap_or(reply.len())
    };
    let first = boundary(reply.len() / 3);
    let second = boundary(first * 2);
    vec![reply[..first].to_owned(), reply[first..second].to_owned(), reply[second..].to_owned()]
}

fn chunk(text: &str, finish_reason: Option<&str>, model: &str) -> serde_json::Value {
    let mut candidate = serde_json::json!({
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    });
    if let Some(reason) = finish_reason {
        candidate["finishReason"] = reason.into();
    }
    serde_json::json!({
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "totalTokenCount": 52},
        "modelVersion": model,
    })
}

fn google_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "error": {"code": status.as_u16(), "message": message, "status": code}
    });
    (status, axum::Json(body)).into_response()
}
