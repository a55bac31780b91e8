//! The REST API: sign-in, children, sessions.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

/// What can go wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway answered with its error envelope.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// The request did not get an answer (connection refused, timeout...).
    #[error("gateway unreachable: {0}")]
    Http(#[from] reqwest::Error),
    /// The WebSocket failed.
    #[error("voice socket: {0}")]
    Socket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// An answer that does not follow the contract.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// The error envelope: `{success: false, error: {code, message, details?}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The stable error code (`TOKEN_EXPIRED`, `NOT_FOUND`, `VALIDATION_ERROR`...).
    pub code: String,
    /// A message for developers.
    pub message: String,
    /// Structured details, when the gateway sent some.
    pub details: Option<Value>,
}

/// A child the signed-in parent may see.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Child {
    /// Its id.
    pub child_id: String,
    /// Name.
    pub name: String,
    /// School grade as a number, whatever form the app gave it in (-1 = preschool,
    /// 0 = kindergarten).
    pub grade: i32,
    /// Its name: `pre_k`, `kindergarten`, `grade_1` … `grade_12`.
    pub grade_name: String,
    /// Where the child stands (`beginner` unless set).
    pub current_level: String,
    /// `view`, `interact` or `manage` (absent on a freshly created child: `manage`).
    #[serde(default)]
    pub permission: Option<String>,
}

/// A signed-in parent.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedIn {
    /// The backend access token.
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// `{uid, email, display_name, role}`.
    pub user: Value,
    /// The parent's children.
    pub children: Vec<Child>,
}

/// `POST /api/v1/sessions`: the child's session, new or continued.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenedSession {
    /// The session id (for the voice socket).
    pub session_id: String,
    /// The conversation it continues.
    pub active_conversation_id: String,
    /// `ACTIVE`, `SUSPENDED`...
    pub state: String,
    /// `created`, `discovered` or `resumed`.
    pub outcome: String,
    /// Everything else the gateway sent.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// A client of one gateway, signed in or not.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the gateway at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same client using a backend token it already has.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The backend token, once signed in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The voice socket's URL for a session (`ws://…/ws/voice?token=…&session_id=…`).
    pub fn voice_url(&self, session_id: &str, last_seq: Option<u64>) -> Result<String, Error> {
        let token = self.token.as_deref().ok_or_else(|| Error::Protocol("not signed in".into()))?;
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(Error::Protocol(format!("gateway URL {} is not http(s)", self.base)));
        };
        let mut url = format!("{base}/ws/voice?token={token}&session_id={session_id}");
        if let Some(seq) = last_seq {
            url.push_str(&format!("&last_seq={seq}"));
        }
        Ok(url)
    }

    /// Signs in by email on a gateway in local mode (`AUTH_PROVIDER=local`).
    pub async fn local_sign_in(&mut self, email: &str) -> Result<SignedIn, Error> {
        let body = json!({ "email": email });
        self.sign_in("/api/v1/auth/local-sign-in", body).await
    }

    /// Exchanges a Firebase ID token for a backend token.
    pub async fn exchange(&mut self, firebase_token: &str) -> Result<SignedIn, Error> {
        let body = json!({ "firebase_token": firebase_token });
        self.sign_in("/api/v1/auth/token-exchange", body).await
    }

    async fn sign_in(&mut self, path: &str, body: Value) -> Result<SignedIn, Error> {
        let data = self.call(Method::POST, path, Some(body)).await?;
        let signed_in: SignedIn = parse(data)?;
        self.token = Some(signed_in.token.clone());
        Ok(signed_in)
    }

    /// The parent's children.
    pub async fn children(&self) -> Result<Vec<Child>, Error> {
        parse(self.call(Method::GET, "/api/v1/children", None).await?)
    }

    /// Adds a child.
    pub async fn add_child(&self, name: &str, grade_level: i32) -> Result<Child, Error> {
        let body = json!({ "name": name, "grade_level": grade_level });
        parse(self.call(Method::POST, "/api/v1/children", Some(body)).await?)
    }

    /// The child called `name`, added first if there is none.
    pub async fn child_named(&self, name: &str, grade_level: i32) -> Result<Child, Error> {
        match self.children().await?.into_iter().find(|c| c.name == name) {
            Some(child) => Ok(child),
            None => self.add_child(name, grade_level).await,
        }
    }

    /// Opens the child's session: a new one, or the one to continue.
    pub async fn open_session(&self, child_id: &str) -> Result<OpenedSession, Error> {
        let body = json!({ "child_id": child_id });
        parse(self.call(Method::POST, "/api/v1/sessions", Some(body)).await?)
    }

    /// A session's state (`GET /api/v1/sessions/{id}`).
    pub async fn session(&self, session_id: &str) -> Result<Value, Error> {
        self.call(Method::GET, &format!("/api/v1/sessions/{session_id}"), None).await
    }

    /// Any API call: the envelope's `data` on success, its error otherwise.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let envelope: Value = response
            .json()
            .await
            .map_err(|err| Error::Protocol(format!("{status} without a JSON envelope: {err}")))?;
        if envelope["success"] == true {
            return Ok(envelope["data"].clone());
        }
        let error = &envelope["error"];
        match error["code"].as_str() {
            Some(code) => Err(Error::Api(ApiError {
                status,
                code: code.to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
                details: error.get("details").cloned(),
            })),
            None => Err(Error::Protocol(format!("{status} without the envelope: {envelope}"))),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, Error> {
    serde_json::from_value(data.clone()).map_err(|err| Error::Protocol(format!("{err} in {data}")))
}
