//! When an utterance in progress ends: the turn policy the segmenter asks at every frame.
//!
//! The segmenter owns the audio and the frame clock; a policy only sees silences and, when it
//! needs to, the turn so far. [`FixedSilence`] ends the turn after a set silence (the proof of
//! concept's endpointing); [`ModelTurn`] asks an end-of-turn model ([`TurnModel`]) at the
//! child's short pause, offers the turn for speculation half-way there, and learns the child's
//! pauses. Both are plain state machines, so they are tested with a scripted model.

use std::fmt::Debug;
use std::sync::Arc;

use super::{CUT_OFF_MS, MIN_PAUSE_MS, PauseProfile, TurnConfig};
use crate::smart_turn::Verdict;
use crate::vad::EndReason;

/// What the policy makes of a silent frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep listening.
    Wait,
    /// Offer the turn so far for a speculative transcription (at most once per silence).
    Speculate,
    /// The turn is over.
    End(EndReason),
}

/// Decides when a turn ends. Times are milliseconds since the stream's first sample.
pub trait TurnPolicy: Debug + Send {
    /// Speech started at `onset_ms`.
    fn started(&mut self, onset_ms: u64);
    /// A voiced frame after `silence_ms` of silence inside the turn (0 when none).
    fn voiced(&mut self, silence_ms: u32);
    /// A silent frame, `silence_ms` into the silence, ending at `now_ms`; `turn` is the audio
    /// of the turn so far.
    fn silent(&mut self, silence_ms: u32, now_ms: u64, turn: &[i16]) -> Decision;
    /// The child's pauses to keep with the conversation, when the policy learns them.
    fn pauses(&self) -> Option<Vec<u32>>;
    /// Whether it runs a model (worth running off the async runtime).
    fn is_neural(&self) -> bool;
}

/// An end-of-turn model: judges from the audio whether a turn ending with a pause is complete.
pub trait TurnModel: Debug + Send + Sync {
    /// The verdict on the turn ending with `pcm` (its pause included).
    fn judge(&self, pcm: &[i16], threshold: f32) -> Verdict;
    /// Counts a turn it ended that the child went on with.
    fn cut_off(&self);
}

/// Ends the turn after a fixed silence (`VAD_SILENCE_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedSilence {
    /// Silence that ends the turn.
    pub silence_ms: u32,
}

impl TurnPolicy for FixedSilence {
    fn started(&mut self, _onset_ms: u64) {}

    fn voiced(&mut self, _silence_ms: u32) {}

    fn silent(&mut self, silence_ms: u32, _now_ms: u64, _turn: &[i16]) -> Decision {
        if silence_ms >= self.silence_ms {
            Decision::End(EndReason::Silence)
        } else {
            Decision::Wait
        }
    }

    fn pauses(&self) -> Option<Vec<u32>> {
        None
    }

    fn is_neural(&self) -> bool {
        false
    }
}

/// Ends the turn when the model judges it complete at the child's short pause, or at the
/// backstop; both silences fit the child's pauses (see [`crate::turn`]).
#[derive(Debug)]
pub struct ModelTurn {
    model: Arc<dyn TurnModel>,
    config: TurnConfig,
    profile: PauseProfile,
    /// The model was asked during the current silence.
    checked: bool,
    /// The turn so far was offered for speculation during the current silence.
    speculated: bool,
    /// Where the last turn the model ended stopped, and the silence it had waited.
    model_end: Option<(u64, u32)>,
}

impl ModelTurn {
    /// A policy for one stream, starting from the child's stored pauses.
    pub fn new(model: Arc<dyn TurnModel>, config: TurnConfig, profile: PauseProfile) -> Self {
        Self { model, config, profile, checked: false, speculated: false, model_end: None }
    }
}

impl TurnPolicy for ModelTurn {
    fn started(&mut self, onset_ms: u64) {
        (self.checked, self.speculated) = (false, false);
        // A turn the model ended that speech resumes soon after was cut off: the gap counts as
        // one of the child's pauses.
        let Some((end_ms, waited_ms)) = self.model_end.take() else { return };
        let gap_ms = onset_ms.saturating_sub(end_ms);
        if gap_ms <= u64::from(CUT_OFF_MS) {
            self.model.cut_off();
            self.profile.observe(waited_ms + gap_ms as u32);
        }
    }

    fn voiced(&mut self, silence_ms: u32) {
        if silence_ms >= MIN_PAUSE_MS {
            self.profile.observe(silence_ms);
        }
        (self.checked, self.speculated) = (false, false);
    }

    fn silent(&mut self, silence_ms: u32, now_ms: u64, turn: &[i16]) -> Decision {
        let pause_ms = self.profile.pause_ms(&self.config);
        if self.config.speculate && !self.speculated && !self.checked && silence_ms >= pause_ms / 2
        {
            // Half-way through the short pause the turn so far starts transcribing, so that
            // whisper runs while the model decides (and a backstop finds it ready).
            self.speculated = true;
            return Decision::Speculate;
        }
        if !self.checked && silence_ms >= pause_ms {
            // The model hears the turn from its pre-roll to now, pause included.
            if self.model.judge(turn, self.config.threshold) == Verdict::Complete {
                self.model_end = Some((now_ms, silence_ms));
                return Decision::End(EndReason::Turn);
            }
            self.checked = true;
            return Decision::Wait;
        }
        if silence_ms >= self.profile.max_silence_ms(&self.config) {
            return Decision::End(EndReason::Backstop);
        }
        Decision::Wait
    }

    fn pauses(&self) -> Option<Vec<u32>> {
        Some(self.profile.pauses())
    }

    fn is_neural(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::vad::{Detector, FRAME_MS, SegmentEvent, Segmenter, SegmenterConfig, Utterance};

    /// A model that answers from a script and records what it was asked.
    #[derive(Debug, Default)]
    struct Scripted {
        verdicts: Mutex<VecDeque<Verdict>>,
        /// Length in milliseconds of each turn it judged.
        asked: Mutex<Vec<u64>>,
        cut_offs: Mutex<u32>,
    }

    impl Scripted {
        fn new(verdicts: &[Verdict]) -> Arc<Self> {
            Arc::new(Self {
                verdicts: Mutex::new(verdicts.iter().copied().collect()),
                ..Self::default()
            })
        }

        fn asked(&self) -> Vec<u64> {
            self.asked.lock().unwrap().clone()
        }

        fn cut_offs(&self) -> u32 {
            *self.cut_offs.lock().unwrap()
        }
    }

    impl TurnModel for Scripted {
        fn judge(&self, pcm: &[i16], _threshold: f32) -> Verdict {
            self.asked.lock().unwrap().push(pcm.len() as u64 / 16);
            self.verdicts.lock().unwrap().pop_front().unwrap_or(Verdict::Incomplete)
        }

        fn cut_off(&self) {
            *self.cut_offs.lock().unwrap() += 1;
        }
    }

    fn speech(ms: u32) -> Vec<i16> {
        (0..ms * 16).map(|i| if i % 2 == 0 { 8000 } else { -8000 }).collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (ms * 16) as usize]
    }

    fn scripted(model: &Arc<Scripted>, config: TurnConfig, pauses: &[u32]) -> Segmenter {
        let model: Arc<dyn TurnModel> = model.clone();
        let policy = ModelTurn::new(model, config, PauseProfile::from_pauses(pauses));
        Segmenter::new(SegmenterConfig::default(), Detector::Energy).with_policy(Box::new(policy))
    }

    fn run(segmenter: &mut Segmenter, parts: &[Vec<i16>]) -> Vec<SegmentEvent> {
        let mut out = Vec::new();
        for part in parts {
            for piece in part.chunks(320) {
                segmenter.push(piece, &mut out);
            }
        }
        out
    }

    fn utterances(events: &[SegmentEvent]) -> Vec<&Utterance> {
        events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::Utterance(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    fn offered(events: &[SegmentEvent]) -> Vec<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::Paused { speculation, .. } => Some(*speculation),
                _ => None,
            })
            .collect()
    }

    fn withdrawn(events: &[SegmentEvent]) -> Vec<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::Resumed { speculation } => Some(*speculation),
                _ => None,
            })
            .collect()
    }

    /// Frames are 32 ms: a silence reaches `ms` at the first whole frame at or after it.
    fn frames_to(ms: u32) -> u32 {
        ms.div_ceil(FRAME_MS) * FRAME_MS
    }

    #[test]
    fn a_complete_verdict_at_the_short_pause_ends_the_turn_with_the_speculation_confirmed() {
        let model = Scripted::new(&[Verdict::Complete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(992), silence(1000)]);
        assert_eq!(offered(&events), vec![1], "offered half-way through the 200 ms pause");
        let found = utterances(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        assert_eq!(found[0].reason, EndReason::Turn);
        assert_eq!(found[0].speculation, Some(1));
        assert_eq!(found[0].end_offset_ms, 992 + u64::from(frames_to(200)));
        // The model heard the pre-roll-less turn (speech from the first sample) and the pause.
        assert_eq!(model.asked(), vec![992 + u64::from(frames_to(200))]);
        assert_eq!(found[0].pauses, Some(vec![]));
    }

    #[test]
    fn an_unsure_model_leaves_the_turn_to_the_backstop() {
        let model = Scripted::new(&[Verdict::Incomplete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(992), silence(2500)]);
        let found = utterances(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        assert_eq!(found[0].reason, EndReason::Backstop);
        assert_eq!(found[0].end_offset_ms, 992 + u64::from(frames_to(2000)));
        assert_eq!(found[0].speculation, Some(1), "the pause's speculation is confirmed");
        assert_eq!(model.asked().len(), 1, "asked once per silence");
    }

    #[test]
    fn a_failed_model_call_is_left_to_the_backstop_too() {
        let model = Scripted::new(&[Verdict::Failed]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(640), silence(2500)]);
        assert_eq!(utterances(&events)[0].reason, EndReason::Backstop);
    }

    #[test]
    fn speech_after_a_pause_withdraws_the_speculation_and_the_pause_is_learnt() {
        let model = Scripted::new(&[Verdict::Incomplete, Verdict::Complete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(640), silence(608), speech(640), silence(1000)]);
        assert_eq!(offered(&events), vec![1, 2]);
        assert_eq!(withdrawn(&events), vec![1]);
        let found = utterances(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        assert_eq!(found[0].reason, EndReason::Turn);
        assert_eq!(found[0].speculation, Some(2), "the second pause's guess, not the first");
        assert_eq!(found[0].pauses, Some(vec![608]));
        assert_eq!(model.asked().len(), 2, "asked again at the next pause");
    }

    #[test]
    fn a_turn_picked_up_within_a_second_of_the_verdict_was_cut_off() {
        let model = Scripted::new(&[Verdict::Complete, Verdict::Complete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(640), silence(512), speech(640), silence(1000)]);
        let found = utterances(&events);
        assert_eq!(found.len(), 2, "{events:?}");
        assert_eq!(model.cut_offs(), 1);
        // The verdict came 224 ms into the silence; speech came back 512 ms after it started
        // (the onset frames included): the whole silence is one pause.
        assert_eq!(found[1].pauses, Some(vec![512]));

        // Picked up only after more than a second, the next turn is a new one.
        let model = Scripted::new(&[Verdict::Complete, Verdict::Complete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[]);
        let events = run(&mut segmenter, &[speech(640), silence(1600), speech(640), silence(1000)]);
        assert_eq!(utterances(&events).len(), 2);
        assert_eq!(model.cut_offs(), 0);
        assert_eq!(utterances(&events)[1].pauses, Some(vec![]));
    }

    #[test]
    fn a_child_who_pauses_long_is_asked_later() {
        // Five stored pauses of 600 ms: the model is asked at 600 ms, not 200 ms, and the turn
        // is offered for speculation at 300 ms.
        let model = Scripted::new(&[Verdict::Complete]);
        let mut segmenter = scripted(&model, TurnConfig::default(), &[600; 5]);
        let events = run(&mut segmenter, &[speech(992), silence(1000)]);
        let Some(SegmentEvent::Paused { utterance, .. }) =
            events.iter().find(|e| matches!(e, SegmentEvent::Paused { .. }))
        else {
            panic!("no speculation: {events:?}");
        };
        assert_eq!(utterance.end_offset_ms, 992 + u64::from(frames_to(300)));
        assert_eq!(model.asked(), vec![992 + u64::from(frames_to(600))]);
        assert_eq!(utterances(&events)[0].end_offset_ms, 992 + u64::from(frames_to(600)));
    }

    #[test]
    fn without_speculation_nothing_is_offered() {
        let model = Scripted::new(&[Verdict::Complete]);
        let config = TurnConfig { speculate: false, ..TurnConfig::default() };
        let mut segmenter = scripted(&model, config, &[]);
        let events = run(&mut segmenter, &[speech(640), silence(1000)]);
        assert!(offered(&events).is_empty());
        assert_eq!(utterances(&events)[0].speculation, None);
        assert_eq!(utterances(&events)[0].reason, EndReason::Turn);
    }

    #[test]
    fn a_fixed_silence_ends_the_turn_at_its_length() {
        let mut policy = FixedSilence { silence_ms: 800 };
        assert_eq!(policy.silent(768, 0, &[]), Decision::Wait);
        assert_eq!(policy.silent(800, 0, &[]), Decision::End(EndReason::Silence));
        assert_eq!(policy.pauses(), None);
        assert!(!policy.is_neural());
    }
}
