//! Turn latency, end to end: the real stack (gateway, session-service with its own Redis, the
//! stt-service with whisper base q8_0 and Silero VAD), and the local Gemini fake answering with a
//! fixed 300 ms to its first token. Real 2–3 s utterances are streamed in real time, 20 ms
//! frames, then silence as a microphone would send, and each turn is timed from the last frame
//! of speech:
//!
//! - `endpoint`: to `conversation.state TRANSCRIBING` (the end of the turn)
//! - `transcript`: to `stt_result`
//! - `first sentence`: to the first `ai_response.chunk`
//! - `reply`: to `ai_response`
//!
//! `our overhead` is the time to the first sentence minus the endpoint, minus whisper's inference
//! for the utterance (from the stt-service's metrics) and minus the fake's 300 ms: what the
//! gateway, gRPC, the session-service and the llm-service add. A turn whose transcription was
//! started speculatively before its end has no such split; for every turn the time from
//! `stt_result` to the first sentence, less the 300 ms, is shown too.
//!
//! The same turns run twice, each on a fresh stack, side by side: the fixed 800 ms silence
//! (`TURN_MODE=silence`, the baseline) and Smart Turn (`TURN_MODE=smart`, the default). Real
//! speech only: Smart Turn rates synthetic speech as unfinished.
//!
//! ```text
//! cargo run --release -p blob-testkit --example bench_turn -- [TURNS]
//! ```

use std::time::{Duration, Instant};

use blob_client::protocol::ConversationState;
use blob_client::voice::Received;
use blob_client::{Client, Event, Voice};
use blob_testkit::audio::read_wav;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};

/// Real recordings of 2.4–3.5 s.
const CLIPS: [&str; 5] = [
    "speech/ps_goforward.wav",
    "speech/ps_tidigits_dhd_2934z.wav",
    "speech/ps_librivox_sas01_0880.wav",
    "speech/ps_cards_005.wav",
    "speech/ps_librivox_sas01_0930.wav",
];
const FIRST_TOKEN: Duration = Duration::from_millis(300);
const FRAME: usize = 320;
const MODES: [&str; 2] = ["silence", "smart"];

/// One column of a turn's timings.
type Field = fn(&Turn) -> f64;
/// Our overhead in a turn, where it can be told apart.
type Overhead = fn(&Turn) -> Option<f64>;

fn first_token_ms() -> f64 {
    FIRST_TOKEN.as_secs_f64() * 1000.0
}

#[derive(Default, Clone, Copy)]
struct Turn {
    endpoint: f64,
    transcript: f64,
    first_sentence: f64,
    reply: f64,
    inference: f64,
    /// Audio streamed for the turn, in seconds (20 ms frames sent).
    audio: f64,
}

/// One mode's turns and the stt-service's turn counters afterwards.
struct Run {
    turns: Vec<Turn>,
    counters: Vec<(String, f64)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let turns: usize = std::env::args().nth(1).map_or(Ok(30), |n| n.parse())?;
    let clips: Vec<(Vec<i16>, usize)> = CLIPS
        .iter()
        .map(|name| {
            let pcm = read_wav(&speech_clip(name));
            let end = last_speech_frame(&pcm);
            (pcm, end)
        })
        .collect();
    println!(
        "{turns} turns per mode over {} real clips of 2.4-3.5 s, fake LLM first token {} ms",
        clips.len(),
        FIRST_TOKEN.as_millis()
    );
    let mut runs = Vec::new();
    for mode in MODES {
        runs.push(measure(mode, turns, &clips).await?);
    }

    println!(
        "{:<44} {:>15} {:>15}",
        "from the last frame of speech, ms", "silence 800 ms", "Smart Turn"
    );
    println!("{:<44} {:>7} {:>7} {:>7} {:>7}", "", "p50", "p95", "p50", "p95");
    let rows: [(&str, Field); 5] = [
        ("endpoint (TRANSCRIBING)", |t| t.endpoint),
        ("transcript (stt_result)", |t| t.transcript),
        ("first sentence (first ai_response.chunk)", |t| t.first_sentence),
        ("whole reply (ai_response)", |t| t.reply),
        ("whisper inference (stt-service metrics)", |t| t.inference),
    ];
    for (name, field) in rows {
        print!("{name:<44}");
        for run in &runs {
            let values: Vec<f64> = run.turns.iter().map(field).collect();
            print!(" {:>7.0} {:>7.0}", percentile(&values, 0.5), percentile(&values, 0.95));
        }
        println!();
    }
    // Our share of a turn: after the end of the turn, what whisper and the LLM did not take.
    // A turn whose transcript was started speculatively before the end has no such split, so
    // for every turn the part from the transcript to the first sentence is shown as well.
    let first_token = FIRST_TOKEN.as_secs_f64() * 1000.0;
    let overheads: [(&str, Overhead); 2] = [
        ("our overhead, transcribed after the end", |t| {
            (t.transcript - t.endpoint >= t.inference)
                .then(|| t.first_sentence - t.endpoint - t.inference - first_token_ms())
        }),
        ("our overhead, transcript to first sentence", |t| {
            Some(t.first_sentence - t.transcript - first_token_ms())
        }),
    ];
    let mut notes = Vec::new();
    for (name, overhead) in overheads {
        print!("{name:<44}");
        for (mode, run) in MODES.iter().zip(&runs) {
            let values: Vec<f64> = run.turns.iter().filter_map(overhead).collect();
            print!(" {:>7.0} {:>7.0}", percentile(&values, 0.5), percentile(&values, 0.95));
            notes.push(format!(
                "{mode} {:.1} ms over {} turns",
                percentile(&values, 0.99),
                values.len()
            ));
        }
        println!();
    }
    println!(
        "our overhead: first sentence - endpoint - inference - {first_token:.0} ms, and first \
         sentence - stt_result - {first_token:.0} ms; p99: {}",
        notes.join(", ")
    );
    for (mode, run) in MODES.iter().zip(&runs) {
        let counter = |name: &str| {
            run.counters.iter().find(|(n, _)| n == name).map_or(0.0, |(_, value)| *value)
        };
        let audio: f64 = run.turns.iter().map(|t| t.audio).sum();
        let calls = counter("turn_inference_seconds_count");
        println!(
            "{mode}: {audio:.0} s of audio streamed; Silero {:.1}% and Smart Turn {:.1}% of one \
             core per stream ({calls:.0} calls, {:.0} ms each)",
            100.0 * counter("vad_inference_seconds_sum") / audio,
            100.0 * counter("turn_inference_seconds_sum") / audio,
            if calls > 0.0 { 1000.0 * counter("turn_inference_seconds_sum") / calls } else { 0.0 },
        );
        let counters: Vec<String> = run
            .counters
            .iter()
            .filter(|(name, _)| name.ends_with("_total") || name.contains("_total{"))
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        println!("  {}", counters.join(", "));
    }
    Ok(())
}

/// Runs `turns` turns on a fresh stack with `TURN_MODE=mode`.
async fn measure(mode: &str, turns: usize, clips: &[(Vec<i16>, usize)]) -> anyhow::Result<Run> {
    let options = StackOptions {
        extra_env: vec![("stt-service", "TURN_MODE", mode.to_owned())],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await;
    stack.gemini.set_first_token_delay(FIRST_TOKEN);
    let mut client = Client::new(&stack.http_url());
    client.exchange(&stack.certs.id_token("bench-parent", "bench@example.com")).await?;
    let child = client.add_child("Mia", 1).await?;
    let session = client.open_session(&child.child_id).await?;
    let mut voice = Voice::connect(&client, &session.session_id, None).await?;
    let metrics_url = format!("{}/metrics", stack.admin_url("stt-service"));
    let mut results = Vec::new();
    for i in 0..turns {
        let (pcm, speech_end) = &clips[i % clips.len()];
        let inference_before = inference_sum(&metrics_url).await?;
        let turn = run_turn(&mut voice, pcm, *speech_end)
            .await
            .map_err(|err| err.context(format!("{mode}: {}", CLIPS[i % clips.len()])))?;
        let inference = inference_sum(&metrics_url).await? - inference_before;
        results.push(Turn { inference, ..turn });
        // Let the turn settle (IDLE) before the next utterance.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    voice.close().await?;
    let text = reqwest::get(&metrics_url).await?.text().await?;
    let counters = text
        .lines()
        .filter(|l| {
            l.starts_with("blob_stt_turn_ends_total")
                || l.starts_with("blob_stt_speculations_total")
                || l.starts_with("blob_stt_turn_checks_total")
                || l.starts_with("blob_stt_turn_inference_seconds_sum")
                || l.starts_with("blob_stt_turn_inference_seconds_count")
                || l.starts_with("blob_stt_vad_inference_seconds_sum")
        })
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim_start_matches("blob_stt_").to_owned(), value.parse().ok()?))
        })
        .collect();
    Ok(Run { turns: results, counters })
}

/// Streams one utterance like a microphone (then silence) and times the turn's events from the
/// moment the last frame of speech went out.
async fn run_turn(voice: &mut Voice, pcm: &[i16], speech_end: usize) -> anyhow::Result<Turn> {
    let started = tokio::time::Instant::now();
    let mut last_speech: Option<Instant> = None;
    let mut turn = Turn::default();
    let silence = vec![0i16; FRAME];
    let frames: Vec<&[i16]> = pcm.chunks(FRAME).collect();
    for i in 0..1000usize {
        voice.send_pcm(frames.get(i).copied().unwrap_or(&silence)).await?;
        turn.audio += 0.02;
        if i == speech_end {
            last_speech = Some(Instant::now());
        }
        let due = started + Duration::from_millis(20 * (i as u64 + 1));
        loop {
            let wait = due.saturating_duration_since(tokio::time::Instant::now());
            let message = match voice.next(wait).await? {
                Some(Received::Message(message)) => message,
                Some(Received::Closed(code)) => anyhow::bail!("socket closed ({code:?})"),
                Some(Received::Unknown { .. }) => continue,
                None => break,
            };
            let at = last_speech.map_or(f64::NAN, |t| t.elapsed().as_secs_f64() * 1000.0);
            match &message.event {
                Event::State(change) if change.state == ConversationState::Transcribing => {
                    turn.endpoint = at
                }
                Event::SttResult(_) => turn.transcript = at,
                Event::ReplyChunk(chunk) if chunk.index == 0 => turn.first_sentence = at,
                Event::Reply(_) => {
                    turn.reply = at;
                    return Ok(turn);
                }
                Event::SttRejected(rejected) => {
                    anyhow::bail!("utterance rejected: {}", rejected.reason)
                }
                Event::Error(error) => anyhow::bail!("{}: {}", error.code, error.message),
                _ => {}
            }
        }
    }
    anyhow::bail!("no reply within 20 s")
}

/// The index of the last 20 ms frame louder than a tenth of the loudest frame's RMS.
fn last_speech_frame(pcm: &[i16]) -> usize {
    let rms: Vec<f64> = pcm
        .chunks(FRAME)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect();
    let loudest = rms.iter().copied().fold(0.0, f64::max);
    rms.iter().rposition(|&r| r > loudest / 10.0).unwrap_or(0)
}

/// Whisper's total inference time so far, in milliseconds.
async fn inference_sum(url: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(url).await?.text().await?;
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix("blob_stt_inference_seconds_sum "))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(0.0));
    Ok(sum * 1000.0)
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
