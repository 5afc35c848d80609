//! Output relay (the ADR's output-handler): accepts audio from producers, paces it in real time
//! to live clients, and routes STOP to the one producer of the stopped session.
//!
//! It deliberately knows no HTTP framework and no WebSocket library: the socket drivers are
//! generic over a `Sink`/`Stream` of [`WsFrame`], and the server adapts axum's or tungstenite's
//! messages outside this crate. It does no audio decoding either: PCM arrives as s16le.
//!
//! Architecture invariants:
//! - **Fences, not timing.** Per session a fence turn (chunks with `turn ≤ fence` are dropped) and
//!   a `stopping` flag (set by STOP, cleared by STOP_ACK: everything of the session is dropped in
//!   between). Every release to clients happens under the same lock that sets them, so after a
//!   STOP_ACK has been fanned out no SPEECH_CHUNK of that turn can follow it to any client.
//! - **No "latest connection".** A STOP goes to the producer that owns the session (the one that
//!   last sent a frame for it), else to the in-process default producer; never to whichever
//!   producer connected last.
//! - **Bounded everywhere.** A session queues at most `session_queue_ms` of audio (producers wait:
//!   backpressure), a client at most `client_queue_frames` frames (a slow client loses frames and
//!   is then disconnected; it never stalls the relay or other clients).
//! - **Owned tasks.** At most one pacer task per session with queued audio or a pending STOP, in
//!   the relay's `TaskTracker`; it ends when the session is idle, on shutdown, or when the relay
//!   is dropped.

mod client;
mod config;
mod framing;
mod live_client;
mod metrics;
mod producer;
mod relay;
mod session;
mod socket;
mod state;
mod stop;
mod ws_frame;

pub use client::{ClientFilter, ClientRole, DisconnectReason, LiveFrame};
pub use config::RelayConfig;
pub use framing::{BinaryChunk, FramingError, decode_binary_chunk, encode_binary_chunk};
pub use live_client::LiveClient;
pub use metrics::{LatencySummary, RelayMetrics};
pub use producer::{EndReceipt, IngestError, Ingested, Producer};
pub use relay::Relay;
pub use socket::{ErrorFrame, ReadError, WsFrame, close_code, run_ingest_socket, run_live_socket};
#[doc(hidden)]
pub use socket::{fuzz_parse_client_stop, fuzz_parse_ingest_frame};
pub use stop::{PendingStop, StopResolution};
