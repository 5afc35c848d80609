//! Token buckets for input routes: one per session (a chat flood on one session cannot starve
//! the others) and one for the whole app (`INPUT_GLOBAL_RATE_PER_SEC`, `INPUT_GLOBAL_BURST`:
//! many sessions at once cannot flood the LLM either). A flood is refused with `429` +
//! `Retry-After`, not queued. An input takes a token from both buckets or from neither.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use koto_core::SessionId;

#[derive(Debug)]
pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<SessionId, Bucket>>,
    /// The whole app's bucket; `None`: no global limit.
    global: Option<Mutex<Global>>,
}

#[derive(Debug)]
struct Global {
    rate_per_sec: f64,
    burst: f64,
    bucket: Bucket,
}

/// Which bucket was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Session,
    Global,
}

/// An input refused: which limit, and how long until it would be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    pub wait: Duration,
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
            rate_per_sec: sane_rate(rate_per_sec),
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
            global: None,
        }
    }

    /// Adds the app-wide bucket: `burst` inputs at once across all sessions, then `rate_per_sec`.
    pub fn with_global(mut self, rate_per_sec: f64, burst: u32, now: Instant) -> Self {
        self.global = Some(Mutex::new(Global {
            rate_per_sec: sane_rate(rate_per_sec),
            burst: f64::from(burst),
            bucket: Bucket {
                tokens: f64::from(burst),
                refilled_at: now,
            },
        }));
        self
    }

    /// Takes one input from the session's bucket and the global one; `Err` says which was
    /// empty and how long until it has a token (then neither bucket was charged).
    pub fn check(&self, session: &SessionId, now: Instant) -> Result<(), Refused> {
        // Lock order: the global bucket, then the sessions' map (the only place both are held).
        // Never poisoned in practice (no panics inside); recover the plain numbers if it is.
        let mut global = self.global.as_ref().map(|global| {
            global
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        if let Some(global) = global.as_deref_mut() {
            let (rate, burst) = (global.rate_per_sec, global.burst);
            global.bucket.refill(now, rate, burst);
            if global.bucket.tokens < 1.0 {
                return Err(Refused {
                    scope: Scope::Global,
                    wait: global.bucket.wait(rate),
                });
            }
        }
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
        bucket.refill(now, self.rate_per_sec, self.burst);
        if bucket.tokens < 1.0 {
            return Err(Refused {
                scope: Scope::Session,
                wait: bucket.wait(self.rate_per_sec),
            });
        }
        bucket.tokens -= 1.0;
        if let Some(global) = global.as_deref_mut() {
            global.bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

/// A rate that is not a positive number refills nothing (NaN would refill all).
fn sane_rate(rate_per_sec: f64) -> f64 {
    if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
        rate_per_sec
    } else {
        0.0
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate_per_sec: f64, burst: f64) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_sec).min(burst);
        self.refilled_at = now;
    }

    /// How long until one token is back. The config keeps the rate in a sane range; a tiny or
    /// zero one still yields a wait (saturated), never a panic.
    fn wait(&self, rate_per_sec: f64) -> Duration {
        let wait = (1.0 - self.tokens) / rate_per_sec;
        Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX)
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
        let wait = limiter.check(&a, start).expect_err("burst used up").wait;
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
                .expect_err("nothing refills at this rate")
                .wait;
            assert!(
                wait >= Duration::from_secs(3600),
                "rate {rate}: an unrepresentable wait saturates: {wait:?}"
            );
        }
    }

    #[test]
    fn the_global_bucket_caps_many_sessions_at_once() {
        let start = Instant::now();
        let limiter = RateLimiter::new(1.0, 5).with_global(2.0, 10, start);
        let sessions: Vec<SessionId> = (0..200)
            .map(|n| SessionId::parse(&format!("s{n}")).expect("id"))
            .collect();
        let answers: Vec<_> = sessions.iter().map(|s| limiter.check(s, start)).collect();
        let accepted = answers.iter().filter(|answer| answer.is_ok()).count();
        assert_eq!(
            accepted, 10,
            "200 distinct sessions in a burst: only the global burst passes"
        );
        assert!(
            answers
                .iter()
                .filter_map(|answer| answer.err())
                .all(|refused| refused.scope == Scope::Global),
            "every refusal names the global limit"
        );
        let later = start + Duration::from_millis(500);
        assert!(
            limiter.check(&sessions[150], later).is_ok(),
            "one token back after 1/rate s"
        );
        assert_eq!(
            limiter
                .check(&sessions[151], later)
                .map_err(|refused| refused.scope),
            Err(Scope::Global),
            "and only one"
        );
    }

    #[test]
    fn a_refusal_charges_neither_bucket() {
        let start = Instant::now();
        let limiter = RateLimiter::new(1.0, 1).with_global(1.0, 2, start);
        let (a, b) = (
            SessionId::parse("a").expect("id"),
            SessionId::parse("b").expect("id"),
        );
        assert!(limiter.check(&a, start).is_ok());
        assert_eq!(
            limiter.check(&a, start).map_err(|refused| refused.scope),
            Err(Scope::Session),
            "a's own burst is used up"
        );
        assert!(
            limiter.check(&b, start).is_ok(),
            "a's refused input took no global token: b still gets the second"
        );
    }
}
