//! Per-session token buckets for input routes: a chat flood on one session cannot starve the
//! others, and a flood is refused with `429` + `Retry-After`, not queued.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use koto_core::SessionId;

#[derive(Debug)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<SessionId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// Above this many tracked sessions, full (idle) buckets are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        RateLimiter {
            // A rate that is not a positive number refills nothing (NaN would refill all).
            rate_per_sec: if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
                rate_per_sec
            } else {
                0.0
            },
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one input from the session's bucket; `Err(wait)` says how long until one is free.
    pub fn check(&self, session: &SessionId, now: Instant) -> Result<(), Duration> {
        // Never poisoned in practice (no panics inside); recover the plain numbers if it is.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.rate_per_sec, self.burst);
            buckets.retain(|_, bucket| {
                bucket.tokens + rate * now.duration_since(bucket.refilled_at).as_secs_f64() < burst
            });
        }
        let bucket = buckets.entry(session.clone()).or_insert(Bucket {
            tokens: self.burst,
            refilled_at: now,
        });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // The config keeps the rate in a sane range; a tiny or zero one still yields a
            // wait (saturated), never a panic.
            let wait = (1.0 - bucket.tokens) / self.rate_per_sec;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_per_session() {
        let limiter = RateLimiter::new(2.0, 3);
        let (a, b) = (
            SessionId::parse("a").expect("id"),
            SessionId::parse("b").expect("id"),
        );
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&a, start).is_ok(), "the burst is allowed");
        }
        let wait = limiter.check(&a, start).expect_err("burst used up");
        assert!(
            wait <= Duration::from_millis(500),
            "one token comes back in 1/rate s: {wait:?}"
        );
        assert!(
            limiter.check(&b, start).is_ok(),
            "another session is not affected"
        );
        assert!(
            limiter
                .check(&a, start + Duration::from_millis(500))
                .is_ok(),
            "refilled at the rate"
        );
    }

    #[test]
    fn a_tiny_or_broken_rate_is_a_long_wait_not_a_panic() {
        let a = SessionId::parse("a").expect("id");
        let start = Instant::now();
        for rate in [1e-300, 0.0, f64::NAN, -1.0] {
            let limiter = RateLimiter::new(rate, 1);
            assert!(limiter.check(&a, start).is_ok(), "the burst is allowed");
            let wait = limiter
                .check(&a, start + Duration::from_secs(1))
                .expect_err("nothing refills at this rate");
            assert!(
                wait >= Duration::from_secs(3600),
                "rate {rate}: an unrepresentable wait saturates: {wait:?}"
            );
        }
    }
}
