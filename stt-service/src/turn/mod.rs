//! Ending a child's turn: when the child has been silent for a short pause, Smart Turn judges
//! from the audio whether they have finished; if not, a longer silence (the backstop) ends the
//! turn anyway. Both silences adapt to the child's own pauses.
//!
//! # How the pauses adapt
//! The segmenter records each pause *inside* a turn: a silence of at least 96 ms after which the
//! same child spoke again before the turn ended. A turn the model ended that the child picks up
//! again within [`CUT_OFF_MS`] also counts, as a pause of the silence before the model's verdict
//! plus the gap: the model misjudged it. The last [`KEPT_PAUSES`] pauses are kept with the
//! conversation, so a reconnect (or the next day's session on the same conversation) starts from
//! them. Once at least [`MIN_PAUSES`] are known:
//! - the short pause before asking the model is the child's median pause, clamped to between
//!   the configured `TURN_PAUSE_MS` and three times it: a child who routinely stops for 400 ms
//!   mid-sentence is not asked "finished?" (nor transcribed speculatively) in every such stop;
//! - the backstop is the child's 90th-percentile pause plus 500 ms, clamped to between 1 s and
//!   3 s: a quick speaker is answered sooner when the model is unsure, and a child who
//!   searches for words for a second and a half is not cut off.
//!
//! With fewer pauses known, the configured values apply.

pub mod policy;
pub mod profile;

pub use policy::{Decision, FixedSilence, ModelTurn, TurnModel, TurnPolicy};
pub use profile::PauseProfile;

/// Pauses kept per conversation.
pub const KEPT_PAUSES: usize = 32;
/// Pauses needed before the silences adapt.
pub const MIN_PAUSES: usize = 5;
/// Shortest silence inside a turn that counts as a pause.
pub const MIN_PAUSE_MS: u32 = 96;
/// A turn the model ended that speech resumes within this long was cut off.
pub const CUT_OFF_MS: u32 = 1000;

/// End-of-turn settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnConfig {
    /// `TURN_PAUSE_MS` (default 200): silence after which the model is asked whether the turn
    /// is complete; half of it starts the speculative transcription.
    pub pause_ms: u32,
    /// `TURN_MAX_SILENCE_MS` (default 2000): silence that ends the turn whatever the model said.
    pub max_silence_ms: u32,
    /// `TURN_THRESHOLD` (default 0.5): the model's probability that ends the turn at a pause.
    pub threshold: f32,
    /// `TURN_ADAPT` (default true): fit both silences to the child's pauses.
    pub adapt: bool,
    /// `TURN_SPECULATE` (default true): transcribe the turn so far at each pause, before it is
    /// known to be over.
    pub speculate: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self { pause_ms: 200, max_silence_ms: 2000, threshold: 0.5, adapt: true, speculate: true }
    }
}
