//! Many threads on one store: the engine calls it from many `spawn_blocking` workers at once.

use std::collections::HashSet;
use std::sync::Barrier;

use koto_core::TurnNo;
use koto_store::StoreError;

use crate::{Fixture, event, finished, new_turn, session};

const SESSIONS: usize = 8;
const TURNS: u64 = 50;

#[test]
fn interleaved_sessions_each_get_every_turn_once_in_order() {
    let fixture = Fixture::fresh();
    let start = Barrier::new(SESSIONS);
    let all_ids: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..SESSIONS)
            .map(|index| {
                let store = fixture.store.clone();
                let start = &start;
                scope.spawn(move || {
                    let live = session(&format!("live-{index}"));
                    let mut ids = Vec::new();
                    start.wait();
                    for turn in 0..TURNS {
                        let state = store.session_state(&live).unwrap();
                        assert_eq!(
                            state.next_turn,
                            TurnNo(turn),
                            "each session's counter sees its own turns only"
                        );
                        store
                            .begin_turn(&new_turn(&live, turn, &format!("q {index}/{turn}")))
                            .unwrap();
                        // Reads interleave with other sessions' writes.
                        let window = store.context(&live, 5).unwrap();
                        assert_eq!(
                            window.len(),
                            turn.min(5) as usize,
                            "the open turn is not yet context"
                        );
                        let events = vec![
                            event(&live, turn, "LtmWriteRequested", "events.ltm"),
                            event(&live, turn, "AnalyticsChatStats", "events.analytics"),
                        ];
                        ids.extend(
                            store
                                .finish_turn(&finished(
                                    &live,
                                    turn,
                                    &format!("a {index}/{turn}"),
                                    events,
                                ))
                                .unwrap(),
                        );
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });

    for index in 0..SESSIONS {
        let live = session(&format!("live-{index}"));
        let context = fixture.store.context(&live, 1_000).unwrap();
        let turns: Vec<u64> = context.iter().map(|turn| turn.turn.0).collect();
        assert_eq!(
            turns,
            (0..TURNS).collect::<Vec<_>>(),
            "session {index} has turns 0..49, each once, in order"
        );
        for turn in &context {
            assert_eq!(
                turn.user_text,
                format!("q {index}/{}", turn.turn),
                "user text belongs to its own turn"
            );
            assert_eq!(
                turn.reply_text,
                format!("a {index}/{}", turn.turn),
                "reply text belongs to its own turn"
            );
        }
    }

    let ids: Vec<i64> = all_ids.into_iter().flatten().collect();
    let expected_events = SESSIONS * TURNS as usize * 2;
    assert_eq!(
        ids.len(),
        expected_events,
        "two outbox rows per finished turn"
    );
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        expected_events,
        "outbox ids are unique"
    );
    let (backlog, _) = fixture.store.outbox_backlog().unwrap();
    assert_eq!(
        backlog, expected_events as u64,
        "every event row is stored, none lost or doubled"
    );
    let pending = fixture
        .store
        .outbox_pending(0, expected_events + 10)
        .unwrap();
    assert_eq!(pending.len(), expected_events, "the relay sees all of them");
}

#[test]
fn racing_begins_of_the_same_turn_have_one_winner() {
    let fixture = Fixture::fresh();
    let live = session("live-001");
    for turn in 0..20 {
        let start = Barrier::new(SESSIONS);
        let outcomes: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..SESSIONS)
                .map(|racer| {
                    let store = fixture.store.clone();
                    let start = &start;
                    let live = live.clone();
                    scope.spawn(move || {
                        start.wait();
                        store.begin_turn(&new_turn(&live, turn, &format!("racer {racer}")))
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().unwrap())
                .collect()
        });
        let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(winners, 1, "turn {turn}: exactly one begin wins");
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Ok(()) | Err(StoreError::TurnExists { .. }))),
            "turn {turn}: every loser is told the turn exists: {outcomes:?}"
        );
    }
    assert_eq!(
        fixture.store.session_state(&live).unwrap().next_turn,
        TurnNo(20),
        "twenty turns were begun"
    );
}
