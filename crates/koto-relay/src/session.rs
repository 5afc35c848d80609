//! One session's relay state: its audio queue, playback clock, fence, STOP in flight, the seq
//! check of incoming chunks and what has been released.
//!
//! Pure bookkeeping under the relay's lock: no tasks, no IO, no waiting. The fence invariant is
//! kept here: `release_due` is the only place audio leaves for clients, and it runs under the
//! same lock that sets `stopping` and `fence`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::client::{ClientLimits, Clients, LiveFrame};
use crate::metrics::RelayMetrics;
use crate::stop::StopResolution;

/// Turns whose highest released seq is remembered (the engine asks right after a turn ends).
const RELEASED_HISTORY: usize = 16;

/// Where a listener that plays every chunk as soon as it arrives is in the session's audio.
///
/// `start` is when the current run of back-to-back audio began, `released` how much audio has
/// been released since. The listener is at `now - start`; the audio it holds ahead is
/// `released - (now - start)`. When that reaches zero the listener ran dry (producer underrun,
/// or a new turn after silence) and the next chunk starts a new run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlaybackClock {
    start: Instant,
    released: Duration,
}

impl PlaybackClock {
    /// When a chunk of `duration` may leave so the audio ahead of the listener stays within
    /// `lead`: at once when the listener ran dry (the first chunk of a turn is never delayed),
    /// else when `released + duration - lead` has been played — but never after the listener
    /// runs dry (a chunk longer than the lead must not leave a gap of silence).
    pub(crate) fn due(
        clock: Option<Self>,
        now: Instant,
        duration: Duration,
        lead: Duration,
    ) -> Instant {
        match clock {
            Some(clock) if !clock.is_dry(now) => {
                let played_needed = (clock.released + duration)
                    .saturating_sub(lead)
                    .min(clock.released);
                (clock.start + played_needed).max(now)
            }
            _ => now,
        }
    }

    /// Account a chunk released at `now`, re-basing when the listener ran dry so a late chunk
    /// after an underrun is not followed by a burst.
    pub(crate) fn release(clock: &mut Option<Self>, now: Instant, duration: Duration) {
        match clock {
            Some(running) if !running.is_dry(now) => running.released += duration,
            _ => {
                *clock = Some(PlaybackClock {
                    start: now,
                    released: duration,
                })
            }
        }
    }

    /// The listener held its audio for `held` (a pause): its position moved on by nothing.
    pub(crate) fn shift(&mut self, held: Duration) {
        self.start += held;
    }

    /// Audio the listener holds ahead of its playback position at `now`.
    pub(crate) fn lead_at(&self, now: Instant) -> Duration {
        (self.start + self.released).saturating_duration_since(now)
    }

    fn is_dry(&self, now: Instant) -> bool {
        now >= self.start + self.released
    }
}

/// An item of a session's queue: chunks, and a turn's END behind its last chunk.
pub(crate) enum Queued {
    Chunk {
        frame: LiveFrame,
        turn: TurnNo,
        seq: u64,
        duration: Duration,
    },
    End {
        frame: LiveFrame,
        turn: TurnNo,
        /// Told when the END leaves for clients (the turn's audio is all out); dropped unsent
        /// when a fence or STOP drops the END, which tells the waiter "not played".
        played: Option<oneshot::Sender<()>>,
    },
}

impl Queued {
    fn turn(&self) -> TurnNo {
        match self {
            Queued::Chunk { turn, .. } | Queued::End { turn, .. } => *turn,
        }
    }
}

/// The turn chunks are currently arriving for, and the seq expected next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IngestTurn {
    pub(crate) turn: TurnNo,
    pub(crate) next_seq: u64,
    pub(crate) ended: bool,
}

/// A STOP sent to a producer and not yet answered.
pub(crate) struct Stopping {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    /// The producer the STOP went to (its detach resolves the STOP at once).
    pub(crate) target: u64,
    pub(crate) waiters: Vec<oneshot::Sender<StopResolution>>,
}

/// A pause in force: since when, and when it lifts by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paused {
    pub(crate) since: Instant,
    pub(crate) until: Instant,
}

/// What the pacer does next for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacerNext {
    At(Instant),
    Idle,
}

pub(crate) struct Session {
    pub(crate) id: SessionId,
    /// The producer that last sent a frame for this session: STOPs go there.
    pub(crate) owner: Option<u64>,
    /// Chunks and ENDs of turns `≤ fence` are dropped, forever.
    pub(crate) fence: Option<TurnNo>,
    /// Between STOP and STOP_ACK every chunk and END of the session is dropped.
    pub(crate) stopping: Option<Stopping>,
    pub(crate) ingest: Option<IngestTurn>,
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) queued_audio: Duration,
    pub(crate) clock: Option<PlaybackClock>,
    /// A voice barge-in paused release (nothing is dropped) until `resume`, a STOP, or
    /// `until` (a safety net: a pause nobody ends must not silence the co-host for good).
    pub(crate) paused: Option<Paused>,
    released: BTreeMap<TurnNo, u64>,
    pub(crate) pacer_running: bool,
    /// Wakes the pacer (stored permit) when the queue gains a head or a STOP starts.
    pub(crate) wake: Arc<Notify>,
    /// Wakes producers waiting for queue space (`notify_waiters`).
    pub(crate) space: Arc<Notify>,
    pub(crate) last_activity: Instant,
}

impl Session {
    pub(crate) fn new(id: SessionId, now: Instant) -> Self {
        Session {
            id,
            owner: None,
            fence: None,
            stopping: None,
            ingest: None,
            queue: VecDeque::new(),
            queued_audio: Duration::ZERO,
            clock: None,
            paused: None,
            released: BTreeMap::new(),
            pacer_running: false,
            wake: Arc::new(Notify::new()),
            space: Arc::new(Notify::new()),
            last_activity: now,
        }
    }

    /// Nothing queued, nothing in flight, nobody waiting: the state may be forgotten.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && !self.pacer_running
            && self.stopping.is_none()
            && Arc::strong_count(&self.space) == 1
    }

    /// Whether chunks/ENDs of `turn` are dropped by the fence or a STOP in flight.
    pub(crate) fn is_fenced(&self, turn: TurnNo) -> bool {
        self.stopping.is_some() || self.fence.is_some_and(|fence| turn <= fence)
    }

    pub(crate) fn released_seq(&self, turn: TurnNo) -> Option<u64> {
        self.released.get(&turn).copied()
    }

    /// Mark the pacer as running; `true` if the caller must spawn it.
    pub(crate) fn claim_pacer(&mut self) -> bool {
        if self.pacer_running {
            self.wake.notify_one();
            false
        } else {
            self.pacer_running = true;
            true
        }
    }

    /// Drop everything queued (a STOP): the producer's waiters get space back.
    pub(crate) fn clear_queue(&mut self, metrics: &mut RelayMetrics) {
        for item in self.queue.drain(..) {
            if matches!(item, Queued::Chunk { .. }) {
                metrics.dropped_queued_on_stop += 1;
            }
        }
        self.queued_audio = Duration::ZERO;
        self.space.notify_waiters();
    }

    /// Raise the fence to `turn` (never lowers it), drop what it covers from the queue and from
    /// client queues, and close the ingest turn if it is covered.
    pub(crate) fn raise_fence(
        &mut self,
        turn: TurnNo,
        clients: &mut Clients,
        metrics: &mut RelayMetrics,
    ) {
        let fence = self.fence.map_or(turn, |old| old.max(turn));
        self.fence = Some(fence);
        let before = self.queue.len();
        let mut freed = Duration::ZERO;
        self.queue.retain(|item| {
            let covered = item.turn() <= fence;
            if covered && let Queued::Chunk { duration, .. } = item {
                freed += *duration;
                metrics.dropped_queued_on_stop += 1;
            }
            !covered
        });
        if self.queue.len() != before {
            self.queued_audio = self.queued_audio.saturating_sub(freed);
            self.space.notify_waiters();
        }
        clients.purge_audio(&self.id, Some(fence));
        if let Some(ingest) = &mut self.ingest
            && ingest.turn <= fence
        {
            ingest.ended = true;
        }
    }

    /// The fence the relay sets by itself (no STOP_ACK): every turn it has seen audio for.
    pub(crate) fn fence_everything_seen(
        &mut self,
        clients: &mut Clients,
        metrics: &mut RelayMetrics,
    ) -> Option<TurnNo> {
        let seen = self.ingest.map(|ingest| ingest.turn).or(self.fence);
        if let Some(turn) = seen {
            self.raise_fence(turn, clients, metrics);
        }
        self.fence
    }

    /// End the STOP in flight (if any) with `outcome`, and tell clients STOP_ACK so they drop
    /// buffered audio. The playback clock restarts: the next turn's first chunk is immediate.
    pub(crate) fn finish_stop(
        &mut self,
        outcome: &StopResolution,
        ack: LiveFrame,
        clients: &mut Clients,
        limits: ClientLimits,
        metrics: &mut RelayMetrics,
    ) {
        if let Some(stopping) = self.stopping.take() {
            for waiter in stopping.waiters {
                // A waiter that stopped listening is fine: the STOP took effect regardless.
                let _ = waiter.send(outcome.clone());
            }
        }
        self.clock = None;
        self.paused = None;
        // A pacer sleeping on the STOP's deadline can look again (and end if idle).
        self.wake.notify_one();
        clients.fan_out(&ack, limits, metrics);
    }

    /// Lift the pause (if any): clients get RESUME, and the playback clock moves on by the
    /// pause's length, since a listener that paused still holds the audio it had. `true` if
    /// there was a pause.
    pub(crate) fn resume_at(
        &mut self,
        now: Instant,
        clients: &mut Clients,
        limits: ClientLimits,
        metrics: &mut RelayMetrics,
    ) -> bool {
        let Some(paused) = self.paused.take() else {
            return false;
        };
        if let Some(clock) = &mut self.clock {
            clock.shift(now.saturating_duration_since(paused.since));
        }
        clients.fan_out(
            &pause_frame(&self.id, ControlAction::Resume),
            limits,
            metrics,
        );
        true
    }

    /// Release to clients everything due at `now`; say when to look again. Also resolves a
    /// STOP whose producer did not answer in time.
    pub(crate) fn release_due(
        &mut self,
        now: Instant,
        lead: Duration,
        clients: &mut Clients,
        limits: ClientLimits,
        metrics: &mut RelayMetrics,
    ) -> PacerNext {
        if let Some(stopping) = &self.stopping {
            if now < stopping.deadline {
                // Nothing is queued while stopping (STOP cleared it, arrivals are dropped).
                return PacerNext::At(stopping.deadline);
            }
            metrics.stop_timeouts += 1;
            tracing::warn!(session = %self.id, "no STOP_ACK in time, relay fences by itself");
            let fence = self.fence_everything_seen(clients, metrics);
            let ack = stop_ack(&self.id, fence, Some("stop_ack_timeout"));
            self.finish_stop(
                &StopResolution::TimedOut { fence },
                ack,
                clients,
                limits,
                metrics,
            );
        }
        if let Some(paused) = self.paused {
            if now < paused.until {
                // Held, not dropped: the queue keeps its audio and the producer its
                // backpressure; clients were told PAUSE and hold what they have.
                return PacerNext::At(paused.until);
            }
            metrics.pause_timeouts += 1;
            tracing::warn!(session = %self.id, "pause not lifted in time, resuming by itself");
            self.resume_at(now, clients, limits, metrics);
        }
        let mut freed_space = false;
        let next = loop {
            let Some(head) = self.queue.front() else {
                break PacerNext::Idle;
            };
            let fenced = self.is_fenced(head.turn());
            match head {
                Queued::Chunk { duration, .. } => {
                    let duration = *duration;
                    if !fenced {
                        let due = PlaybackClock::due(self.clock, now, duration, lead);
                        if due > now {
                            break PacerNext::At(due);
                        }
                    }
                    let Some(Queued::Chunk {
                        frame, turn, seq, ..
                    }) = self.queue.pop_front()
                    else {
                        break PacerNext::Idle;
                    };
                    self.queued_audio = self.queued_audio.saturating_sub(duration);
                    freed_space = true;
                    if fenced {
                        // Defence in depth: STOP and fences already purge the queue.
                        metrics.dropped_fenced += 1;
                        continue;
                    }
                    PlaybackClock::release(&mut self.clock, now, duration);
                    if let Some(clock) = self.clock {
                        metrics.max_audio_lead = metrics.max_audio_lead.max(clock.lead_at(now));
                    }
                    self.released.insert(turn, seq);
                    while self.released.len() > RELEASED_HISTORY {
                        self.released.pop_first();
                    }
                    metrics.chunks_released += 1;
                    clients.fan_out(&frame, limits, metrics);
                }
                Queued::End { .. } => {
                    let Some(Queued::End { frame, played, .. }) = self.queue.pop_front() else {
                        break PacerNext::Idle;
                    };
                    if fenced {
                        metrics.dropped_fenced += 1;
                    } else {
                        clients.fan_out(&frame, limits, metrics);
                        if let Some(played) = played {
                            let _ = played.send(());
                        }
                    }
                }
            }
        };
        if freed_space {
            self.space.notify_waiters();
        }
        next
    }
}

/// CONTROL PAUSE / RESUME for clients.
pub(crate) fn pause_frame(session: &SessionId, action: ControlAction) -> LiveFrame {
    LiveFrame::new(RelayFrame::Control(Control {
        action,
        session_id: session.clone(),
        turn: None,
        reason: Some("voice_barge_in".to_owned()),
    }))
}

/// A STOP_ACK frame for clients.
pub(crate) fn stop_ack(
    session: &SessionId,
    turn: Option<TurnNo>,
    reason: Option<&str>,
) -> LiveFrame {
    LiveFrame::new(RelayFrame::Control(Control {
        action: ControlAction::StopAck,
        session_id: session.clone(),
        turn,
        reason: reason.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAD: Duration = Duration::from_millis(200);
    const CHUNK: Duration = Duration::from_millis(40);

    #[tokio::test(start_paused = true)]
    async fn first_chunk_is_due_at_once_and_the_lead_is_never_exceeded() {
        let t0 = Instant::now();
        let mut clock = None;
        assert_eq!(
            PlaybackClock::due(clock, t0, CHUNK, LEAD),
            t0,
            "a fresh clock never delays the first chunk"
        );
        let mut now = t0;
        for n in 0..50 {
            let due = PlaybackClock::due(clock, now, CHUNK, LEAD);
            now = now.max(due);
            PlaybackClock::release(&mut clock, now, CHUNK);
            let lead = clock.expect("released").lead_at(now);
            assert!(lead <= LEAD, "chunk {n}: lead {lead:?} within {LEAD:?}");
        }
        let lead = clock.expect("released").lead_at(now);
        assert_eq!(
            lead, LEAD,
            "a producer faster than real time keeps exactly the lead"
        );
        assert_eq!(
            now - t0,
            CHUNK * 50 - LEAD,
            "release runs in real time, the lead ahead of playback"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_underrun_rebases_instead_of_bursting() {
        let t0 = Instant::now();
        let mut clock = None;
        PlaybackClock::release(&mut clock, t0, CHUNK);
        // The producer stalls for a second: the listener ran dry long ago.
        let late = t0 + Duration::from_secs(1);
        assert_eq!(
            PlaybackClock::due(clock, late, CHUNK, LEAD),
            late,
            "a chunk after an underrun goes at once"
        );
        PlaybackClock::release(&mut clock, late, CHUNK);
        let lead = clock.expect("released").lead_at(late);
        assert_eq!(
            lead, CHUNK,
            "the run restarted: only the new chunk is ahead, no catch-up burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_longer_than_the_lead_goes_when_the_listener_runs_dry() {
        let t0 = Instant::now();
        let long = Duration::from_millis(500);
        let mut clock = None;
        PlaybackClock::release(&mut clock, t0, long);
        let due = PlaybackClock::due(clock, t0, long, LEAD);
        assert_eq!(
            due,
            t0 + long,
            "held until the listener runs dry, not later (no gap of silence)"
        );
    }
}
