//! Talks to a running stack like the phone does: exchange a sign-in token, pick (or add) a
//! child, open the child's session, stream a WAV file over the voice socket in real time, and
//! print what Blob heard and answered as it happens, timed from the start of the audio.
//!
//! ```text
//! TOKEN=$(target/debug/gateway dev-token --email parent@example.com)
//! cargo run -q -p blob-testkit --example talk -- --firebase-token "$TOKEN" --wav utt1.wav
//! ```

use std::time::{Duration, Instant};

use blob_testkit::audio::read_wav;
use blob_testkit::client::{Api, VoiceSocket};

const USAGE: &str = "usage: talk --firebase-token TOKEN --wav FILE.wav [--gateway http://127.0.0.1:8080] [--child NAME] [--fast]";

#[tokio::main]
async fn main() {
    let mut gateway = "http://127.0.0.1:8080".to_owned();
    let (mut token, mut wav, mut child_name, mut fast) = (None, None, "Mia".to_owned(), false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gateway" => gateway = args.next().expect(USAGE),
            "--firebase-token" => token = args.next(),
            "--wav" => wav = args.next(),
            "--child" => child_name = args.next().expect(USAGE),
            "--fast" => fast = true,
            _ => panic!("{USAGE}"),
        }
    }
    let (Some(firebase_token), Some(wav)) = (token, wav) else { panic!("{USAGE}") };

    let api = Api::new(&gateway);
    let token = api.exchange(&firebase_token).await;
    let children = api.call(reqwest::Method::GET, "/api/v1/children", Some(&token), None).await;
    let existing = children.data().as_array().and_then(|list| {
        list.iter()
            .find(|c| c["name"] == child_name.as_str())
            .map(|c| c["child_id"].as_str().unwrap_or_default().to_owned())
    });
    let child_id = match existing {
        Some(id) => id,
        None => api.create_child(&token, &child_name, 1).await,
    };
    let session = api.open_session(&token, &child_id).await;
    let session_id = session["session_id"].as_str().expect("session_id");
    println!("session {session_id} ({})", session["outcome"]);

    let ws_url = gateway.replacen("http", "ws", 1) + "/ws/voice";
    let mut socket = VoiceSocket::connect(&ws_url, &token, session_id).await;
    let hello = socket.next_json(Duration::from_secs(10)).await.expect("greeting");
    println!("{} {}", hello["action"], hello["payload"]);

    let samples = read_wav(std::path::Path::new(&wav));
    let chunk_ms = 20;
    let silence = vec![0i16; 320];
    let started = Instant::now();
    let mut last_word = None;
    let mut chunks = samples.chunks(chunk_ms * 16).peekable();
    // The audio, then 2 s of silence, paced like a microphone unless --fast; events are printed
    // as they arrive, timed from the start of the audio.
    for index in 0.. {
        let chunk = match chunks.next() {
            Some(chunk) => chunk,
            None if index < samples.len() / 320 + 100 => &silence[..],
            None => break,
        };
        socket.send_speech_chunk(chunk).await;
        if chunks.peek().is_none() && last_word.is_none() {
            last_word = Some(started.elapsed());
            println!("[{:>5} ms] (last word sent)", started.elapsed().as_millis());
        }
        while let Some(Ok(message)) = socket.next_json_within(Duration::ZERO).await {
            print_event(started, &message);
        }
        if !fast {
            tokio::time::sleep(Duration::from_millis(chunk_ms as u64)).await;
        }
    }
    // Then everything until the socket has been quiet for 3 s.
    while let Some(Ok(message)) = socket.next_json_within(Duration::from_secs(3)).await {
        print_event(started, &message);
    }
    socket.close().await;
}

fn print_event(started: Instant, message: &serde_json::Value) {
    let at = started.elapsed().as_millis();
    match message["action"].as_str().unwrap_or_default() {
        "audio_ack" => {}
        "stt_result" => println!("[{at:>5} ms] heard: {}", message["payload"]),
        "ai_response.chunk" => {
            println!("[{at:>5} ms] Blob (sentence): {}", message["payload"]["text"])
        }
        "ai_response" => println!("[{at:>5} ms] Blob: {}", message["payload"]["text"]),
        "conversation.state" => println!("[{at:>5} ms] {}", message["payload"]["state"]),
        other => println!("[{at:>5} ms] {other}: {}", message["payload"]),
    }
}
