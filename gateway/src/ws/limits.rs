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
}
