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
/// The OAuth access token the fake's token endpoint grants and its Vertex AI routes accept.
pub const VERTEX_TOKEN: &str = "ya29.test-vertex-token";

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
    /// Access tokens granted.
    token_requests: usize,
    /// Wait before the first chunk of every streamed reply (a model's time to first token).
    first_token_delay: std::time::Duration,
    /// Every request fails with 503 until then (an outage).
    down_until: Option<std::time::Instant>,
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
    /// Makes every streamed reply wait `delay` before its first chunk, like a model's time to
    /// first token.
    pub fn set_first_token_delay(&self, delay: std::time::Duration) {
        self.shared.lock().expect("fake state").first_token_delay = delay;
    }

    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1beta/models/{*model_and_method}", post(handle))
            .route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{*model_and_method}",
                post(handle_vertex),
            )
            .route("/token", post(token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                axum::routing::get(metadata_token),
            )
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

    /// An outage: every request fails with `503 UNAVAILABLE` for `length` from now.
    pub fn go_down_for(&self, length: std::time::Duration) {
        self.shared.lock().expect("lock").down_until = Some(std::time::Instant::now() + length);
    }

    /// Queues the text of the next reply (then the default again).
    pub fn push_reply(&self, text: &str) {
        self.push(Script::Reply(text.to_owned()));
    }

    /// Queues how the next request is answered.
    pub fn push(&self, script: Script) {
        self.shared.lock().expect("lock").scripts.push(script);
    }

    /// `token_uri` for a service account key file (the OAuth token endpoint).
    pub fn token_uri(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Access tokens granted so far.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().expect("lock").token_requests
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

/// The Gemini API: `POST /v1beta/models/{model}:{method}` with `x-goog-api-key`.
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
    respond(shared, model_and_method, query, body).await
}

/// Vertex AI: `POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}`
/// with a bearer token from the OAuth endpoint below.
async fn handle_vertex(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path((project, location, model_and_method)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = format!("Bearer {VERTEX_TOKEN}");
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Invalid credentials.");
    }
    let path = format!("projects/{project}/locations/{location}/{model_and_method}");
    respond(shared, path, query, body).await
}

/// OAuth 2.0 token endpoint: a JWT-bearer grant signed RS256 gets [`VERTEX_TOKEN`].
async fn token(
    State(shared): State<Arc<Mutex<Shared>>>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let header = assertion.split('.').next().and_then(|h| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok()
    });
    let rs256 = header
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h["alg"] == "RS256");
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        || !rs256
        || assertion.split('.').count() != 3
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    shared.lock().expect("lock").token_requests += 1;
    axum::Json(serde_json::json!({
        "access_token": VERTEX_TOKEN, "expires_in": 3599, "token_type": "Bearer",
    }))
    .into_response()
}

/// The metadata server's token route (GKE, Cloud Run, GCE).
async fn metadata_token(State(shared): State<Arc<Mutex<Shared>>>, headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response();
    }
    shared.lock().expect("lock").token_requests += 1;
    axum::Json(serde_json::json!({
        "access_token": VERTEX_TOKEN, "expires_in": 3599, "token_type": "Bearer",
    }))
    .into_response()
}

async fn respond(
    shared: Arc<Mutex<Shared>>,
    model_and_method: String,
    query: HashMap<String, String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload.");
    };
    if !body["contents"].is_array() {
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "contents is required.");
    }
    let Some((model, method)) = model_and_method.rsplit_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown method.");
    };
    let model = model.rsplit('/').next().unwrap_or(model).to_owned();
    let script = {
        let mut shared = shared.lock().expect("lock");
        shared.requests.push(RecordedRequest { model_and_method: model_and_method.clone(), body });
        if shared.down_until.is_some_and(|until| std::time::Instant::now() < until) {
            Script::Fail(503)
        } else if shared.scripts.is_empty() {
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
            let first_token_delay = shared.lock().expect("fake state").first_token_delay;
            if !first_token_delay.is_zero() {
                tokio::time::sleep(first_token_delay).await;
            }
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

/// Writes a service account key file (a fresh RSA key) whose `token_uri` is `token_uri`, as
/// `GOOGLE_APPLICATION_CREDENTIALS` would name it.
pub fn write_service_account(path: &std::path::Path, token_uri: &str) {
    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
    let key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("generating RSA key");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("encoding the key").to_string();
    let file = serde_json::json!({
        "type": "service_account",
        "project_id": "blob-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "blob-llm@blob-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    });
    std::fs::write(path, file.to_string()).expect("writing the credentials file");
}
