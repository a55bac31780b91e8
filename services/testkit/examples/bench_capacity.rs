//! Gateway capacity: N voice sockets at once, each streaming 20 ms frames in real time (speech
//! and silence mixed: one real utterance, then silence, over and over) for a fixed time, N
//! stepped up. Per step: `audio_ack` latency p50/p99 (send to acknowledgement), frames lost
//! (sent without an acknowledgement, or counted lost by the gateway), and the gateway's CPU
//! (share of one core) and RSS per socket; then the RSS per idle connected socket.
//!
//! The whole stack runs, but the gateway is measured on a core of its own: this process (the
//! load generator), Redis and the other services are pinned to the last CPU and the gateway to
//! the first (`taskset`), so the figures are per gateway core rather than what is left of a
//! machine shared with whisper. The recogniser runs its light mode (the energy gate, the fixed
//! silence, one whisper worker with no queue): this much speech saturates whisper anyway, the
//! turns it sheds come back as `STT_BUSY` and are counted, and the audio path is what is
//! measured.
//!
//! ```text
//! cargo run -p blob-testkit --example bench_capacity -- [SECONDS] [N ...]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blob_client::protocol::ErrorCode;
use blob_client::voice::Received;
use blob_client::{Client, Event, Voice};
use blob_testkit::audio::read_wav;
use blob_testkit::paths::speech_clip;
use blob_testkit::stack::{Stack, StackOptions};

const FRAME: usize = 320;

#[derive(Default)]
struct Outcome {
    sent: u64,
    acked: u64,
    latencies_ms: Vec<f64>,
    busy: u64,
    closed: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    let mut steps: Vec<usize> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    if steps.is_empty() {
        steps = vec![50, 100, 200, 400];
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 {
        // Everything started from here inherits the last CPU; the gateway moves to the first.
        pin(std::process::id(), &(cpus - 1).to_string())?;
    }
    let mut stack = Stack::start(StackOptions {
        extra_env: vec![
            ("gateway", "RATE_LIMIT_PER_MINUTE", "100000".to_owned()),
            ("stt-service", "VAD_MODE", "energy".to_owned()),
            ("stt-service", "STT_WORKERS", "1".to_owned()),
            ("stt-service", "STT_QUEUE_DEPTH", "0".to_owned()),
        ],
        ..StackOptions::default()
    })
    .await;
    let gateway_pid = stack.process("gateway").pid().expect("the gateway runs");
    if cpus >= 2 {
        pin(gateway_pid, "0")?;
        println!(
            "gateway pinned to CPU 0; load generator, Redis and the other services to CPU {}",
            cpus - 1
        );
    } else {
        println!("one CPU: the gateway shares it with everything else");
    }
    let speech = read_wav(&speech_clip("test-audio/utt2.wav"));
    let mut pattern = speech.clone();
    pattern.extend(std::iter::repeat_n(0i16, 16_000 * 3));
    let pattern = Arc::new(pattern);

    let max = *steps.iter().max().unwrap_or(&0);
    println!("opening {max} sessions (one parent and child each)...");
    let mut sessions = Vec::new();
    for i in 0..max {
        let mut client = Client::new(&stack.http_url());
        let uid = format!("load-{i}");
        client.exchange(&stack.certs.id_token(&uid, &format!("{uid}@example.com"))).await?;
        let child = client.add_child("Mia", 1).await?;
        let session = client.open_session(&child.child_id).await?;
        sessions.push((client, session.session_id));
    }

    // Idle sockets first (connected, heartbeats only), while the gateway's heap is fresh.
    let n = max;
    let rss_before = rss_kib(gateway_pid);
    let mut idle = Vec::new();
    for (client, session_id) in sessions.iter().take(n) {
        idle.push(Voice::connect(client, session_id, None).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_socket = (rss_kib(gateway_pid).saturating_sub(rss_before)) as f64 / n as f64;
    println!(
        "{n} idle sockets: {per_socket:.1} KiB of gateway RSS each, about {:.0} per GiB",
        if per_socket > 0.0 { 1024.0 * 1024.0 / per_socket } else { f64::INFINITY }
    );
    for voice in idle {
        let _ = voice.close().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>8} {:>9} {:>12} {:>10}",
        "N", "ack p50", "ack p99", "frames", "lost", "STT_BUSY", "gw CPU", "RSS/socket"
    );
    for &n in &steps {
        let rss_before = rss_kib(gateway_pid);
        let cpu_before = cpu_ticks(gateway_pid);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, (client, session_id)) in sessions.iter().take(n).enumerate() {
            let (client, session_id, pattern) =
                (client.clone(), session_id.clone(), Arc::clone(&pattern));
            tasks.push(tokio::spawn(async move {
                // Spread the sockets' frame clocks over the 20 ms period.
                tokio::time::sleep(Duration::from_micros((i as u64 * 20_000) / n as u64)).await;
                stream(&client, &session_id, &pattern, i, Duration::from_secs(seconds)).await
            }));
        }
        // The gateway's RSS with every socket open, midway.
        tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
        let rss_during = rss_kib(gateway_pid);
        let mut outcome = Outcome::default();
        for task in tasks {
            let one = task.await??;
            outcome.sent += one.sent;
            outcome.acked += one.acked;
            outcome.busy += one.busy;
            outcome.latencies_ms.extend(one.latencies_ms);
            outcome.closed |= one.closed;
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(gateway_pid) - cpu_before) as f64 / clock_ticks() / wall;
        outcome.latencies_ms.sort_by(f64::total_cmp);
        let p = |q: f64| {
            let v = &outcome.latencies_ms;
            if v.is_empty() { f64::NAN } else { v[((v.len() - 1) as f64 * q).round() as usize] }
        };
        println!(
            "{n:>6} {:>8.1}ms {:>8.1}ms {:>10} {:>8} {:>9} {:>10.0}% {:>8.1}KiB{}",
            p(0.5),
            p(0.99),
            outcome.sent,
            outcome.sent - outcome.acked,
            outcome.busy,
            cpu * 100.0,
            (rss_during.saturating_sub(rss_before)) as f64 / n as f64,
            if outcome.closed { "  (some sockets closed)" } else { "" }
        );
        // Let the suspended sessions settle before the next step.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    Ok(())
}

/// Pins every thread of process `pid` (and the threads it starts later) to `cpus`.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset -a -p -c {cpus} {pid} failed");
    Ok(())
}

/// One socket: 20 ms frames in real time for `length`, acknowledgements timed by sequence.
async fn stream(
    client: &Client,
    session_id: &str,
    pattern: &[i16],
    offset: usize,
    length: Duration,
) -> anyhow::Result<Outcome> {
    let mut voice = Voice::connect(client, session_id, None).await?;
    let mut outcome = Outcome::default();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let frames: Vec<&[i16]> = pattern.chunks(FRAME).collect();
    let start = tokio::time::Instant::now();
    let count = (length.as_millis() / 20) as u64;
    let on_message = |message: &blob_client::Message,
                      outcome: &mut Outcome,
                      sent_at: &mut HashMap<u64, Instant>| {
        match &message.event {
            Event::AudioAck(ack) => {
                if let Some(at) = sent_at.remove(&u64::from(ack.sequence)) {
                    outcome.acked += 1;
                    outcome.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Event::Error(error) if error.code == ErrorCode::SttBusy => outcome.busy += 1,
            _ => {}
        }
    };
    for i in 0..count {
        let frame = frames[(offset * 37 + i as usize) % frames.len()];
        sent_at.insert(i, Instant::now());
        voice.send_pcm(frame).await?;
        outcome.sent += 1;
        let due = start + Duration::from_millis(20 * (i + 1));
        loop {
            let wait = due.saturating_duration_since(tokio::time::Instant::now());
            match voice.next(wait).await? {
                Some(Received::Message(message)) => {
                    on_message(&message, &mut outcome, &mut sent_at)
                }
                Some(Received::Closed(_)) => {
                    outcome.closed = true;
                    return Ok(outcome);
                }
                Some(Received::Unknown { .. }) => {}
                None => break,
            }
        }
    }
    // The last acknowledgements.
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Some(Received::Message(message)) =
        voice.next(until.saturating_duration_since(tokio::time::Instant::now())).await?
    {
        on_message(&message, &mut outcome, &mut sent_at);
    }
    let _ = voice.close().await;
    Ok(outcome)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of the process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Linux's USER_HZ: the unit of the CPU times in `/proc/<pid>/stat`.
fn clock_ticks() -> f64 {
    100.0
}
