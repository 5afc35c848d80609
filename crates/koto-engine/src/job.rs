//! A turn's job: what the engine hands the turn task (its session, number, input, token and
//! caller, and the engine's [`TurnServices`]) and the few things the task asks of them. Apart
//! from `turn.rs` so that the modules that read a job (`engine.rs` building it, `prompt_cache.rs`
//! warming from it) need not reach into the turn task; it carries `TurnServices`, not the
//! `Engine`, so nothing below `engine.rs` reaches back up to it.

use std::sync::Arc;

use koto_core::tts::{AudioChunk, Voice};
use koto_core::{CorrelationId, TurnNo};
use koto_protocol::ingest::RelayFrame;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::TurnEvent;
use crate::profile::Profile;
use crate::services::TurnServices;
use crate::session::{QueuePlace, SessionSlot};
use crate::speech::Speaker;
use crate::speech_turn::TurnSpeech;

pub(crate) struct TurnJob {
    pub services: Arc<TurnServices>,
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
        if let Some(producer) = &self.services.producer {
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
        if self.services.is_shutting_down() {
            "shutdown".to_owned()
        } else if let Some(reason) = self.slot.stop_reason(self.turn) {
            reason
        } else if self.events.is_closed() {
            "client_disconnected".to_owned()
        } else {
            "user_interrupt".to_owned()
        }
    }

    /// Speech for this turn, if speaking is on and there is a voice and a relay.
    pub(crate) fn start_speech(&self) -> Option<TurnSpeech> {
        let profile = &self.profile;
        if !profile.config.flags.tts_streaming {
            return None;
        }
        let voice = profile.voice.clone()?;
        let producer = self.services.producer.clone()?;
        let quick_ack = self.quick_ack(&voice);
        let speaker = Speaker {
            spoken: Arc::default(),
            voice,
            producer,
            slot: self.slot.clone(),
            session: self.slot.id.clone(),
            turn: self.turn,
            lang: self.lang.clone(),
            default_lang: profile.config.default_lang.clone(),
            correlation_id: self.correlation_id.to_string(),
            token: self.token.clone(),
            max_spoken: profile.config.max_reply_spoken,
            capped: CancellationToken::new(),
            quick_ack,
            veto_window: profile.config.veto_window,
        };
        Some(TurnSpeech::start(
            profile.config.segmenter.clone(),
            speaker,
            self.events.clone(),
            self.token.clone(),
            profile.config.output_filter.clone(),
        ))
    }

    /// The filler for this turn (`QUICK_ACK_MS`) and when it is due, if it is on, ready, and the
    /// turn speaks an LLM reply (a scripted `say` has its text at once).
    fn quick_ack(&self, voice: &Arc<dyn Voice>) -> Option<(Instant, Arc<[AudioChunk]>)> {
        let after = self.profile.config.quick_ack_after?;
        if self.script.is_some() {
            return None;
        }
        let acks = self.services.quick_acks.get(voice)?;
        let lang = koto_core::lang::speech_lang(
            &self.user_text,
            self.lang.as_deref(),
            &self.profile.config.default_lang,
        );
        let filler = acks.for_lang(lang.as_ref().map(|tag| tag.as_str()))?;
        Some((self.received_at + after, filler))
    }
}
