//! The relay handle: producers and clients attach here, STOPs start here. Its state, the
//! producer registry and the pacers live in `state`, which producers and clients share.
//!
//! All relay state sits behind one std mutex that is never held across `.await`: every event is
//! a short synchronous step (queue a chunk, release due chunks, start or finish a STOP), which is
//! what makes fan-out order and the fences exact. It does not parse wire formats (`socket`) nor
//! validate ingest frames (`producer`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{ClientFilter, ClientRole, Clients, DisconnectReason, LiveFrame};
use crate::config::RelayConfig;
use crate::live_client::LiveClient;
use crate::metrics::RelayMetrics;
use crate::producer::Producer;
use crate::session::{Paused, Stopping, pause_frame, stop_ack};
use crate::state::{Inner, Producers, State, session_entry};
use crate::stop::{PendingStop, StopResolution};

/// STOPs a producer has not read yet; past this the producer is not listening and the STOP's
/// timeout fences for it.
const PRODUCER_CONTROL_QUEUE: usize = 64;

/// The output relay. Cheap to clone; every clone is the same relay.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Create the relay. Create it inside a Tokio runtime: its pacers run there, so every
    /// method may then be called from any thread (`begin_stop` from a tray callback, say).
    pub fn new(config: RelayConfig) -> Relay {
        Relay {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    next_id: 0,
                    producers: Producers::default(),
                    sessions: HashMap::new(),
                    clients: Clients::default(),
                    metrics: RelayMetrics::default(),
                    shutting_down: false,
                }),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// Cancelled when the relay shuts down; socket drivers close their sockets on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Attach a producer: the in-process engine (`default = true`) or one `/ws/ingest`
    /// connection. The receiver gets CONTROL STOP for every session this producer owns (sent a
    /// frame for last) and, for a default producer, for sessions no live producer owns. The
    /// producer must answer each with STOP_ACK. Dropping the `Producer` detaches it.
    pub fn attach_producer(&self, default: bool) -> (Producer, mpsc::Receiver<Control>) {
        let (controls, receiver) = mpsc::channel(PRODUCER_CONTROL_QUEUE);
        let mut state = self.inner.lock();
        let id = state.next_id();
        state.producers.entries.insert(id, controls);
        if default {
            state.producers.defaults.push(id);
        }
        drop(state);
        tracing::debug!(producer = id, default, "producer attached");
        (Producer::new(Arc::clone(&self.inner), id), receiver)
    }

    /// Subscribe a live client. Its queue is bounded; see [`ClientFilter`] and
    /// [`DisconnectReason`].
    pub fn subscribe(&self, filter: ClientFilter) -> LiveClient {
        let mut state = self.inner.lock();
        let id = state.next_id();
        let closed = state.shutting_down;
        let wake = state.clients.insert(id, filter.clone(), closed);
        drop(state);
        LiveClient {
            inner: Arc::clone(&self.inner),
            id,
            wake,
            filter,
        }
    }

    /// STOP `session` (a client, `POST /control/stop`, the tray) and wait for the outcome.
    /// Equivalent to `begin_stop(..).outcome().await`.
    pub async fn stop(&self, session: &SessionId, reason: &str) -> StopResolution {
        self.begin_stop(session, reason).outcome().await
    }

    /// STOP `session`, synchronously: its queued audio is dropped, clients get CONTROL STOP and
    /// lose their buffered audio of the session, every chunk/END of the session is dropped
    /// until the producer's STOP_ACK (or `stop_ack_timeout`), and CONTROL STOP goes to the
    /// session's producer only. Other sessions are untouched. A repeated STOP while one is in
    /// flight joins it. The returned [`PendingStop`] may be dropped.
    pub fn begin_stop(&self, session_id: &SessionId, reason: &str) -> PendingStop {
        let now = Instant::now();
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return PendingStop::ready(StopResolution::ShuttingDown);
        }
        state.metrics.stops += 1;
        let State {
            producers,
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let Some(session) =
            session_entry(sessions, session_id, now, self.inner.config.max_sessions)
        else {
            // Every known session is busy and this one has no state: nothing of it is queued
            // or playing, and no producer owns it. Clients still learn about the STOP.
            metrics.stop_no_producer += 1;
            let stop = stop_frame(session_id, reason);
            clients.fan_out(&LiveFrame::new(RelayFrame::Control(stop)), limits, metrics);
            clients.fan_out(
                &stop_ack(session_id, None, Some("no_producer")),
                limits,
                metrics,
            );
            return PendingStop::ready(StopResolution::NoProducer { fence: None });
        };
        let (answer, receiver) = oneshot::channel();
        if let Some(stopping) = &mut session.stopping {
            stopping.waiters.push(answer);
            return PendingStop::waiting(receiver);
        }
        tracing::info!(session = %session_id, reason, "STOP");
        // Control beats data: the relay's queue and every client's buffer lose the session's
        // audio now, before anyone is asked anything.
        session.clear_queue(metrics);
        session.clock = None;
        session.paused = None;
        clients.purge_audio(session_id, None);
        let stop = stop_frame(session_id, reason);
        clients.fan_out(
            &LiveFrame::new(RelayFrame::Control(stop.clone())),
            limits,
            metrics,
        );
        let Some(target) = producers.deliver(session.owner, &stop) else {
            metrics.stop_no_producer += 1;
            let fence = session.fence_everything_seen(clients, metrics);
            let ack = stop_ack(session_id, fence, Some("no_producer"));
            session.finish_stop(
                &StopResolution::NoProducer { fence },
                ack,
                clients,
                limits,
                metrics,
            );
            return PendingStop::ready(StopResolution::NoProducer { fence });
        };
        session.stopping = Some(Stopping {
            started: now,
            deadline: now + self.inner.config.stop_ack_timeout,
            target,
            waiters: vec![answer],
        });
        // The pacer owns the STOP's deadline.
        let spawn = session.claim_pacer().then(|| Arc::clone(&session.wake));
        drop(state);
        if let Some(wake) = spawn {
            self.inner.spawn_pacer(session_id.clone(), wake);
        }
        PendingStop::waiting(receiver)
    }

    /// The producer stopped `turn` by itself (its caller went away, shutdown, a failure): the
    /// same fence as a STOP, for that one turn. Its queued audio and END are dropped, clients
    /// lose its buffered audio and get CONTROL STOP and STOP_ACK for it — unless a STOP already
    /// covers it (whose STOP_ACK is sent, or will be). Later turns are untouched. `true` if this
    /// call fenced the turn; after it returns, nothing of the turn is released any more.
    pub fn fence_turn(&self, session_id: &SessionId, turn: TurnNo, reason: &str) -> bool {
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return false;
        }
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let max_sessions = self.inner.config.max_sessions;
        let Some(session) = session_entry(sessions, session_id, Instant::now(), max_sessions)
        else {
            return false;
        };
        if session.fence.is_some_and(|fence| turn <= fence) {
            return false;
        }
        session.raise_fence(turn, clients, metrics);
        if session.stopping.is_some() {
            return true;
        }
        metrics.stops += 1;
        tracing::info!(session = %session_id, %turn, reason, "turn fenced by its producer");
        let stop = Control {
            action: ControlAction::Stop,
            session_id: session_id.clone(),
            turn: Some(turn),
            reason: Some(reason.to_owned()),
        };
        clients.fan_out(&LiveFrame::new(RelayFrame::Control(stop)), limits, metrics);
        let outcome = StopResolution::Acked {
            turn: Some(turn),
            latency: Duration::ZERO,
        };
        let ack = stop_ack(session_id, Some(turn), Some(reason));
        session.finish_stop(&outcome, ack, clients, limits, metrics);
        true
    }

    /// Hold `session`'s audio (a voice barge-in's duck): clients get CONTROL PAUSE and hold
    /// what they have; nothing more is released until [`Relay::resume`], a STOP, or `max` has
    /// passed; nothing is dropped. `false` while a STOP is in flight or shutting down.
    pub fn pause(&self, session_id: &SessionId, max: Duration) -> bool {
        let now = Instant::now();
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return false;
        }
        let max_sessions = self.inner.config.max_sessions;
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let Some(session) = session_entry(sessions, session_id, now, max_sessions) else {
            return false;
        };
        if session.stopping.is_some() {
            return false;
        }
        let first = session.paused.is_none();
        let since = session.paused.map_or(now, |paused| paused.since);
        session.paused = Some(Paused {
            since,
            until: now + max,
        });
        metrics.pauses += 1;
        if first {
            // Control beats data: clients hold what they have now, before any more is queued.
            clients.fan_out(
                &pause_frame(session_id, ControlAction::Pause),
                limits,
                metrics,
            );
        }
        // A pacer sleeping until a chunk is due must see the pause now.
        session.wake.notify_one();
        true
    }

    /// Lift a pause: clients get RESUME and release continues where it stopped. `false` if
    /// there was none (a STOP or the pause's own limit ended it first).
    pub fn resume(&self, session_id: &SessionId) -> bool {
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let Some(session) = sessions.get_mut(session_id) else {
            return false;
        };
        if !session.resume_at(Instant::now(), clients, limits, metrics) {
            return false;
        }
        let spawn =
            (!session.queue.is_empty() && session.claim_pacer()).then(|| Arc::clone(&session.wake));
        session.wake.notify_one();
        drop(state);
        if let Some(wake) = spawn {
            self.inner.spawn_pacer(session_id.clone(), wake);
        }
        true
    }

    /// Whether `session` is paused.
    pub fn is_paused(&self, session_id: &SessionId) -> bool {
        self.inner
            .lock()
            .sessions
            .get(session_id)
            .is_some_and(|session| session.paused.is_some())
    }

    /// Fan out a frame the app itself makes for clients (the microphone's `MIC_LEVEL`,
    /// `ASR_PARTIAL`, `VOICE_DROPPED`): unpaced, never queued behind audio, owned by no
    /// producer (a STOP's routing does not change).
    pub fn publish(&self, frame: RelayFrame) {
        let limits = self.inner.limits();
        let mut state = self.inner.lock();
        if state.shutting_down {
            return;
        }
        let State {
            clients, metrics, ..
        } = &mut *state;
        clients.fan_out(&LiveFrame::new(frame), limits, metrics);
    }

    /// The highest seq of `turn` released to clients so far (what was heard, up to the lead).
    /// Remembered for the session's last 16 turns with audio.
    pub fn released_seq(&self, session: &SessionId, turn: TurnNo) -> Option<u64> {
        self.inner.lock().sessions.get(session)?.released_seq(turn)
    }

    pub fn metrics(&self) -> RelayMetrics {
        let state = self.inner.lock();
        let mut metrics = state.metrics.clone();
        metrics.clients_connected = state.clients.connected();
        metrics.overlays_connected = state.clients.connected_as(ClientRole::Overlay);
        metrics.producers = state.producers.len();
        metrics.sessions = state.sessions.len();
        metrics.pacers_active = state.sessions.values().filter(|s| s.pacer_running).count();
        metrics
    }

    /// Count frames a socket driver refused (invalid JSON, unknown type, binary on ingest).
    pub(crate) fn count_malformed(&self) {
        self.inner.lock().metrics.frames_malformed += 1;
    }

    pub(crate) fn count_client_rejected(&self) {
        self.inner.lock().metrics.client_messages_rejected += 1;
    }

    /// Shut down: clients are disconnected, waiting producers and pending STOPs are released,
    /// pacers end, socket drivers close. Waits up to `grace` for the pacers; `true` if they all
    /// ended.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        {
            let mut state = self.inner.lock();
            state.shutting_down = true;
            state.clients.close_all(DisconnectReason::ShuttingDown);
            for session in state.sessions.values_mut() {
                if let Some(stopping) = session.stopping.take() {
                    for waiter in stopping.waiters {
                        let _ = waiter.send(StopResolution::ShuttingDown);
                    }
                }
                // Nothing more is released: dropping the queue tells END waiters "not played".
                session.queue.clear();
                session.queued_audio = Duration::ZERO;
                session.space.notify_waiters();
            }
        }
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}

fn stop_frame(session: &SessionId, reason: &str) -> Control {
    Control {
        action: ControlAction::Stop,
        session_id: session.clone(),
        turn: None,
        reason: Some(reason.to_owned()),
    }
}
