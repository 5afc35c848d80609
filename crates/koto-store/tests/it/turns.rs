//! Turn life cycle: begin, finish, fail, context, reset.

use koto_core::TurnNo;
use koto_store::{ContextTurn, SessionState, StoreError};

use crate::{Fixture, complete_turn, event, failed, finished, new_turn, session};

#[test]
fn a_new_session_starts_at_zero() {
    let fixture = Fixture::fresh();
    let state = fixture.store.session_state(&session("never-seen")).unwrap();
    assert_eq!(
        state,
        SessionState {
            next_turn: TurnNo(0),
            context_from: TurnNo(0)
        },
        "nothing stored yet"
    );
    assert!(
        fixture
            .store
            .context(&session("never-seen"), 10)
            .unwrap()
            .is_empty(),
        "no history, no context"
    );
}

#[test]
fn begin_advances_next_turn_and_finish_makes_it_context() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");

    store
        .begin_turn(&new_turn(&live, 0, "今晚玩什么？"))
        .unwrap();
    assert_eq!(
        store.session_state(&live).unwrap().next_turn,
        TurnNo(1),
        "begin reserves the number"
    );
    assert!(
        store.turn_exists(&live, TurnNo(0)).unwrap(),
        "the user row exists once begun"
    );
    assert!(
        store.context(&live, 10).unwrap().is_empty(),
        "an open turn is not context"
    );

    let events = vec![
        event(&live, 0, "LtmWriteRequested", "events.ltm"),
        event(&live, 0, "AnalyticsChatStats", "events.analytics"),
    ];
    let ids = store
        .finish_turn(&finished(&live, 0, "玩双人成行吧。", events))
        .unwrap();
    assert_eq!(ids.len(), 2, "one id per outbox event");

    let context = store.context(&live, 10).unwrap();
    let expected = ContextTurn {
        turn: TurnNo(0),
        user_text: "今晚玩什么？".into(),
        reply_text: "玩双人成行吧。".into(),
        interrupted: false,
        viewer: None,
    };
    assert_eq!(
        context,
        [expected],
        "a finished turn is context with both texts intact"
    );

    let pending = store.outbox_pending(0, 10).unwrap();
    assert_eq!(
        pending.iter().map(|row| row.id).collect::<Vec<_>>(),
        ids,
        "the returned ids are the stored rows"
    );
    assert_eq!(
        pending[0].stream, "events.ltm",
        "events keep their order and stream"
    );
    assert_eq!(
        pending[1].correlation_id, "live-001#0",
        "correlation id is stored as given"
    );
}

#[test]
fn a_turn_number_is_used_once() {
    let fixture = Fixture::fresh();
    let live = session("live-001");
    complete_turn(&fixture.store, &live, 0, "q", "a");
    let error = fixture
        .store
        .begin_turn(&new_turn(&live, 0, "again"))
        .unwrap_err();
    match error {
        StoreError::TurnExists { session, turn } => {
            assert_eq!(session, live, "the error names the session");
            assert_eq!(turn, TurnNo(0), "the error names the turn");
        }
        other => panic!("a duplicate turn must be TurnExists (→ 409), got {other:?}"),
    }
    let context = fixture.store.context(&live, 10).unwrap();
    assert_eq!(
        context[0].user_text, "q",
        "the refused begin did not overwrite the stored turn"
    );

    fixture
        .store
        .begin_turn(&new_turn(&session("other"), 0, "q"))
        .unwrap();
}

#[test]
fn client_chosen_gaps_move_next_turn_past_the_highest() {
    let fixture = Fixture::fresh();
    let live = session("live-001");
    complete_turn(&fixture.store, &live, 41, "q", "a");
    assert_eq!(
        fixture.store.session_state(&live).unwrap().next_turn,
        TurnNo(42),
        "next is max(turn) + 1"
    );
    complete_turn(&fixture.store, &live, 7, "older", "b");
    assert_eq!(
        fixture.store.session_state(&live).unwrap().next_turn,
        TurnNo(42),
        "filling a gap below does not move next_turn back"
    );
}

#[test]
fn finish_and_fail_require_an_open_turn() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    assert!(
        matches!(
            store.finish_turn(&finished(&live, 0, "a", vec![])),
            Err(StoreError::TurnNotOpen { .. })
        ),
        "finishing a turn never begun is refused"
    );
    complete_turn(store, &live, 0, "q", "a");
    assert!(
        matches!(
            store.finish_turn(&finished(&live, 0, "b", vec![])),
            Err(StoreError::TurnNotOpen { .. })
        ),
        "a turn is finished once"
    );
    assert!(
        matches!(
            store.fail_turn(&failed(&live, 0, "", "llm_timeout", vec![])),
            Err(StoreError::TurnNotOpen { .. })
        ),
        "a done turn cannot become failed"
    );
    assert_eq!(
        store.context(&live, 10).unwrap()[0].reply_text,
        "a",
        "refused calls changed nothing"
    );
}

#[test]
fn a_failed_turn_writes_its_events_and_is_not_context() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    complete_turn(store, &live, 0, "q0", "a0");
    store.begin_turn(&new_turn(&live, 1, "q1")).unwrap();
    // Part of the reply was heard before the provider gave up: it is kept for people (history),
    // but a failed turn is still never context.
    let ids = store
        .fail_turn(&failed(
            &live,
            1,
            "Well, the first thing",
            "llm_timeout",
            vec![event(&live, 1, "AnalyticsChatStats", "events.analytics")],
        ))
        .unwrap();
    assert_eq!(ids.len(), 1, "the failure's event is written");

    let turns: Vec<_> = store
        .context(&live, 10)
        .unwrap()
        .into_iter()
        .map(|turn| turn.turn)
        .collect();
    assert_eq!(turns, [TurnNo(0)], "a failed turn has no reply to remember");
    assert!(
        store.turn_exists(&live, TurnNo(1)).unwrap(),
        "the failed turn stays in history"
    );
    assert_eq!(
        store.session_state(&live).unwrap().next_turn,
        TurnNo(2),
        "a failed number is not reused"
    );
    assert_eq!(
        store.outbox_backlog().unwrap().0,
        2,
        "the completed turn's and the failure's events are pending"
    );
}

#[test]
fn interrupted_replies_keep_the_spoken_text_and_the_flag() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    store
        .begin_turn(&new_turn(&live, 0, "tell me a story"))
        .unwrap();
    let mut stopped = finished(&live, 0, "Once upon a time,", vec![]);
    stopped.interrupted = true;
    store.finish_turn(&stopped).unwrap();

    let context = store.context(&live, 10).unwrap();
    assert!(
        context[0].interrupted,
        "the flag says the listener cut it short"
    );
    assert_eq!(
        context[0].reply_text, "Once upon a time,",
        "exactly what was spoken, with no marker appended"
    );

    store.begin_turn(&new_turn(&live, 1, "stop!")).unwrap();
    let mut silent = finished(&live, 1, "", vec![]);
    silent.interrupted = true;
    store.finish_turn(&silent).unwrap();
    let context = store.context(&live, 10).unwrap();
    assert_eq!(
        context[1].reply_text, "",
        "a turn stopped before any speech stores an empty reply"
    );
}

#[test]
fn context_is_the_newest_turns_oldest_first() {
    let fixture = Fixture::fresh();
    let live = session("live-001");
    for turn in 0..10 {
        complete_turn(
            &fixture.store,
            &live,
            turn,
            &format!("q{turn}"),
            &format!("a{turn}"),
        );
    }
    complete_turn(
        &fixture.store,
        &session("live-002"),
        10,
        "other session",
        "x",
    );

    let window = fixture.store.context(&live, 3).unwrap();
    let turns: Vec<_> = window.iter().map(|turn| turn.turn.0).collect();
    assert_eq!(
        turns,
        [7, 8, 9],
        "the last three turns, in conversation order"
    );
    assert_eq!(window[0].user_text, "q7", "texts belong to their turns");
    assert_eq!(window[2].reply_text, "a9", "texts belong to their turns");

    assert_eq!(
        fixture.store.context(&live, 100).unwrap().len(),
        10,
        "a large limit returns all ten"
    );
    assert!(
        fixture.store.context(&live, 0).unwrap().is_empty(),
        "a zero window is empty"
    );
}

#[test]
fn reset_clears_the_window_but_keeps_history_and_numbers() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    for turn in 0..3 {
        complete_turn(store, &live, turn, "q", "a");
    }
    store.reset_session(&live).unwrap();
    assert!(
        store.context(&live, 10).unwrap().is_empty(),
        "after reset the window is empty"
    );
    assert_eq!(
        store.session_state(&live).unwrap(),
        SessionState {
            next_turn: TurnNo(3),
            context_from: TurnNo(3)
        },
        "the window starts at the next turn; numbering continues"
    );
    assert!(
        store.turn_exists(&live, TurnNo(1)).unwrap(),
        "history is kept for analytics"
    );

    complete_turn(store, &live, 3, "fresh", "start");
    let turns: Vec<_> = store
        .context(&live, 10)
        .unwrap()
        .into_iter()
        .map(|turn| turn.turn)
        .collect();
    assert_eq!(turns, [TurnNo(3)], "only turns after the reset are context");

    store.reset_session(&session("brand-new")).unwrap();
    assert_eq!(
        store.session_state(&session("brand-new")).unwrap(),
        SessionState {
            next_turn: TurnNo(0),
            context_from: TurnNo(0)
        },
        "resetting an unknown session is harmless"
    );
}

#[test]
fn a_turn_in_flight_during_reset_is_not_context() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    store.begin_turn(&new_turn(&live, 0, "q")).unwrap();
    store.reset_session(&live).unwrap();
    store.finish_turn(&finished(&live, 0, "a", vec![])).unwrap();
    assert!(
        store.context(&live, 10).unwrap().is_empty(),
        "the reset window starts after the turn in flight"
    );
}

#[test]
fn a_failing_event_insert_rolls_back_the_reply() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    store.begin_turn(&new_turn(&live, 0, "q")).unwrap();
    // The schema refuses an empty stream name: the second event fails after the reply row and
    // the first event were written in the same transaction.
    let events = vec![
        event(&live, 0, "TurnCompleted", "events.plugins"),
        event(&live, 0, "TurnCompleted", ""),
    ];
    let error = store
        .finish_turn(&finished(&live, 0, "a", events))
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Sqlite(_)),
        "a constraint violation is a plain sqlite error: {error:?}"
    );

    assert!(
        store.context(&live, 10).unwrap().is_empty(),
        "the reply row was rolled back with the events"
    );
    assert_eq!(
        store.outbox_backlog().unwrap(),
        (0, None),
        "the first event was rolled back too"
    );

    let ids = store
        .finish_turn(&finished(
            &live,
            0,
            "a",
            vec![event(&live, 0, "TurnCompleted", "events.plugins")],
        ))
        .unwrap();
    assert_eq!(
        ids.len(),
        1,
        "the turn is still open and can be finished properly"
    );
    assert_eq!(
        store.context(&live, 10).unwrap().len(),
        1,
        "now the turn is context"
    );
}

#[test]
fn turn_numbers_beyond_sqlite_are_refused() {
    let fixture = Fixture::fresh();
    let huge = new_turn(&session("s"), u64::MAX, "q");
    assert!(
        matches!(
            fixture.store.begin_turn(&huge),
            Err(StoreError::TurnOutOfRange { .. })
        ),
        "u64::MAX does not fit an SQLite integer"
    );
}

#[test]
fn endings_keep_their_reason_and_an_empty_one_is_none() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    let live = session("live-001");
    complete_turn(store, &live, 0, "q0", "a0");
    store.begin_turn(&new_turn(&live, 1, "q1")).unwrap();
    let mut stopped = finished(&live, 1, "Once", vec![]);
    stopped.interrupted = true;
    stopped.reason = Some("client_disconnected".into());
    store.finish_turn(&stopped).unwrap();
    store.begin_turn(&new_turn(&live, 2, "q2")).unwrap();
    let mut unexplained = finished(&live, 2, "Twice", vec![]);
    unexplained.interrupted = true;
    unexplained.reason = Some(String::new());
    store.finish_turn(&unexplained).unwrap();
    store.begin_turn(&new_turn(&live, 3, "q3")).unwrap();
    store
        .fail_turn(&failed(&live, 3, "Thr", "", vec![]))
        .unwrap();

    let reasons: Vec<_> = store
        .history(&live, None, 10)
        .unwrap()
        .into_iter()
        .map(|turn| (turn.turn.0, turn.reason, turn.reply_text))
        .collect();
    assert_eq!(
        reasons,
        [
            (0, None, Some("a0".to_owned())),
            (
                1,
                Some("client_disconnected".to_owned()),
                Some("Once".to_owned())
            ),
            (2, None, Some("Twice".to_owned())),
            (3, None, Some("Thr".to_owned())),
        ],
        "a reason is stored as given; an empty one means none was given"
    );
}

#[test]
fn input_meta_is_stored_with_the_user_row_and_typed_input_stays_null() {
    use koto_core::turn::{InputMeta, InputUser};
    let fixture = Fixture::fresh();
    let live = session("meta");
    fixture
        .store
        .begin_turn(&new_turn(&live, 0, "typed"))
        .unwrap();
    let mut from_chat = new_turn(&live, 1, "what game is this?");
    from_chat.meta = Some(InputMeta {
        user: Some(InputUser {
            id: "42".into(),
            name: "viewer".into(),
        }),
        message_id: Some("m-1".into()),
        ..InputMeta::from_source("twitch")
    });
    fixture.store.begin_turn(&from_chat).unwrap();

    let conn = rusqlite::Connection::open(fixture.path()).unwrap();
    let meta = |turn: i64| -> Option<String> {
        conn.query_row(
            "SELECT meta FROM turns WHERE sessionId = 'meta' AND turn = ?1 AND role = 'user'",
            [turn],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert_eq!(meta(0), None, "typed input has no meta");
    let stored: InputMeta = serde_json::from_str(&meta(1).unwrap()).unwrap();
    assert_eq!(
        Some(stored),
        from_chat.meta,
        "the viewer and message id come back"
    );
}
