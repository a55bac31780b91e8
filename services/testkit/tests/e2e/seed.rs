//! The proof of concept's contract, from its own text: every request example of its sections 4
//! to 6 (`docs/proof-of-concept-contract.md`) is sent as written, with its placeholders filled,
//! and every response example is checked field by field against what the real stack answers:
//! names, JSON types, and the fixed values. An example that gains a field fails here until the
//! field is served.

use std::collections::HashMap;
use std::time::Duration;

use blob_proto::session::v1 as pb;
use blob_testkit::audio::{pcm_bytes, read_wav};
use blob_testkit::client::{Api, ApiResponse, VoiceSocket, normalize};
use blob_testkit::paths::speech_clip;
use blob_testkit::seed::{self, Checker, Shape};
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::{Value, json};

const TURN: Duration = Duration::from_secs(90);
const QUICK: Duration = Duration::from_secs(10);

/// Fields whose example value is the contract's, not an illustration: the app may compare them.
const FIXED: &[&str] = &[
    "success",
    "version",
    "type",
    "action",
    "mode",
    "role",
    "state",
    "status",
    "permission",
    "ttl_seconds",
    "reconnect_window_seconds",
    "buffer_state",
    "ws_required",
    "companion_mode",
    "biometric_enabled",
    "lesson_mode_enabled",
    "voice",
    "speed",
    "language",
    "grade_level",
    "current_level",
];

/// The contract's examples, and the count of those checked.
struct Contract {
    doc: String,
    checker: Checker,
    requests: Vec<&'static str>,
    responses: Vec<&'static str>,
}

impl Contract {
    fn load() -> Self {
        Self {
            doc: seed::document(),
            checker: Checker::new(FIXED),
            requests: Vec::new(),
            responses: Vec::new(),
        }
    }

    fn shape(&self, heading: &str, marker: &str) -> Shape {
        seed::example(&self.doc, heading, marker).1
    }

    /// A request example as JSON, its placeholders filled.
    fn request(&mut self, name: &'static str, at: (&str, &str), values: &[(&str, &str)]) -> Value {
        self.requests.push(name);
        let values: HashMap<&str, String> =
            values.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        seed::request(&self.shape(at.0, at.1), &values)
    }

    /// A voice socket URL example (`/ws/voice?token=<jwt>&session_id=<sess_id>`), on this stack.
    fn socket_url(
        &mut self,
        name: &'static str,
        at: (&str, &str),
        stack: &Stack,
        values: &[(&str, &str)],
    ) -> String {
        self.requests.push(name);
        let line = seed::line_after(&self.doc, at.0, at.1);
        let query = &line[line.find("/ws/voice?").unwrap_or_else(|| panic!("{name}: {line}"))..];
        let mut url = format!("{}{}", stack.ws_url(), &query["/ws/voice".len()..]);
        for (placeholder, value) in values {
            url = url.replace(placeholder, value);
        }
        assert!(!url.contains('<'), "{name}: a placeholder is left in {url}");
        url
    }

    /// Checks `value` against a response example.
    fn check(&mut self, name: &'static str, at: (&str, &str), value: &Value) {
        self.responses.push(name);
        let shape = self.shape(at.0, at.1);
        let differences = self.checker.differences(value, &shape);
        assert!(
            differences.is_empty(),
            "{name} differs from the contract:\n{differences:#?}\n{value:#}"
        );
    }
}

fn success(response: &ApiResponse, status: u16) -> &Value {
    assert_eq!(response.status, status, "{}", response.body);
    response.data()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_contract_is_served_as_written() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let mut contract = Contract::load();
    let (uid, email) = ("seed-parent", "seed-parent@example.com");

    // 5 Authentication: the first sign-in.
    let firebase_token = stack.certs.id_token(uid, email);
    let body = contract.request(
        "5 token-exchange",
        ("### Authentication", "Request:"),
        &[("<Firebase ID token>", &firebase_token)],
    );
    let first = api.call(Method::POST, "/api/v1/auth/token-exchange", None, Some(body)).await;
    let token = success(&first, 200)["token"].as_str().unwrap().to_owned();
    contract.check("5 envelope", ("## 5.", "All responses use the v4 envelope:"), &first.body);

    // A child, as the app creates one (the child document's fields).
    let created = api
        .call(
            Method::POST,
            "/api/v1/children",
            Some(&token),
            Some(json!({"name": "Mia", "grade_level": "pre_k", "current_level": "beginner"})),
        )
        .await;
    let child = success(&created, 201);
    assert_eq!((&child["grade_level"], &child["grade"]), (&json!("pre_k"), &json!(-1)));
    let child_id = child["child_id"].as_str().unwrap().to_owned();

    // 4.1 and 5: signing in again lists the child.
    let firebase_token = stack.certs.id_token(uid, email);
    let body = contract.request(
        "4.1 token-exchange",
        ("### 4.1", "Body:"),
        &[("<Firebase ID token>", &firebase_token)],
    );
    let again = api.call(Method::POST, "/api/v1/auth/token-exchange", None, Some(body)).await;
    success(&again, 200);
    contract.check("4.1 token-exchange", ("### 4.1", "Response:"), &again.body);
    contract.check("5 token-exchange", ("### Authentication", "Response:"), again.data());
    let token = again.data()["token"].as_str().unwrap().to_owned();

    // 4.2: refresh.
    let fresh = stack.certs.id_token(uid, email);
    let body = contract.request(
        "4.2 refresh",
        ("### 4.2", "Body:"),
        &[("<fresh Firebase token>", &fresh)],
    );
    let refreshed = api.call(Method::POST, "/api/v1/auth/refresh", None, Some(body)).await;
    assert!(success(&refreshed, 200)["token"].is_string());

    // Lessons and progress, so that the child's latest progress has every field.
    let mut store = stack.session_client().await;
    for update in [
        pb::record_progress_request::Update::Started(true),
        pb::record_progress_request::Update::CompletedScore(72),
    ] {
        store
            .lessons
            .record_progress(pb::RecordProgressRequest {
                user_id: uid.into(),
                child_id: child_id.clone(),
                lesson_id: "counting-to-ten".into(),
                update: Some(update),
            })
            .await
            .unwrap();
    }

    // 4.3 and 5: the session.
    let body = contract.request("4.3 sessions", ("### 4.3", "Body:"), &[("child_xxx", &child_id)]);
    let opened = api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
    contract.check("4.3 sessions", ("### 4.3", "Response:"), success(&opened, 201));
    let session_id = opened.data()["session_id"].as_str().unwrap().to_owned();
    let conversation_id = opened.data()["active_conversation_id"].as_str().unwrap().to_owned();
    let body = contract.request(
        "5 sessions",
        ("### Sessions", "POST /api/v1/sessions — Request:"),
        &[("child_xxx", &child_id)],
    );
    let discovered = api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
    contract.check(
        "5 sessions",
        ("### Sessions", "POST /api/v1/sessions — Response:"),
        success(&discovered, 200),
    );
    assert_eq!(discovered.data()["session_id"], session_id.as_str());

    // 4.4: the socket.
    let url = contract.socket_url(
        "4.4 socket",
        ("### 4.4", "WebSocket:"),
        &stack,
        &[("<jwt>", &token), ("<sess_id>", &session_id)],
    );
    let mut socket = VoiceSocket::connect_url(&url).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    contract.check("4.4 session.created", ("### 4.4", "New session:"), &hello);

    // 4.5 and 6: a turn, in frames laid out as the contract draws them.
    for layout in [
        "[0xB1][0x04][seq_uint32_le][thread_uuid_16bytes][PCM s16le body]",
        "Bytes [2–5]:   sequence_index (uint32, little-endian)",
        "Bytes [6–21]:  thread_id (UUID, 16 bytes, big-endian)",
    ] {
        assert!(contract.doc.contains(layout), "the frame layout changed: {layout}");
    }
    contract.requests.extend(["4.5 binary frame", "6 binary frame"]);
    let thread = uuid::Uuid::new_v4();
    let mut speech = read_wav(&speech_clip("test-audio/utt1.wav"));
    speech.extend(std::iter::repeat_n(0i16, 1200 * 16));
    for (sequence, chunk) in (0u32..).zip(speech.chunks(640)) {
        let mut frame = vec![0xB1, 0x04];
        frame.extend_from_slice(&sequence.to_le_bytes());
        frame.extend_from_slice(thread.as_bytes());
        frame.extend_from_slice(&pcm_bytes(chunk));
        socket.send_binary(frame).await;
    }
    let reply = socket.wait_for("ai_response", TURN).await;
    let received = socket.received.clone();
    let find = |action: &str, wanted: &dyn Fn(&Value) -> bool| -> Value {
        received
            .iter()
            .find(|m| m["action"] == action && wanted(m))
            .unwrap_or_else(|| panic!("no {action}: {received:#?}"))
            .clone()
    };
    let ack = find("audio_ack", &|_| true);
    contract.check("4.5 audio_ack", ("### 4.5", "Send audio_ack:"), &ack["payload"]);
    contract.check(
        "6 audio_ack",
        ("### Key Message Shapes", "**audio_ack (Server → Client):**"),
        &ack,
    );
    let stt = find("stt_result", &|_| true);
    assert_eq!(
        normalize(stt["payload"]["transcript"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    contract.check("4.5 stt_result", ("### 4.5", "Emit stt_result:"), &stt["payload"]);
    contract.check(
        "6 stt_result",
        ("### Key Message Shapes", "**stt_result (Server → Client):**"),
        &stt,
    );
    let thinking = find("conversation.state", &|m| m["payload"]["state"] == "THINKING");
    contract.check(
        "6 conversation.state",
        ("### Key Message Shapes", "**conversation.state (Server → Client):**"),
        &thinking,
    );
    contract.check("4.5 ai_response", ("### 4.5", "Send ai_response envelope to client:"), &reply);
    contract.check(
        "6 ai_response",
        ("### Key Message Shapes", "**ai_response (Server → Client):**"),
        &reply,
    );

    // 4.6: pause and resume, as written.
    let pause = contract.request(
        "4.6 pause",
        ("### 4.6", "Client → Server (WebSocket JSON):"),
        &[("sess_xxx", &session_id)],
    );
    socket.send_text(&pause.to_string()).await;
    let paused = socket.wait_for("session.paused", QUICK).await;
    contract.check("4.6 session.paused", ("### 4.6", "Sends session.paused event:"), &paused);
    let resume = contract.request(
        "4.6 resume",
        ("### 4.6", "Client → Server:\n"),
        &[("sess_xxx", &session_id)],
    );
    socket.send_text(&resume.to_string()).await;
    let resumed = socket.wait_for("session.resumed", QUICK).await;
    contract.check("4.6 session.resumed", ("### 4.6", "Sends session.resumed event:"), &resumed);
    // 6: a pong, typed `response` as the catalogue has it, is taken without an error.
    contract.requests.push("6 pong");
    socket.send_text(r#"{"type": "response", "action": "pong", "payload": {}}"#).await;
    socket.request("ping", json!({}), "after-pong").await;
    let next = socket
        .wait_until(QUICK, |m| m["type"] == "error" || m["meta"]["request_id"] == "after-pong")
        .await
        .expect("an answer to the ping");
    assert_eq!(next["action"], "pong", "{next}");

    // 4.8 and 5: what the app reads at launch, and the child.
    contract.requests.push("4.8 users/me");
    let me = api.call(Method::GET, "/api/v1/users/me", Some(&token), None).await;
    success(&me, 200);
    contract.check("4.8 users/me", ("### 4.8", "Response:"), &me.body);
    let detail =
        api.call(Method::GET, &format!("/api/v1/children/{child_id}"), Some(&token), None).await;
    contract.check(
        "5 children/{id}",
        ("### Children", "GET /api/v1/children/{child_id} — Response:"),
        success(&detail, 200),
    );
    assert_eq!(detail.data()["latest_progress"]["mastery_score"], 0.72);
    assert_eq!(detail.data()["latest_progress"]["lessons_completed"], 1);

    // 4.7: the app closes and reopens within the window.
    socket.close().await;
    let body = contract.request(
        "4.7 sessions",
        ("### 4.7", "[0 – 5 minutes later: App reopens]"),
        &[("child_id", &child_id)],
    );
    let reopened = blob_testkit::eventually("the session to be suspended", QUICK, || {
        let (api, token, body) = (api.clone(), token.clone(), body.clone());
        async move {
            let response =
                api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
            (response.body["data"]["outcome"] == "resumed").then_some(response)
        }
    })
    .await;
    contract.check(
        "5 sessions",
        ("### Sessions", "POST /api/v1/sessions — Response:"),
        reopened.data(),
    );
    assert_eq!(
        (&reopened.data()["session_id"], &reopened.data()["active_conversation_id"]),
        (&json!(session_id), &json!(conversation_id))
    );
    let url = contract.socket_url(
        "4.7 socket",
        ("### 4.7", "WebSocket:"),
        &stack,
        &[("<jwt>", &token), ("<same_session_id>", &session_id)],
    );
    let mut socket = VoiceSocket::connect_url(&url).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    contract.check("4.4 session.resumed", ("### 4.4", "Resumed session:"), &hello);
    contract.check("4.7 session.resumed", ("### 4.7", "Sends session.resumed"), &hello["payload"]);
    assert_eq!(hello["payload"]["resumed_turns_count"], 1);
    socket.close().await;
    let url = contract.socket_url(
        "6 socket",
        ("### Connection", "URL:"),
        &stack,
        &[("<Backend JWT>", &token), ("<session_id>", &session_id)],
    );
    let mut socket = VoiceSocket::connect_url(&url).await;
    assert_eq!(socket.next_json(QUICK).await.expect("a greeting")["action"], "session.resumed");
    socket.close().await;

    // 5 Conversations: once no session carries it, the conversation is idle.
    let ended = api
        .call(Method::POST, &format!("/api/v1/sessions/{session_id}/end"), Some(&token), None)
        .await;
    success(&ended, 200);
    let conversation = api
        .call(Method::GET, &format!("/api/v1/conversations/{conversation_id}"), Some(&token), None)
        .await;
    contract.check(
        "5 conversations/{id}",
        ("### Conversations", "GET /api/v1/conversations/{conversation_id} — Response:"),
        success(&conversation, 200),
    );
    let data = conversation.data();
    assert_eq!((&data["turn_count"], &data["message_count"]), (&json!(1), &json!(2)));
    assert_eq!(data["session_id"], session_id.as_str());
    let summary = data["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("1 exchange(s) — started with: \"") && summary.contains("dragon"),
        "{summary}"
    );

    // What the contract describes in words: a new session continuing that conversation, and the
    // profile fields of 5 Users.
    let reattached = api
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&token),
            Some(json!({"child_id": child_id, "conversation_id": conversation_id})),
        )
        .await;
    assert_eq!(success(&reattached, 201)["active_conversation_id"], conversation_id.as_str());
    assert_eq!(reattached.data()["outcome"], "reattached");
    let placed = api
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&token),
            Some(json!({"locale": "en-IN", "timezone": "Asia/Kolkata"})),
        )
        .await;
    let user = success(&placed, 200);
    assert_eq!((&user["locale"], &user["timezone"]), (&json!("en-IN"), &json!("Asia/Kolkata")));
    assert_eq!(user["display_name"], me.data()["user"]["display_name"], "what was not sent stays");
    let lessons = api.call(Method::GET, "/api/v1/lessons?grade=pre_k", Some(&token), None).await;
    assert!(success(&lessons, 200).is_array());

    // Every example of the contract was used: its request examples, and its response examples.
    contract.requests.sort_unstable();
    contract.responses.sort_unstable();
    contract.responses.dedup();
    assert_eq!(
        contract.requests,
        [
            "4.1 token-exchange",
            "4.2 refresh",
            "4.3 sessions",
            "4.4 socket",
            "4.5 binary frame",
            "4.6 pause",
            "4.6 resume",
            "4.7 sessions",
            "4.7 socket",
            "4.8 users/me",
            "5 sessions",
            "5 token-exchange",
            "6 binary frame",
            "6 pong",
            "6 socket",
        ]
    );
    let json_examples = contract.doc.matches("```json").count();
    assert_eq!(json_examples, 10, "the contract's JSON examples changed: cover the new ones here");
    println!(
        "contract: {} request examples sent, {} response examples checked ({} fields)",
        contract.requests.len(),
        contract.responses.len(),
        contract.checker.fields
    );
    assert_eq!(contract.responses.len(), 20, "{:#?}", contract.responses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_the_app_reattaches_its_conversation_and_blob_remembers() {
    let stack =
        Stack::start(StackOptions { reconnect_window_seconds: 2, ..Default::default() }).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-r", "r@example.com")).await;
    let created = api
        .call(
            Method::POST,
            "/api/v1/children",
            Some(&token),
            Some(json!({"name": "Mia", "grade_level": "pre_k"})),
        )
        .await;
    let child_id = success(&created, 201)["child_id"].as_str().unwrap().to_owned();
    let open = |body: Value| {
        let (api, token) = (api.clone(), token.clone());
        async move { api.call(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await }
    };

    // Talk, close the app.
    let first = open(json!({"child_id": child_id, "mode": "companion"})).await;
    let session_id = success(&first, 201)["session_id"].as_str().unwrap().to_owned();
    let conversation_id = first.data()["active_conversation_id"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.next_json(QUICK).await.expect("a greeting");
    socket.send_speech(&read_wav(&speech_clip("test-audio/utt1.wav")), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    socket.close().await;

    // The window passes: the session is gone.
    blob_testkit::eventually("the session to expire", Duration::from_secs(30), || {
        let (api, token, path) =
            (api.clone(), token.clone(), format!("/api/v1/sessions/{session_id}"));
        async move {
            (api.call(Method::GET, &path, Some(&token), None).await.status == 404).then_some(())
        }
    })
    .await;

    // The conversation can only be continued by its own family and child.
    let other_child = api.create_child(&token, "Ben", 2).await;
    let refused = open(json!({"child_id": other_child, "conversation_id": conversation_id})).await;
    assert_eq!((refused.status, refused.error_code()), (403, "FORBIDDEN"), "{}", refused.body);
    let unknown =
        open(json!({"child_id": child_id, "conversation_id": "no-such-conversation"})).await;
    assert_eq!((unknown.status, unknown.error_code()), (404, "NOT_FOUND"));
    let stranger = api.exchange(&stack.certs.id_token("parent-x", "x@example.com")).await;
    let theirs = api.create_child(&stranger, "Zed", 1).await;
    let foreign = api
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&stranger),
            Some(json!({"child_id": theirs, "conversation_id": conversation_id})),
        )
        .await;
    assert_eq!((foreign.status, foreign.error_code()), (404, "NOT_FOUND"));
    let malformed = open(json!({"child_id": child_id, "conversation_id": "a/b"})).await;
    assert_eq!((malformed.status, malformed.error_code()), (400, "VALIDATION_ERROR"));

    // Reattached: a new session, the same conversation, and Blob has the earlier turn.
    let back = open(json!({"child_id": child_id, "conversation_id": conversation_id})).await;
    let data = success(&back, 201);
    assert_eq!((&data["outcome"], &data["state"]), (&json!("reattached"), &json!("active")));
    assert_ne!(data["session_id"], session_id.as_str());
    assert_eq!(data["active_conversation_id"], conversation_id.as_str());
    let new_session = data["session_id"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &new_session).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    assert_eq!(hello["action"], "session.resumed", "{hello}");
    assert_eq!(hello["payload"]["resumed_turns_count"], 1);
    socket.send_speech(&read_wav(&speech_clip("test-audio/utt2.wav")), 100, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    let requests = stack.gemini.requests();
    let contents = requests.last().unwrap().body["contents"].as_array().unwrap().clone();
    assert_eq!(contents.len(), 3, "{contents:#?}");
    assert_eq!(
        normalize(contents[0]["parts"][0]["text"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    assert_eq!(normalize(contents[2]["parts"][0]["text"].as_str().unwrap()), "why is the sky blue");
    socket.close().await;

    let conversation = api
        .call(Method::GET, &format!("/api/v1/conversations/{conversation_id}"), Some(&token), None)
        .await;
    let data = success(&conversation, 200);
    assert_eq!((&data["turn_count"], &data["session_id"]), (&json!(2), &json!(new_session)));

    // Without a conversation_id, a child whose session has expired starts afresh.
    blob_testkit::eventually("the second session to expire", Duration::from_secs(30), || {
        let (api, token, path) =
            (api.clone(), token.clone(), format!("/api/v1/sessions/{new_session}"));
        async move {
            (api.call(Method::GET, &path, Some(&token), None).await.status == 404).then_some(())
        }
    })
    .await;
    let fresh = open(json!({"child_id": child_id})).await;
    assert_eq!(success(&fresh, 201)["outcome"], "created");
    assert_ne!(fresh.data()["active_conversation_id"], conversation_id.as_str());
}
