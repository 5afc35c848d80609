//! Local playback of the relay's PCM for the desktop app: a `Player` that mixes per-session
//! audio through rodio onto a chosen cpal device, can be silenced at once by STOP, and falls
//! back to a real-time null sink when there is no sound card. Plus the device list for the
//! settings page and `play_relay`, the task that feeds a player from an in-process `Relay`.
//!
//! It deliberately knows nothing of Tauri, WebViews or HTTP, decodes nothing (the relay's PCM
//! is s16le already), and does no capture.
//!
//! Architecture invariants:
//! - **Flush is a state change, not a drain.** Audio waits in the player's lanes until a sink
//!   pulls it; STOP removes it under the same lock the sink pulls under and bumps a generation
//!   that makes any block already pulled stale. What cannot be taken back is the OS buffer
//!   (two `OUTPUT_PERIOD_MS` periods), so STOP should be silent within ≈ 21 ms on a device
//!   (by construction; no sound card to measure on) and is within the modelled device buffer
//!   (20 ms) on the manual test sink.
//! - **Fences per turn.** Each session remembers its newest and its highest stopped turn;
//!   chunks of a stopped, stale or ended turn are dropped on arrival, however late.
//! - **Time is the sink's.** The jitter rule counts samples the sink consumed, so a sound
//!   card, the null sink and a test's virtual clock give the same behaviour.
//! - **No sound card is a normal case.** Output failures become a fallback and a
//!   `PlaybackStatus::warning`, never an error to callers and never a panic.

mod error;
mod playback;
mod player;
mod relay_playback;
mod resampler;
mod sink;
mod source;

pub use error::{AudioError, PushError};
pub use playback::{DEFAULT_JITTER_MS, MAX_JITTER_MS, MAX_VOLUME, PlaybackStats, Pushed};
pub use player::{PlaybackStatus, Player, PlayerConfig};
pub use relay_playback::play_relay;
pub use sink::{
    DeviceInfo, DeviceLost, DeviceSink, MANUAL_LOOKAHEAD_PERIODS, NullSink, OUTPUT_PERIOD_MS, Pace,
    RecordedBlock, RecordingHandle, RecordingSink, Sink, output_devices,
};
pub use source::PlaybackSource;
