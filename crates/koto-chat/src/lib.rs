//! Live chat adapters: each platform is a [`ChatSource`] run by a supervisor task that reconnects
//! with backoff and jitter and publishes the adapter's [`AdapterHealth`].
//!
//! Invariants: an adapter never takes the engine down (every error is a health state and a log
//! line); every host and key comes from config, so tests run against loopback fakes; adapters only
//! produce [`ChatEvent`]s — picking, answering and retracting happen in the queue and the engine.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use koto_core::chat::{AdapterHealth, ChatEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub mod bilibili;
pub mod supervisor;
pub mod twitch;
pub mod youtube;

pub use supervisor::{AdapterStatus, ChatAdapters, SupervisorOptions};

/// Why one connection of an adapter ended; the supervisor maps it to a health state and decides
/// whether and when to reconnect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("could not reach the platform: {0}")]
    Transport(String),
    /// The platform sent something we do not understand (it may have changed its protocol).
    #[error("unexpected data from the platform: {0}")]
    Protocol(String),
    /// Credentials refused or expired: reconnecting will not help until the user acts.
    #[error("the platform refused the credentials: {0}")]
    Auth(String),
    /// Nothing (no message, no heartbeat) for longer than the stale bound.
    #[error("no message or heartbeat for {0} s")]
    Stale(u64),
    /// Configured wrongly (missing channel, bad URL): reconnecting will not help.
    #[error("{0}")]
    Config(String),
}

/// What one connection gets from its supervisor.
///
/// `out` is the queue's intake (the server owns the receiver; a closed receiver ends the adapter
/// as cancelled). Health and activity go through the methods so the supervisor sees them.
#[derive(Debug)]
pub struct SourceContext {
    pub out: mpsc::Sender<ChatEvent>,
    pub cancel: CancellationToken,
    pub(crate) status: Arc<Mutex<supervisor::Slot>>,
    pub(crate) changes: watch::Sender<u64>,
}

impl SourceContext {
    /// Publish a health state (the supervisor keeps `since_ms` of the last change).
    pub fn set_health(&self, health: AdapterHealth) {
        if supervisor::set_health(&self.status, health) {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Anything arrived (a heartbeat, a PING, a frame): resets the stale watchdog.
    pub fn heard(&self) {
        supervisor::heard(&self.status, false);
    }

    /// Hand an event to the queue. `false` when the receiver is gone (the adapter should stop).
    pub async fn emit(&self, event: ChatEvent) -> bool {
        supervisor::heard(&self.status, true);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.out.send(event) => sent.is_ok(),
        }
    }
}

pub type SourceFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send + 'a>>;

/// One platform connection. `run_once` connects, reads until the connection ends (or `cancel`),
/// and returns why; the supervisor calls it again after a backoff. State that must survive a
/// reconnect (YouTube's page token, Twitch's last message ids for dedupe) lives in `self`.
///
/// The supervisor may drop the future of `run_once` (stale watchdog), so it must hold no state
/// that dropping would corrupt; a clean goodbye (Bilibili's `/v2/app/end`) is done on `cancel`.
pub trait ChatSource: Send + 'static {
    /// `twitch`, `youtube`, `bilibili`.
    fn platform(&self) -> &'static str;
    /// The channel / video / room, for the panel (`#somechannel`).
    fn channel(&self) -> String;
    /// How long without any frame (message or heartbeat) before the connection counts as stale
    /// and is replaced.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(90)
    }
    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a>;
}

/// Largest WebSocket message an adapter accepts: chat frames are small (Bilibili's compressed
/// bundles included), so a bigger one is a broken or hostile server, not chat.
pub const MAX_WS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Connect a chat WebSocket with the size bound above.
pub(crate) async fn connect_ws(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    SourceError,
> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES));
    tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map(|(socket, _)| socket)
        .map_err(|error| SourceError::Transport(format!("{url}: {error}")))
}

/// Milliseconds since the epoch, for `received_ms` and the status timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
