//! Voice activity detection and endpointing: cuts a stream of 16 kHz PCM into utterances.
//!
//! Three parts, each testable alone:
//! - [`frame`]: the verdict on one 32 ms frame. With the neural detector
//!   ([`Detector::Silero`]) a frame starts speech when Silero's speech probability reaches the
//!   threshold *and* its RMS level reaches the energy gate (so distant voices and a television
//!   stay out), and speech goes on while the probability stays above the threshold less a
//!   hysteresis margin, however quietly the child speaks. With the energy detector alone a frame
//!   is speech when its level reaches the gate.
//! - [`segmenter`]: speech starts after a few speech frames in a row (so a click doesn't count)
//!   and the utterance keeps a pre-roll of the audio before that, so the first syllable isn't
//!   clipped. Every utterance ends at the maximum length, or when the client flushes; otherwise
//!   the turn policy ends it.
//! - the turn policy ([`crate::turn::TurnPolicy`]): without a turn detector a run of non-speech
//!   frames as long as the silence setting ends the utterance. With one, half-way through the
//!   short pause the turn so far is offered for a speculative transcription
//!   ([`SegmentEvent::Paused`]), withdrawn if the child goes on ([`SegmentEvent::Resumed`]); at
//!   the short pause the end-of-turn model is asked: a complete turn ends there, otherwise a
//!   longer silence (the backstop) ends it.

pub mod frame;
pub mod segmenter;

pub use frame::{Detector, FRAME_MS, FrameVerdict, SAMPLE_RATE, decode_pcm};
pub use segmenter::{Segmenter, SegmenterConfig};

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
