//! Smart Turn v3.2: has the speaker finished their turn, judged from the sound of the last 8 s
//! (intonation, a trailing "and…", a held vowel), not from the words.
//!
//! The model (`smart-turn-v3.2-cpu.onnx`, BSD-2-Clause, from the `pipecat-ai` package) is a
//! Whisper-tiny encoder with a classifier head. It takes Whisper-style log-mel features of
//! exactly 8 s of 16 kHz audio (the end of the turn, zero-padded at the front when shorter) and
//! gives the probability that the turn is complete. [`features`] computes them the way the
//! package's `_whisper_features.py` does (itself `transformers.WhisperFeatureExtractor`):
//! zero-mean unit-variance waveform, centred 400-sample periodic-Hann STFT with a 160-sample
//! hop, power spectrum onto 80 Slaney mel filters from 0 to 8 kHz, `log10`, floor at the
//! maximum less 8, then `(x + 4) / 4`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, anyhow};
use ort::value::TensorRef;
use realfft::RealFftPlanner;

use crate::metrics::SttMetrics;
use crate::onnx::SessionPool;
use crate::turn::TurnModel;

/// Samples the model looks at: the last 8 s.
pub const WINDOW_SAMPLES: usize = 8 * 16_000;
/// Mel bands per frame.
pub const MELS: usize = 80;
/// Frames in the window (10 ms apart).
pub const FRAMES: usize = 800;
const FFT_SIZE: usize = 400;
const HOP: usize = 160;
const BINS: usize = FFT_SIZE / 2 + 1;
const MEL_FLOOR: f64 = 1e-10;
const NORM_EPS: f64 = 1e-7;

/// The window, the mel filters and the FFT plan: computed once per process.
struct Analysis {
    window: Vec<f64>,
    /// For each mel band, its first non-zero frequency bin and the weights from there.
    filters: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn realfft::RealToComplex<f64>>,
}

fn analysis() -> &'static Analysis {
    static ANALYSIS: OnceLock<Analysis> = OnceLock::new();
    ANALYSIS.get_or_init(|| {
        // Periodic Hann, as `np.hanning(n + 1)[:-1]`.
        let window = (0..FFT_SIZE)
            .map(|n| 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / FFT_SIZE as f64).cos())
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_SIZE);
        Analysis { window, filters: mel_filters(), fft }
    })
}

fn hertz_to_mel(hertz: f64) -> f64 {
    let logstep = 27.0 / 6.4f64.ln();
    if hertz >= 1000.0 { 15.0 + (hertz / 1000.0).ln() * logstep } else { 3.0 * hertz / 200.0 }
}

fn mel_to_hertz(mel: f64) -> f64 {
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= 15.0 { 1000.0 * (logstep * (mel - 15.0)).exp() } else { 200.0 * mel / 3.0 }
}

/// Slaney-normalised triangular filters over `BINS` bins from 0 to 8 kHz, stored sparsely.
fn mel_filters() -> Vec<(usize, Vec<f64>)> {
    let (low, high) = (hertz_to_mel(0.0), hertz_to_mel(8000.0));
    let edges: Vec<f64> = (0..MELS + 2)
        .map(|i| mel_to_hertz(low + (high - low) * i as f64 / (MELS + 1) as f64))
        .collect();
    let bin_hertz = |bin: usize| 8000.0 * bin as f64 / (BINS - 1) as f64;
    (0..MELS)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (right - left);
            let weights: Vec<(usize, f64)> = (0..BINS)
                .filter_map(|bin| {
                    let f = bin_hertz(bin);
                    let down = (f - left) / (centre - left);
                    let up = (right - f) / (right - centre);
                    let weight = down.min(up).max(0.0) * norm;
                    (weight > 0.0).then_some((bin, weight))
                })
                .collect();
            let first = weights.first().map_or(0, |&(bin, _)| bin);
            (first, weights.into_iter().map(|(_, weight)| weight).collect())
        })
        .collect()
}

/// Log-mel features of the last 8 s of `pcm`, `[MELS][FRAMES]` row-major, as the model takes
/// them.
pub fn features(pcm: &[i16]) -> Vec<f32> {
    let Analysis { window, filters, fft } = analysis();
    // The last 8 s, zero-padded at the front.
    let tail = &pcm[pcm.len().saturating_sub(WINDOW_SAMPLES)..];
    let mut audio = vec![0.0f64; WINDOW_SAMPLES - tail.len()];
    audio.extend(tail.iter().map(|&s| f64::from(f32::from(s) / 32768.0)));
    let mean = audio.iter().sum::<f64>() / audio.len() as f64;
    let variance = audio.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / audio.len() as f64;
    let scale = 1.0 / (variance + NORM_EPS).sqrt();
    for x in &mut audio {
        *x = (*x - mean) * scale;
    }
    // Centred frames: reflect-pad by half a window at both ends (without repeating the edge).
    let pad = FFT_SIZE / 2;
    let n = audio.len();
    let padded: Vec<f64> = (0..n + 2 * pad)
        .map(|i| {
            if i < pad {
                audio[pad - i]
            } else if i - pad < n {
                audio[i - pad]
            } else {
                audio[2 * n - 2 - (i - pad)]
            }
        })
        .collect();
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f64; BINS];
    let mut log_mel = vec![0.0f64; MELS * FRAMES];
    // The reference computes one more frame and drops it, so `FRAMES` frames are kept.
    for frame in 0..FRAMES {
        let start = frame * HOP;
        for ((slot, &x), &w) in input.iter_mut().zip(&padded[start..start + FFT_SIZE]).zip(window) {
            *slot = x * w;
        }
        fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .expect("buffers come from the plan");
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for (band, (first, weights)) in filters.iter().enumerate() {
            let energy: f64 = weights.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
            log_mel[band * FRAMES + frame] = energy.max(MEL_FLOOR).log10();
        }
    }
    let floor = log_mel.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 8.0;
    log_mel.iter().map(|&x| ((x.max(floor) + 4.0) / 4.0) as f32).collect()
}

/// What the model made of a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The turn is complete.
    Complete,
    /// The child is expected to go on.
    Incomplete,
    /// The model call failed (counted and logged); the backstop decides.
    Failed,
}

/// The loaded model, shared by every stream.
#[derive(Debug)]
pub struct SmartTurn {
    sessions: SessionPool,
    metrics: SttMetrics,
    /// Whether a failed call was logged already (only the first is).
    failed: AtomicBool,
}

impl SmartTurn {
    /// Loads `model` into `sessions` ONNX sessions (calls on different sessions run in parallel).
    pub fn load(
        runtime: &Path,
        model: &Path,
        sessions: usize,
        metrics: SttMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let sessions = SessionPool::load(runtime, model, sessions)?;
        let model = Arc::new(Self { sessions, metrics, failed: AtomicBool::new(false) });
        // One call now, so a broken model fails the start rather than the first child.
        model.run(&features(&[])).context("a first Smart Turn call")?;
        Ok(model)
    }

    /// Probability (0..1) that the turn ending with `pcm` is complete. Blocks for about
    /// 60 ms of one core (the features take 5 ms of it): call it off the async runtime.
    pub fn probability(&self, pcm: &[i16]) -> anyhow::Result<f32> {
        let started = std::time::Instant::now();
        let result = self.run(&features(pcm));
        self.metrics.turn_inference.observe(started.elapsed().as_secs_f64());
        result
    }

    /// Whether the turn ending with `pcm` is complete: a probability at `threshold` or above.
    pub fn judge(&self, pcm: &[i16], threshold: f32) -> Verdict {
        let verdict = match self.probability(pcm) {
            Ok(probability) => {
                tracing::debug!(probability, "end-of-turn verdict");
                if probability >= threshold { Verdict::Complete } else { Verdict::Incomplete }
            }
            Err(err) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %format!("{err:#}"), "Smart Turn call failed; the backstop decides");
                }
                Verdict::Failed
            }
        };
        let label = match verdict {
            Verdict::Complete => "complete",
            Verdict::Incomplete => "incomplete",
            Verdict::Failed => "failed",
        };
        SttMetrics::count(&self.metrics.turn_checks, "verdict", label);
        verdict
    }

    /// Counts a turn the model ended that the child went on with.
    pub fn cut_off(&self) {
        self.metrics.turn_cut_offs.inc();
    }

    fn run(&self, features: &[f32]) -> anyhow::Result<f32> {
        let mut guard = self.sessions.acquire()?;
        let input = TensorRef::from_array_view(([1usize, MELS, FRAMES], features))?;
        let outputs = guard.run(ort::inputs!["input_features" => input])?;
        let (_, probability) = outputs["logits"].try_extract_tensor::<f32>()?;
        probability.first().copied().ok_or_else(|| anyhow!("Smart Turn gave no probability"))
    }
}

impl TurnModel for SmartTurn {
    fn judge(&self, pcm: &[i16], threshold: f32) -> Verdict {
        SmartTurn::judge(self, pcm, threshold)
    }

    fn cut_off(&self) {
        SmartTurn::cut_off(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_filters_cover_the_band_like_the_reference() {
        let filters = mel_filters();
        assert_eq!(filters.len(), MELS);
        // The lowest band rises from 0 Hz (whose own weight is 0), and each later band starts
        // no earlier than the last; every band has weights.
        assert_eq!(filters[0].0, 1);
        assert!(filters.iter().all(|(_, weights)| !weights.is_empty()));
        assert!(filters.windows(2).all(|w| w[1].0 >= w[0].0));
        // Slaney normalisation: each triangle's area over frequency is 1 (within sampling).
        for (band, (_, weights)) in filters.iter().enumerate() {
            let area: f64 = weights.iter().sum::<f64>() * 40.0;
            assert!((0.6..1.4).contains(&area), "band {band}: area {area}");
        }
    }

    #[test]
    fn silence_gives_the_floor_everywhere_and_the_shape_is_fixed() {
        let features = features(&[]);
        assert_eq!(features.len(), MELS * FRAMES);
        // All-zero audio: every value is the mel floor, log10(1e-10) = -10, so (−10 + 4) / 4.
        assert!(features.iter().all(|&x| (x - -1.5).abs() < 1e-6), "{:?}", &features[..4]);
    }
}
