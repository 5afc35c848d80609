//! The library-neutral WebSocket message the socket drivers and the client frames speak (the
//! server adapts it to axum's, tests to tungstenite's). Its own module: frames (`client.rs`) are
//! encoded into it and the socket drivers read it, and neither needs the other for that.

/// A WebSocket message, library-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    /// Shared, not copied: one binary SPEECH_CHUNK goes to every binary client as is.
    Binary(bytes::Bytes),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Close with an optional (code, reason).
    Close(Option<(u16, String)>),
}
