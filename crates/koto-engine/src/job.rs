//! A turn's job: what the engine hands the turn task (its session, number, input, token and
//! caller) and the few things the task asks of it. Apart from `turn.rs` so that the modules that
//! read a job (`engine.rs` building it, `prompt_cache.rs` warming from it) need not reach into
//! the turn task, nor the turn task back into `engine.rs`.

use std::sync::Arc;

use koto_core::{CorrelationId, TurnNo};
use koto_protocol::ingest::RelayFrame;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::TurnEvent;
use crate::engine::Engine;
use crate::profile::Profile;
use crate::session::{QueuePlace, SessionSlot};

pub(crate) struct TurnJob {
    pub engine: Engine,
    /// The settings and providers this turn was submitted under, kept to its end.
    pub profile: Arc<Profile>,
    pub slot: Arc<SessionSlot>,
    pub turn: TurnNo,
    /// Where this turn stands in its session's queue; dropped (releasing the next) at the end.
    pub queue_place: QueuePlace,
    /// The user row being written beside the LLM request (automatic turn numbers); awaited
    /// before the turn's ending is recorded, which needs it.
    pub user_row: Option<AbortOnDropHandle<Result<(), crate::EngineError>>>,
    pub correlation_id: CorrelationId,
    pub user_text: String,
    /// `say <text>`: speak this text instead of asking the LLM.
    pub script: Option<String>,
    pub lang: Option<String>,
    /// The chat viewer who wrote the input (named in the prompt); `None` for the streamer.
    pub viewer: Option<koto_store::ContextViewer>,
    pub received_at: Instant,
    /// Cancelled by STOP, by the caller dropping its handle, or by shutdown.
    pub token: CancellationToken,
    /// To the caller (SSE); its receiver may be gone.
    pub events: mpsc::Sender<TurnEvent>,
}

impl TurnJob {
    /// Transcript frames for `/ws/live` clients; never holds the turn up for long.
    pub(crate) async fn publish(&self, frame: RelayFrame) {
        if let Some(producer) = self.engine.producer() {
            let _ = producer.send(frame).await;
        }
    }

    pub(crate) async fn emit(&self, event: TurnEvent) {
        // The caller may be gone (disconnect); the turn still finishes and is recorded.
        let _ = self.events.send(event).await;
    }

    /// Why the turn was interrupted: shutdown, else the STOP's own reason (`user_interrupt`,
    /// `retracted`), else its caller went away.
    pub(crate) fn interrupt_reason(&self) -> String {
        if self.engine.is_shutting_down() {
            "shutdown".to_owned()
        } else if let Some(reason) = self.slot.stop_reason(self.turn) {
            reason
        } else if self.events.is_closed() {
            "client_disconnected".to_owned()
        } else {
            "user_interrupt".to_owned()
        }
    }
}
