//! Clients of the gateway as the phone uses it: the REST API and the voice socket.

use std::time::Duration;

use blob_client::protocol::{AudioFrame, ServerMessage};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The REST API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A REST response: status and parsed envelope.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
}

impl ApiResponse {
    /// `data` of a success envelope; panics (showing the body) otherwise.
    pub fn data(&self) -> &serde_json::Value {
        assert_eq!(self.body["success"], true, "not a success: {} {}", self.status, self.body);
        &self.body["data"]
    }

    /// `error.code` of an error envelope; panics unless the envelope is complete.
    pub fn error_code(&self) -> &str {
        assert_eq!(self.body["success"], false, "not an error: {}", self.body);
        assert!(self.body["error"]["message"].is_string(), "no error.message: {}", self.body);
        assert_meta(&self.body);
        self.body["error"]["code"].as_str().expect("error.code")
    }
}

/// Checks `meta` has the documented fields.
pub fn assert_meta(body: &serde_json::Value) {
    let meta = &body["meta"];
    assert!(meta["request_id"].as_str().is_some_and(|s| !s.is_empty()), "meta.request_id: {body}");
    assert!(meta["timestamp"].as_str().is_some_and(|s| s.ends_with('Z')), "meta.timestamp: {body}");
    assert_eq!(meta["version"], "4.0", "meta.version: {body}");
}

impl Api {
    /// A client of the gateway at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned() }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> ApiResponse {
        self.call_with(method, path, token, body, &[]).await
    }

    /// [`Api::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> ApiResponse {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("sending a request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        ApiResponse { status, body, headers }
    }

    /// `POST /api/v1/auth/token-exchange`; returns the backend token.
    pub async fn exchange(&self, firebase_token: &str) -> String {
        let response = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/token-exchange",
                None,
                Some(serde_json::json!({ "firebase_token": firebase_token })),
            )
            .await;
        response.data()["token"].as_str().expect("token").to_owned()
    }

    /// `POST /api/v1/children`; returns the child id.
    pub async fn create_child(&self, token: &str, name: &str, grade_level: i32) -> String {
        let response = self
            .call(
                reqwest::Method::POST,
                "/api/v1/children",
                Some(token),
                Some(serde_json::json!({ "name": name, "grade_level": grade_level })),
            )
            .await;
        response.data()["child_id"].as_str().expect("child_id").to_owned()
    }

    /// `POST /api/v1/sessions`; returns the session data.
    pub async fn open_session(&self, token: &str, child_id: &str) -> serde_json::Value {
        let response = self
            .call(
                reqwest::Method::POST,
                "/api/v1/sessions",
                Some(token),
                Some(serde_json::json!({ "child_id": child_id })),
            )
            .await;
        response.data().clone()
    }
}

/// The voice socket.
pub struct VoiceSocket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Every JSON message received so far, in order.
    pub received: Vec<serde_json::Value>,
    /// Answer the server's heartbeat `ping` with a `pong` when it is read, as the app does
    /// (default). Off, the socket plays a client that has gone quiet.
    pub answer_pings: bool,
    thread: uuid::Uuid,
    sequence: u32,
}

impl VoiceSocket {
    /// Connects to `ws_url` with the token and session id.
    pub async fn connect(ws_url: &str, token: &str, session_id: &str) -> Self {
        Self::connect_url(&format!("{ws_url}?token={token}&session_id={session_id}")).await
    }

    /// Connects to a full voice socket URL (query included).
    pub async fn connect_url(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket handshake");
        Self {
            stream,
            received: Vec::new(),
            answer_pings: true,
            thread: uuid::Uuid::new_v4(),
            sequence: 0,
        }
    }

    /// The next JSON message, skipping protocol frames; `Err(close code)` if the socket closed.
    /// Panics if nothing arrives within `deadline`.
    pub async fn next_json(
        &mut self,
        deadline: Duration,
    ) -> Result<serde_json::Value, Option<u16>> {
        match self.next_json_within(deadline).await {
            Some(result) => result,
            None => panic!("no message within {deadline:?}; got {:#?}", self.received),
        }
    }

    /// Like [`VoiceSocket::next_json`], but `None` when nothing arrives within `deadline`.
    pub async fn next_json_within(
        &mut self,
        deadline: Duration,
    ) -> Option<Result<serde_json::Value, Option<u16>>> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let message = tokio::time::timeout_at(until, self.stream.next()).await.ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&text).expect("text messages are JSON");
                    // Every message any test sees must be one the protocol crate types, with its
                    // catalogue type and payload: the server, `blob-client` and the catalogue
                    // (`docs/ws-messages.md`, checked against the crate) cannot drift apart.
                    if let Err(err) = ServerMessage::from_value(value.clone()) {
                        panic!("a message the voice protocol does not type ({err}): {value}");
                    }
                    self.received.push(value.clone());
                    if self.answer_pings && value["action"] == "ping" && value["type"] == "request"
                    {
                        let pong = r#"{"type":"request","action":"pong","payload":{},"meta":{"request_id":"heartbeat"}}"#;
                        // A socket already closing answers nothing; the close shows next.
                        let _ = self.stream.send(Message::Text(pong.into())).await;
                    }
                    return Some(Ok(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Err(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Err(None)),
            }
        }
    }

    /// Sends one JSON request `{type: "request", action, payload, meta: {request_id}}`, written
    /// out as JSON here (not through the protocol crate) so the tests can also send what the
    /// crate would never produce.
    pub async fn request(&mut self, action: &str, payload: serde_json::Value, request_id: &str) {
        let message = serde_json::json!({
            "type": "request", "action": action, "payload": payload,
            "meta": { "request_id": request_id },
        });
        self.send_text(&message.to_string()).await;
    }

    /// Waits for a message with `action`, keeping the others in `received`.
    pub async fn wait_for(&mut self, action: &str, deadline: Duration) -> serde_json::Value {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_json(left).await {
                Ok(message) if message["action"] == action => return message,
                Ok(_) => {}
                Err(code) => panic!(
                    "socket closed ({code:?}) while waiting for {action}; got {:#?}",
                    self.received
                ),
            }
        }
    }

    /// Waits for a message that satisfies `wanted`, keeping the others in `received`; `None`
    /// when the socket closes or the deadline passes first.
    pub async fn wait_until(
        &mut self,
        deadline: Duration,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_json_within(left).await? {
                Ok(message) if wanted(&message) => return Some(message),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The close code the server sends next (skipping other messages).
    pub async fn close_code(&mut self, deadline: Duration) -> Option<u16> {
        loop {
            match self.next_json(deadline).await {
                Ok(_) => {}
                Err(code) => return code,
            }
        }
    }

    /// Streams PCM as v4 frames of `chunk_ms`, then `silence_ms` of silence, as fast as the
    /// socket takes them.
    pub async fn send_speech(&mut self, samples: &[i16], chunk_ms: usize, silence_ms: usize) {
        let mut all = samples.to_vec();
        all.extend(std::iter::repeat_n(0i16, silence_ms * 16));
        for chunk in all.chunks(chunk_ms * 16) {
            self.send_speech_chunk(chunk).await;
        }
    }

    /// Streams PCM as v4 frames of `chunk_ms`, then `silence_ms` of silence, at the pace of a
    /// live microphone.
    pub async fn send_speech_live(&mut self, samples: &[i16], chunk_ms: usize, silence_ms: usize) {
        let mut all = samples.to_vec();
        all.extend(std::iter::repeat_n(0i16, silence_ms * 16));
        let started = tokio::time::Instant::now();
        for (i, chunk) in all.chunks(chunk_ms * 16).enumerate() {
            self.send_speech_chunk(chunk).await;
            let due = started + std::time::Duration::from_millis(((i + 1) * chunk_ms) as u64);
            tokio::time::sleep_until(due).await;
        }
    }

    /// Sends one chunk of PCM as the next v4 frame of this socket's thread.
    pub async fn send_speech_chunk(&mut self, samples: &[i16]) {
        let frame =
            AudioFrame::encode(self.sequence, self.thread, &crate::audio::pcm_bytes(samples));
        self.sequence += 1;
        self.send_binary(frame).await;
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream.send(Message::Binary(bytes.into())).await.expect("sending a frame");
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::Text(text.into())).await.expect("sending text");
    }

    /// Closes the socket normally and waits for the server's side.
    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// Lower-case words only, for comparing transcripts.
pub use blob_kit::sentences::normalise as normalize;
