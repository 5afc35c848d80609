//! Per-turn fences seen from the output: late chunks of a stopped turn never play; the next
//! turn does.

use std::time::Duration;

use koto_audio::Pushed;
use koto_core::TurnNo;

use crate::support::{
    CHUNK_MS, RATE, advance, as_float, duration_of, manual_player, push_turn, sid, span_of, tone,
};

#[test]
fn late_chunks_of_a_stopped_turn_are_dropped_and_the_next_turn_plays() {
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("live-001");
    push_turn(&player, &session, 7, 0, 10, 8_000);
    advance(&sink, Duration::from_millis(100));
    // STOP_ACK for turn 7, then the producer's in-flight chunks of turn 7 arrive anyway.
    player.stop_turn(&session, TurnNo(7));
    let stopped_at = sink.elapsed();
    for seq in 10..15 {
        assert_eq!(
            player.push(&session, TurnNo(7), seq, RATE, &tone(CHUNK_MS, 8_000)),
            Ok(Pushed::Fenced),
            "late chunk {seq} of the stopped turn is dropped"
        );
    }
    assert_eq!(
        player.push(&session, TurnNo(6), 99, RATE, &tone(CHUNK_MS, 8_000)),
        Ok(Pushed::Fenced),
        "an older turn's straggler too"
    );
    push_turn(&player, &session, 8, 0, 5, 16_000);
    player.end_turn(&session, TurnNo(8));
    advance(&sink, Duration::from_millis(500));

    let (_, turn7_last) = span_of(&sink, as_float(8_000)).expect("turn 7 played at first");
    assert!(
        turn7_last <= stopped_at + Duration::from_millis(30),
        "turn 7 silent soon after the stop: last at {turn7_last:?}, stop at {stopped_at:?}"
    );
    let (turn8_first, _) = span_of(&sink, as_float(16_000)).expect("turn 8 played");
    assert!(turn8_first > turn7_last, "turn 8 after turn 7");
    assert_eq!(
        duration_of(&sink, as_float(16_000)),
        Duration::from_millis(100),
        "all of turn 8 and nothing else at its level"
    );
    let stats = player.stats();
    assert_eq!(stats.chunks_fenced, 6, "six stragglers counted as fenced");
}

#[test]
fn chunks_of_an_older_turn_are_stale_once_a_newer_one_started() {
    let (player, sink) = manual_player(0, 1.0);
    let session = sid("live-001");
    push_turn(&player, &session, 3, 0, 2, 16_000);
    assert_eq!(
        player.push(&session, TurnNo(2), 5, RATE, &tone(CHUNK_MS, 8_000)),
        Ok(Pushed::Stale),
        "turn 2 is over once turn 3 speaks"
    );
    advance(&sink, Duration::from_millis(100));
    assert_eq!(
        span_of(&sink, as_float(8_000)),
        None,
        "nothing of the stale turn was heard"
    );
}
