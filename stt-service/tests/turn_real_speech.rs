//! Smart Turn and the end of turn on real human speech (`../shared/speech`).
//!
//! Real recordings only: Smart Turn judges intonation, and it rates the synthetic espeak clips
//! of `../shared/models/test-audio` as unfinished whatever they say, so they cannot show a
//! finished sentence ending the turn early. The mid-sentence cuts are made at real pauses
//! between words of `mfa_english_t.wav` ("The truck righted | itself just before it tipped over
//! onto its top and came to a full stop.") and `ps_librivox_sas01_0930.wav` ("He might even |
//! have been made amiable himself.").

use std::path::Path;
use std::sync::Arc;

use blob_testkit::audio::read_wav;
use blob_testkit::paths::{
    ONNX_RUNTIME_FILE, SILERO_VAD_FILE, SMART_TURN_FILE, onnx_file, speech_clip,
};
use serde::Deserialize;
use stt_service::metrics::SttMetrics;
use stt_service::silero::SileroVad;
use stt_service::smart_turn::{self, FRAMES, MELS, SmartTurn};
use stt_service::turn::{ModelTurn, PauseProfile, TurnConfig};
use stt_service::vad::{Detector, EndReason, SegmentEvent, Segmenter, SegmenterConfig, Utterance};

/// Where the truck sentence is cut: the pause after "righted" (1.94 s).
const TRUCK_CUT: usize = 30_976;
/// Where the Librivox sentence is cut: the pause after "even" (1.10 s).
const AMIABLE_CUT: usize = 17_664;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    clip: String,
    start: usize,
    end: Option<usize>,
    pause_samples: usize,
    probability: f32,
    band_means: Vec<f64>,
    frame_means: Vec<f64>,
    grid: Vec<(usize, usize, f32)>,
}

fn clip(name: &str) -> Vec<i16> {
    read_wav(&speech_clip(&format!("speech/{name}")))
}

fn smart_turn() -> Arc<SmartTurn> {
    SmartTurn::load(
        &onnx_file(ONNX_RUNTIME_FILE),
        &onnx_file(SMART_TURN_FILE),
        1,
        SttMetrics::default(),
    )
    .expect("Smart Turn loads")
}

/// The features and probabilities `tests/reference/smart_turn_reference.py` computed with the
/// pipecat-ai package's own feature extraction and the Python ONNX Runtime.
#[test]
fn smart_turn_matches_the_reference_features_and_probabilities() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/smart_turn_reference.json");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(reference.cases.len(), 6);
    let model = smart_turn();
    for case in &reference.cases {
        let audio = clip(&case.clip);
        let mut pcm = audio[case.start..case.end.unwrap_or(audio.len())].to_vec();
        pcm.extend(std::iter::repeat_n(0i16, case.pause_samples));
        let features = smart_turn::features(&pcm);
        assert_eq!(features.len(), MELS * FRAMES);
        let name = &case.name;
        for &(mel, frame, expected) in &case.grid {
            let got = features[mel * FRAMES + frame];
            assert!((got - expected).abs() < 1e-4, "{name} [{mel}][{frame}]: {got} vs {expected}");
        }
        for (mel, expected) in case.band_means.iter().enumerate() {
            let row = &features[mel * FRAMES..(mel + 1) * FRAMES];
            let got = row.iter().map(|&x| f64::from(x)).sum::<f64>() / FRAMES as f64;
            assert!((got - expected).abs() < 1e-4, "{name} band {mel}: {got} vs {expected}");
        }
        for (frame, expected) in case.frame_means.iter().enumerate() {
            let got = (0..MELS).map(|m| f64::from(features[m * FRAMES + frame])).sum::<f64>()
                / MELS as f64;
            assert!((got - expected).abs() < 1e-4, "{name} frame {frame}: {got} vs {expected}");
        }
        let probability = model.probability(&pcm).unwrap();
        assert!(
            (probability - case.probability).abs() < 1e-3,
            "{name}: probability {probability} vs {}",
            case.probability
        );
    }
    // The cases cover both verdicts.
    let complete = reference.cases.iter().filter(|c| c.probability >= 0.5).count();
    assert!((1..reference.cases.len()).contains(&complete));
}

/// Runs a clip through the segmenter with Silero and, when given, Smart Turn, in 20 ms pieces as
/// the gateway sends them.
fn segment(pcm: &[i16], turn: Option<ModelTurn>, config: SegmenterConfig) -> Vec<SegmentEvent> {
    let vad = SileroVad::load(
        &onnx_file(ONNX_RUNTIME_FILE),
        &onnx_file(SILERO_VAD_FILE),
        1,
        SttMetrics::default(),
    )
    .expect("Silero VAD loads");
    let mut segmenter = Segmenter::new(config, Detector::Silero(vad.stream()));
    if let Some(turn) = turn {
        segmenter = segmenter.with_policy(Box::new(turn));
    }
    let mut events = Vec::new();
    for piece in pcm.chunks(320) {
        segmenter.push(piece, &mut events);
    }
    events
}

fn detector(model: &Arc<SmartTurn>) -> ModelTurn {
    ModelTurn::new(model.clone(), TurnConfig::default(), PauseProfile::default())
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

fn silence(ms: usize) -> impl Iterator<Item = i16> {
    std::iter::repeat_n(0i16, ms * 16)
}

/// A finished sentence ends the turn at the short pause: about 200 ms after the last word
/// rather than at the 2 s backstop (or the fixed 800 ms), with the transcription started
/// half-way through the pause confirmed.
#[test]
fn a_finished_sentence_ends_the_turn_well_before_the_backstop() {
    let model = smart_turn();
    for name in ["ps_goforward.wav", "mfa_english_t.wav", "ps_cards_005.wav"] {
        let speech = clip(name);
        let speech_ms = (speech.len() / 16) as u64;
        let mut pcm = speech;
        pcm.extend(silence(3000));
        let events = segment(&pcm, Some(detector(&model)), SegmenterConfig::default());
        let found = utterances(&events);
        assert_eq!(found.len(), 1, "{name}: {events:?}");
        let utterance = found[0];
        assert_eq!(utterance.reason, EndReason::Turn, "{name}");
        // The clip ends with a little quiet of its own; the turn ends within 600 ms of it.
        assert!(
            utterance.end_offset_ms < speech_ms + 600,
            "{name}: ended at {} ms, the clip is {speech_ms} ms",
            utterance.end_offset_ms
        );
        // The transcription started half-way through the last pause is the one confirmed
        // (longer gaps between words may have started and withdrawn earlier ones).
        let offered = events.iter().rev().find_map(|e| match e {
            SegmentEvent::Paused { speculation, .. } => Some(*speculation),
            _ => None,
        });
        assert!(offered.is_some(), "{name}: speculation started at the pause");
        assert_eq!(utterance.speculation, offered, "{name}");
    }
}

/// A sentence with a one-second pause in its middle stays one utterance: the model hears the
/// unfinished half at the pause, the turn so far is offered for speculation and withdrawn when
/// the child goes on, and the pause is learnt. With the fixed 800 ms silence the same audio is
/// cut in two, so turn detection cuts off fewer turns than the fixed-silence baseline.
#[test]
fn a_one_second_mid_sentence_pause_is_one_utterance() {
    let model = smart_turn();
    for (name, cut) in
        [("mfa_english_t.wav", TRUCK_CUT), ("ps_librivox_sas01_0930.wav", AMIABLE_CUT)]
    {
        let speech = clip(name);
        let mut pcm = speech[..cut].to_vec();
        pcm.extend(silence(1000));
        pcm.extend_from_slice(&speech[cut..]);
        pcm.extend(silence(3000));

        let events = segment(&pcm, Some(detector(&model)), SegmenterConfig::default());
        let found = utterances(&events);
        assert_eq!(found.len(), 1, "{name}: {events:?}");
        let offered: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::Paused { speculation, .. } => Some(*speculation),
                _ => None,
            })
            .collect();
        let withdrawn: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                SegmentEvent::Resumed { speculation } => Some(*speculation),
                _ => None,
            })
            .collect();
        assert!(!offered.is_empty(), "{name}: the pause was offered for speculation");
        assert!(withdrawn.contains(&offered[0]), "{name}: and withdrawn when speech resumed");
        assert_ne!(found[0].speculation, Some(offered[0]), "{name}: the first guess is not used");
        let pauses = found[0].pauses.clone().expect("pauses are reported");
        assert!(
            pauses.iter().any(|p| (950..=1300).contains(p)),
            "{name}: the one-second pause is learnt: {pauses:?}"
        );

        let fixed = segment(&pcm, None, SegmenterConfig::default());
        assert_eq!(utterances(&fixed).len(), 2, "{name}: the fixed 800 ms silence cuts it");
    }
}

/// When the model is unsure and the child says nothing more, the backstop ends the turn and the
/// speculation made at the pause is the one confirmed.
#[test]
fn an_unsure_pause_that_stays_silent_ends_at_the_backstop_with_the_speculation_confirmed() {
    let model = smart_turn();
    let speech = clip("mfa_english_t.wav");
    let mut pcm = speech[..TRUCK_CUT].to_vec();
    pcm.extend(silence(3000));
    let events = segment(&pcm, Some(detector(&model)), SegmenterConfig::default());
    let found = utterances(&events);
    assert_eq!(found.len(), 1, "{events:?}");
    assert_eq!(found[0].reason, EndReason::Backstop);
    let Some(SegmentEvent::Paused { speculation, utterance }) =
        events.iter().find(|e| matches!(e, SegmentEvent::Paused { .. }))
    else {
        panic!("no speculation offered: {events:?}");
    };
    assert_eq!(found[0].speculation, Some(*speculation));
    // The speculation heard the same speech; the final audio only keeps a little more of the
    // silence after it.
    assert!(found[0].samples.starts_with(&utterance.samples));
    assert!(found[0].samples.len() - utterance.samples.len() <= 200 * 16);
    // The backstop came 2 s after the last word: 1.94 s of speech, 2 s, a frame's rounding.
    assert!((3900..4100).contains(&found[0].end_offset_ms), "{}", found[0].end_offset_ms);
}

/// A turn the model ended that the child picks up again within a second was cut off: it is
/// counted, and the silence before the verdict plus the gap joins the child's pauses, so the
/// next turns wait longer for this child.
#[test]
fn a_turn_picked_up_again_within_a_second_counts_as_cut_off() {
    let metrics = SttMetrics::default();
    let model = SmartTurn::load(
        &onnx_file(ONNX_RUNTIME_FILE),
        &onnx_file(SMART_TURN_FILE),
        1,
        metrics.clone(),
    )
    .expect("Smart Turn loads");
    // A finished sentence, then the same again ("Go forward ten meters."): the clip's own
    // quiet at its end and start (about 0.3 s and 0.45 s) and 100 ms between them.
    let mut pcm = clip("ps_goforward.wav");
    pcm.extend(silence(100));
    pcm.extend(clip("ps_goforward.wav"));
    pcm.extend(silence(3000));
    let events = segment(&pcm, Some(detector(&model)), SegmenterConfig::default());
    let found = utterances(&events);
    assert_eq!(found.len(), 2, "{events:?}");
    assert_eq!(found[0].reason, EndReason::Turn);
    assert_eq!(metrics.turn_cut_offs.get(), 1);
    let pauses = found[1].pauses.clone().expect("pauses are reported");
    assert!(
        pauses.iter().any(|p| (400..=1200).contains(p)),
        "the verdict's silence and the gap are learnt as one pause: {pauses:?}"
    );
}
