//! One IRC connection as lines in and out, over plain TCP (`irc://host:port`) or a WebSocket
//! (`ws://`, `wss://`; Twitch sends several `\r\n`-separated lines per text frame).
//!
//! Lines are capped in length and decoded lossily, so a hostile server can neither exhaust memory
//! nor end the reader with bad UTF-8. No IRC semantics here.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::SourceError;

/// Longer lines are dropped whole (Twitch's own limit is 8 KiB of tags plus 512 bytes).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

pub enum IrcConnection {
    Tcp {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
        /// The line read so far: kept here, not in the read future, so a read dropped by a
        /// `select!` (our PING timer) loses nothing.
        partial: Vec<u8>,
        /// The current line went over the limit: skip to its end.
        oversized: bool,
    },
    WebSocket {
        socket: Box<WebSocketStream<MaybeTlsStream<TcpStream>>>,
        pending: VecDeque<String>,
    },
}

/// What one read gave.
pub enum Read {
    Line(String),
    /// A line over [`MAX_LINE_BYTES`] was skipped.
    Oversized,
    Closed,
}

impl IrcConnection {
    pub async fn connect(url: &str) -> Result<IrcConnection, SourceError> {
        if let Some(address) = url.strip_prefix("irc://") {
            let address = address.trim_end_matches('/');
            let stream = TcpStream::connect(address)
                .await
                .map_err(|error| SourceError::Transport(format!("{address}: {error}")))?;
            let (read, writer) = stream.into_split();
            Ok(IrcConnection::Tcp {
                reader: BufReader::new(read),
                writer,
                partial: Vec::new(),
                oversized: false,
            })
        } else if url.starts_with("ws://") || url.starts_with("wss://") {
            let socket = crate::connect_ws(url).await?;
            Ok(IrcConnection::WebSocket {
                socket: Box::new(socket),
                pending: VecDeque::new(),
            })
        } else {
            Err(SourceError::Config(format!(
                "TWITCH_IRC_URL must start with irc:// (plain TCP), ws:// or wss://, got {url:?}"
            )))
        }
    }

    pub async fn send(&mut self, line: &str) -> Result<(), SourceError> {
        let sent = match self {
            IrcConnection::Tcp { writer, .. } => writer
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .map_err(|error| error.to_string()),
            IrcConnection::WebSocket { socket, .. } => socket
                .send(Message::text(line))
                .await
                .map_err(|error| error.to_string()),
        };
        sent.map_err(SourceError::Transport)
    }

    /// The next line. Cancel-safe: a dropped read keeps what it had read in `self`.
    pub async fn read(&mut self) -> Result<Read, SourceError> {
        match self {
            IrcConnection::Tcp {
                reader,
                partial,
                oversized,
                ..
            } => read_tcp_line(reader, partial, oversized).await,
            IrcConnection::WebSocket { socket, pending } => loop {
                if let Some(line) = pending.pop_front() {
                    return Ok(Read::Line(line));
                }
                let frame = match socket.next().await {
                    None => return Ok(Read::Closed),
                    Some(Err(error)) => return Err(SourceError::Transport(error.to_string())),
                    Some(Ok(frame)) => frame,
                };
                let text = match frame {
                    Message::Text(text) => text.as_str().to_owned(),
                    Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Message::Close(_) => return Ok(Read::Closed),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                let mut oversized = false;
                for line in text.split(['\r', '\n']).filter(|line| !line.is_empty()) {
                    if line.len() > MAX_LINE_BYTES {
                        oversized = true;
                    } else {
                        pending.push_back(line.to_owned());
                    }
                }
                if oversized && pending.is_empty() {
                    return Ok(Read::Oversized);
                }
            },
        }
    }
}

async fn read_tcp_line(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    oversized: &mut bool,
) -> Result<Read, SourceError> {
    loop {
        // `fill_buf` is cancel-safe, and nothing below awaits before `consume`.
        let buffer = reader
            .fill_buf()
            .await
            .map_err(|error| SourceError::Transport(error.to_string()))?;
        if buffer.is_empty() {
            return Ok(Read::Closed);
        }
        let (used, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        if !*oversized {
            line.extend_from_slice(&buffer[..used]);
            if line.len() > MAX_LINE_BYTES + 2 {
                // Keep reading to the newline, but stop storing.
                *oversized = true;
                line.clear();
            }
        }
        reader.consume(used);
        if done {
            let text = std::mem::take(line);
            if std::mem::take(oversized) {
                return Ok(Read::Oversized);
            }
            let text = String::from_utf8_lossy(&text);
            return Ok(Read::Line(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
    }
}
