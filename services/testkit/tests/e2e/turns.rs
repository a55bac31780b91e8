//! Turn-taking with Smart Turn over the whole stack, on real human speech (Smart Turn rates the
//! synthetic espeak clips as unfinished whatever they say, so they cannot test it): a
//! mid-sentence pause that the model hears as unfinished gives one transcript and one reply,
//! the speculative transcript made at the pause never reaches the child, and the pause is kept
//! with the conversation across a reconnect. Spoken through `blob-client`, at a microphone's
//! pace, so that the speculation really runs during the pause.

use std::time::Duration;

use blob_client::protocol::SttResult;
use blob_client::{Client, Event, Message, Pace, Voice};
use blob_testkit::audio::read_wav;
use blob_testkit::client::normalize;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};

const TURN: Duration = Duration::from_secs(90);
const QUICK: Duration = Duration::from_secs(10);

fn smart_turns() -> StackOptions {
    StackOptions {
        extra_env: vec![
            ("stt-service", "TURN_MODE", "smart".to_owned()),
            ("gateway", "AUTH_PROVIDER", "local".to_owned()),
            ("gateway", "FIREBASE_PROJECT_ID", "demo-blob-e2e".to_owned()),
        ],
        ..StackOptions::default()
    }
}

/// A real sentence with a one-second pause put in at a real gap between two words, then 2.5 s of
/// quiet.
fn with_a_pause(clip: &str, cut: usize) -> Vec<i16> {
    let speech = read_wav(&speech_clip(&format!("speech/{clip}")));
    let mut pcm = speech[..cut].to_vec();
    pcm.extend(std::iter::repeat_n(0i16, 16_000));
    pcm.extend_from_slice(&speech[cut..]);
    pcm.extend(std::iter::repeat_n(0i16, 40_000));
    pcm
}

/// The pauses kept with a conversation, read from the session-service's Redis once the record
/// holds `want` of them or more (the exchange is saved just after the reply is sent).
async fn stored_pauses(stack: &Stack, conversation_id: &str, want: usize) -> Vec<u64> {
    let url = stack.redis.url();
    let socket = url.strip_prefix("unix://").expect("the test Redis listens on a socket");
    let mut pauses = Vec::new();
    for _ in 0..50 {
        let output = std::process::Command::new("redis-cli")
            .args(["-s", socket, "GET", &format!("conversation:{conversation_id}")])
            .output()
            .expect("redis-cli runs");
        let raw = String::from_utf8_lossy(&output.stdout);
        if let Ok(conversation) = serde_json::from_str::<serde_json::Value>(raw.trim()) {
            pauses = conversation["pauses_ms"]
                .as_array()
                .map(|p| p.iter().filter_map(serde_json::Value::as_u64).collect())
                .unwrap_or_default();
            if pauses.len() >= want {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pauses
}

async fn stt_metrics(stack: &Stack) -> String {
    reqwest::get(format!("{}/metrics", stack.admin_url("stt-service")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// Speaks `pcm` in real time, then waits for Blob's whole reply; returns every message.
async fn speak(voice: &mut Voice, pcm: &[i16]) -> Vec<Message> {
    let mut received = Vec::new();
    voice.send_audio(pcm, 20, Pace::RealTime, |m| received.push(m.clone())).await.unwrap();
    if !received.iter().any(|m| matches!(m.event, Event::Reply(_))) {
        let reply = voice
            .wait_for(TURN, |e| matches!(e, Event::Reply(_)), |m| received.push(m.clone()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no reply: {received:#?}"));
        received.push(reply);
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_sentence_pause_gives_one_reply_and_is_kept_with_the_conversation() {
    let stack = Stack::start(smart_turns()).await;
    let mut client = Client::new(&stack.http_url());
    client.local_sign_in("thinker@example.com").await.unwrap();
    let child = client.add_child("Tom", 1).await.unwrap();
    let session = client.open_session(&child.child_id).await.unwrap();

    let mut voice = Voice::connect(&client, &session.session_id, None).await.unwrap();
    // "The truck righted … itself just before it tipped over onto its top and came to a full
    // stop.", paused after "righted" (1.94 s).
    let received = speak(&mut voice, &with_a_pause("mfa_english_t.wav", 30_976)).await;
    let transcripts: Vec<String> = received
        .iter()
        .filter_map(|m| match &m.event {
            Event::SttResult(result) => Some(normalize(&result.transcript)),
            _ => None,
        })
        .collect();
    assert_eq!(transcripts.len(), 1, "one turn, no early transcript: {transcripts:?}");
    assert!(
        transcripts[0].contains("truck") && transcripts[0].contains("full stop"),
        "both halves in one transcript: {transcripts:?}"
    );
    let replies = received.iter().filter(|m| matches!(m.event, Event::Reply(_))).count();
    assert_eq!(replies, 1);

    let metrics = stt_metrics(&stack).await;
    assert!(
        counter(&metrics, r#"blob_stt_speculations_total{outcome="miss"}"#) >= 1,
        "the speculation at the pause was withdrawn:\n{metrics}"
    );
    assert_eq!(counter(&metrics, r#"blob_stt_turn_ends_total{reason="turn"}"#), 1, "{metrics}");
    assert!(counter(&metrics, r#"blob_stt_turn_checks_total{verdict="incomplete"}"#) >= 1);
    let pauses = stored_pauses(&stack, &session.active_conversation_id, 1).await;
    assert!(pauses.iter().any(|p| (950..=1300).contains(p)), "the pause is kept: {pauses:?}");

    // The app closes and reopens: the recogniser starts from the stored pauses, so the next
    // turn's pause is saved after them rather than in their place. ("He might even … have been
    // made amiable himself.", paused after "even".)
    voice.close().await.unwrap();
    let reopened = client.open_session(&child.child_id).await.unwrap();
    assert_eq!(reopened.session_id, session.session_id);
    let mut voice = Voice::connect(&client, &session.session_id, None).await.unwrap();
    let received = speak(&mut voice, &with_a_pause("ps_librivox_sas01_0930.wav", 17_664)).await;
    assert!(received.iter().any(|m| matches!(&m.event, Event::SttResult(_))));
    let after = stored_pauses(&stack, &session.active_conversation_id, pauses.len() + 1).await;
    assert!(after.len() > pauses.len(), "a pause was added: {pauses:?} then {after:?}");
    assert_eq!(&after[..pauses.len()], &pauses[..], "after the stored ones: {after:?}");
    voice.close().await.unwrap();
}

/// `turn.end` (a push-to-talk button let go) ends the turn at once: with no silence after the
/// speech, nothing would end it. While paused there is no turn to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_end_closes_the_turn_without_waiting_for_silence() {
    let stack = Stack::start(smart_turns()).await;
    let mut client = Client::new(&stack.http_url());
    client.local_sign_in("presser@example.com").await.unwrap();
    let child = client.add_child("Ada", 1).await.unwrap();
    let session = client.open_session(&child.child_id).await.unwrap();
    let mut voice = Voice::connect(&client, &session.session_id, None).await.unwrap();

    // "The truck righted", cut at the gap after it: unfinished, and no silence follows.
    let speech = read_wav(&speech_clip("speech/mfa_english_t.wav"));
    let mut received = Vec::new();
    voice
        .send_audio(&speech[..30_976], 20, Pace::Fast, |m| received.push(m.clone()))
        .await
        .unwrap();
    let early = voice
        .wait_for(
            Duration::from_secs(2),
            |e| matches!(e, Event::SttResult(_)),
            |m| received.push(m.clone()),
        )
        .await
        .unwrap();
    assert!(early.is_none(), "the turn is still open: {early:?}");

    assert!(end_turn(&mut voice, &mut received).await, "the open turn was flushed");
    let result = voice
        .wait_for(TURN, |e| matches!(e, Event::SttResult(_)), |m| received.push(m.clone()))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no transcript: {received:#?}"));
    let Event::SttResult(SttResult { transcript, .. }) = &result.event else { unreachable!() };
    assert!(normalize(transcript).contains("truck"), "{transcript}");

    // Paused, the speech stream is closed: nothing to end.
    voice.pause().await.unwrap();
    assert!(!end_turn(&mut voice, &mut received).await, "no speech stream while paused");
    voice.close().await.unwrap();
}

/// Sends `turn.end`; returns the answer's `flushed`, keeping the other messages.
async fn end_turn(voice: &mut Voice, received: &mut Vec<Message>) -> bool {
    voice.end_turn().await.unwrap();
    let answer = voice
        .wait_for(QUICK, |e| matches!(e, Event::TurnEnded(_)), |m| received.push(m.clone()))
        .await
        .unwrap()
        .expect("an answer to turn.end");
    answer.raw["payload"]["flushed"].as_bool().unwrap_or_else(|| panic!("{}", answer.raw))
}
