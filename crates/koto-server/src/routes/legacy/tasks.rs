//! The task board: the legacy tasks of one app and each one's output log, which keeps what the
//! task sends (in order, bounded in bytes) so an output socket that connects late replays it all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use koto_protocol::WireError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::LegacyLimits;
use super::output::Outgoing;

/// The legacy tasks of one app: each one's output log, kept for replay for a bounded time.
/// Cheap to clone. Dropping the last clone (the router went away) cancels the tasks' pumps.
#[derive(Clone)]
pub struct LegacyTasks {
    board: Arc<Board>,
}

struct Board {
    limits: LegacyLimits,
    /// Task id (hyphenated lowercase UUID) → its log. Ended tasks are swept lazily, on `open`
    /// and `find`, once `retain` has passed.
    tasks: Mutex<HashMap<String, Arc<TaskLog>>>,
    /// Cancelled when the board is dropped; every pump selects on it.
    shutdown: CancellationToken,
    _cancel_pumps: DropGuard,
}

impl LegacyTasks {
    pub fn new(limits: LegacyLimits) -> Self {
        let shutdown = CancellationToken::new();
        LegacyTasks {
            board: Arc::new(Board {
                limits,
                tasks: Mutex::new(HashMap::new()),
                _cancel_pumps: shutdown.clone().drop_guard(),
                shutdown,
            }),
        }
    }

    pub(super) fn limits(&self) -> &LegacyLimits {
        &self.board.limits
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<TaskLog>>> {
        // A panic elsewhere while holding the lock cannot leave the map half-updated.
        self.board
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new task with a fresh UUID; `None` when `max_tasks` are open and none has ended.
    pub(super) fn open(&self, now: Instant) -> Option<Arc<TaskLog>> {
        let limits = self.limits();
        let mut tasks = self.lock();
        tasks.retain(|_, log| !log.expired(now, limits.retain));
        if tasks.len() >= limits.max_tasks {
            let oldest_ended = tasks
                .iter()
                .filter_map(|(id, log)| log.ended_at().map(|at| (at, id.clone())))
                .min();
            let (_, id) = oldest_ended?;
            tasks.remove(&id);
        }
        let id = Uuid::new_v4().hyphenated().to_string();
        let log = Arc::new(TaskLog::new(id.clone(), limits.log_bytes));
        tasks.insert(id, Arc::clone(&log));
        Some(log)
    }

    pub(super) fn find(&self, id: &str, now: Instant) -> Option<Arc<TaskLog>> {
        let retain = self.limits().retain;
        let mut tasks = self.lock();
        tasks.retain(|_, log| !log.expired(now, retain));
        tasks.get(id).cloned()
    }

    pub(super) fn spawn_pump(&self, pump: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.board.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {}
                () = pump => {}
            }
        });
    }
}

/// What one task sends to `/ws/output`, in order, kept for replay. Written by the task's input
/// socket (upload errors) and then its pump; read by any number of output sockets, each with
/// its own cursor.
pub(super) struct TaskLog {
    pub(super) id: String,
    max_bytes: usize,
    state: Mutex<LogState>,
    /// Bumped on every push and at the end; output sockets wait on it.
    pub(super) changed: watch::Sender<()>,
}

#[derive(Default)]
struct LogState {
    entries: VecDeque<LogEntry>,
    next_index: u64,
    bytes: usize,
    ended_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(super) struct LogEntry {
    /// Position in the task's output; gaps appear where audio was dropped.
    pub(super) index: u64,
    pub(super) item: Outgoing,
}

impl TaskLog {
    fn new(id: String, max_bytes: usize) -> Self {
        TaskLog {
            id,
            max_bytes,
            state: Mutex::new(LogState::default()),
            changed: watch::Sender::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `item`; ignored once the task ended. Past `max_bytes` the oldest audio goes
    /// (replies, controls and errors are small and always kept).
    pub(super) fn push(&self, item: Outgoing) {
        {
            let mut state = self.lock();
            if state.ended_at.is_some() {
                return;
            }
            state.bytes += item.bytes();
            let index = state.next_index;
            state.next_index += 1;
            state.entries.push_back(LogEntry { index, item });
            while state.bytes > self.max_bytes {
                let Some(position) = state.entries.iter().position(|e| e.item.is_audio()) else {
                    break;
                };
                if let Some(dropped) = state.entries.remove(position) {
                    state.bytes -= dropped.item.bytes();
                }
            }
        }
        self.changed.send_replace(());
    }

    /// No more frames: output sockets close after sending what is kept.
    pub(super) fn end(&self, now: Instant) {
        {
            let mut state = self.lock();
            if state.ended_at.is_some() {
                return;
            }
            state.ended_at = Some(now);
        }
        self.changed.send_replace(());
    }

    pub(super) fn fail(&self, error: WireError, now: Instant) {
        self.push(Outgoing::Error(error));
        self.end(now);
    }

    /// Entries from `cursor` on, and whether the task has ended (so these are the last ones).
    pub(super) fn read_from(&self, cursor: u64) -> (Vec<LogEntry>, bool) {
        let state = self.lock();
        let start = state.entries.partition_point(|entry| entry.index < cursor);
        let entries = state.entries.range(start..).cloned().collect();
        (entries, state.ended_at.is_some())
    }

    fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    fn expired(&self, now: Instant, retain: Duration) -> bool {
        self.ended_at()
            .is_some_and(|ended| now.saturating_duration_since(ended) >= retain)
    }
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Bytes;
    use koto_protocol::ErrorCode;

    use super::*;

    fn audio(chunk_id: u64, n_bytes: usize) -> Outgoing {
        Outgoing::Audio {
            chunk_id,
            sample_rate: 24_000,
            pcm: Bytes::from(vec![0u8; n_bytes]),
        }
    }

    #[test]
    fn the_log_drops_oldest_audio_first_and_readers_skip_the_gap() {
        let log = TaskLog::new("t".into(), 3 * (100 + 64) + 200);
        log.push(audio(0, 100));
        log.push(Outgoing::Reply {
            content: Arc::from("hello"),
            audio_present: true,
        });
        log.push(audio(1, 100));
        log.push(audio(2, 100));
        log.push(audio(3, 100));
        let (entries, ended) = log.read_from(0);
        assert!(!ended);
        let chunk_ids: Vec<Option<u64>> = entries
            .iter()
            .map(|entry| match entry.item {
                Outgoing::Audio { chunk_id, .. } => Some(chunk_id),
                _ => None,
            })
            .collect();
        assert_eq!(
            chunk_ids,
            [None, Some(1), Some(2), Some(3)],
            "chunk 0 went to make room; the reply stayed"
        );
        let (tail, _) = log.read_from(1);
        assert_eq!(
            tail.len(),
            4,
            "a cursor on a dropped entry resumes at the next kept one"
        );
        let (rest, _) = log.read_from(entries[3].index + 1);
        assert!(rest.is_empty(), "nothing after the last entry");
    }

    #[test]
    fn an_ended_log_takes_nothing_more() {
        let log = TaskLog::new("t".into(), 1 << 20);
        log.fail(WireError::new(ErrorCode::Internal, "x"), Instant::now());
        log.push(audio(0, 10));
        let (entries, ended) = log.read_from(0);
        assert!(ended, "fail ends the log");
        assert_eq!(entries.len(), 1, "only the error is kept");
    }

    #[tokio::test]
    async fn ended_tasks_are_kept_for_the_retain_window_and_make_room_when_full() {
        let tasks = LegacyTasks::new(LegacyLimits {
            max_tasks: 2,
            retain: Duration::from_secs(60),
            ..LegacyLimits::default()
        });
        // Explicit instants: the registry takes `now`, so no clock needs to move.
        let t0 = Instant::now();
        let first = tasks.open(t0).expect("room");
        let second = tasks.open(t0).expect("room");
        assert!(tasks.open(t0).is_none(), "two running tasks fill the board");
        first.end(t0);
        let third = tasks.open(t0).expect("the ended task makes room");
        assert!(
            tasks.find(&first.id, t0).is_none(),
            "the oldest ended task was evicted"
        );
        second.end(t0);
        assert!(
            tasks
                .find(&second.id, t0 + Duration::from_secs(59))
                .is_some(),
            "still within the retain window"
        );
        assert!(
            tasks
                .find(&second.id, t0 + Duration::from_secs(60))
                .is_none(),
            "expired after the retain window"
        );
        assert!(
            tasks
                .find(&third.id, t0 + Duration::from_secs(3600))
                .is_some(),
            "a running task never expires"
        );
        assert!(
            Uuid::parse_str(&third.id).is_ok_and(|id| id.get_version_num() == 4),
            "task ids are UUIDv4"
        );
    }
}
