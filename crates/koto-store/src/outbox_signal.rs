//! Commit notifications for the outbox: callbacks run after a transaction that inserted outbox
//! rows has committed, so a relay can wake at once instead of polling. It carries no data beyond
//! the highest id committed and guarantees nothing across processes (readers still poll as a
//! safety net).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::store::Store;

/// Called with the highest outbox id of a committed transaction. Runs on the committing thread
/// (often a `spawn_blocking` worker of a chat turn): it must be quick and never block, e.g.
/// `tokio::sync::Notify::notify_one`.
pub type OutboxListener = Arc<dyn Fn(i64) + Send + Sync>;

#[derive(Default)]
pub(crate) struct OutboxListeners {
    state: Arc<Mutex<ListenerState>>,
}

#[derive(Default)]
struct ListenerState {
    next_key: u64,
    listeners: Vec<(u64, OutboxListener)>,
}

/// Keeps a listener registered; dropping it unregisters the listener.
#[must_use = "dropping the subscription unregisters the listener at once"]
pub struct OutboxSubscription {
    state: Weak<Mutex<ListenerState>>,
    key: u64,
}

impl std::fmt::Debug for OutboxSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSubscription")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for OutboxSubscription {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            lock(&state).listeners.retain(|(key, _)| *key != self.key);
        }
    }
}

impl OutboxListeners {
    fn subscribe(&self, listener: OutboxListener) -> OutboxSubscription {
        let mut state = lock(&self.state);
        let key = state.next_key;
        state.next_key += 1;
        state.listeners.push((key, listener));
        OutboxSubscription {
            state: Arc::downgrade(&self.state),
            key,
        }
    }

    /// Runs every listener with `max_id`, outside the lock (a listener may subscribe or drop a
    /// subscription without deadlocking).
    pub(crate) fn committed(&self, max_id: i64) {
        let listeners: Vec<OutboxListener> = lock(&self.state)
            .listeners
            .iter()
            .map(|(_, listener)| Arc::clone(listener))
            .collect();
        for listener in listeners {
            listener(max_id);
        }
    }
}

fn lock(state: &Mutex<ListenerState>) -> MutexGuard<'_, ListenerState> {
    // The state is a counter and a vector of callbacks, each change a single push/retain: a
    // panic cannot leave it inconsistent.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Registers `listener` to run after every commit that inserted outbox rows in this process
    /// (`finish_turn`, `fail_turn`, `begin_turn_with_events`, `append_events`), with the
    /// highest id committed. Keep the returned guard alive as long as the listener is wanted.
    pub fn subscribe_outbox(&self, listener: OutboxListener) -> OutboxSubscription {
        self.outbox_listeners().subscribe(listener)
    }

    /// Tells the listeners about committed ids (no-op for an empty slice).
    pub(crate) fn outbox_committed(&self, ids: &[i64]) {
        if let Some(max_id) = ids.iter().copied().max() {
            self.outbox_listeners().committed(max_id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn listeners_run_until_their_subscription_drops() {
        let listeners = OutboxListeners::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(AtomicI64::new(0));
        let subscription = {
            let calls = Arc::clone(&calls);
            let last = Arc::clone(&last);
            listeners.subscribe(Arc::new(move |max_id| {
                calls.fetch_add(1, Ordering::SeqCst);
                last.store(max_id, Ordering::SeqCst);
            }))
        };
        listeners.committed(7);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one commit, one call");
        assert_eq!(
            last.load(Ordering::SeqCst),
            7,
            "the listener gets the max id"
        );
        drop(subscription);
        listeners.committed(8);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a dropped subscription is no longer called"
        );
    }

    #[test]
    fn commits_with_outbox_rows_notify_and_others_do_not() {
        use koto_core::{SessionId, TurnNo};

        use crate::{FailedTurn, FinishedTurn, NewOutboxEvent, NewTurn};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let _subscription = {
            let seen = Arc::clone(&seen);
            store.subscribe_outbox(Arc::new(move |max_id| seen.lock().unwrap().push(max_id)))
        };
        let session = SessionId::parse("s").unwrap();
        let event = |n: i64| NewOutboxEvent {
            event_type: "UserInput".into(),
            stream: "events.plugins".into(),
            correlation_id: format!("s#{n}"),
            payload: serde_json::json!({}),
            ts_ms: n,
        };
        let turn = |n: u64| NewTurn {
            session: session.clone(),
            turn: TurnNo(n),
            user_text: "q".into(),
            kind: "TEXT".into(),
            meta: None,
            ts_ms: 1,
        };
        store.begin_turn(&turn(0)).unwrap();
        assert!(
            seen.lock().unwrap().is_empty(),
            "a turn start without events wakes nobody"
        );
        let started = store.begin_turn_with_events(&turn(1), &[event(1)]).unwrap();
        let finished = store
            .finish_turn(&FinishedTurn {
                session: session.clone(),
                turn: TurnNo(1),
                reply_text: "a".into(),
                interrupted: false,
                reason: None,
                ts_ms: 2,
                events: vec![event(2), event(3)],
            })
            .unwrap();
        let failed = store
            .fail_turn(&FailedTurn {
                session: session.clone(),
                turn: TurnNo(0),
                heard_text: String::new(),
                reason: "llm_timeout".into(),
                ts_ms: 3,
                events: vec![event(4)],
            })
            .unwrap();
        let appended = store.append_events(&[event(5)]).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![started[0], finished[1], failed[0], appended[0]],
            "each committing call reports its highest id once, after the commit"
        );
        assert!(
            store.begin_turn_with_events(&turn(1), &[event(6)]).is_err(),
            "a turn that exists is refused"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            4,
            "a rolled-back transaction notifies nobody"
        );
        assert_eq!(
            store.outbox_pending(0, 100).unwrap().len(),
            5,
            "the refused turn's event was rolled back with it"
        );
    }
}
