//! One side of `make bench-stt`: this service's engine over a list of WAV files.
//!
//! `bench_stt MODEL LIST` where each LIST line is `path|reference text`. Prints one JSON object
//! per utterance (`file`, `reference`, `hypothesis`, `audio_s`, `wall_s`) and a last one with
//! the totals: load time, audio seconds, process CPU seconds, wall seconds, peak RSS.

use std::sync::Arc;
use std::time::Instant;

use stt_service::engine::Engine;
use stt_service::metrics::SttMetrics;

/// User plus system CPU seconds of this process (`/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or_default()
}

fn read_wav(path: &str) -> Vec<i16> {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = reader.spec();
    assert!(spec.sample_rate == 16_000 && spec.channels == 1, "{path}: need 16 kHz mono");
    reader.samples::<i16>().map(Result::unwrap).collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, list) = match args.as_slice() {
        [_, model, list] => (model.clone(), list.clone()),
        _ => anyhow::bail!("usage: bench_stt MODEL LIST"),
    };
    let started = Instant::now();
    let engine =
        Arc::new(Engine::load(std::path::Path::new(&model), 1, 4, 1, "en", SttMetrics::default())?);
    let load_s = started.elapsed().as_secs_f64();
    let cpu_before = cpu_seconds();
    let (mut audio_total, mut wall_total) = (0.0, 0.0);
    for line in std::fs::read_to_string(&list)?.lines().filter(|l| !l.trim().is_empty()) {
        let (file, reference) = line.split_once('|').unwrap_or((line, ""));
        let pcm = read_wav(file);
        let audio_s = pcm.len() as f64 / 16_000.0;
        let started = Instant::now();
        let transcript = engine.transcribe(pcm).await?;
        let wall_s = started.elapsed().as_secs_f64();
        audio_total += audio_s;
        wall_total += wall_s;
        println!(
            "{}",
            serde_json::json!({
                "file": file, "reference": reference, "hypothesis": transcript.text,
                "audio_s": audio_s, "wall_s": wall_s,
            })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": "whisper.cpp (this service)", "load_s": load_s, "audio_s": audio_total,
            "cpu_s": cpu_seconds() - cpu_before, "wall_s": wall_total, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
