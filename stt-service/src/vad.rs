//! Voice activity detection and endpointing: cuts a stream of 16 kHz PCM into utterances.
//!
//! The audio is judged in 32 ms frames. With the neural detector ([`Detector::Silero`]) a frame
//! starts speech when Silero's speech probability reaches the threshold *and* its RMS level
//! reaches the energy gate (so distant voices and a television stay out), and speech goes on
//! while the probability stays above the threshold less a hysteresis margin, however quietly the
//! child speaks. With the energy detector alone a frame is speech when its level reaches the gate.
//!
//! Speech starts after a few speech frames in a row (so a click doesn't count) and the utterance
//! keeps a pre-roll of the audio before that, so the first syllable isn't clipped. Without a turn
//! detector it ends after a run of non-speech frames as long as the silence setting. With one
//! ([`TurnDetector`]), half-way through the short pause the turn so far is offered for a
//! speculative transcription ([`SegmentEvent::Paused`]), withdrawn if the child goes on
//! ([`SegmentEvent::Resumed`]); at the short pause the end-of-turn model is asked: a complete
//! turn ends there, otherwise a longer silence (the backstop) ends it. Every utterance also ends
//! at the maximum length, or when the client flushes.

use std::collections::VecDeque;

use crate::silero::{CHUNK_SAMPLES, SileroStream};
use crate::smart_turn::Verdict;
use crate::turn::{CUT_OFF_MS, MIN_PAUSE_MS, TurnDetector};

/// Samples per second of the PCM the segmenter accepts.
pub const SAMPLE_RATE: u32 = 16_000;
/// Length of one analysis frame (Silero's chunk at 16 kHz).
pub const FRAME_MS: u32 = 32;
const FRAME_SAMPLES: usize = CHUNK_SAMPLES;
/// How far below the start threshold the speech probability may fall while speech goes on.
const HYSTERESIS: f32 = 0.15;
/// Longest run of quiet speech (2 s) kept while waiting for a frame loud enough to start it.
const MAX_ONSET_FRAMES: u32 = 2000 / FRAME_MS;

/// What decides, frame by frame, whether the child is speaking.
#[derive(Debug)]
pub enum Detector {
    /// The RMS energy gate alone.
    Energy,
    /// Silero VAD, with the energy gate on speech onsets.
    Silero(SileroStream),
}

impl Detector {
    /// Whether frames are judged by a model (worth running off the async runtime).
    pub fn is_neural(&self) -> bool {
        matches!(self, Self::Silero(_))
    }
}

/// Segmenter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmenterConfig {
    /// `VAD_ENERGY_THRESHOLD` (default 500): RMS on the s16 scale a frame needs to start speech
    /// (with the energy detector alone, to be speech at all).
    pub energy_threshold: f32,
    /// `VAD_THRESHOLD` (default 0.5): Silero speech probability that starts speech; speech goes
    /// on down to 0.15 below it.
    pub speech_threshold: f32,
    /// `VAD_SILENCE_MS` (default 800): unvoiced time that ends an utterance when no turn
    /// detector decides.
    pub silence_ms: u32,
    /// Audio kept from before the detected onset.
    pub preroll_ms: u32,
    /// Voiced frames in a row needed to start speech.
    pub onset_frames: u32,
    /// Unvoiced audio kept at the end of an utterance.
    pub tail_ms: u32,
    /// `STT_MAX_UTTERANCE_SECONDS` (default 15 s) in milliseconds: longer speech is cut here.
    pub max_utterance_ms: u32,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            energy_threshold: 500.0,
            speech_threshold: 0.5,
            silence_ms: 800,
            preroll_ms: 300,
            onset_frames: 2,
            tail_ms: 200,
            max_utterance_ms: 15_000,
        }
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The configured silence followed the speech (no turn detector).
    Silence,
    /// The end-of-turn model judged the turn complete at a short pause.
    Turn,
    /// The longest silence passed although the model judged the turn incomplete.
    Backstop,
    /// The utterance reached the maximum length.
    MaxLength,
    /// The client asked to end it (or closed the stream).
    Flush,
}

impl EndReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silence => "silence",
            Self::Turn => "turn",
            Self::Backstop => "backstop",
            Self::MaxLength => "max_length",
            Self::Flush => "flush",
        }
    }
}

/// What the segmenter found in the audio pushed into it.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentEvent {
    /// Speech began at this offset from the start of the stream.
    SpeechStarted {
        /// Milliseconds since the stream's first sample.
        offset_ms: u64,
    },
    /// The child paused (half the short pause): the turn so far, as it would be if it ended
    /// here, for a speculative transcription.
    Paused {
        /// Identifies this speculation within the stream.
        speculation: u32,
        /// The turn so far.
        utterance: Utterance,
    },
    /// The child went on speaking after that pause: the speculation is void.
    Resumed {
        /// The speculation withdrawn.
        speculation: u32,
    },
    /// A complete utterance.
    Utterance(Utterance),
}

/// One utterance's audio and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// PCM with pre-roll and a short tail.
    pub samples: Vec<i16>,
    /// From the onset to the end of the last voiced frame.
    pub speech_ms: u32,
    /// Offset of the end of the utterance from the start of the stream.
    pub end_offset_ms: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// RMS level over the voiced frames.
    pub rms: f32,
    /// The speculation this utterance confirms: nothing was said since its pause.
    pub speculation: Option<u32>,
    /// The child's pauses as of the end of this utterance (with a turn detector), to keep with
    /// the conversation.
    pub pauses: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// `run` speech frames in a row so far (at most [`MAX_ONSET_FRAMES`] counted), `run_loud`
    /// whether any reached the energy gate, `run_energy` their summed mean squares.
    Idle { run: u32, run_loud: bool, run_energy: f64 },
    /// `checked` once the model was asked during the current silence; `speculation` while a
    /// speculation offered at that pause stands.
    Speaking {
        silence_run_ms: u32,
        speech_frames: u32,
        voiced_energy: f64,
        voiced_frames: u32,
        checked: bool,
        speculation: Option<u32>,
    },
}

/// Per-stream segmentation state. Allocates only when audio is kept.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    detector: Detector,
    /// Samples that don't yet fill a frame.
    partial: Vec<i16>,
    /// Recent audio while idle (pre-roll plus the onset frames).
    history: VecDeque<i16>,
    /// The utterance being collected.
    current: Vec<i16>,
    state: State,
    /// Frames seen since the stream started.
    frames: u64,
    /// The end-of-turn model, its settings and the child's pauses.
    turn: Option<TurnDetector>,
    /// The last speculation's id.
    speculations: u32,
    /// Where the last turn the model ended stopped (frame) and the silence it had waited.
    model_end: Option<(u64, u32)>,
}

impl Segmenter {
    /// A segmenter at the start of a stream.
    pub fn new(config: SegmenterConfig, detector: Detector) -> Self {
        Self {
            config,
            detector,
            partial: Vec::with_capacity(FRAME_SAMPLES),
            history: VecDeque::new(),
            current: Vec::new(),
            state: State::Idle { run: 0, run_loud: false, run_energy: 0.0 },
            frames: 0,
            turn: None,
            speculations: 0,
            model_end: None,
        }
    }

    /// Ends turns with the end-of-turn model rather than a fixed silence.
    pub fn with_turn_detector(mut self, turn: TurnDetector) -> Self {
        self.turn = Some(turn);
        self
    }

    /// Whether frames are judged by a model (worth running off the async runtime).
    pub fn is_neural(&self) -> bool {
        self.detector.is_neural() || self.turn.is_some()
    }

    /// The child's pauses so far (with a turn detector).
    pub fn pauses(&self) -> Option<Vec<u32>> {
        self.turn.as_ref().map(|turn| turn.profile.pauses())
    }

    /// Whether an utterance is in progress.
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Feeds PCM; events found are appended to `out`.
    pub fn push(&mut self, mut pcm: &[i16], out: &mut Vec<SegmentEvent>) {
        if !self.partial.is_empty() {
            let take = (FRAME_SAMPLES - self.partial.len()).min(pcm.len());
            self.partial.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.partial.len() < FRAME_SAMPLES {
                return;
            }
            let frame = std::mem::take(&mut self.partial);
            self.frame(&frame, out);
            self.partial = frame;
            self.partial.clear();
        }
        let mut chunks = pcm.chunks_exact(FRAME_SAMPLES);
        for frame in &mut chunks {
            self.frame(frame, out);
        }
        self.partial.extend_from_slice(chunks.remainder());
    }

    /// Ends the utterance in progress, if any (client flush or end of stream).
    pub fn flush(&mut self, out: &mut Vec<SegmentEvent>) {
        if self.in_speech() {
            let partial = std::mem::take(&mut self.partial);
            self.current.extend_from_slice(&partial);
            self.finish(EndReason::Flush, out);
        }
        self.partial.clear();
    }

    fn frame(&mut self, frame: &[i16], out: &mut Vec<SegmentEvent>) {
        let energy = mean_square(frame);
        let loud = energy.sqrt() >= f64::from(self.config.energy_threshold);
        let probability = match &mut self.detector {
            Detector::Energy => f32::from(u8::from(loud)),
            // A failed model call (counted by the detector) falls back to the energy gate.
            Detector::Silero(silero) => {
                silero.probability(frame).unwrap_or(f32::from(u8::from(loud)))
            }
        };
        let frame_index = self.frames;
        self.frames += 1;
        match &mut self.state {
            State::Idle { run, run_loud, run_energy } => {
                // Speech starts with a run of speech frames of which at least one is loud enough:
                // quiet speech counts from its real beginning once it proves loud enough.
                if probability >= self.config.speech_threshold {
                    if *run < MAX_ONSET_FRAMES {
                        *run += 1;
                        *run_energy += energy;
                    }
                    *run_loud |= loud;
                } else {
                    (*run, *run_loud, *run_energy) = (0, false, 0.0);
                }
                let (run, run_loud, run_energy) = (*run, *run_loud, *run_energy);
                self.history.extend(frame.iter().copied());
                let keep = self.preroll_samples() + run as usize * FRAME_SAMPLES;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                if run >= self.config.onset_frames && run_loud {
                    let onset_frame = frame_index + 1 - u64::from(run);
                    self.note_cut_off(onset_frame);
                    out.push(SegmentEvent::SpeechStarted {
                        offset_ms: onset_frame * u64::from(FRAME_MS),
                    });
                    self.current.clear();
                    self.current.extend(self.history.drain(..));
                    self.state = State::Speaking {
                        silence_run_ms: 0,
                        speech_frames: run,
                        voiced_energy: run_energy,
                        voiced_frames: run,
                        checked: false,
                        speculation: None,
                    };
                }
            }
            State::Speaking { .. } => {
                let voiced = probability >= self.config.speech_threshold - HYSTERESIS;
                self.speaking(frame, voiced, energy, out);
            }
        }
    }

    fn speaking(&mut self, frame: &[i16], voiced: bool, energy: f64, out: &mut Vec<SegmentEvent>) {
        let State::Speaking {
            mut silence_run_ms,
            mut speech_frames,
            mut voiced_energy,
            mut voiced_frames,
            mut checked,
            mut speculation,
        } = self.state
        else {
            return;
        };
        self.current.extend_from_slice(frame);
        if voiced {
            if silence_run_ms >= MIN_PAUSE_MS
                && let Some(turn) = &mut self.turn
            {
                turn.profile.observe(silence_run_ms);
            }
            if let Some(withdrawn) = speculation.take() {
                out.push(SegmentEvent::Resumed { speculation: withdrawn });
            }
            checked = false;
            speech_frames += 1 + silence_run_ms / FRAME_MS;
            silence_run_ms = 0;
            voiced_energy += energy;
            voiced_frames += 1;
        } else {
            silence_run_ms += FRAME_MS;
        }
        self.state = State::Speaking {
            silence_run_ms,
            speech_frames,
            voiced_energy,
            voiced_frames,
            checked,
            speculation,
        };
        let length_ms = (self.current.len() / FRAME_SAMPLES) as u32 * FRAME_MS;
        let Some(turn) = &self.turn else {
            if silence_run_ms >= self.config.silence_ms {
                self.finish(EndReason::Silence, out);
            } else if length_ms >= self.config.max_utterance_ms {
                self.finish(EndReason::MaxLength, out);
            }
            return;
        };
        let pause_ms = turn.profile.pause_ms(&turn.config);
        let max_silence_ms = turn.profile.max_silence_ms(&turn.config);
        let speculate = turn.config.speculate;
        if speculate && speculation.is_none() && !checked && silence_run_ms >= pause_ms / 2 {
            // Half-way through the short pause the turn so far starts transcribing, so that
            // whisper runs while the model decides (and a backstop finds it ready).
            self.speculations += 1;
            let id = self.speculations;
            if let State::Speaking { speculation, .. } = &mut self.state {
                *speculation = Some(id);
            }
            // Confirmed, it ends at the model's verdict or the backstop.
            let utterance = self.utterance(EndReason::Turn, false);
            out.push(SegmentEvent::Paused { speculation: id, utterance });
            return;
        }
        let Some(turn) = &self.turn else { return };
        if !checked && silence_run_ms >= pause_ms {
            // The model hears the turn from its pre-roll to now, pause included.
            let verdict = turn.model.judge(&self.current, turn.config.threshold);
            if verdict == Verdict::Complete {
                self.model_end = Some((self.frames, silence_run_ms));
                self.finish(EndReason::Turn, out);
                return;
            }
            if let State::Speaking { checked, .. } = &mut self.state {
                *checked = true;
            }
        } else if silence_run_ms >= max_silence_ms {
            self.finish(EndReason::Backstop, out);
        } else if length_ms >= self.config.max_utterance_ms {
            self.finish(EndReason::MaxLength, out);
        }
    }

    /// A turn the model ended that speech resumes soon after was cut off: the gap counts as one
    /// of the child's pauses.
    fn note_cut_off(&mut self, onset_frame: u64) {
        let Some((end_frame, waited_ms)) = self.model_end.take() else { return };
        let gap_ms = onset_frame.saturating_sub(end_frame) * u64::from(FRAME_MS);
        if gap_ms <= u64::from(CUT_OFF_MS)
            && let Some(turn) = &mut self.turn
        {
            turn.model.cut_off();
            turn.profile.observe(waited_ms + gap_ms as u32);
        }
    }

    /// The utterance as it stands: the turn so far with a short tail of its trailing silence.
    /// `take` moves the audio out (the utterance is finished); otherwise it is copied.
    fn utterance(&mut self, reason: EndReason, take: bool) -> Utterance {
        let State::Speaking {
            silence_run_ms,
            speech_frames,
            voiced_energy,
            voiced_frames,
            speculation,
            ..
        } = self.state
        else {
            unreachable!("an utterance exists only while speaking");
        };
        let trailing = (silence_run_ms.saturating_sub(self.config.tail_ms) / FRAME_MS) as usize;
        let keep = self.current.len().saturating_sub(trailing * FRAME_SAMPLES);
        let samples = if take {
            self.current.truncate(keep);
            std::mem::take(&mut self.current)
        } else {
            self.current[..keep].to_vec()
        };
        Utterance {
            samples,
            speech_ms: speech_frames * FRAME_MS,
            end_offset_ms: self.frames * u64::from(FRAME_MS),
            reason,
            rms: (voiced_energy / f64::from(voiced_frames.max(1))).sqrt() as f32,
            speculation: if take { speculation } else { None },
            pauses: self.pauses(),
        }
    }

    fn finish(&mut self, reason: EndReason, out: &mut Vec<SegmentEvent>) {
        if !self.in_speech() {
            return;
        }
        if reason != EndReason::Turn {
            self.model_end = None;
        }
        let utterance = self.utterance(reason, true);
        out.push(SegmentEvent::Utterance(utterance));
        self.history.clear();
        self.state = State::Idle { run: 0, run_loud: false, run_energy: 0.0 };
    }

    fn preroll_samples(&self) -> usize {
        (self.config.preroll_ms * SAMPLE_RATE / 1000) as usize
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

    fn tone(ms: u32, amplitude: f32) -> Vec<i16> {
        let n = (ms * SAMPLE_RATE / 1000) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin()) as i16
            })
            .collect()
    }

    fn energy(config: SegmenterConfig) -> Segmenter {
        Segmenter::new(config, Detector::Energy)
    }

    fn run(segmenter: &mut Segmenter, pcm: &[i16], chunk: usize) -> Vec<SegmentEvent> {
        let mut out = Vec::new();
        for piece in pcm.chunks(chunk) {
            segmenter.push(piece, &mut out);
        }
        out
    }

    #[test]
    fn speech_then_silence_makes_one_utterance_whatever_the_chunking() {
        // 16 frames of silence, 47 of tone, 32 of silence.
        let mut pcm = tone(512, 0.0);
        pcm.extend(tone(1504, 8000.0));
        pcm.extend(tone(1024, 0.0));
        for chunk in [1, 7, 320, 1000, 1600] {
            let mut segmenter = energy(SegmenterConfig::default());
            let events = run(&mut segmenter, &pcm, chunk);
            assert_eq!(events.len(), 2, "chunk {chunk}: {events:?}");
            assert_eq!(events[0], SegmentEvent::SpeechStarted { offset_ms: 512 });
            let SegmentEvent::Utterance(u) = &events[1] else { panic!("no utterance") };
            assert_eq!(u.reason, EndReason::Silence);
            assert_eq!(u.speech_ms, 1504, "chunk {chunk}");
            // Pre-roll 300 ms + speech 1504 ms + a tail of 7 frames (224 ms).
            assert_eq!(u.samples.len(), (300 + 1504 + 224) * 16, "chunk {chunk}");
            // Ends when 25 frames (800 ms) of silence have passed.
            assert_eq!(u.end_offset_ms, 512 + 1504 + 800);
            assert!(u.rms > 5000.0);
        }
    }

    #[test]
    fn short_pauses_do_not_split_an_utterance() {
        let mut pcm = tone(608, 8000.0);
        pcm.extend(tone(512, 0.0));
        pcm.extend(tone(608, 8000.0));
        pcm.extend(tone(960, 0.0));
        let mut segmenter = energy(SegmenterConfig::default());
        let events = run(&mut segmenter, &pcm, 640);
        let utterances: Vec<_> =
            events.iter().filter(|e| matches!(e, SegmentEvent::Utterance(_))).collect();
        assert_eq!(utterances.len(), 1, "{events:?}");
    }

    #[test]
    fn quiet_audio_and_clicks_are_not_speech() {
        let mut pcm = tone(2000, 200.0);
        // A click within one frame.
        pcm.extend(tone(10, 9000.0));
        pcm.extend(tone(2000, 0.0));
        let mut segmenter = energy(SegmenterConfig::default());
        assert!(run(&mut segmenter, &pcm, 320).is_empty());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum() {
        let config = SegmenterConfig { max_utterance_ms: 2000, ..SegmenterConfig::default() };
        let mut segmenter = energy(config);
        let events = run(&mut segmenter, &tone(5000, 8000.0), 320);
        let cuts = events
            .iter()
            .filter(|e| matches!(e, SegmentEvent::Utterance(u) if u.reason == EndReason::MaxLength))
            .count();
        assert_eq!(cuts, 2, "{events:?}");
        assert!(segmenter.in_speech());
    }

    #[test]
    fn flush_ends_the_utterance_in_progress() {
        let mut segmenter = energy(SegmenterConfig::default());
        let mut events = run(&mut segmenter, &tone(1210, 8000.0), 500);
        segmenter.flush(&mut events);
        let Some(SegmentEvent::Utterance(u)) = events.last() else { panic!("{events:?}") };
        assert_eq!(u.reason, EndReason::Flush);
        assert_eq!(u.samples.len(), 1210 * 16);
        let mut none = Vec::new();
        segmenter.flush(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn pcm_decoding_rejects_odd_lengths() {
        assert_eq!(decode_pcm(&[1, 0, 255, 255]), Some(vec![1, -1]));
        assert_eq!(decode_pcm(&[1, 0, 2]), None);
    }
}
