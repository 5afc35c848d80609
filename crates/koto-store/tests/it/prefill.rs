//! Bulk synthetic history: correctness at a modest size, and a timing run at the benchmark's size.

use std::time::Instant;

use koto_core::TurnNo;
use koto_store::{Store, prefill_reply_text, prefill_user_text};

use crate::{Fixture, complete_turn};

#[test]
fn prefilled_history_is_context_and_numbering_continues() {
    let fixture = Fixture::fresh();
    let store = &fixture.store;
    // 20 sessions × 500 turns × 2 rows = 20,000 rows.
    store.prefill(20, 500).unwrap();

    let bench = Store::prefill_session_id(7);
    let window = store.context(&bench, 20).unwrap();
    let turns: Vec<u64> = window.iter().map(|turn| turn.turn.0).collect();
    assert_eq!(
        turns,
        (480..500).collect::<Vec<_>>(),
        "the last 20 prefilled turns, oldest first"
    );
    assert_eq!(
        window[0].user_text,
        prefill_user_text(bench.as_str(), 480),
        "user text of the right session and turn"
    );
    assert_eq!(
        window[19].reply_text,
        prefill_reply_text(bench.as_str(), 499),
        "reply text of the right session and turn"
    );
    assert!(
        window.iter().all(|turn| !turn.interrupted),
        "synthetic turns are complete"
    );

    assert_eq!(
        store.session_state(&bench).unwrap().next_turn,
        TurnNo(500),
        "numbering continues after the prefill"
    );
    complete_turn(store, &bench, 500, "live question", "live answer");
    let newest = store.context(&bench, 1).unwrap();
    assert_eq!(
        newest[0].reply_text, "live answer",
        "a live turn on top of the prefill is the newest context"
    );

    store.prefill(20, 500).unwrap();
    assert_eq!(
        store.context(&bench, 1).unwrap()[0].turn,
        TurnNo(500),
        "a second prefill changes nothing"
    );
    assert!(
        store
            .context(&Store::prefill_session_id(20), 10)
            .unwrap()
            .is_empty(),
        "only the requested number of sessions is written"
    );
}

/// The benchmark's database size. Prints timings; asserts only correctness.
/// Run: `cargo test -p koto-store --test it -- --ignored --nocapture million`
#[test]
#[ignore = "writes 1,000,000 rows; a timing run, not a correctness test"]
fn million_row_prefill_and_context_timing() {
    const SESSIONS: usize = 1_000;
    const TURNS: usize = 500;
    let fixture = Fixture::fresh();
    let store = &fixture.store;

    let started = Instant::now();
    store.prefill(SESSIONS, TURNS).unwrap();
    println!(
        "prefill of {} rows: {:?}",
        2 * SESSIONS * TURNS,
        started.elapsed()
    );

    let probes = 2_000;
    let started = Instant::now();
    for probe in 0..probes {
        let bench = Store::prefill_session_id((probe * 7919) % SESSIONS);
        let window = store.context(&bench, 20).unwrap();
        assert_eq!(
            window.len(),
            20,
            "every prefilled session has at least 20 done turns"
        );
    }
    println!("context(20) mean: {:?}", started.elapsed() / probes as u32);

    let started = Instant::now();
    for probe in 0..probes {
        let bench = Store::prefill_session_id((probe * 7919) % SESSIONS);
        assert_eq!(
            store.session_state(&bench).unwrap().next_turn,
            TurnNo(TURNS as u64),
            "counter after prefill"
        );
    }
    println!(
        "session_state mean: {:?}",
        started.elapsed() / probes as u32
    );

    let started = Instant::now();
    let path = fixture.path();
    drop(fixture.store);
    let _reopened = Store::open(&path).unwrap();
    println!(
        "reopen (with the abandoned-turn sweep): {:?}",
        started.elapsed()
    );
}
