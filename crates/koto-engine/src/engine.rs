//! [`Engine`]: the one API the HTTP routes, Tauri commands and the benchmark drive.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use koto_core::llm::LlmProvider;
use koto_core::turn::{InputKind, InputMeta};
use koto_core::{CorrelationId, SessionId, TurnNo};
use koto_protocol::ErrorCode;
use koto_store::{NewTurn, Store};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

use crate::job::TurnJob;
use crate::metrics::EngineMetrics;
use crate::profile::{EngineConfig, Flags, Profile};
use crate::services::TurnServices;
use crate::store_calls::{blocking, kind_name, now_ms};
use crate::turn::run_turn;
use crate::{EngineError, TurnHandle};
use koto_core::memory::MemoryRecall;
use koto_core::metrics::Registry;
use koto_core::tts::Voice;
use koto_protocol::events::{UserInput, event_type, stream};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame};
use koto_relay::Relay;
use koto_store::NewOutboxEvent;

/// One input, already shape-checked by the caller (CONTRACTS §1).
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub session: SessionId,
    pub turn: Option<u64>,
    pub kind: InputKind,
    pub content: String,
    pub lang: Option<String>,
    /// Where the input came from (typed, mic, a chat platform); stored with the user row.
    pub meta: InputMeta,
    /// When the request arrived: `ttft_ms` and `first_audio_ms` count from here.
    pub received_at: Instant,
}

/// What `submit` started: a turn that streams, or a command that is already done.
#[derive(Debug)]
pub enum Submission {
    Turn(TurnHandle),
    /// `COMMAND stop`: the turns it cancelled.
    Stopped {
        turns: Vec<TurnNo>,
    },
    /// `COMMAND reset`: the session's window is empty now.
    Reset,
    /// `COMMAND forget <platform> <user id>`: a chat viewer's per-viewer memory is gone
    /// (`exchanges` removed).
    Forgot {
        exchanges: u64,
    },
}

/// What the engine speaks and listens with.
pub struct EngineParts {
    pub llm: Arc<dyn LlmProvider>,
    pub store: Store,
    /// `None`: text only.
    pub voice: Option<Arc<dyn Voice>>,
    /// Where audio and transcript frames go; STOPs come back from it.
    pub relay: Option<Relay>,
    /// Long-term memory for `ENABLE_LTM_INLINE`.
    pub recall: Option<Arc<dyn MemoryRecall>>,
    /// Where the engine's histograms go (`/metrics`).
    pub metrics: Option<Registry>,
}

/// The engine's answer to a STOP: which turns it cancelled. (How the relay's side of the
/// STOP ended is `koto_relay::StopResolution`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOutcome {
    /// Turns cancelled (running and queued); empty when nothing was running.
    pub stopped: Vec<TurnNo>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read at each submit; replaced whole by `reconfigure` (never held across an `.await`).
    profile: RwLock<Arc<Profile>>,
    /// What every turn's job carries: store, relay, sessions, shutdown token and the rest.
    services: Arc<TurnServices>,
    /// Owns every turn task, so shutdown can wait for them.
    tasks: TaskTracker,
}

/// How many events may wait for a slow SSE reader before the turn waits for it.
const EVENT_BUFFER: usize = 256;

impl Engine {
    /// Must run inside a tokio runtime when `parts.relay` is set: it starts the task that
    /// answers the relay's STOPs.
    pub fn new(config: EngineConfig, parts: EngineParts) -> Engine {
        let attached = parts
            .relay
            .as_ref()
            .map(|relay| relay.attach_producer(true));
        let (producer, control) = match attached {
            Some((producer, control)) => (Some(Arc::new(producer)), Some(control)),
            None => (None, None),
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                profile: RwLock::new(Arc::new(Profile {
                    config,
                    llm: parts.llm,
                    voice: parts.voice,
                })),
                services: Arc::new(TurnServices::new(
                    parts.store,
                    parts.relay,
                    producer,
                    parts.recall,
                    EngineMetrics::new(parts.metrics.as_ref()),
                )),
                tasks: TaskTracker::new(),
            }),
        };
        engine.prepare_quick_acks();
        if let Some(control) = control {
            engine
                .inner
                .tasks
                .spawn(engine.clone().answer_stops(control));
        }
        engine
    }

    /// The relay routes STOPs for our sessions here: cancel, fence, then `STOP_ACK`.
    async fn answer_stops(self, mut control: mpsc::Receiver<Control>) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.inner.services.root.cancelled() => return,
                next = control.recv() => next,
            };
            let Some(stop) = next else { return };
            if stop.action != ControlAction::Stop {
                continue;
            }
            let reason = stop.reason.as_deref().unwrap_or("user_interrupt");
            let stopped = self
                .inner
                .services
                .lock_sessions()
                .get(&stop.session_id)
                .cloned()
                .map(|slot| slot.cancel_all(reason));
            let turn = stopped.as_ref().and_then(|turns| turns.last().copied());
            tracing::info!(sessionId = %stop.session_id, ?turn, "stop from the relay");
            let ack = RelayFrame::Control(Control {
                action: ControlAction::StopAck,
                session_id: stop.session_id,
                turn,
                reason: None,
            });
            if let Some(producer) = &self.inner.services.producer {
                let _ = producer.send(ack).await;
            }
        }
    }

    /// Sends a frame that belongs to no turn (live chat's `CHAT_DECISION`) to the session's
    /// `/ws/live` clients, through the engine's own producer so the session's STOPs still come
    /// to the engine. Dropped without a relay.
    pub async fn publish(&self, frame: RelayFrame) {
        if let Some(producer) = &self.inner.services.producer {
            let _ = producer.send(frame).await;
        }
    }

    pub fn relay(&self) -> Option<&Relay> {
        self.inner.services.relay.as_ref()
    }

    /// The voice the next turn speaks with.
    pub fn voice(&self) -> Option<Arc<dyn Voice>> {
        self.profile().voice.clone()
    }

    /// Barge-in: the one STOP behind the button, the hotkey, the tray, `POST /control/stop`,
    /// `COMMAND stop` and the original protocol (`/ws/live` clients reach the same relay STOP).
    /// With a relay, the STOP goes through it (so it fences the session's queued audio at once)
    /// and returns after the producer's `STOP_ACK`; without one, the session's turns are
    /// cancelled directly. The turns record what was heard after that fence.
    pub async fn interrupt(
        &self,
        session: &SessionId,
        reason: &str,
    ) -> Result<StopOutcome, EngineError> {
        if !self.flags().barge_in {
            return Err(EngineError::BargeInDisabled);
        }
        let slot = self.inner.services.lock_sessions().get(session).cloned();
        let in_flight = slot.map(|slot| slot.in_flight()).unwrap_or_default();
        match &self.inner.services.relay {
            Some(relay) => {
                let asked = tokio::time::Instant::now();
                let outcome = relay.stop(session, reason).await;
                if let Some(histogram) = &self.inner.services.metrics.stop {
                    histogram.observe(asked.elapsed().as_secs_f64());
                }
                tracing::debug!(sessionId = %session, ?outcome, "stop answered");
                Ok(StopOutcome { stopped: in_flight })
            }
            None => Ok(StopOutcome {
                stopped: self.cancel_session(session, reason),
            }),
        }
    }

    /// What the next turn will be answered with.
    pub fn profile(&self) -> Arc<Profile> {
        self.inner
            .profile
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Answers the turns submitted from now on with `profile` (a settings change while the
    /// app runs). Turns already submitted finish with the profile they started with; the old
    /// providers are dropped when the last of them ends.
    pub fn reconfigure(&self, profile: Profile) {
        tracing::info!(?profile, "profile replaced for the next turns");
        *self
            .inner
            .profile
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(profile);
        self.prepare_quick_acks();
    }

    /// True once the current voice's quick-acknowledgment fillers are made (`QUICK_ACK_MS`);
    /// a turn before that plays none.
    pub fn quick_acks_ready(&self) -> bool {
        self.profile()
            .voice
            .as_ref()
            .is_some_and(|voice| self.inner.services.quick_acks.get(voice).is_some())
    }

    /// Makes the voice's fillers in the background when `QUICK_ACK_MS` is on.
    fn prepare_quick_acks(&self) {
        let profile = self.profile();
        if profile.config.quick_ack_after.is_none() {
            return;
        }
        if let Some(voice) = &profile.voice
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.inner.services.quick_acks.prepare(voice);
        }
    }

    pub fn flags(&self) -> Flags {
        self.profile().config.flags.clone()
    }

    /// The LLM the next turn streams from.
    pub fn llm(&self) -> Arc<dyn LlmProvider> {
        self.profile().llm.clone()
    }

    pub fn store(&self) -> &Store {
        &self.inner.services.store
    }

    /// Turns accepted and not yet finished, per session (for live chat's "not while the
    /// streamer talks").
    pub fn turns_in_flight(&self) -> Vec<(SessionId, Vec<TurnNo>)> {
        self.inner
            .services
            .lock_sessions()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.in_flight()))
            .filter(|(_, turns)| !turns.is_empty())
            .collect()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.services.is_shutting_down()
    }

    /// Validates and starts one input. A turn is stored (user row) before this returns, so a
    /// duplicate turn number is refused here, not mid-stream.
    pub async fn submit(&self, request: TurnRequest) -> Result<Submission, EngineError> {
        let profile = self.profile();
        let flags = &profile.config.flags;
        if !flags.sync_core {
            return Err(EngineError::SyncCoreDisabled);
        }
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let content = request.content.trim();
        if content.is_empty() {
            return Err(EngineError::invalid(
                ErrorCode::EmptyContent,
                "content must not be blank",
            ));
        }
        let n_chars = request.content.chars().count();
        let max = profile.config.max_content_chars;
        if n_chars > max {
            return Err(EngineError::invalid(
                ErrorCode::ContentTooLong,
                format!("content has {n_chars} characters; the limit is {max}"),
            ));
        }
        if request.kind == InputKind::Command {
            if let Some(script) = say_text(content) {
                let user_text = content.to_owned();
                let script = Some(script.to_owned());
                return self
                    .start_turn(profile, request, user_text, script)
                    .await
                    .map(Submission::Turn);
            }
            return self.run_command(&request.session, content).await;
        }
        let text = request.content.clone();
        self.start_turn(profile, request, text, None)
            .await
            .map(Submission::Turn)
    }

    async fn run_command(
        &self,
        session: &SessionId,
        content: &str,
    ) -> Result<Submission, EngineError> {
        let (verb, rest) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        match verb.to_ascii_lowercase().as_str() {
            "stop" => self
                .interrupt(session, "user_interrupt")
                .await
                .map(|outcome| Submission::Stopped {
                    turns: outcome.stopped,
                }),
            "reset" => self.reset(session).await.map(|()| Submission::Reset),
            "forget" => {
                let mut words = rest.split_whitespace();
                let (Some(platform), Some(user_id), None) =
                    (words.next(), words.next(), words.next())
                else {
                    return Err(EngineError::invalid(
                        ErrorCode::InvalidRequest,
                        "forget needs the viewer: forget <platform> <user id>",
                    ));
                };
                let store = self.inner.services.store.clone();
                let (platform, user_id) = (platform.to_ascii_lowercase(), user_id.to_owned());
                blocking(move || store.forget_viewer(&platform, &user_id))
                    .await
                    .map(|exchanges| Submission::Forgot { exchanges })
            }
            "say" if rest.trim().is_empty() => Err(EngineError::invalid(
                ErrorCode::EmptyContent,
                "say needs the text to speak: say <text>",
            )),
            _ => Err(EngineError::UnknownCommand(verb.to_owned())),
        }
    }

    /// Without a relay: cancels the session's running turn and the turns queued behind it.
    /// Harmless when nothing runs. Returns the turns it cancelled.
    fn cancel_session(&self, session: &SessionId, reason: &str) -> Vec<TurnNo> {
        let slot = self.inner.services.lock_sessions().get(session).cloned();
        let stopped = slot.map(|slot| slot.cancel_all(reason)).unwrap_or_default();
        tracing::info!(sessionId = %session, ?stopped, "stop");
        stopped
    }

    /// `COMMAND reset`: the session's short-term memory window starts empty from the next turn.
    pub async fn reset(&self, session: &SessionId) -> Result<(), EngineError> {
        let store = self.inner.services.store.clone();
        let session = session.clone();
        blocking(move || store.reset_session(&session)).await
    }

    /// Cancel every turn, refuse new ones, and wait (up to `grace`) for the turns to record how
    /// they ended.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.services.root.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "turns still running after the shutdown grace period"
            );
        }
    }

    async fn start_turn(
        &self,
        profile: Arc<Profile>,
        request: TurnRequest,
        user_text: String,
        script: Option<String>,
    ) -> Result<TurnHandle, EngineError> {
        let slot = self.inner.services.slot(&request.session);
        let store = self.inner.services.store.clone();
        let session = request.session.clone();
        slot.ensure_loaded(|| async move {
            let state = blocking(move || store.session_state(&session)).await?;
            Ok(state.next_turn.0)
        })
        .await?;

        let turn_token = self.inner.services.root.child_token();
        let place = slot.reserve(request.turn, turn_token.clone())?;
        let turn = place.turn;
        let begin = NewTurn {
            session: request.session.clone(),
            turn,
            user_text: user_text.clone(),
            kind: kind_name(request.kind).to_owned(),
            meta: (!request.meta.is_typed()).then(|| request.meta.clone()),
            ts_ms: now_ms(),
        };
        let user_input = profile
            .config
            .flags
            .async_ext
            .then(|| user_input_event(&begin, request.lang.clone()));
        let store = self.inner.services.store.clone();
        let begun = blocking(move || match user_input {
            Some(event) => store.begin_turn_with_events(&begin, &[event]).map(|_| ()),
            None => store.begin_turn(&begin),
        });
        // A turn number the engine chose cannot exist in the store (one process owns it), so its
        // user row is written beside the LLM request instead of before it: the write then stays
        // off the TTFT path even while a worker holds SQLite's write lock. A number the client
        // chose may collide with a stored turn, so that one is written first (409 before SSE).
        let mut user_row = None;
        if request.turn.is_none() {
            user_row = Some(AbortOnDropHandle::new(tokio::spawn(begun)));
        } else if let Err(error) = begun.await {
            slot.release(turn);
            self.inner.services.forget_if_idle(slot);
            return Err(match error {
                EngineError::Storage(koto_store::StoreError::TurnExists { .. }) => {
                    EngineError::TurnExists { turn }
                }
                other => other,
            });
        }

        let correlation_id = CorrelationId::new(&request.session, turn);
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let job = TurnJob {
            services: self.inner.services.clone(),
            profile,
            slot,
            turn,
            queue_place: place,
            user_row,
            correlation_id: correlation_id.clone(),
            user_text,
            script,
            lang: request.lang,
            viewer: crate::context::viewer_of(&request.meta),
            received_at: request.received_at,
            token: turn_token.clone(),
            events: events_tx,
        };
        let span = tracing::info_span!("turn", correlationId = %correlation_id);
        self.inner.tasks.spawn(run_turn(job).instrument(span));
        Ok(TurnHandle {
            session: request.session,
            turn,
            correlation_id,
            events: events_rx,
            _cancel_on_drop: turn_token.drop_guard(),
        })
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("profile", &self.profile())
            .finish_non_exhaustive()
    }
}

/// `UserInput` for plugins, written with the user row in one transaction.
fn user_input_event(turn: &NewTurn, lang: Option<String>) -> NewOutboxEvent {
    let correlation_id = CorrelationId::new(&turn.session, turn.turn).to_string();
    let payload = UserInput {
        correlation_id: correlation_id.clone(),
        session_id: turn.session.clone(),
        turn: turn.turn,
        kind: turn.kind.clone(),
        content: turn.user_text.clone(),
        lang,
        meta: turn.meta.clone(),
        ts: turn.ts_ms,
    };
    NewOutboxEvent {
        event_type: event_type::USER_INPUT.to_owned(),
        stream: stream::PLUGINS.to_owned(),
        correlation_id,
        payload: serde_json::to_value(&payload).unwrap_or(serde_json::Value::Null),
        ts_ms: turn.ts_ms,
    }
}

/// `say <text>` → the text to speak verbatim.
fn say_text(command: &str) -> Option<&str> {
    let (verb, rest) = command.split_once(char::is_whitespace)?;
    (verb.eq_ignore_ascii_case("say") && !rest.trim().is_empty()).then(|| rest.trim())
}
