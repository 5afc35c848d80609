//! Exponential back-off with jitter for reconnects and retries. It only computes delays; the
//! caller sleeps (cancellably).

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The delay before the next try: `base · 2^failures`, capped at `max`, then a random point
    /// in its upper half, so many clients that failed together do not retry together.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self
            .base
            .saturating_mul(1_u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let jittered = rand::rng().random_range(ceiling_us / 2..=ceiling_us);
        Duration::from_micros(jittered)
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "reconnect logging only")
    )]
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_jittered_and_capped() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay();
        assert!(
            (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
            "the first delay is in the upper half of base: {first:?}"
        );
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay <= Duration::from_secs(2),
                "never above max: {delay:?}"
            );
        }
        let late = backoff.next_delay();
        assert!(
            late >= Duration::from_secs(1),
            "after many failures the delay sits near max: {late:?}"
        );
        backoff.reset();
        assert!(
            backoff.next_delay() <= Duration::from_millis(100),
            "reset starts over"
        );
        assert_eq!(backoff.failures(), 1, "one failure counted since the reset");
    }
}
