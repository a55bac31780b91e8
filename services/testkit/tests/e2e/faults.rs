//! The faults a cluster throws, over the real binaries: a service restarted or killed while a
//! child talks, Redis restarted, the LLM provider down. Nothing the child said is lost and no
//! socket is left hanging.

use std::time::Duration;

use blob_testkit::audio::read_wav;
use blob_testkit::client::{Api, VoiceSocket, normalize};
use blob_testkit::gemini::DEFAULT_REPLY;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;

const TURN: Duration = Duration::from_secs(90);
const QUICK: Duration = Duration::from_secs(10);

struct Family {
    api: Api,
    token: String,
    child_id: String,
    session_id: String,
    conversation_id: String,
}

async fn family(stack: &Stack, uid: &str) -> Family {
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token(uid, &format!("{uid}@example.com"))).await;
    let child_id = api.create_child(&token, "Mia", 1).await;
    let session = api.open_session(&token, &child_id).await;
    Family {
        api,
        token,
        child_id,
        session_id: session["session_id"].as_str().unwrap().to_owned(),
        conversation_id: session["active_conversation_id"].as_str().unwrap().to_owned(),
    }
}

impl Family {
    async fn socket(&self, ws_url: &str) -> (VoiceSocket, serde_json::Value) {
        let mut socket = VoiceSocket::connect(ws_url, &self.token, &self.session_id).await;
        let hello = socket.next_json(QUICK).await.expect("a greeting");
        (socket, hello)
    }

    /// The stored turns of the conversation, once there are `want` of them.
    async fn stored_turns(&self, want: u64) {
        let path = format!("/api/v1/conversations/{}", self.conversation_id);
        blob_testkit::eventually("the exchanges to be stored", QUICK, || {
            let (api, token, path) = (self.api.clone(), self.token.clone(), path.clone());
            async move {
                let found = api.call(Method::GET, &path, Some(&token), None).await;
                (found.status == 200 && found.data()["turn_count"] == want).then_some(())
            }
        })
        .await;
    }
}

fn utterance(name: &str) -> Vec<i16> {
    read_wav(&speech_clip(&format!("test-audio/{name}.wav")))
}

/// Waits until the socket's audio reaches a recogniser again: a short silence is acknowledged
/// only when a speech stream takes it.
async fn until_listening(socket: &mut VoiceSocket) {
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < until, "the socket never listened again");
        socket.send_speech_chunk(&[0i16; 320]).await;
        let acked =
            socket.wait_until(Duration::from_millis(500), |m| m["action"] == "audio_ack").await;
        if acked.is_some() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_service_restart_loses_no_socket_no_turn_and_no_end() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "restart-session").await;
    let (mut socket, _) = family.socket(&stack.ws_url()).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    family.stored_turns(1).await;

    // A rollout of the session-service while the socket is open.
    stack.restart("session-service", true).await;

    // The socket is still there, and the next exchange is stored.
    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    family.stored_turns(2).await;

    // Ending the session still reaches the socket: its signals were subscribed again.
    let path = format!("/api/v1/sessions/{}/end", family.session_id);
    let ended = family.api.call(Method::POST, &path, Some(&family.token), None).await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(socket.close_code(QUICK).await, Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recogniser_restart_mid_utterance_is_reported_and_the_next_turn_is_heard() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "restart-stt").await;
    let (mut socket, _) = family.socket(&stack.ws_url()).await;

    // Half a sentence, then the recogniser goes away.
    let speech = utterance("utt1");
    socket.send_speech(&speech[..speech.len() / 2], 40, 0).await;
    stack.restart("stt-service", false).await;
    let lost = socket.wait_for("error", QUICK).await;
    assert_eq!(lost["payload"]["code"], "STT_INTERRUPTED", "{lost}");

    // The same socket listens again and hears the next turn.
    until_listening(&mut socket).await;
    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    let heard = socket.wait_for("stt_result", TURN).await;
    assert!(!heard["payload"]["transcript"].as_str().unwrap().is_empty(), "{heard}");
    socket.wait_for("ai_response", TURN).await;
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_its_append_only_file_keeps_sessions_and_conversations() {
    let mut stack = Stack::start(StackOptions { redis_aof: true, ..Default::default() }).await;
    let family = family(&stack, "restart-redis").await;
    let (mut socket, _) = family.socket(&stack.ws_url()).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    family.stored_turns(1).await;
    socket.close().await;

    stack.redis.restart().await;

    // The app reopens: the same session, the same conversation, and Blob remembers. A call
    // that meets the store's connection being re-made gets a clean 503, which the app retries.
    let reopened = blob_testkit::eventually("the session store back", TURN, || async {
        let body = serde_json::json!({ "child_id": family.child_id });
        let opened = family
            .api
            .call(Method::POST, "/api/v1/sessions", Some(&family.token), Some(body))
            .await;
        if opened.status == 503 {
            assert_eq!(opened.error_code(), "SERVICE_UNAVAILABLE", "{}", opened.body);
            return None;
        }
        assert_eq!(opened.status, 200, "{}", opened.body);
        Some(opened.data().clone())
    })
    .await;
    assert_eq!(reopened["session_id"], family.session_id.as_str(), "{reopened}");
    assert_eq!(reopened["active_conversation_id"], family.conversation_id.as_str());
    let (mut socket, hello) = family.socket(&stack.ws_url()).await;
    assert_eq!(
        (hello["action"].as_str(), hello["payload"]["resumed_turns_count"].as_u64()),
        (Some("session.resumed"), Some(1)),
        "{hello}"
    );
    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    let last = stack.gemini.requests().last().unwrap().body["contents"].clone();
    assert_eq!(
        normalize(last[0]["parts"][0]["text"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_llm_provider_down_every_turn_gets_the_fallback_line_and_none_hangs() {
    let stack = Stack::start(StackOptions {
        extra_env: vec![
            ("llm-service", "LLM_FALLBACK_PROVIDER", "bypass".to_owned()),
            ("llm-service", "LLM_BREAKER_COOLDOWN_SECONDS", "1".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    let family = family(&stack, "no-llm").await;
    let (mut socket, _) = family.socket(&stack.ws_url()).await;
    stack.gemini.go_down_for(Duration::from_secs(30));
    for turn in 0..3 {
        socket.send_speech(&utterance("utt2"), 40, 1200).await;
        let reply = socket.wait_for("ai_response", TURN).await;
        let text = reply["payload"]["text"].as_str().unwrap();
        assert!(text.contains("Can you tell me more about it?"), "turn {turn}: {reply}");
        assert!(
            !socket.received.iter().any(|m| m["action"] == "error"),
            "turn {turn}: {:#?}",
            socket.received
        );
    }
    family.stored_turns(3).await;
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_no_conversation_the_child_continues_on_another() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "killed-gateway").await;
    let (mut socket, _) = family.socket(&stack.ws_url()).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    family.stored_turns(1).await;

    let second_port = stack.start_another_gateway().await;
    stack.process("gateway").kill();
    assert_ne!(socket.close_code(QUICK).await, Some(1000), "no clean end: the gateway died");

    let ws = format!("ws://127.0.0.1:{second_port}/ws/voice");
    let (mut socket, hello) = family.socket(&ws).await;
    assert_eq!(
        (hello["action"].as_str(), hello["payload"]["resumed_turns_count"].as_u64()),
        (Some("session.resumed"), Some(1)),
        "{hello}"
    );
    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    let reply = socket.wait_for("ai_response", TURN).await;
    assert_eq!(reply["payload"]["text"], DEFAULT_REPLY);
    let contents = stack.gemini.requests().last().unwrap().body["contents"].clone();
    assert_eq!(
        normalize(contents[0]["parts"][0]["text"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    // The REST API is read through the surviving gateway too.
    let family = Family { api: Api::new(&format!("http://127.0.0.1:{second_port}")), ..family };
    family.stored_turns(2).await;
    socket.close().await;
}
