//! VTube Studio: an optional client of its public plugin API that moves the co-host model's mouth
//! (`MouthOpen`) with the audio Kotodama plays locally, and reports its connection state for the
//! status bar and `/health`.
//!
//! Invariants: nothing here blocks the caller (mouth values go through a `watch` channel, the
//! connection lives in one task); VTube Studio missing, closing or refusing is a [`VtsState`],
//! never an error for the engine; the token file is owner-only and replaced atomically; JSON
//! shapes live in `api` only. It does not play, decode or buffer audio, and it does not drive any
//! parameter but the mouth.

mod api;
mod client;
mod mouth;
mod session;
mod token;

pub use client::{VtsClient, VtsConfig, VtsState, VtsStatus};
pub use mouth::{MouthEnvelope, mouth_open_from_pcm};

/// Why one connection to VTube Studio ended; the client maps it to a [`VtsState`] and decides
/// whether and when to reconnect. Shown to the user through [`VtsStatus::message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtsError {
    /// Configured wrongly (bad URL, plugin name too short): reconnecting will not help.
    #[error("{0}")]
    Config(String),
    /// No WebSocket at the URL: VTube Studio is not running, or its plugin API is off.
    #[error(
        "VTube Studio is not reachable at {url} (is it running, with \"Allow Plugin API access\" on?): {reason}"
    )]
    Unreachable { url: String, reason: String },
    /// The connection was up and went away (VTube Studio quit or restarted its API).
    #[error("VTube Studio closed the connection: {0}")]
    Disconnected(String),
    /// The user clicked "Deny" in VTube Studio's popup (`errorID` 50).
    #[error("access denied in VTube Studio: {0}")]
    Denied(String),
    /// The session lost its authentication (access revoked in VTube Studio).
    #[error("VTube Studio no longer accepts the plugin: {0}")]
    Unauthenticated(String),
    /// An `APIError` we cannot recover from within the connection.
    #[error("VTube Studio error {id}: {message}")]
    Api { id: i64, message: String },
    /// VTube Studio sent something we do not understand where we needed an answer.
    #[error("unexpected reply from VTube Studio: {0}")]
    Protocol(String),
    /// The token could not be stored (the user would be asked again on every start).
    #[error("could not store the VTube Studio token in {path}: {reason}")]
    TokenFile { path: String, reason: String },
    /// No answer in time.
    #[error("VTube Studio did not answer the {0} in time")]
    Timeout(&'static str),
}
