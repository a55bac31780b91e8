//! Silero VAD: a small recurrent network that gives the probability of speech in each 32 ms
//! chunk of 16 kHz audio, robust to level and steady noise where an energy gate is not.
//!
//! The model (`silero_vad.onnx`, MIT) is shared by every stream through a few ONNX sessions;
//! each stream keeps its own recurrent state and the last 64 samples of context, exactly as the
//! silero-vad package's `OnnxWrapper` feeds it. One call takes about 0.15 ms of one core.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use ort::value::TensorRef;

use crate::metrics::SttMetrics;
use crate::onnx::SessionPool;

/// Samples in one chunk the model takes at 16 kHz.
pub const CHUNK_SAMPLES: usize = 512;
/// Samples of the previous chunk prefixed to each input.
const CONTEXT_SAMPLES: usize = 64;
/// The `sr` input: a scalar, the same for every call.
const SAMPLE_RATE: [i64; 1] = [16_000];
/// Recurrent state: [2, batch 1, 128].
const STATE_LEN: usize = 2 * 128;

/// The loaded model, shared by every stream.
#[derive(Debug)]
pub struct SileroVad {
    sessions: SessionPool,
    metrics: SttMetrics,
}

impl SileroVad {
    /// Loads `model` into `sessions` ONNX sessions (calls on different sessions run in parallel).
    pub fn load(
        runtime: &Path,
        model: &Path,
        sessions: usize,
        metrics: SttMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let sessions = SessionPool::load(runtime, model, sessions)?;
        let vad = Arc::new(Self { sessions, metrics });
        // One call now, so a broken model fails the start rather than the first child.
        vad.stream().probability(&[0; CHUNK_SAMPLES]).context("a first Silero VAD call")?;
        Ok(vad)
    }

    /// Fresh per-stream state.
    pub fn stream(self: &Arc<Self>) -> SileroStream {
        SileroStream {
            model: Arc::clone(self),
            state: vec![0.0; STATE_LEN],
            input: vec![0.0; CONTEXT_SAMPLES + CHUNK_SAMPLES],
            errors: 0,
        }
    }

    fn run(&self, input: &[f32], state: &mut [f32]) -> anyhow::Result<f32> {
        let mut guard = self.sessions.acquire()?;
        let input = TensorRef::from_array_view(([1usize, input.len()], input))?;
        let state_in = TensorRef::from_array_view(([2usize, 1, 128], &*state))?;
        let rate = TensorRef::from_array_view(([0usize; 0], &SAMPLE_RATE[..]))?;
        let outputs =
            guard.run(ort::inputs!["input" => input, "state" => state_in, "sr" => rate])?;
        let (_, probability) = outputs["output"].try_extract_tensor::<f32>()?;
        let (_, next_state) = outputs["stateN"].try_extract_tensor::<f32>()?;
        anyhow::ensure!(next_state.len() == STATE_LEN, "unexpected Silero state size");
        state.copy_from_slice(next_state);
        probability.first().copied().ok_or_else(|| anyhow!("Silero gave no probability"))
    }
}

/// One stream's detector state.
#[derive(Debug)]
pub struct SileroStream {
    model: Arc<SileroVad>,
    state: Vec<f32>,
    /// The context (last 64 samples of the previous input) followed by the current chunk.
    input: Vec<f32>,
    /// Failed calls so far (only the first is logged).
    errors: u32,
}

impl SileroStream {
    /// Speech probability of the next chunk of exactly [`CHUNK_SAMPLES`] samples.
    pub fn probability(&mut self, chunk: &[i16]) -> anyhow::Result<f32> {
        anyhow::ensure!(chunk.len() == CHUNK_SAMPLES, "Silero takes {CHUNK_SAMPLES}-sample chunks");
        let context_end = self.input.len() - CONTEXT_SAMPLES;
        self.input.copy_within(context_end.., 0);
        for (slot, &sample) in self.input[CONTEXT_SAMPLES..].iter_mut().zip(chunk) {
            *slot = f32::from(sample) / 32768.0;
        }
        let started = std::time::Instant::now();
        let result = self.model.run(&self.input, &mut self.state);
        self.model.metrics.vad_inference(started.elapsed());
        if let Err(err) = &result {
            self.model.metrics.vad_errors.inc();
            if self.errors == 0 {
                tracing::warn!(error = %format!("{err:#}"), "Silero VAD call failed; the energy gate decides");
            }
            self.errors += 1;
        }
        result
    }
}
