//! Voice in: the microphone (`capture`), voice activity (`vad`, silence at the raw mic `quiet`),
//! utterances (`utterance`),
//! echo handling (`echo`, and `aec` with the `aec` feature), the pause-then-confirm voice
//! barge-in (`barge_in`, its fast energy onset `onset`) and the pipeline that joins them (`pipeline`).
//!
//! It deliberately knows no engine, relay, HTTP framework or Tauri: the pipeline turns mic
//! audio and what the co-host is playing into an ordered stream of effects (pause, resume,
//! STOP, submit a turn, tell the panel), and a driver in `koto-server` applies them through the
//! one STOP path. ASR is the `koto_core::asr::AsrProvider` trait; no vendor is named here.
//!
//! Architecture invariants:
//! - **Time is the mic's audio clock.** Every decision (onset, hangover, confirmation window)
//!   counts samples, so synthetic audio reproduces it exactly; nothing sleeps.
//! - **Pause is reversible, STOP is not.** A voice onset only pauses the co-host; a STOP needs
//!   words from the ASR that are not the co-host's own sentence.
//! - **No device is a normal case.** Capture failures are a state and a warning, never a panic.

#[cfg(feature = "aec")]
pub mod aec;
pub mod barge_in;
pub mod capture;
pub mod echo;
pub mod onset;
pub mod pipeline;
pub mod quiet;
pub mod utterance;
pub mod vad;

pub use barge_in::{BargeInConfig, BargeInStats, PlaybackAction, ResumeCause};
pub use echo::EchoMode;
pub use onset::OnsetConfig;
pub use pipeline::{
    DropReason, HeardUtterance, MicMode, VoiceConfig, VoiceEffect, VoiceInput, VoicePipeline,
    VoiceStats,
};
pub use utterance::{Utterance, UtteranceConfig};
pub use vad::{Vad, VadConfig, VadEvent};
