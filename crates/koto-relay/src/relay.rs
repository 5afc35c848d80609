//! The relay handle: producers and clients attach here, STOPs start here, pacers are owned here.
//!
//! All relay state sits behind one std mutex that is never held across `.await`: every event is
//! a short synchronous step (queue a chunk, release due chunks, start or finish a STOP), which is
//! what makes fan-out order and the fences exact. It does not parse wire formats (`socket`) nor
//! validate ingest frames (`producer`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{ClientFilter, ClientLimits, Clients, DisconnectReason, LiveClient, LiveFrame};
use crate::config::RelayConfig;
use crate::metrics::RelayMetrics;
use crate::producer::Producer;
use crate::session::{PacerNext, Session, Stopping, stop_ack};
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

pub(crate) struct Inner {
    pub(crate) config: RelayConfig,
    state: Mutex<State>,
    /// Pacer tasks (one per session with queued audio or a STOP in flight).
    tasks: TaskTracker,
    /// Cancelled by `shutdown` or when the last handle drops: pacers, waiting producers and
    /// socket drivers end.
    pub(crate) shutdown: CancellationToken,
    /// The runtime the relay was created in: pacers started from a thread outside any runtime
    /// (a tray or hotkey callback calling `begin_stop`) run there.
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) struct State {
    next_id: u64,
    pub(crate) producers: Producers,
    pub(crate) sessions: HashMap<SessionId, Session>,
    pub(crate) clients: Clients,
    /// Counters only; gauges are filled in by `Relay::metrics`.
    pub(crate) metrics: RelayMetrics,
    pub(crate) shutting_down: bool,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Attached producers and where a STOP for a session goes.
#[derive(Default)]
pub(crate) struct Producers {
    entries: HashMap<u64, mpsc::Sender<Control>>,
    /// Default producers in attach order; the most recent live one takes unowned sessions.
    defaults: Vec<u64>,
}

impl Producers {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
        self.defaults.retain(|d| *d != id);
    }

    /// Hand `stop` to the session's owner, else to the default producer. Returns the producer
    /// that has it (or that could not take it right now: its timeout fences), `None` if no
    /// producer is there at all.
    fn deliver(&self, owner: Option<u64>, stop: &Control) -> Option<u64> {
        let candidates = owner.into_iter().chain(self.defaults.iter().rev().copied());
        for id in candidates {
            let Some(controls) = self.entries.get(&id) else {
                continue;
            };
            match controls.try_send(stop.clone()) {
                Ok(()) => return Some(id),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(producer = id, "producer is not reading its STOPs");
                    return Some(id);
                }
                // Its receiver is gone (it is detaching): try the next one.
                Err(mpsc::error::TrySendError::Closed(_)) => continue,
            }
        }
        None
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the relay; every step leaves the state consistent
        // before anything that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn limits(&self) -> ClientLimits {
        ClientLimits {
            queue_frames: self.config.client_queue_frames,
            drop_limit: self.config.client_drop_limit,
        }
    }

    /// Start the pacer of `session` (the caller claimed it with `Session::claim_pacer`).
    pub(crate) fn spawn_pacer(self: &Arc<Self>, session: SessionId, wake: Arc<Notify>) {
        let pacer = run_pacer(
            Arc::downgrade(self),
            session.clone(),
            wake,
            self.shutdown.clone(),
        );
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone());
        match runtime {
            Some(runtime) => {
                self.tasks.spawn_on(pacer, &runtime);
            }
            None => {
                tracing::error!(%session, "relay used outside a Tokio runtime: pacer not started");
                if let Some(state) = self.lock().sessions.get_mut(&session) {
                    state.pacer_running = false;
                }
            }
        }
    }

    /// One pacer step for `session`: release what is due, say when to look again.
    fn pace(&self, session: &SessionId) -> PacerNext {
        let limits = self.limits();
        let mut state = self.lock();
        let State {
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        let Some(session) = sessions.get_mut(session) else {
            return PacerNext::Idle;
        };
        let next = session.release_due(
            Instant::now(),
            self.config.audio_lead,
            clients,
            limits,
            metrics,
        );
        if next == PacerNext::Idle {
            session.pacer_running = false;
        }
        next
    }

    /// Detach a producer (its `Drop`): its sessions' STOPs go to the default producer again.
    pub(crate) fn detach_producer(&self, id: u64) {
        let limits = self.limits();
        let mut state = self.lock();
        let State {
            producers,
            sessions,
            clients,
            metrics,
            ..
        } = &mut *state;
        producers.remove(id);
        for session in sessions.values_mut() {
            if session.owner == Some(id) {
                session.owner = None;
            }
            if session.stopping.as_ref().is_some_and(|s| s.target == id) {
                // Its STOP_ACK can no longer come: fence now rather than at the timeout.
                metrics.stop_no_producer += 1;
                let fence = session.fence_everything_seen(clients, metrics);
                let ack = stop_ack(&session.id, fence, Some("producer_detached"));
                session.finish_stop(
                    &StopResolution::NoProducer { fence },
                    ack,
                    clients,
                    limits,
                    metrics,
                );
            }
        }
        tracing::debug!(producer = id, "producer detached");
    }
}

/// Get `id`'s state, creating it; past `max_sessions` the least recently active idle session is
/// forgotten first. `None` when every session is busy.
pub(crate) fn session_entry<'a>(
    sessions: &'a mut HashMap<SessionId, Session>,
    id: &SessionId,
    now: Instant,
    max_sessions: usize,
) -> Option<&'a mut Session> {
    if !sessions.contains_key(id) {
        if sessions.len() >= max_sessions {
            let oldest_idle = sessions
                .values()
                .filter(|s| s.is_idle())
                .min_by_key(|s| s.last_activity)
                .map(|s| s.id.clone())?;
            sessions.remove(&oldest_idle);
        }
        sessions.insert(id.clone(), Session::new(id.clone(), now));
    }
    let session = sessions.get_mut(id)?;
    session.last_activity = now;
    Some(session)
}

/// A session's pacer: releases its audio in real time and times out its STOP; ends when the
/// session is idle, on shutdown, or when the relay is gone.
async fn run_pacer(
    inner: Weak<Inner>,
    session: SessionId,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        // Only a weak handle between steps: a dropped relay is not kept alive by its pacers.
        let Some(relay) = inner.upgrade() else {
            return;
        };
        let next = relay.pace(&session);
        drop(relay);
        match next {
            PacerNext::Idle => return,
            PacerNext::At(deadline) => {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = wake.notified() => {}
                    () = sleep_until(deadline) => {}
                }
            }
        }
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

    /// The highest seq of `turn` released to clients so far (what was heard, up to the lead).
    /// Remembered for the session's last 16 turns with audio.
    pub fn released_seq(&self, session: &SessionId, turn: TurnNo) -> Option<u64> {
        self.inner.lock().sessions.get(session)?.released_seq(turn)
    }

    pub fn metrics(&self) -> RelayMetrics {
        let state = self.inner.lock();
        let mut metrics = state.metrics.clone();
        metrics.clients_connected = state.clients.connected();
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
