//! A child's pauses inside turns, and the silences fitted to them.

use std::collections::VecDeque;

use super::{KEPT_PAUSES, MIN_PAUSES, TurnConfig};

/// Margin added to the child's long pauses for the backstop.
const BACKSTOP_MARGIN_MS: u32 = 500;
/// Bounds of the adapted backstop.
const BACKSTOP_RANGE_MS: (u32, u32) = (1000, 3000);

/// A child's recent pauses inside turns, in milliseconds, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseProfile {
    pauses: VecDeque<u32>,
    /// The median and 90th-percentile pauses once [`MIN_PAUSES`] are known: worked out when a
    /// pause is recorded, since the segmenter reads them on every silent frame.
    typical: Option<(u32, u32)>,
}

impl PauseProfile {
    /// A profile from stored pauses (the newest [`KEPT_PAUSES`] are kept).
    pub fn from_pauses(pauses: &[u32]) -> Self {
        let mut profile = Self::default();
        for &pause in pauses {
            profile.observe(pause);
        }
        profile
    }

    /// The pauses to store, oldest first.
    pub fn pauses(&self) -> Vec<u32> {
        self.pauses.iter().copied().collect()
    }

    /// Records one pause.
    pub fn observe(&mut self, pause_ms: u32) {
        if self.pauses.len() == KEPT_PAUSES {
            self.pauses.pop_front();
        }
        self.pauses.push_back(pause_ms.min(10_000));
        self.typical = (self.pauses.len() >= MIN_PAUSES).then(|| {
            let mut sorted: Vec<u32> = self.pauses.iter().copied().collect();
            sorted.sort_unstable();
            // Nearest rank.
            let percentile = |p: usize| sorted[(p * sorted.len()).div_ceil(100).max(1) - 1];
            (percentile(50), percentile(90))
        });
    }

    /// The silence after which the model is asked.
    pub fn pause_ms(&self, config: &TurnConfig) -> u32 {
        match self.typical {
            Some((median, _)) if config.adapt => median.clamp(config.pause_ms, 3 * config.pause_ms),
            _ => config.pause_ms,
        }
    }

    /// The silence that ends the turn whatever the model said.
    pub fn max_silence_ms(&self, config: &TurnConfig) -> u32 {
        match self.typical {
            Some((_, long)) if config.adapt => {
                (long + BACKSTOP_MARGIN_MS).clamp(BACKSTOP_RANGE_MS.0, BACKSTOP_RANGE_MS.1)
            }
            _ => config.max_silence_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_hold_until_enough_pauses_are_known() {
        let config = TurnConfig::default();
        let mut profile = PauseProfile::from_pauses(&[900, 900, 900, 900]);
        assert_eq!(profile.pause_ms(&config), 200);
        assert_eq!(profile.max_silence_ms(&config), 2000);
        profile.observe(900);
        assert_eq!(profile.pause_ms(&config), 600, "the median, at most three times 200");
        assert_eq!(profile.max_silence_ms(&config), 1400);
    }

    #[test]
    fn quick_speakers_get_a_shorter_backstop_and_slow_ones_a_longer_one() {
        let config = TurnConfig::default();
        let quick = PauseProfile::from_pauses(&[120, 150, 130, 180, 160, 140]);
        assert_eq!(quick.pause_ms(&config), 200);
        assert_eq!(quick.max_silence_ms(&config), 1000);
        let slow = PauseProfile::from_pauses(&[300, 1800, 400, 2600, 500, 350, 1200, 2400, 450]);
        assert_eq!(slow.pause_ms(&config), 500);
        assert_eq!(slow.max_silence_ms(&config), 3000);
        let off = TurnConfig { adapt: false, ..config };
        assert_eq!(slow.pause_ms(&off), 200);
        assert_eq!(slow.max_silence_ms(&off), 2000);
    }

    #[test]
    fn only_the_newest_pauses_are_kept() {
        let mut profile = PauseProfile::from_pauses(&[5000; KEPT_PAUSES]);
        for _ in 0..KEPT_PAUSES {
            profile.observe(200);
        }
        assert_eq!(profile.pauses(), vec![200; KEPT_PAUSES]);
        assert_eq!(PauseProfile::from_pauses(&[60_000]).pauses(), vec![10_000]);
    }
}
