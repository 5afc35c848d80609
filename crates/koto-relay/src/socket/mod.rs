//! WebSocket drivers for `/ws/ingest` (remote producers) and `/ws/live` (clients), generic over
//! a `Sink`/`Stream` of [`WsFrame`] so the server adapts axum's (or tungstenite's) messages.
//!
//! Heartbeat: each driver sends a `Ping` every `heartbeat_interval` and closes a socket from
//! which nothing (frame, ping or pong) arrived for `peer_timeout`; an adapter must therefore pass
//! pongs through as [`WsFrame::Pong`]. Answering the peer's pings is left to the WebSocket
//! library (axum and tungstenite both do it). This module does no HTTP: the token, `Origin`
//! and `Host` checks happen before the upgrade, in the server.
//!
//! Read failures: the adapter names its library's errors as a [`ReadError`]. A message over the
//! size limit closes the socket with 1009, a text frame that is not UTF-8 with 1007 (RFC 6455
//! §7.4.1); any other failure just ends the connection (nothing more can be sent on it).

mod ingest;
mod live_clients;

use std::fmt;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use koto_core::{SessionId, TurnNo};
use koto_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

pub use ingest::run_ingest_socket;
pub use live_clients::run_live_socket;

pub use crate::ws_frame::WsFrame;

/// Fuzzing and corpus-replay entry (`fuzz/`): the `/ws/ingest` text-frame parser, private
/// otherwise. Not an API.
#[doc(hidden)]
pub fn fuzz_parse_ingest_frame(
    text: &str,
    max_bytes: usize,
) -> Result<koto_protocol::ingest::RelayFrame, Box<ErrorFrame>> {
    ingest::parse_ingest_frame(text, max_bytes)
}

/// Fuzzing and corpus-replay entry (`fuzz/`): the parser of a `/ws/live` client's STOP.
#[doc(hidden)]
pub fn fuzz_parse_client_stop(
    text: &str,
    filter: &crate::ClientFilter,
) -> Result<(SessionId, String), ErrorFrame> {
    live_clients::parse_client_stop(text, filter)
}

/// Close codes the drivers use.
pub mod close_code {
    /// The relay shuts down, or the peer went silent past `peer_timeout`.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A live client too slow to keep up (it should reconnect).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the socket's size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// Why reading a socket failed, as far as closing it goes. Adapters map their library's errors
/// to it; `From<String>` makes any other failure `Broken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// A message over the size limit: the socket is closed with 1009.
    TooBig(String),
    /// A text message that is not UTF-8: the socket is closed with 1007.
    NotUtf8(String),
    /// The connection failed; nothing more is sent on it.
    Broken(String),
}

impl ReadError {
    /// The close frame this failure calls for; `None` when the connection is gone.
    pub fn closing(&self) -> Option<WsFrame> {
        match self {
            ReadError::TooBig(_) => Some(close(
                close_code::MESSAGE_TOO_BIG,
                "message too big for this socket",
            )),
            ReadError::NotUtf8(_) => Some(close(
                close_code::INVALID_PAYLOAD,
                "text frame is not valid UTF-8",
            )),
            ReadError::Broken(_) => None,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooBig(detail) => write!(f, "message too big: {detail}"),
            ReadError::NotUtf8(detail) => write!(f, "text frame is not UTF-8: {detail}"),
            ReadError::Broken(detail) => write!(f, "socket failed: {detail}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<String> for ReadError {
    fn from(detail: String) -> Self {
        ReadError::Broken(detail)
    }
}

/// `{"type":"ERROR","code":"…","message":"…"}`, sent back on either socket for a frame that was
/// refused; `sessionId`/`turn`/`seq` name the refused frame when they could be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "ERROR", rename_all = "camelCase")]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnNo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl ErrorFrame {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            code,
            message: message.into(),
            session_id: None,
            turn: None,
            seq: None,
        }
    }

    pub fn to_ws(&self) -> WsFrame {
        WsFrame::Text(serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"ERROR","code":"internal","message":"error frame could not be serialised"}"#
                .into()
        }))
    }
}

/// How long closing a socket may take before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

fn close(code: u16, reason: impl Into<String>) -> WsFrame {
    WsFrame::Close(Some((code, reason.into())))
}

/// Send one frame; `false` when the socket failed or did not take it within `limit` (a peer
/// that stopped reading), after which the connection is given up.
async fn send_frame<Tx>(sink: &mut Tx, frame: WsFrame, limit: Duration) -> bool
where
    Tx: Sink<WsFrame> + Unpin,
    Tx::Error: fmt::Display,
{
    match tokio::time::timeout(limit, sink.send(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "socket send failed");
            false
        }
        Err(_) => {
            tracing::debug!("socket send timed out");
            false
        }
    }
}

/// Send the closing frame (if any) and close the sink, each bounded by `limit`.
async fn finish<Tx>(sink: &mut Tx, closing: Option<WsFrame>, limit: Duration)
where
    Tx: Sink<WsFrame> + Unpin,
    Tx::Error: fmt::Display,
{
    if let Some(frame) = closing {
        send_frame(sink, frame, limit).await;
    }
    let _ = tokio::time::timeout(limit, sink.close()).await;
}
