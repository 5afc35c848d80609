//! The jitter buffer as heard: start after `jitter_ms` buffered, or on END, or after waiting
//! `jitter_ms`, and never later. Times are relative to where the sink had pulled to when the
//! audio arrived (its "now" plus its lookahead), i.e. to the earliest it could have played.

use std::time::Duration;

use koto_core::TurnNo;

use crate::support::{LOOKAHEAD, PERIOD, SILENCE, advance, manual_player, push_turn, sid};

const JITTER: Duration = Duration::from_millis(40);

#[test]
fn a_trickle_starts_after_the_jitter_wait_and_not_later() {
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("live-001");
    advance(&sink, Duration::from_millis(100));
    let earliest = sink.elapsed() + LOOKAHEAD;
    push_turn(&player, &session, 1, 0, 1, 8_000);
    advance(&sink, Duration::from_millis(200));
    let started = sink.first_audible(SILENCE).expect("it played");
    assert!(
        started >= earliest + JITTER,
        "20 ms < 40 ms buffered: held back for the jitter wait ({started:?} vs {earliest:?})"
    );
    assert!(
        started <= earliest + JITTER + PERIOD,
        "but no longer than that, give or take one sink period: {started:?}"
    );
}

#[test]
fn enough_buffered_starts_at_once() {
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("live-001");
    advance(&sink, Duration::from_millis(100));
    let earliest = sink.elapsed() + LOOKAHEAD;
    push_turn(&player, &session, 1, 0, 2, 8_000);
    advance(&sink, Duration::from_millis(200));
    assert_eq!(
        sink.first_audible(SILENCE),
        Some(earliest),
        "40 ms buffered meets the target: the next period plays it"
    );
}

#[test]
fn end_starts_a_short_turn_at_once() {
    let (player, sink) = manual_player(60, 1.0);
    let session = sid("live-001");
    advance(&sink, Duration::from_millis(100));
    let earliest = sink.elapsed() + LOOKAHEAD;
    push_turn(&player, &session, 1, 0, 1, 8_000);
    player.end_turn(&session, TurnNo(1));
    advance(&sink, Duration::from_millis(200));
    assert_eq!(
        sink.first_audible(SILENCE),
        Some(earliest),
        "after END nothing more comes: no reason to wait"
    );
    assert_eq!(
        sink.audible(SILENCE),
        Duration::from_millis(20),
        "the whole short turn played"
    );
}
