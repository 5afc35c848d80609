//! A circuit breaker per provider: `closed` (in use), `open` after `failures` failures in a row
//! (skipped for `cooldown`), then `half_open` (one real request is let through as a probe: it
//! closes the breaker on success and opens it again on failure).
//!
//! It also remembers whether the provider's *last* request failed, so a chain can try healthy
//! providers first on the next turn without waiting for the breaker to open.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it.
    pub failures: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What a chain may do with a provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: use it (`healthy`: its last request did not fail).
    Use { healthy: bool },
    /// Half-open: this request is the probe.
    Probe,
    /// Open, or half-open with its probe in flight: skip it.
    Skip,
}

/// A breaker's state for `/health`, `/metrics` and the status bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerStatus {
    pub state: BreakerState,
    /// Failures in a row so far.
    pub failures: u32,
    pub opened_count: u64,
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures_in_a_row: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    last_failed: bool,
    opened_count: u64,
    last_error: Option<String>,
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy: BreakerPolicy {
                failures: policy.failures.max(1),
                ..policy
            },
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures_in_a_row: 0,
                opened_at: None,
                probe_in_flight: false,
                last_failed: false,
                opened_count: 0,
                last_error: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to send a request at `now`. A `Probe` answer reserves the one probe: the caller
    /// must report its result ([`Breaker::succeeded`] / [`Breaker::failed`] /
    /// [`Breaker::abandoned`]).
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        if inner.state == BreakerState::Open
            && inner
                .opened_at
                .is_some_and(|at| now.saturating_duration_since(at) >= self.policy.cooldown)
        {
            inner.state = BreakerState::HalfOpen;
        }
        match inner.state {
            BreakerState::Closed => Admission::Use {
                healthy: !inner.last_failed,
            },
            BreakerState::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                Admission::Probe
            }
            BreakerState::HalfOpen | BreakerState::Open => Admission::Skip,
        }
    }

    /// What [`Breaker::admit`] would answer, reserving nothing (for ordering a chain).
    pub fn peek(&self, now: Instant) -> Admission {
        let inner = self.lock();
        let cooled = inner
            .opened_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.policy.cooldown);
        match inner.state {
            BreakerState::Closed => Admission::Use {
                healthy: !inner.last_failed,
            },
            BreakerState::Open if !cooled => Admission::Skip,
            _ if inner.probe_in_flight => Admission::Skip,
            _ => Admission::Probe,
        }
    }

    pub fn succeeded(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.failures_in_a_row = 0;
        inner.opened_at = None;
        inner.probe_in_flight = false;
        inner.last_failed = false;
    }

    pub fn failed(&self, now: Instant, error: &str) {
        let mut inner = self.lock();
        inner.failures_in_a_row = inner.failures_in_a_row.saturating_add(1);
        inner.last_failed = true;
        inner.last_error = Some(error.to_owned());
        let was_probe = inner.state == BreakerState::HalfOpen;
        inner.probe_in_flight = false;
        if was_probe || inner.failures_in_a_row >= self.policy.failures {
            if inner.state != BreakerState::Open {
                inner.opened_count += 1;
            }
            inner.state = BreakerState::Open;
            inner.opened_at = Some(now);
        }
    }

    /// The request ended without a verdict (a STOP, the caller went away): a probe slot is
    /// given back, nothing is counted.
    pub fn abandoned(&self) {
        let mut inner = self.lock();
        inner.probe_in_flight = false;
    }

    pub fn status(&self, now: Instant) -> BreakerStatus {
        let inner = self.lock();
        let state = match inner.state {
            BreakerState::Open
                if inner.opened_at.is_some_and(|at| {
                    now.saturating_duration_since(at) >= self.policy.cooldown
                }) =>
            {
                BreakerState::HalfOpen
            }
            state => state,
        };
        BreakerStatus {
            state,
            failures: inner.failures_in_a_row,
            opened_count: inner.opened_count,
            last_error: inner.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failures: 2,
            cooldown: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_failures_in_a_row_and_probes_after_the_cooldown() {
        let breaker = breaker();
        let t0 = Instant::now();
        assert_eq!(breaker.admit(t0), Admission::Use { healthy: true });
        breaker.failed(t0, "503");
        assert_eq!(
            breaker.admit(t0),
            Admission::Use { healthy: false },
            "one failure: still closed, but known to have failed"
        );
        breaker.failed(t0, "503");
        assert_eq!(breaker.status(t0).state, BreakerState::Open);
        assert_eq!(breaker.admit(t0 + Duration::from_secs(9)), Admission::Skip);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(breaker.status(later).state, BreakerState::HalfOpen);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.admit(later), Admission::Skip, "one probe at a time");
        breaker.succeeded();
        assert_eq!(breaker.status(later).state, BreakerState::Closed);
        assert_eq!(breaker.admit(later), Admission::Use { healthy: true });
        assert_eq!(breaker.status(later).opened_count, 1);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_an_abandoned_one_frees_the_slot() {
        let breaker = breaker();
        let t0 = Instant::now();
        breaker.failed(t0, "a");
        breaker.failed(t0, "b");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.abandoned();
        assert_eq!(breaker.admit(later), Admission::Probe, "the slot came back");
        breaker.failed(later, "c");
        assert_eq!(breaker.status(later).state, BreakerState::Open);
        assert_eq!(
            breaker.admit(later + Duration::from_secs(9)),
            Admission::Skip
        );
        assert_eq!(breaker.status(later).last_error.as_deref(), Some("c"));
        assert_eq!(breaker.status(later).opened_count, 2);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = breaker();
        let t0 = Instant::now();
        breaker.failed(t0, "a");
        breaker.succeeded();
        breaker.failed(t0, "b");
        assert_eq!(breaker.status(t0).state, BreakerState::Closed);
    }
}
