//! A sink for tests: records every block it consumes with the time it is played, so a test can
//! ask "was anything audible after STOP + 30 ms?".
//!
//! Two paces. `Manual`: nothing moves until the test calls `RecordingHandle::advance`; time is
//! virtual (sink time), so results are exact and never flaky. Like a sound card it pulls
//! ahead: it always holds `MANUAL_LOOKAHEAD_PERIODS` periods beyond "now" (ALSA's two-period
//! buffer), so what a STOP cannot take back is modelled, not hidden. `RealTime`: a thread pulls
//! on the wall clock, as the null sink does. It records; it never plays.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ticker::Ticker;
use super::{DeviceLost, OUTPUT_PERIOD_MS, Sink};
use crate::error::AudioError;
use crate::source::PlaybackSource;

/// Periods a manual recording sink has pulled beyond its "now": the device sink's ALSA buffer.
pub const MANUAL_LOOKAHEAD_PERIODS: u64 = 2;

/// How a `RecordingSink` consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Only when the test calls [`RecordingHandle::advance`]; timestamps are sink time.
    Manual,
    /// On its own thread at the wall-clock rate; timestamps are wall time since `play`.
    RealTime,
}

/// One consumed block: `at` is when its first sample plays, in sink time since `play`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedBlock {
    pub at: Duration,
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl RecordedBlock {
    /// When sample `index` of this block plays.
    pub fn time_of(&self, index: usize) -> Duration {
        self.at + samples_to_duration(index as u64, self.sample_rate)
    }
}

struct Recorder {
    pace: Pace,
    period: Duration,
    blocks: Vec<RecordedBlock>,
    /// Manual pace: the player's source while this sink is the player's output.
    source: Option<PlaybackSource>,
    lost: Option<DeviceLost>,
    /// Between `play` and the sink's drop.
    attached: bool,
    /// Real-time pace: when `play` started.
    origin: Option<Instant>,
    /// Manual pace: virtual "now" and how far has been pulled, both in samples.
    now: u64,
    pulled: u64,
    rate: u32,
}

impl Recorder {
    fn period_samples(&self) -> u64 {
        (u128::from(self.rate) * self.period.as_micros() / 1_000_000).max(1) as u64
    }

    /// Pull periods until `MANUAL_LOOKAHEAD_PERIODS` are held beyond `now`.
    fn pull_ahead(&mut self) {
        let Some(source) = self.source.clone() else {
            return;
        };
        let period = self.period_samples();
        while self.pulled < self.now + MANUAL_LOOKAHEAD_PERIODS * period {
            let mut samples = vec![0.0; usize::try_from(period).unwrap_or(1)];
            source.fill(&mut samples);
            self.blocks.push(RecordedBlock {
                at: samples_to_duration(self.pulled, self.rate),
                samples,
                sample_rate: self.rate,
            });
            self.pulled += period;
        }
    }
}

fn samples_to_duration(samples: u64, rate: u32) -> Duration {
    Duration::from_nanos(
        u64::try_from(u128::from(samples) * 1_000_000_000 / u128::from(rate.max(1)))
            .unwrap_or(u64::MAX),
    )
}

/// A sink that records what it consumes. Give it to `Player::start_with_sink` and keep the
/// [`RecordingHandle`].
pub struct RecordingSink {
    rate: u32,
    recorder: Arc<Mutex<Recorder>>,
    ticker: Option<Ticker>,
}

impl std::fmt::Debug for RecordingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingSink")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// The test's side of a `RecordingSink`: drive it (`Manual`), read what it consumed, unplug it.
#[derive(Clone)]
pub struct RecordingHandle {
    recorder: Arc<Mutex<Recorder>>,
}

impl std::fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHandle").finish_non_exhaustive()
    }
}

fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingSink {
    /// A recording sink that would like `rate` Hz, consuming in periods of the device sink's
    /// size (`OUTPUT_PERIOD_MS`).
    pub fn new(rate: u32, pace: Pace) -> (RecordingSink, RecordingHandle) {
        let recorder = Arc::new(Mutex::new(Recorder {
            pace,
            period: Duration::from_millis(OUTPUT_PERIOD_MS),
            blocks: Vec::new(),
            source: None,
            lost: None,
            attached: false,
            origin: None,
            now: 0,
            pulled: 0,
            rate,
        }));
        let handle = RecordingHandle {
            recorder: Arc::clone(&recorder),
        };
        (
            RecordingSink {
                rate,
                recorder,
                ticker: None,
            },
            handle,
        )
    }
}

impl Sink for RecordingSink {
    fn device(&self) -> String {
        "recording".to_owned()
    }

    fn is_null(&self) -> bool {
        false
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn play(&mut self, source: PlaybackSource, lost: DeviceLost) -> Result<(), AudioError> {
        let rate = source.sample_rate();
        let mut recorder = lock(&self.recorder);
        recorder.rate = rate;
        recorder.lost = Some(lost);
        recorder.attached = true;
        match recorder.pace {
            Pace::Manual => {
                recorder.source = Some(source);
                // A device fills its buffer before the first period plays.
                recorder.pull_ahead();
            }
            Pace::RealTime => {
                let origin = Instant::now();
                recorder.origin = Some(origin);
                let period = recorder.period;
                drop(recorder);
                let sink = Arc::clone(&self.recorder);
                self.ticker = Some(Ticker::spawn(
                    "recording-sink",
                    source,
                    period,
                    move |due, block| {
                        lock(&sink).blocks.push(RecordedBlock {
                            at: due.saturating_duration_since(origin),
                            samples: block.to_vec(),
                            sample_rate: rate,
                        });
                    },
                )?);
            }
        }
        Ok(())
    }
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        // The player let go of this sink (fallback, shutdown): it must not pull any more,
        // even if the test goes on advancing it.
        self.ticker.take();
        let mut recorder = lock(&self.recorder);
        recorder.source = None;
        recorder.attached = false;
    }
}

impl RecordingHandle {
    /// Manual pace: let `by` of sink time pass, consuming what a device would. Does nothing
    /// in real-time pace or once the player has dropped the sink.
    pub fn advance(&self, by: Duration) {
        let mut recorder = lock(&self.recorder);
        if recorder.pace != Pace::Manual || recorder.source.is_none() {
            return;
        }
        let rate = recorder.rate;
        recorder.now += (u128::from(rate) * by.as_nanos() / 1_000_000_000) as u64;
        recorder.pull_ahead();
    }

    /// Sink time now: virtual (`Manual`) or wall time since `play` (`RealTime`).
    pub fn elapsed(&self) -> Duration {
        let recorder = lock(&self.recorder);
        match recorder.pace {
            Pace::Manual => samples_to_duration(recorder.now, recorder.rate),
            Pace::RealTime => recorder.origin.map_or(Duration::ZERO, |o| o.elapsed()),
        }
    }

    /// Everything consumed so far, in order.
    pub fn blocks(&self) -> Vec<RecordedBlock> {
        lock(&self.recorder).blocks.clone()
    }

    /// Every consumed sample with the time it plays.
    pub fn timeline(&self) -> Vec<(Duration, f32)> {
        let recorder = lock(&self.recorder);
        recorder
            .blocks
            .iter()
            .flat_map(|block| {
                block
                    .samples
                    .iter()
                    .enumerate()
                    .map(move |(index, sample)| (block.time_of(index), *sample))
            })
            .collect()
    }

    /// When the last sample louder than `threshold` plays; `None` if none was.
    pub fn last_audible(&self, threshold: f32) -> Option<Duration> {
        let recorder = lock(&self.recorder);
        recorder.blocks.iter().rev().find_map(|block| {
            let index = block.samples.iter().rposition(|s| s.abs() > threshold)?;
            Some(block.time_of(index))
        })
    }

    /// When the first sample louder than `threshold` plays; `None` if none was.
    pub fn first_audible(&self, threshold: f32) -> Option<Duration> {
        let recorder = lock(&self.recorder);
        recorder.blocks.iter().find_map(|block| {
            let index = block.samples.iter().position(|s| s.abs() > threshold)?;
            Some(block.time_of(index))
        })
    }

    /// How much audio louder than `threshold` was consumed.
    pub fn audible(&self, threshold: f32) -> Duration {
        let recorder = lock(&self.recorder);
        let (count, rate) = recorder.blocks.iter().fold((0u64, 1), |(n, _), block| {
            let loud = block.samples.iter().filter(|s| s.abs() > threshold).count();
            (n + loud as u64, block.sample_rate)
        });
        samples_to_duration(count, rate)
    }

    /// Simulate the device going away: the sink reports itself lost, as a cpal error callback
    /// would. The player then falls back to a null sink.
    pub fn unplug(&self, reason: &str) {
        let lost = lock(&self.recorder).lost.clone();
        if let Some(lost) = lost {
            lost.report(reason);
        }
    }

    /// Whether the player still uses this sink.
    pub fn is_attached(&self) -> bool {
        lock(&self.recorder).attached
    }
}
