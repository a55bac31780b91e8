//! The recogniser: one whisper.cpp model loaded at start, a pool of decoder states, and
//! transcription on blocking threads so the async runtime keeps moving audio.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::metrics::SttMetrics;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

/// whisper's encoder window: 1500 frames = 30 s.
const FULL_AUDIO_CTX: usize = 1500;
/// Short clips with a tiny encoder window make the decoder loop; never go below this.
const MIN_AUDIO_CTX: usize = 384;
/// Upper bound on tokens per second of audio (fast speech is ~4-5 tokens per second).
const MAX_TOKENS_PER_SECOND: f32 = 8.0;

/// What the recogniser heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The words, trimmed.
    pub text: String,
    /// Mean probability of the text tokens, 0..1.
    pub confidence: f32,
    /// The probability whisper gives to "no speech" for the clip.
    pub no_speech: f32,
    /// Language code used or detected.
    pub language: String,
    /// Wall time of the inference.
    pub inference_ms: u32,
}

/// Why an utterance was not transcribed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// Every worker is busy and the queue is full: the caller should shed the load.
    #[error("all workers busy and the queue is full")]
    Busy,
    /// The recogniser failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Shared recogniser. Cheap to share behind an `Arc`.
pub struct Engine {
    context: WhisperContext,
    states: Mutex<Vec<WhisperState>>,
    /// Utterances admitted: running plus queued.
    admitted: Arc<Semaphore>,
    /// Utterances running.
    permits: Arc<Semaphore>,
    threads: usize,
    language: String,
    metrics: SttMetrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("threads", &self.threads).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the model and makes `workers` decoder states; at most `queue_depth` more utterances
    /// may wait for a worker.
    pub fn load(
        model: &Path,
        workers: usize,
        queue_depth: usize,
        threads: usize,
        language: &str,
        metrics: SttMetrics,
    ) -> anyhow::Result<Self> {
        whisper_rs::install_logging_hooks();
        let path = model.to_str().context("model path is not UTF-8")?;
        let context = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .with_context(|| format!("loading whisper model {}", model.display()))?;
        let states = (0..workers)
            .map(|_| context.create_state().context("creating a whisper state"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            context,
            states: Mutex::new(states),
            admitted: Arc::new(Semaphore::new(workers + queue_depth)),
            permits: Arc::new(Semaphore::new(workers)),
            threads,
            language: language.to_owned(),
            metrics,
        })
    }

    /// Whether a worker is free now (speculative work only starts then, so it never queues
    /// ahead of, or sheds, another child's finished turn).
    pub fn has_idle_worker(&self) -> bool {
        self.permits.available_permits() > 0
    }

    /// Transcribes 16 kHz mono PCM: [`TranscribeError::Busy`] at once when the queue is full,
    /// else waits for a free worker and runs on a blocking thread.
    ///
    /// Dropping the returned future (the stream was closed) gives up a place in the queue at
    /// once, and stops an inference in progress at whisper's next computation step; the worker
    /// is free again as soon as it has stopped.
    pub async fn transcribe(
        self: &Arc<Self>,
        pcm: Vec<i16>,
    ) -> Result<Transcript, TranscribeError> {
        let admitted =
            Arc::clone(&self.admitted).try_acquire_owned().map_err(|_| TranscribeError::Busy)?;
        let queued_at = Instant::now();
        self.metrics.queue_depth.inc();
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        self.metrics.queue_depth.dec();
        self.metrics.queue_wait.observe(queued_at.elapsed().as_secs_f64());
        tracing::info!(queue_wait_ms = queued_at.elapsed().as_millis() as u64, "worker acquired");
        let permit = permit.context("engine closed")?;
        let audio_seconds = pcm.len() as f64 / 16_000.0;
        let engine = Arc::clone(self);
        let cancel = CancelOnDrop::default();
        let cancelled = Arc::clone(&cancel.0);
        let result = tokio::task::spawn_blocking(move || {
            // The permits go with the whisper state: a worker counts as free only once its state
            // is back in the pool, even when the caller has stopped waiting.
            let _held = (admitted, permit);
            let mut state = engine
                .states
                .lock()
                .map_err(|_| anyhow::anyhow!("state pool poisoned"))?
                .pop()
                .context("no free whisper state")?;
            let result = engine.run(&mut state, &pcm, &cancelled);
            if let Ok(mut pool) = engine.states.lock() {
                pool.push(state);
            }
            if cancelled.load(Ordering::Relaxed) {
                // Stopped part-way, or (closed during the last stage) finished for nobody.
                let outcome = if result.is_err() { "cancelled" } else { "discarded" };
                engine.metrics.outcome(outcome);
                tracing::info!(outcome, "the stream was closed during its inference");
            }
            result
        })
        .await
        .context("transcription task failed")?;
        cancel.disarm();
        result
            .inspect(|transcript| {
                tracing::info!(inference_ms = transcript.inference_ms, "inference done");
                let seconds = f64::from(transcript.inference_ms) / 1000.0;
                self.metrics.inference.observe(seconds);
                if audio_seconds > 0.0 {
                    self.metrics.real_time_factor.observe(seconds / audio_seconds);
                }
            })
            .map_err(TranscribeError::Failed)
    }

    fn run(
        &self,
        state: &mut WhisperState,
        pcm: &[i16],
        cancelled: &Arc<AtomicBool>,
    ) -> anyhow::Result<Transcript> {
        let started = Instant::now();
        let audio: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let seconds = audio.len() as f32 / 16_000.0;
        let window = audio_ctx(seconds);
        let mut transcript = self.decode(state, &audio, window, cancelled)?;
        // A window sized to the clip occasionally sends the decoder round a loop; the full
        // window almost never does, and costs more only for the clips that need it.
        if window < FULL_AUDIO_CTX && crate::quality::is_loop(&transcript.text) {
            tracing::info!(audio_ctx = window, "decoder loop; decoding again with the full window");
            self.metrics.loop_retries.inc();
            transcript = self.decode(state, &audio, FULL_AUDIO_CTX, cancelled)?;
        }
        transcript.inference_ms = started.elapsed().as_millis() as u32;
        Ok(transcript)
    }

    fn decode(
        &self,
        state: &mut WhisperState,
        audio: &[f32],
        window: usize,
        cancelled: &Arc<AtomicBool>,
    ) -> anyhow::Result<Transcript> {
        let seconds = audio.len() as f32 / 16_000.0;

        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_audio_ctx(window as i32);
        params.set_max_tokens((seconds * MAX_TOKENS_PER_SECOND).ceil() as i32 + 8);
        if self.language == "auto" {
            params.set_language(Some("auto"));
        } else {
            params.set_language(Some(&self.language));
        }

        abort::install(&mut params, cancelled);
        state.full(params, audio).context("whisper inference failed")?;

        let eot = self.context.token_eot();
        let mut text = String::new();
        let mut probability_sum = 0.0f32;
        let mut tokens = 0u32;
        let mut no_speech = 0.0f32;
        for segment in state.as_iter() {
            text.push_str(&segment.to_str_lossy().context("reading a segment")?);
            no_speech = no_speech.max(segment.no_speech_probability());
            for i in 0..segment.n_tokens() {
                if let Some(token) = segment.get_token(i) {
                    // Ids from the end-of-text token up are special (timestamps, language...).
                    if token.token_id() < eot {
                        probability_sum += token.token_probability();
                        tokens += 1;
                    }
                }
            }
        }
        let language = if self.language == "auto" {
            whisper_rs::get_lang_str(state.full_lang_id_from_state()).unwrap_or("en").to_owned()
        } else {
            self.language.clone()
        };
        Ok(Transcript {
            text: text.trim().to_owned(),
            // Token probabilities, discounted by how sure whisper is that nobody spoke.
            confidence: if tokens == 0 {
                0.0
            } else {
                probability_sum / tokens as f32 * (1.0 - no_speech.clamp(0.0, 1.0))
            },
            no_speech,
            language,
            // Set by the caller, over every decoding of the clip.
            inference_ms: 0,
        })
    }
}

/// Sets its flag when dropped, unless disarmed: the blocking inference watches the flag.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// whisper.cpp's abort callback, which asks a flag whether to stop. whisper-rs's closure-based
/// setter hands the C side a pointer of another type than its trampoline reads, so the raw one
/// is used with a plain function.
#[allow(unsafe_code)]
mod abort {
    use std::ffi::c_void;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use whisper_rs::FullParams;

    unsafe extern "C" fn is_set(flag: *mut c_void) -> bool {
        // SAFETY: `flag` is the `AtomicBool` `install` was given; its caller keeps the `Arc`
        // alive until the inference these parameters are for has returned.
        unsafe { (*flag.cast::<AtomicBool>()).load(Ordering::Relaxed) }
    }

    /// Makes the inference run with `params` stop once `flag` is set. The caller must keep
    /// `flag` alive until that inference has returned.
    pub(super) fn install(params: &mut FullParams<'_, '_>, flag: &Arc<AtomicBool>) {
        // SAFETY: the callback only reads an `AtomicBool` through the pointer, which outlives
        // the inference (see above); whisper.cpp calls it from the inference's own threads.
        unsafe {
            params.set_abort_callback(Some(is_set));
            params.set_abort_callback_user_data(Arc::as_ptr(flag).cast_mut().cast());
        }
    }
}

/// Encoder frames for a clip: its own length plus a margin, bounded below and by the window.
pub fn audio_ctx(seconds: f32) -> usize {
    let frames = (seconds * 50.0).ceil() as usize + 64;
    frames.clamp(MIN_AUDIO_CTX, FULL_AUDIO_CTX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_follows_the_clip_within_bounds() {
        assert_eq!(audio_ctx(0.5), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx(10.0), 564);
        assert_eq!(audio_ctx(40.0), FULL_AUDIO_CTX);
    }
}
