//! Per-session runtime state: turn numbering, the FIFO turn lock and the in-flight turns STOP
//! cancels.
//!
//! Architecture invariant: one `SessionSlot` per live session id; all turn-number decisions go
//! through its `state` mutex (never held across an await), so two requests never get one turn.

use std::collections::BTreeMap;
use std::sync::Mutex;

use koto_core::{SessionId, TurnNo};
use tokio_util::sync::CancellationToken;

use crate::EngineError;

#[derive(Debug)]
pub(crate) struct SessionSlot {
    pub id: SessionId,
    /// Filled from the store on first use.
    loaded: tokio::sync::OnceCell<()>,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    next_turn: u64,
    /// Turns accepted and not yet finished: the running one and those queued behind it.
    in_flight: BTreeMap<u64, CancellationToken>,
    /// Cancelled when the most recently reserved turn has finished: the next turn waits on it.
    tail: Option<CancellationToken>,
    /// Turns up to this one were stopped: none of their audio may leave the engine any more.
    fence: Option<u64>,
    /// Why each cancelled in-flight turn was stopped (the STOP's reason, e.g. `retracted` for a
    /// moderator's deletion): stored as the turn's `end_reason`. Removed with the turn.
    stop_reasons: BTreeMap<u64, String>,
}

/// A reserved turn's place in its session's queue. Turns of one session run one after another in
/// reservation order, so each sees the previous reply in its context.
#[derive(Debug)]
pub(crate) struct QueuePlace {
    pub turn: TurnNo,
    /// Finished when the turn reserved before this one has finished.
    pub previous: Option<CancellationToken>,
    /// Tells the next turn this one is finished, when dropped (also on panic or early error).
    pub _finished: tokio_util::sync::DropGuard,
}

impl SessionSlot {
    pub fn new(id: SessionId) -> Self {
        SessionSlot {
            id,
            loaded: tokio::sync::OnceCell::new(),
            state: Mutex::new(SlotState::default()),
        }
    }

    /// Loads `next_turn` from storage once; `load` runs at most once per slot.
    pub async fn ensure_loaded<F, Fut>(&self, load: F) -> Result<(), EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, EngineError>>,
    {
        self.loaded
            .get_or_try_init(|| async {
                let next_turn = load().await?;
                let mut state = self.lock_state();
                state.next_turn = state.next_turn.max(next_turn);
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Picks the turn number (the requested one, or the next), registers its cancel token and
    /// queues it behind the session's previous turn.
    pub fn reserve(
        &self,
        requested: Option<u64>,
        token: CancellationToken,
    ) -> Result<QueuePlace, EngineError> {
        let mut state = self.lock_state();
        let turn = requested.unwrap_or(state.next_turn);
        if turn > TurnNo::MAX {
            return Err(EngineError::invalid(
                koto_protocol::ErrorCode::InvalidTurn,
                format!(
                    "turn {turn} is beyond the highest turn number {}; start a new session",
                    TurnNo::MAX
                ),
            ));
        }
        if state.in_flight.contains_key(&turn) {
            return Err(EngineError::TurnExists { turn: TurnNo(turn) });
        }
        state.next_turn = state.next_turn.max(turn.saturating_add(1));
        state.in_flight.insert(turn, token);
        let finished = CancellationToken::new();
        let previous = state.tail.replace(finished.clone());
        Ok(QueuePlace {
            turn: TurnNo(turn),
            previous,
            _finished: finished.drop_guard(),
        })
    }

    pub fn release(&self, turn: TurnNo) {
        let mut state = self.lock_state();
        state.in_flight.remove(&turn.0);
        state.stop_reasons.remove(&turn.0);
    }

    /// Cancels every in-flight turn (running and queued) and fences their output; returns their
    /// numbers, oldest first. `reason` is kept for each turn (the first STOP's reason wins).
    pub fn cancel_all(&self, reason: &str) -> Vec<TurnNo> {
        let mut state = self.lock_state();
        let SlotState {
            in_flight,
            stop_reasons,
            ..
        } = &mut *state;
        for (turn, token) in in_flight.iter() {
            token.cancel();
            stop_reasons
                .entry(*turn)
                .or_insert_with(|| reason.to_owned());
        }
        if let Some(last) = state.in_flight.keys().next_back().copied() {
            state.fence = Some(state.fence.map_or(last, |fence| fence.max(last)));
        }
        state.in_flight.keys().map(|turn| TurnNo(*turn)).collect()
    }

    /// Turns accepted and not yet finished, oldest first.
    pub fn in_flight(&self) -> Vec<TurnNo> {
        self.lock_state()
            .in_flight
            .keys()
            .map(|turn| TurnNo(*turn))
            .collect()
    }

    /// Why a STOP cancelled `turn`, if one did.
    pub fn stop_reason(&self, turn: TurnNo) -> Option<String> {
        self.lock_state().stop_reasons.get(&turn.0).cloned()
    }

    /// True once a STOP covered `turn`: its chunks must not be sent.
    pub fn is_fenced(&self, turn: TurnNo) -> bool {
        self.lock_state().fence.is_some_and(|fence| turn.0 <= fence)
    }

    pub fn is_idle(&self) -> bool {
        self.lock_state().in_flight.is_empty()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves plain numbers behind, still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> SessionSlot {
        SessionSlot::new(SessionId::parse("s").expect("valid id"))
    }

    #[test]
    fn automatic_turns_count_up_and_explicit_ones_move_the_counter() {
        let slot = slot();
        let turn = |requested| {
            slot.reserve(requested, CancellationToken::new())
                .map(|place| place.turn)
                .ok()
        };
        assert_eq!(turn(None), Some(TurnNo(0)));
        assert_eq!(turn(Some(41)), Some(TurnNo(41)));
        assert_eq!(turn(None), Some(TurnNo(42)), "continues after 41");
    }

    #[test]
    fn turn_numbers_stop_at_the_store_range() {
        let slot = slot();
        assert!(
            slot.reserve(Some(TurnNo::MAX), CancellationToken::new())
                .is_ok()
        );
        assert!(
            matches!(
                slot.reserve(None, CancellationToken::new()),
                Err(EngineError::InvalidInput { .. })
            ),
            "the next automatic turn after the highest is refused, not stored"
        );
        assert!(
            slot.reserve(Some(TurnNo::MAX + 1), CancellationToken::new())
                .is_err()
        );
    }

    #[test]
    fn an_in_flight_turn_cannot_be_taken_twice() {
        let slot = slot();
        assert!(slot.reserve(Some(3), CancellationToken::new()).is_ok());
        assert!(matches!(
            slot.reserve(Some(3), CancellationToken::new()),
            Err(EngineError::TurnExists { .. })
        ));
        slot.release(TurnNo(3));
        assert!(slot.is_idle(), "released turns leave the slot idle");
    }

    #[test]
    fn each_turn_waits_for_the_one_reserved_before_it() {
        let slot = slot();
        let first = slot
            .reserve(None, CancellationToken::new())
            .expect("turn 0");
        let second = slot
            .reserve(None, CancellationToken::new())
            .expect("turn 1");
        assert!(first.previous.is_none(), "the first turn waits for nobody");
        let waits_on = second.previous.clone().expect("turn 1 waits for turn 0");
        assert!(!waits_on.is_cancelled());
        drop(first);
        assert!(waits_on.is_cancelled(), "turn 0 finishing releases turn 1");
    }

    #[test]
    fn cancel_all_cancels_running_and_queued_turns() {
        let slot = slot();
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        slot.reserve(None, first.clone()).expect("turn 0");
        slot.reserve(None, second.clone()).expect("turn 1");
        assert_eq!(
            slot.cancel_all("user_interrupt"),
            vec![TurnNo(0), TurnNo(1)]
        );
        assert_eq!(
            slot.stop_reason(TurnNo(1)).as_deref(),
            Some("user_interrupt")
        );
        assert!(
            first.is_cancelled() && second.is_cancelled(),
            "both turns were told to stop"
        );
    }
}
