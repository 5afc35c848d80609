//! Live chat adapters: each platform is a [`ChatSource`] run by a supervisor task that reconnects
//! with backoff and jitter and publishes the adapter's [`AdapterHealth`].
//!
//! Invariants: an adapter never takes the engine down (every error is a health state and a log
//! line); every host and key comes from config, so tests run against loopback fakes; adapters only
//! produce [`ChatEvent`]s — picking, answering and retracting happen in the queue and the engine.

use std::future::Future;
use std::pin::Pin;

use koto_core::chat::{AdapterHealth, ChatEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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
#[derive(Debug)]
pub struct SourceContext {
    pub out: mpsc::Sender<ChatEvent>,
    pub health: watch::Sender<AdapterHealth>,
    pub cancel: CancellationToken,
}

pub type SourceFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send + 'a>>;

/// One platform connection. `run_once` connects, reads until the connection ends (or `cancel`),
/// and returns why; the supervisor calls it again after a backoff. State that must survive a
/// reconnect (YouTube's page token, Twitch's last message ids for dedupe) lives in `self`.
pub trait ChatSource: Send + 'static {
    /// `twitch`, `youtube`, `bilibili`.
    fn platform(&self) -> &'static str;
    /// The channel / video / room, for the panel (`#somechannel`).
    fn channel(&self) -> String;
    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a>;
}
