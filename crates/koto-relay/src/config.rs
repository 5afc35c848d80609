//! Relay tuning knobs. Plain data; the server maps its config keys (`AUDIO_LEAD_MS`, …) onto it.

use std::time::Duration;

/// How the relay paces, buffers and times out. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Audio a client may hold ahead of the playback clock (`AUDIO_LEAD_MS`, default 200 ms).
    /// Bounds what is still audible after a STOP, and keeps subtitles in step with the audio.
    pub audio_lead: Duration,
    /// Audio (ms) buffered per session before `Producer::send` waits: backpressure to the TTS.
    pub session_queue_ms: u32,
    /// Frames buffered per live client. Past this, new audio/text frames for it are dropped.
    pub client_queue_frames: usize,
    /// A client that has dropped this many frames is disconnected (it can reconnect).
    pub client_drop_limit: u32,
    /// Whether `/ws/live` clients may send STOP (`SYNC_TTS_BARGE_IN`); when not, they get an
    /// error frame `barge_in_disabled`.
    pub client_stops: bool,
    /// How long a STOP waits for the producer's STOP_ACK before the relay fences by itself.
    pub stop_ack_timeout: Duration,
    /// The socket drivers send a WebSocket ping this often.
    pub heartbeat_interval: Duration,
    /// A socket from which nothing (not even a pong) arrived for this long is closed.
    pub peer_timeout: Duration,
    /// Largest text frame `/ws/ingest` accepts (a 40 ms chunk at 48 kHz is ~5 KiB of base64).
    pub max_ingest_frame_bytes: usize,
    /// Sessions whose state (fence, seq, released seq) is kept. Past this, the least recently
    /// active idle session is forgotten; if none is idle, frames for new sessions are refused.
    pub max_sessions: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            audio_lead: Duration::from_millis(200),
            session_queue_ms: 3_000,
            client_queue_frames: 256,
            client_drop_limit: 64,
            client_stops: true,
            stop_ack_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            peer_timeout: Duration::from_secs(45),
            max_ingest_frame_bytes: 1 << 20,
            max_sessions: 1_024,
        }
    }
}
