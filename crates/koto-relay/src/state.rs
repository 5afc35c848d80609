//! The relay's state behind its one mutex (`Inner`, `State`), the producer registry STOPs are
//! routed through, session lookup, and the pacer task. Shared by the `Relay` handle (`relay`),
//! the producers (`producer`) and the clients (`client`); it starts nothing on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use koto_core::SessionId;
use koto_protocol::ingest::Control;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{ClientLimits, Clients};
use crate::config::RelayConfig;
use crate::metrics::RelayMetrics;
use crate::session::{PacerNext, Session, stop_ack};
use crate::stop::StopResolution;

pub(crate) struct Inner {
    pub(crate) config: RelayConfig,
    pub(crate) state: Mutex<State>,
    /// Pacer tasks (one per session with queued audio or a STOP in flight).
    pub(crate) tasks: TaskTracker,
    /// Cancelled by `shutdown` or when the last handle drops: pacers, waiting producers and
    /// socket drivers end.
    pub(crate) shutdown: CancellationToken,
    /// The runtime the relay was created in: pacers started from a thread outside any runtime
    /// (a tray or hotkey callback calling `begin_stop`) run there.
    pub(crate) runtime: Option<tokio::runtime::Handle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) struct State {
    pub(crate) next_id: u64,
    pub(crate) producers: Producers,
    pub(crate) sessions: HashMap<SessionId, Session>,
    pub(crate) clients: Clients,
    /// Counters only; gauges are filled in by `Relay::metrics`.
    pub(crate) metrics: RelayMetrics,
    pub(crate) shutting_down: bool,
}

impl State {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Attached producers and where a STOP for a session goes.
#[derive(Default)]
pub(crate) struct Producers {
    pub(crate) entries: HashMap<u64, mpsc::Sender<Control>>,
    /// Default producers in attach order; the most recent live one takes unowned sessions.
    pub(crate) defaults: Vec<u64>,
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
    pub(crate) fn deliver(&self, owner: Option<u64>, stop: &Control) -> Option<u64> {
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
