//! A thread that pulls one period of audio at a time on the wall clock: the real-time consumer
//! behind `NullSink` and `RecordingSink`'s `Pace::RealTime`.
//!
//! It never runs ahead of real time (a period is pulled when it starts, as a device would) and
//! never bursts to catch up after a stall longer than `MAX_LAG`. It does not know what the
//! samples are for: the callback does.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::AudioError;
use crate::source::PlaybackSource;

/// Behind schedule by more than this (a suspended laptop, a stopped debugger), the ticker
/// starts a new schedule rather than consuming the backlog at once.
const MAX_LAG: Duration = Duration::from_millis(100);

/// The running thread. Dropping it stops the thread and waits for it (at most one `fill`).
pub(crate) struct Ticker {
    /// Dropped to wake and stop the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Pull `period` of audio from `source` every `period`, handing each block and the instant
    /// its first sample is due to `on_block`.
    pub(crate) fn spawn(
        name: &'static str,
        source: PlaybackSource,
        period: Duration,
        mut on_block: impl FnMut(Instant, &[f32]) + Send + 'static,
    ) -> Result<Ticker, AudioError> {
        let rate = source.sample_rate();
        let frames = usize::try_from(u128::from(rate) * period.as_micros() / 1_000_000)
            .unwrap_or(1)
            .max(1);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("koto-audio-{name}"))
            .spawn(move || {
                let mut block = vec![0.0_f32; frames];
                let mut due = Instant::now();
                loop {
                    let wait = due.saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // The `Ticker` was dropped.
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    source.fill(&mut block);
                    on_block(due, &block);
                    due += period;
                    let now = Instant::now();
                    if now > due + MAX_LAG {
                        due = now;
                    }
                }
            })
            .map_err(|error| AudioError::Thread("ticker", error.to_string()))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Its loop only waits on the channel we just closed: this returns promptly.
            let _ = thread.join();
        }
    }
}
