//! Where the player's audio goes: the `Sink` trait and its three implementations — a rodio/cpal
//! device (`DeviceSink`), a silent real-time consumer (`NullSink`), and a recorder for tests
//! (`RecordingSink`).
//!
//! A sink only *pulls*: it decides when samples are consumed, never which. It does not queue,
//! fence or mix (that is `playback`), and it does not choose a fallback when it fails (that is
//! the player's output thread, told through `DeviceLost`).

mod device;
mod null;
mod recording;
mod ticker;

use std::sync::mpsc;

pub use device::OUTPUT_PERIOD_MS;
pub use device::{DeviceInfo, DeviceSink, output_devices};
pub use null::NullSink;
pub use recording::MANUAL_LOOKAHEAD_PERIODS;
pub use recording::{Pace, RecordedBlock, RecordingHandle, RecordingSink};

use crate::error::AudioError;
use crate::source::PlaybackSource;

/// An audio output the player's output thread drives. Created and dropped on that thread, so
/// an implementation may hold `!Send` OS handles (a cpal stream); only sinks handed to
/// `Player::start_with_sink` must be `Send`.
pub trait Sink {
    /// What `PlaybackStatus::device` shows for it.
    fn device(&self) -> String;
    /// `true` if nobody hears it (it consumes audio in real time and discards it).
    fn is_null(&self) -> bool;
    /// The rate (Hz) it would like to consume; the first sink a player opens sets the player's
    /// mixing rate. Later sinks get `PlaybackSource::sample_rate` and must cope.
    fn sample_rate(&self) -> u32;
    /// Start consuming `source` at the real-time rate; stop when dropped. Report a failure that
    /// happens later (device unplugged) through `lost`, once.
    fn play(&mut self, source: PlaybackSource, lost: DeviceLost) -> Result<(), AudioError>;
    /// Something the user should know although it works (a larger buffer than asked for).
    fn warning(&self) -> Option<String> {
        None
    }
}

/// What the player's output thread waits for.
pub(crate) enum OutputEvent {
    /// Sink number `sink` failed while playing.
    Lost { sink: u64, reason: String },
    /// Switch to this device (`None`: the default one).
    Switch(Option<String>),
    /// The last `Player` handle is gone.
    Shutdown,
}

/// A sink's way to tell the player it failed while playing (device unplugged, stream
/// invalidated). Safe to call from any thread (a cpal error callback), any number of times:
/// the player falls back once per sink.
#[derive(Clone)]
pub struct DeviceLost {
    events: mpsc::Sender<OutputEvent>,
    sink: u64,
}

impl std::fmt::Debug for DeviceLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLost")
            .field("sink", &self.sink)
            .finish()
    }
}

impl DeviceLost {
    pub(crate) fn new(events: mpsc::Sender<OutputEvent>, sink: u64) -> Self {
        DeviceLost { events, sink }
    }

    /// Report the failure. The player drops this sink and falls back (its thread, not here).
    pub fn report(&self, reason: impl Into<String>) {
        // The player may be gone already: then nobody needs to know.
        let _ = self.events.send(OutputEvent::Lost {
            sink: self.sink,
            reason: reason.into(),
        });
    }
}
