//! The segmenter: frames, speech onsets with their pre-roll, and the utterance in progress.
//! Whether a silence ends the utterance is the turn policy's decision ([`TurnPolicy`]).

use std::collections::VecDeque;

use super::frame::{FRAME_MS, FRAME_SAMPLES, FrameVerdict, SAMPLE_RATE};
use super::{Detector, EndReason, SegmentEvent, Utterance};
use crate::turn::{Decision, FixedSilence, TurnPolicy};

/// How far below the start threshold the speech probability may fall while speech goes on.
const HYSTERESIS: f32 = 0.15;
/// Longest run of quiet speech (2 s) kept while waiting for a frame loud enough to start it.
const MAX_ONSET_FRAMES: u32 = 2000 / FRAME_MS;

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

#[derive(Debug, Clone, Copy)]
enum State {
    /// `run` speech frames in a row so far (at most [`MAX_ONSET_FRAMES`] counted), `run_loud`
    /// whether any reached the energy gate, `run_energy` their summed mean squares.
    Idle { run: u32, run_loud: bool, run_energy: f64 },
    /// `speculation` while a speculation offered during the current silence stands.
    Speaking {
        silence_run_ms: u32,
        speech_frames: u32,
        voiced_energy: f64,
        voiced_frames: u32,
        speculation: Option<u32>,
    },
}

/// Per-stream segmentation state. Allocates only when audio is kept.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    detector: Detector,
    /// Decides when a silence ends the utterance.
    policy: Box<dyn TurnPolicy>,
    /// Samples that don't yet fill a frame.
    partial: Vec<i16>,
    /// Recent audio while idle (pre-roll plus the onset frames).
    history: VecDeque<i16>,
    /// The utterance being collected.
    current: Vec<i16>,
    state: State,
    /// Frames seen since the stream started.
    frames: u64,
    /// The last speculation's id.
    speculations: u32,
}

impl Segmenter {
    /// A segmenter at the start of a stream, ending utterances after the configured silence.
    pub fn new(config: SegmenterConfig, detector: Detector) -> Self {
        let policy = Box::new(FixedSilence { silence_ms: config.silence_ms });
        Self {
            config,
            detector,
            policy,
            partial: Vec::with_capacity(FRAME_SAMPLES),
            history: VecDeque::new(),
            current: Vec::new(),
            state: State::Idle { run: 0, run_loud: false, run_energy: 0.0 },
            frames: 0,
            speculations: 0,
        }
    }

    /// Ends turns by `policy` (an end-of-turn model, say) rather than the fixed silence.
    pub fn with_policy(mut self, policy: Box<dyn TurnPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Whether frames are judged by a model (worth running off the async runtime).
    pub fn is_neural(&self) -> bool {
        self.detector.is_neural() || self.policy.is_neural()
    }

    /// The child's pauses so far (when the policy learns them).
    pub fn pauses(&self) -> Option<Vec<u32>> {
        self.policy.pauses()
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
        let verdict = self.detector.judge(frame, self.config.energy_threshold);
        self.step(frame, verdict, out);
    }

    /// Advances by one frame the detector judged.
    fn step(&mut self, frame: &[i16], verdict: FrameVerdict, out: &mut Vec<SegmentEvent>) {
        let FrameVerdict { energy, loud, probability } = verdict;
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
                    let offset_ms = (frame_index + 1 - u64::from(run)) * u64::from(FRAME_MS);
                    self.policy.started(offset_ms);
                    out.push(SegmentEvent::SpeechStarted { offset_ms });
                    self.current.clear();
                    self.current.extend(self.history.drain(..));
                    self.state = State::Speaking {
                        silence_run_ms: 0,
                        speech_frames: run,
                        voiced_energy: run_energy,
                        voiced_frames: run,
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
            silence_run_ms,
            speech_frames,
            voiced_energy,
            voiced_frames,
            speculation,
        } = &mut self.state
        else {
            return;
        };
        self.current.extend_from_slice(frame);
        let decision = if voiced {
            self.policy.voiced(*silence_run_ms);
            if let Some(withdrawn) = speculation.take() {
                out.push(SegmentEvent::Resumed { speculation: withdrawn });
            }
            *speech_frames += 1 + *silence_run_ms / FRAME_MS;
            *silence_run_ms = 0;
            *voiced_energy += energy;
            *voiced_frames += 1;
            Decision::Wait
        } else {
            *silence_run_ms += FRAME_MS;
            let now_ms = self.frames * u64::from(FRAME_MS);
            self.policy.silent(*silence_run_ms, now_ms, &self.current)
        };
        match decision {
            Decision::Speculate => {
                self.speculations += 1;
                let id = self.speculations;
                if let State::Speaking { speculation, .. } = &mut self.state {
                    *speculation = Some(id);
                }
                // Confirmed, it ends at the model's verdict or the backstop.
                let utterance = self.utterance(EndReason::Turn, false);
                out.push(SegmentEvent::Paused { speculation: id, utterance });
            }
            Decision::End(reason) => self.finish(reason, out),
            Decision::Wait => {
                let length_ms = (self.current.len() / FRAME_SAMPLES) as u32 * FRAME_MS;
                if length_ms >= self.config.max_utterance_ms {
                    self.finish(EndReason::MaxLength, out);
                }
            }
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
        let utterance = self.utterance(reason, true);
        out.push(SegmentEvent::Utterance(utterance));
        self.history.clear();
        self.state = State::Idle { run: 0, run_loud: false, run_energy: 0.0 };
    }

    fn preroll_samples(&self) -> usize {
        (self.config.preroll_ms * SAMPLE_RATE / 1000) as usize
    }
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
}
