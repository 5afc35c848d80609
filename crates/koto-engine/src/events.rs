//! What a running turn tells its caller, and the handle that owns the turn.
//!
//! Dropping a [`TurnHandle`] cancels the turn: a client that disconnects stops the LLM and TTS
//! work exactly like a STOP.

use koto_core::{CorrelationId, SessionId, TurnNo};
use koto_protocol::WireError;
use koto_protocol::chat::{ControlEvent, TurnStats};
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

/// One SSE-worthy event of a turn, in CONTRACTS §1 order; `Done` is always last and always sent.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    TextDelta { content: String, eos: bool },
    Control(ControlEvent),
    Error(WireError),
    Done(TurnStats),
}

#[derive(Debug)]
pub struct TurnHandle {
    pub session: SessionId,
    pub turn: TurnNo,
    pub correlation_id: CorrelationId,
    /// Closed after `Done`.
    pub events: mpsc::Receiver<TurnEvent>,
    /// Cancels the turn when the handle is dropped (client went away).
    pub(crate) _cancel_on_drop: DropGuard,
}
