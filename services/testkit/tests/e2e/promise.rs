//! The product's promise: a child talks, the app closes, reopens, and the same conversation
//! continues, without the parent signing in again.

use std::time::Duration;

use blob_testkit::audio::read_wav;
use blob_testkit::client::{Api, VoiceSocket, assert_meta, normalize};
use blob_testkit::gemini::DEFAULT_REPLY;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};

const TURN: Duration = Duration::from_secs(90);
const QUICK: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_survives_closing_and_reopening_the_app() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());

    // The parent signs in once.
    let token = api.exchange(&stack.certs.id_token("parent-a", "a@example.com")).await;
    let child_id = api.create_child(&token, "Mia", 1).await;
    let first = api.open_session(&token, &child_id).await;
    let session_id = first["session_id"].as_str().unwrap().to_owned();
    let conversation_id = first["active_conversation_id"].as_str().unwrap().to_owned();
    for field in ["session_token", "ws_url", "created_at", "expires_at", "state", "mode"] {
        assert!(first[field].is_string(), "{field} missing: {first}");
    }
    assert_eq!(first["state"], "active");
    assert_eq!(first["child_id"], child_id.as_str());
    assert_eq!(first["ttl_seconds"], 3600);
    assert_eq!(first["reconnect_window_seconds"], 300);

    // The child talks to Blob.
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    assert_eq!(hello["type"], "event");
    assert_eq!(hello["action"], "session.created");
    assert_eq!(hello["payload"]["session_id"], session_id.as_str());

    socket.send_speech(&read_wav(&speech_clip("test-audio/utt1.wav")), 40, 1200).await;
    let stt = socket.wait_for("stt_result", TURN).await;
    assert_eq!(
        normalize(stt["payload"]["transcript"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    let confidence = stt["payload"]["confidence"].as_f64().unwrap();
    assert!((0.6..=1.0).contains(&confidence), "confidence {confidence}");
    assert_eq!(stt["payload"]["language"], "en");
    assert!(stt["payload"]["duration_ms"].as_u64().unwrap() > 1000);

    let reply = socket.wait_for("ai_response", TURN).await;
    assert_eq!(reply["type"], "response");
    assert_eq!(reply["payload"]["text"], DEFAULT_REPLY);
    let hint = &reply["payload"]["tts_hint"];
    assert_eq!(
        (hint["voice"].as_str(), hint["language"].as_str()),
        (Some("en-IN-NeerjaNeural"), Some("en-IN"))
    );
    assert_eq!(hint["speed"], 1.0);
    let meta = &reply["meta"];
    assert_eq!(meta["session_id"], session_id.as_str());
    assert_eq!(meta["conversation_id"], conversation_id.as_str());
    assert_eq!(meta["request_id"], stt["meta"]["request_id"]);
    assert!(meta["thread_id"].is_string() && meta["timestamp"].is_string(), "{meta}");
    let states: Vec<&str> = socket
        .received
        .iter()
        .filter(|m| m["action"] == "conversation.state")
        .filter_map(|m| m["payload"]["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["LISTENING", "TRANSCRIBING", "THINKING", "RESPONDING"],
        "{:#?}",
        socket.received
    );

    // The app closes; later it reopens and asks for the child's session again.
    socket.close().await;
    let again = api.open_session(&token, &child_id).await;
    assert_eq!(again["session_id"], session_id.as_str(), "{again}");
    assert_eq!(again["active_conversation_id"], conversation_id.as_str());

    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    let hello = socket.next_json(QUICK).await.expect("a greeting");
    assert_eq!(hello["action"], "session.resumed", "{hello}");
    assert_eq!(hello["payload"]["resumed_turns_count"], 1);

    // The next utterance reaches the LLM with the first exchange as history.
    socket.send_speech(&read_wav(&speech_clip("test-audio/utt2.wav")), 100, 1200).await;
    let stt = socket.wait_for("stt_result", TURN).await;
    assert_eq!(normalize(stt["payload"]["transcript"].as_str().unwrap()), "why is the sky blue");
    socket.wait_for("ai_response", TURN).await;

    let requests = stack.gemini.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].model_and_method, "gemini-e2e:streamGenerateContent");
    let contents = requests[1].body["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{contents:#?}");
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(
        normalize(contents[0]["parts"][0]["text"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(contents[1]["parts"][0]["text"], DEFAULT_REPLY);
    assert_eq!(normalize(contents[2]["parts"][0]["text"].as_str().unwrap()), "why is the sky blue");
    let system = requests[1].body["systemInstruction"]["parts"][0]["text"].as_str().unwrap();
    assert!(system.contains("Mia"), "{system}");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_reconnect_window_a_new_session_begins() {
    let stack =
        Stack::start(StackOptions { reconnect_window_seconds: 2, ..Default::default() }).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-w", "w@example.com")).await;
    let child_id = api.create_child(&token, "Leo", 0).await;
    let first = api.open_session(&token, &child_id).await;
    let session_id = first["session_id"].as_str().unwrap().to_owned();

    let socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.close().await;
    // Within the window the same session comes back.
    let within = api.open_session(&token, &child_id).await;
    assert_eq!(within["session_id"], session_id.as_str());

    let socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.close().await;
    blob_testkit::eventually("the session to be suspended", QUICK, || {
        let api = api.clone();
        let token = token.clone();
        let child_id = child_id.clone();
        async move {
            let response = api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/sessions",
                    Some(&token),
                    Some(serde_json::json!({"child_id": child_id})),
                )
                .await;
            (response.body["data"]["outcome"] == "resumed").then_some(())
        }
    })
    .await;
    let socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.close().await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = api
        .call(
            reqwest::Method::POST,
            "/api/v1/sessions",
            Some(&token),
            Some(serde_json::json!({"child_id": child_id})),
        )
        .await;
    assert_eq!(later.status, 201, "{}", later.body);
    assert_meta(&later.body);
    let data = later.data();
    assert_ne!(data["session_id"], session_id.as_str(), "the expired session came back: {data}");
    assert_ne!(data["active_conversation_id"], first["active_conversation_id"]);
    assert_eq!(data["outcome"], "created");

    // The expired session's socket is refused as unknown.
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    assert_eq!(socket.close_code(QUICK).await, Some(4002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_child_after_the_window_leaves_none_of_its_words_anywhere() {
    let stack =
        Stack::start(StackOptions { reconnect_window_seconds: 2, ..Default::default() }).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("parent-e", "e@example.com")).await;
    let child_id = api.create_child(&token, "Eli", 1).await;
    let opened = api.open_session(&token, &child_id).await;
    let session_id = opened["session_id"].as_str().unwrap().to_owned();
    let conversation_id = opened["active_conversation_id"].as_str().unwrap().to_owned();

    // The child talks; the app is closed and never ends the session.
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.next_json(QUICK).await.expect("a greeting");
    socket.send_speech(&read_wav(&speech_clip("test-audio/utt1.wav")), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    let conversation = format!("/api/v1/conversations/{conversation_id}");
    blob_testkit::eventually("the exchange to be stored", QUICK, || {
        let (api, token, path) = (api.clone(), token.clone(), conversation.clone());
        async move {
            let found = api.call(reqwest::Method::GET, &path, Some(&token), None).await;
            (found.status == 200 && found.data()["turn_count"] == 1).then_some(())
        }
    })
    .await;
    socket.close().await;

    // The reconnect window passes: the session expires, the conversation is still served.
    blob_testkit::eventually("the session to expire", Duration::from_secs(30), || {
        let (api, token, path) =
            (api.clone(), token.clone(), format!("/api/v1/sessions/{session_id}"));
        async move {
            let found = api.call(reqwest::Method::GET, &path, Some(&token), None).await;
            (found.status == 404).then_some(())
        }
    })
    .await;
    let kept = api.call(reqwest::Method::GET, &conversation, Some(&token), None).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert!(!stack.redis.keys_holding("dragon").is_empty(), "the words are in Redis before");

    let erased = api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/children/{child_id}/data"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    let deleted = &erased.data()["deleted"];
    assert_eq!(deleted["conversations"], 1, "{}", erased.body);
    assert_eq!(deleted["children"], 1);

    let gone = api.call(reqwest::Method::GET, &conversation, Some(&token), None).await;
    assert_eq!((gone.status, gone.error_code()), (404, "NOT_FOUND"), "{}", gone.body);
    assert_eq!(stack.redis.keys_holding("dragon"), Vec::<String>::new(), "no key with the words");
    assert_eq!(stack.redis.keys_holding(&child_id), Vec::<String>::new(), "no key of the child");
    assert_eq!(stack.redis.keys_holding(&conversation_id), Vec::<String>::new());
}
