//! What operators rely on: metrics after a turn, and readiness that follows the services.

use std::time::Duration;

use blob_testkit::audio::read_wav;
use blob_testkit::client::{Api, VoiceSocket};
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};

const TURN: Duration = Duration::from_secs(90);

async fn scrape(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics")).await.expect("scraping metrics");
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the first sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_shows_in_every_services_metrics() {
    let stack = Stack::start(StackOptions::default()).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("metered", "m@example.com")).await;
    let child = api.create_child(&token, "Mia", 1).await;
    let session = api.open_session(&token, &child).await;
    let mut socket =
        VoiceSocket::connect(&stack.ws_url(), &token, session["session_id"].as_str().unwrap())
            .await;
    socket.next_json(Duration::from_secs(10)).await.unwrap();
    socket.send_speech(&read_wav(&speech_clip("test-audio/utt1.wav")), 40, 1200).await;
    socket.wait_for("ai_response", TURN).await;
    // IDLE comes after the exchange is saved, so every service has done its part.
    let idle = socket.wait_for("conversation.state", TURN).await;
    assert_eq!(idle["payload"]["state"], "IDLE");
    // The proof of concept's shape: the conversation in the payload too.
    assert!(idle["payload"]["conversation_id"].is_string(), "{idle}");
    assert_eq!(idle["payload"]["conversation_id"], idle["meta"]["conversation_id"]);

    let gateway = scrape(&stack.admin_url("gateway")).await;
    assert_eq!(sample(&gateway, "blob_gateway_live_sockets "), 1.0);
    for stage in ["transcript", "first_token", "first_sentence", "reply_complete"] {
        let count = sample(
            &gateway,
            &format!("blob_gateway_turn_stage_seconds_count{{stage=\"{stage}\"}}"),
        );
        assert_eq!(count, 1.0, "stage {stage}");
    }
    let stt = scrape(&stack.admin_url("stt-service")).await;
    assert_eq!(sample(&stt, "blob_stt_utterances_total{outcome=\"transcribed\"}"), 1.0);
    assert_eq!(sample(&stt, "blob_stt_inference_seconds_count"), 1.0);
    assert!(sample(&stt, "blob_stt_real_time_factor_sum") > 0.0);
    let llm = scrape(&stack.admin_url("llm-service")).await;
    assert_eq!(sample(&llm, "blob_llm_replies_total"), 1.0);
    assert_eq!(sample(&llm, "blob_llm_first_token_seconds_count"), 1.0);
    let sessions = scrape(&stack.admin_url("session-service")).await;
    assert_eq!(sample(&sessions, "blob_session_opened_total{outcome=\"created\"}"), 1.0);
    assert!(sample(&sessions, "blob_session_redis_seconds_count{op=\"append\"}") >= 1.0);
    // No child's words in any metric.
    for text in [&gateway, &stt, &llm, &sessions] {
        assert!(!text.to_lowercase().contains("dragon"));
    }
    socket.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_services_behind_the_gateway() {
    let mut stack = Stack::start(StackOptions::default()).await;
    for service in ["gateway", "stt-service", "llm-service", "session-service"] {
        let url = stack.admin_url(service);
        let live = reqwest::get(format!("{url}/health/live")).await.unwrap();
        assert_eq!(live.status(), 200, "{service} live");
        let ready = reqwest::get(format!("{url}/health/ready")).await.unwrap();
        assert_eq!(ready.status(), 200, "{service} ready");
    }
    let api = Api::new(&stack.http_url());
    let ready = api.call(reqwest::Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.data()["services"].as_array().unwrap().len(), 3);

    stack.process("llm-service").kill();
    let not_ready = api.call(reqwest::Method::GET, "/health/ready", None, None).await;
    assert_eq!((not_ready.status, not_ready.error_code()), (503, "SERVICE_UNAVAILABLE"));
    let services = not_ready.body["error"]["details"]["services"].as_array().unwrap().clone();
    let llm = services.iter().find(|s| s["service"] == "llm-service").unwrap();
    assert_eq!(llm["status"], "unreachable");
    // Liveness is about the gateway itself.
    let live = api.call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(live.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voice_turn_is_one_trace_across_all_four_services() {
    let stack = Stack::start(StackOptions { traces: true, ..Default::default() }).await;
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("traced", "t@example.com")).await;
    let child = api.create_child(&token, "Mia", 1).await;
    let session = api.open_session(&token, &child).await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, &session_id).await;
    socket.next_json(Duration::from_secs(10)).await.unwrap();
    // At a live microphone's pace, the turn's trace context reaches the recogniser while the
    // child is still speaking (a recording sent faster than real time can outrun it).
    socket.send_speech_live(&read_wav(&speech_clip("test-audio/utt1.wav")), 40, 1200).await;
    let reply = socket.wait_for("ai_response", TURN).await;
    let request_id = reply["meta"]["request_id"].as_str().unwrap().to_owned();
    socket.wait_for("conversation.state", TURN).await; // IDLE: the exchange is saved.

    let receiver = stack.traces.as_ref().unwrap();
    let wanted = ["gateway", "stt-service", "llm-service", "session-service"];
    let (turn, spans) =
        blob_testkit::eventually("every service's spans of the turn", TURN, || async {
            let spans = receiver.spans();
            let turn = spans
                .iter()
                .find(|s| {
                    s.name == "voice.turn"
                        && s.attributes.iter().any(|(k, v)| k == "request_id" && *v == request_id)
                })?
                .clone();
            let in_trace: Vec<_> =
                spans.into_iter().filter(|s| s.trace_id == turn.trace_id).collect();
            let names = ["stt.utterance", "llm.reply", "session.append_turn"];
            let complete = wanted.iter().all(|w| in_trace.iter().any(|s| s.service == *w))
                && names.iter().all(|n| in_trace.iter().any(|s| s.name == *n));
            complete.then_some((turn, in_trace))
        })
        .await;

    assert!(turn.parent_span_id.is_empty(), "voice.turn is the root of its trace");
    assert!(turn.attributes.iter().any(|(k, v)| k == "session_id" && *v == session_id));
    assert!(turn.attributes.iter().any(|(k, _)| k == "conversation_id"));
    // Every span of the turn descends from voice.turn through recorded parents.
    let parent_of = |span: &blob_testkit::otlp::ReceivedSpan| {
        spans.iter().find(|s| s.span_id == span.parent_span_id).cloned()
    };
    for name in ["stt.utterance", "llm.reply", "session.append_turn"] {
        let mut span = spans.iter().find(|s| s.name == name).unwrap().clone();
        let mut hops = 0;
        while span.span_id != turn.span_id {
            span = parent_of(&span)
                .unwrap_or_else(|| panic!("{name}: broken parent chain at {}", span.name));
            hops += 1;
            assert!(hops < 10, "{name}: parent chain too long");
        }
    }
    let utterance = spans.iter().find(|s| s.name == "stt.utterance").unwrap();
    assert_eq!(utterance.parent_span_id, turn.span_id, "recognition is a direct child of the turn");
    assert_eq!(utterance.service, "stt-service");

    // A child's words never leave a service in telemetry.
    for span in receiver.spans() {
        let text = format!("{} {:?} {:?}", span.name, span.attributes, span.events).to_lowercase();
        assert!(
            !text.contains("dragon") && !text.contains("once upon"),
            "words in {}: {text}",
            span.name
        );
    }
    socket.close().await;
}
