//! Per-socket limits: a message rate limit and the heartbeat's missed-pong count.

use std::time::{Duration, Instant};

/// A token bucket: `per_second` messages a second, bursts up to the same number.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self { capacity: per_second, tokens: per_second, per_second, last: Instant::now() }
    }

    /// Takes one token; false when the limit is exceeded.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Bytes of 16 kHz 16-bit mono PCM in one second of audio.
pub const PCM_BYTES_PER_SECOND: f64 = 32_000.0;

/// What the audio budget says about a piece of audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioVerdict {
    /// Within the budget.
    Take,
    /// Over it: drop this audio and tell the client.
    Drop,
    /// Over it again soon after being told: close the socket.
    Close,
}

/// How fast a socket may send audio: `speed` × real time sustained, with `burst_seconds` of
/// audio at once (a phone sending what it buffered while reconnecting). Dropped audio is
/// forgiven after a quiet second; a second overrun within it closes the socket.
#[derive(Debug)]
pub struct AudioBudget {
    bytes: RateLimiterBytes,
    warned_at: Option<Instant>,
}

#[derive(Debug)]
struct RateLimiterBytes {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl AudioBudget {
    /// A full budget.
    pub fn new(speed: f64, burst_seconds: f64) -> Self {
        let per_second = PCM_BYTES_PER_SECOND * speed;
        let capacity = PCM_BYTES_PER_SECOND * burst_seconds;
        Self {
            bytes: RateLimiterBytes {
                capacity,
                tokens: capacity,
                per_second,
                last: Instant::now(),
            },
            warned_at: None,
        }
    }

    /// Counts `bytes` of audio arriving now.
    pub fn take(&mut self, bytes: usize) -> AudioVerdict {
        self.take_at(bytes, Instant::now())
    }

    fn take_at(&mut self, bytes: usize, now: Instant) -> AudioVerdict {
        let budget = &mut self.bytes;
        let elapsed = now.saturating_duration_since(budget.last).as_secs_f64();
        budget.last = now;
        budget.tokens = (budget.tokens + elapsed * budget.per_second).min(budget.capacity);
        let bytes = bytes as f64;
        if budget.tokens >= bytes {
            budget.tokens -= bytes;
            return AudioVerdict::Take;
        }
        match self.warned_at {
            Some(at) if now.saturating_duration_since(at) < Duration::from_secs(1) => {
                AudioVerdict::Close
            }
            _ => {
                self.warned_at = Some(now);
                AudioVerdict::Drop
            }
        }
    }
}

/// Liveness by heartbeat: any message from the client counts as a sign of life.
#[derive(Debug)]
pub struct Heartbeat {
    max_missed: u32,
    missed: u32,
    alive: bool,
}

/// What to do at a heartbeat tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    /// Send a `ping`.
    Ping,
    /// Too many pings went unanswered: close the socket.
    TimedOut,
}

impl Heartbeat {
    /// Times out after `max_missed` ticks in a row without a sign of life.
    pub fn new(max_missed: u32) -> Self {
        Self { max_missed: max_missed.max(1), missed: 0, alive: true }
    }

    /// The client sent something.
    pub fn alive(&mut self) {
        self.alive = true;
    }

    /// A tick of the heartbeat interval.
    pub fn tick(&mut self) -> Beat {
        if self.alive {
            self.missed = 0;
        } else {
            self.missed += 1;
        }
        self.alive = false;
        if self.missed >= self.max_missed { Beat::TimedOut } else { Beat::Ping }
    }
}

/// The first tick comes one period after the start, not at once.
pub fn heartbeat_interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_over_time() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(5);
        limiter.last = start;
        assert!((0..5).all(|_| limiter.allow_at(start)));
        assert!(!limiter.allow_at(start));
        assert!(limiter.allow_at(start + Duration::from_millis(200)));
        assert!(!limiter.allow_at(start + Duration::from_millis(200)));
        assert!((0..5).all(|_| limiter.allow_at(start + Duration::from_secs(10))));
    }

    #[test]
    fn heartbeat_times_out_after_the_missed_count() {
        let mut heartbeat = Heartbeat::new(2);
        assert_eq!(heartbeat.tick(), Beat::Ping);
        heartbeat.alive();
        assert_eq!(heartbeat.tick(), Beat::Ping);
        assert_eq!(heartbeat.tick(), Beat::Ping);
        assert_eq!(heartbeat.tick(), Beat::TimedOut);
    }

    #[test]
    fn audio_faster_than_allowed_is_dropped_then_closes() {
        let start = Instant::now();
        let mut budget = AudioBudget::new(1.5, 2.0);
        let second = PCM_BYTES_PER_SECOND as usize;
        // A 2 s burst is taken, then 1.5 s of audio per second goes on being taken.
        assert_eq!(budget.take_at(2 * second, start), AudioVerdict::Take);
        for i in 1..=10 {
            let now = start + Duration::from_secs(i);
            assert_eq!(budget.take_at(second * 3 / 2, now), AudioVerdict::Take, "second {i}");
        }
        // Twice real time: dropped, and closed if it goes on within the second.
        let later = start + Duration::from_secs(11);
        assert_eq!(budget.take_at(3 * second, later), AudioVerdict::Drop);
        assert_eq!(
            budget.take_at(3 * second, later + Duration::from_millis(500)),
            AudioVerdict::Close
        );
        // A client that slows down after a drop is forgiven.
        let mut budget = AudioBudget::new(1.5, 2.0);
        assert_eq!(budget.take_at(5 * second, start), AudioVerdict::Drop);
        let calm = start + Duration::from_secs(3);
        assert_eq!(budget.take_at(second, calm), AudioVerdict::Take);
    }
}
