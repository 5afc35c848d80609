//! The crate's error enums. Output failures never reach callers of `Player` as errors (they
//! become a fallback plus a `PlaybackStatus::warning`); these are for sinks and pushes.

/// Why an output could not be opened or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// The configured device name/id is not in `output_devices()`.
    #[error("no output device named {0:?}")]
    DeviceNotFound(String),
    /// The host reports no default output device (a machine without a sound card).
    #[error("no default output device")]
    NoDefaultDevice,
    /// The device exists but could not be opened or started.
    #[error("output device {device:?} failed: {message}")]
    Device { device: String, message: String },
    /// An OS thread could not be started.
    #[error("could not start the {0} thread: {1}")]
    Thread(&'static str, String),
}

/// A chunk the player refused outright (as opposed to dropping it by policy: see `Pushed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("sample rate {0} is outside 8000..=192000")]
    InvalidSampleRate(u32),
}
