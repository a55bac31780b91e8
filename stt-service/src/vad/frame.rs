//! The verdict on one 32 ms frame: its energy, whether it is loud enough to start speech, and
//! the probability that it is speech.

use crate::silero::{CHUNK_SAMPLES, SileroStream};

/// Samples per second of the PCM the segmenter accepts.
pub const SAMPLE_RATE: u32 = 16_000;
/// Length of one analysis frame (Silero's chunk at 16 kHz).
pub const FRAME_MS: u32 = 32;
/// Samples in one analysis frame.
pub const FRAME_SAMPLES: usize = CHUNK_SAMPLES;

/// What decides, frame by frame, whether the child is speaking.
#[derive(Debug)]
pub enum Detector {
    /// The RMS energy gate alone.
    Energy,
    /// Silero VAD, with the energy gate on speech onsets.
    Silero(SileroStream),
}

/// One frame as the detector heard it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameVerdict {
    /// Mean square of the samples (s16 scale).
    pub energy: f64,
    /// Whether its RMS level reaches the energy gate.
    pub loud: bool,
    /// Probability (0..1) that it is speech; with the energy gate alone, 1 when loud, else 0.
    pub probability: f32,
}

impl Detector {
    /// Whether frames are judged by a model (worth running off the async runtime).
    pub fn is_neural(&self) -> bool {
        matches!(self, Self::Silero(_))
    }

    /// Judges one frame against the energy gate `energy_threshold` (RMS on the s16 scale).
    pub fn judge(&mut self, frame: &[i16], energy_threshold: f32) -> FrameVerdict {
        let energy = mean_square(frame);
        let loud = energy.sqrt() >= f64::from(energy_threshold);
        let gate = f32::from(u8::from(loud));
        let probability = match self {
            Self::Energy => gate,
            // A failed model call (counted by the detector) falls back to the energy gate.
            Self::Silero(silero) => silero.probability(frame).unwrap_or(gate),
        };
        FrameVerdict { energy, loud, probability }
    }
}

fn mean_square(frame: &[i16]) -> f64 {
    let sum: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    sum / frame.len().max(1) as f64
}

/// Decodes little-endian s16 PCM; `None` for an odd byte count.
pub fn decode_pcm(bytes: &[u8]) -> Option<Vec<i16>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    Some(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_energy_gate_judges_by_rms() {
        let mut detector = Detector::Energy;
        let loud = detector.judge(&[600; FRAME_SAMPLES], 500.0);
        assert_eq!(loud, FrameVerdict { energy: 360_000.0, loud: true, probability: 1.0 });
        let quiet = detector.judge(&[-400; FRAME_SAMPLES], 500.0);
        assert!(!quiet.loud);
        assert_eq!(quiet.probability, 0.0);
    }

    #[test]
    fn pcm_decoding_rejects_odd_lengths() {
        assert_eq!(decode_pcm(&[1, 0, 255, 255]), Some(vec![1, -1]));
        assert_eq!(decode_pcm(&[1, 0, 2]), None);
    }
}
