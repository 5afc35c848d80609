//! The null sink: consumes the player's audio in real time and discards it, so pacing, STOP,
//! `drained` and subtitles behave as with a sound card on machines that have none.
//!
//! It is not ALSA's "null" PCM (which cpal lists as a device): that one gives no guarantee of
//! real-time pacing, so it is hidden from `output_devices` and never used as a fallback.

use std::time::Duration;

use super::ticker::Ticker;
use super::{DeviceLost, Sink};
use crate::error::AudioError;
use crate::source::PlaybackSource;

/// How much the null sink consumes at a time: a device-like period.
const PERIOD: Duration = Duration::from_millis(10);

/// Consumes audio in real time, silently.
pub struct NullSink {
    rate: u32,
    ticker: Option<Ticker>,
}

impl std::fmt::Debug for NullSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NullSink")
            .field("rate", &self.rate)
            .field("running", &self.ticker.is_some())
            .finish()
    }
}

impl NullSink {
    /// A null sink that would like `rate` Hz (it consumes whatever rate the player has).
    pub fn new(rate: u32) -> Self {
        NullSink { rate, ticker: None }
    }
}

impl Sink for NullSink {
    fn device(&self) -> String {
        "null".to_owned()
    }

    fn is_null(&self) -> bool {
        true
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn play(&mut self, source: PlaybackSource, _lost: DeviceLost) -> Result<(), AudioError> {
        self.ticker = Some(Ticker::spawn("null-sink", source, PERIOD, |_, _| {})?);
        Ok(())
    }
}
