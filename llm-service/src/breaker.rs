//! A circuit breaker per provider: after a run of failed replies the provider is left alone for
//! a cool-down (the fallback answers, or the call fails fast), then tried again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// `LLM_BREAKER_FAILURES` (default 5): failed replies in a row that open the circuit.
    pub failures: u32,
    /// `LLM_BREAKER_COOLDOWN_SECONDS` (default 30): how long it stays open.
    pub cooldown: Duration,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

/// The breaker of one provider.
#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self { policy, state: Mutex::new(State::default()) }
    }

    /// Whether the provider may be called now (closed, or the cool-down is over).
    pub fn allows(&self) -> bool {
        self.allows_at(Instant::now())
    }

    fn allows_at(&self, now: Instant) -> bool {
        let state = self.state.lock().expect("breaker poisoned");
        state.open_until.is_none_or(|until| now >= until)
    }

    /// The provider answered.
    pub fn success(&self) {
        *self.state.lock().expect("breaker poisoned") = State::default();
    }

    /// The provider failed (after its retries); returns true when this opened the circuit.
    pub fn failure(&self) -> bool {
        self.failure_at(Instant::now())
    }

    fn failure_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("breaker poisoned");
        state.failures += 1;
        if state.failures >= self.policy.failures.max(1) {
            state.open_until = Some(now + self.policy.cooldown);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_failures_and_closes_after_the_cooldown() {
        let breaker =
            CircuitBreaker::new(BreakerPolicy { failures: 2, cooldown: Duration::from_secs(30) });
        let now = Instant::now();
        assert!(!breaker.failure_at(now));
        assert!(breaker.allows_at(now));
        assert!(breaker.failure_at(now));
        assert!(!breaker.allows_at(now + Duration::from_secs(29)));
        assert!(breaker.allows_at(now + Duration::from_secs(30)));
        // Half-open: one more failure opens it again at once.
        assert!(breaker.failure_at(now + Duration::from_secs(31)));
        breaker.success();
        assert!(breaker.allows_at(now + Duration::from_secs(32)));
    }
}
