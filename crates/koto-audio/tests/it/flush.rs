//! The flush bound: after STOP, nothing audible is consumed later than STOP + 30 ms.

use std::time::{Duration, Instant};

use koto_audio::{Pace, Player, PlayerConfig, RecordingSink};
use koto_core::TurnNo;

use crate::support::{LOOKAHEAD, PERIOD, RATE, SILENCE, advance, manual_player, push_turn, sid};

const BOUND: Duration = Duration::from_millis(30);

/// Push 2 s, play 505 ms (mid-period), run `stop`, play on; return (stop time, last audible).
fn stop_mid_turn(stop: impl FnOnce(&Player)) -> (Duration, Duration, Duration) {
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("live-001");
    push_turn(&player, &session, 7, 0, 100, 8_000);
    player.end_turn(&session, TurnNo(7));
    advance(&sink, Duration::from_millis(505));
    let stopped_at = sink.elapsed();
    stop(&player);
    advance(&sink, Duration::from_millis(2_000));
    let heard = sink.audible(SILENCE);
    let last = sink
        .last_audible(SILENCE)
        .expect("audio played before the STOP");
    (stopped_at, last, heard)
}

#[test]
fn stop_turn_is_silent_within_30_ms() {
    let (session, turn) = (sid("live-001"), TurnNo(7));
    let (stopped_at, last, heard) = stop_mid_turn(|player| {
        assert!(player.stop_turn(&session, turn), "queued audio was removed");
    });
    let latency = last.saturating_sub(stopped_at);
    eprintln!("stop_turn: last audible sample {latency:?} after STOP");
    assert!(
        heard > Duration::from_millis(400) && heard < Duration::from_millis(600),
        "about the 505 ms before the STOP (+ the sink's lookahead) played, not the 2 s: {heard:?}"
    );
    assert!(
        latency <= BOUND,
        "only the sink's own buffer ({LOOKAHEAD:?}) outlives a STOP: {latency:?}"
    );
    assert!(
        latency < LOOKAHEAD + PERIOD,
        "the player itself adds nothing beyond what the sink had pulled: {latency:?}"
    );
}

#[test]
fn stop_session_and_flush_are_silent_within_30_ms() {
    let session = sid("live-001");
    let (stopped_at, last, _) = stop_mid_turn(|player| {
        player.stop_session(&session);
    });
    assert!(
        last.saturating_sub(stopped_at) <= BOUND,
        "STOP of the whole session: {:?}",
        last.saturating_sub(stopped_at)
    );
    let (stopped_at, last, _) = stop_mid_turn(|player| {
        player.flush();
    });
    assert!(
        last.saturating_sub(stopped_at) <= BOUND,
        "flush: {:?}",
        last.saturating_sub(stopped_at)
    );
}

/// The same bound on the wall clock, with a real-time recording sink. Measured
/// conservatively: STOP's time is read *after* `stop_turn` returned, and a block is stamped
/// with its scheduled start, which is never after it was pulled. So the bound holds however
/// slow the machine is; a slow machine only plays less before the STOP.
#[test]
fn stop_is_silent_within_30_ms_on_the_wall_clock() {
    let (sink, handle) = RecordingSink::new(RATE, Pace::RealTime);
    let player = Player::start_with_sink(PlayerConfig::default(), Box::new(sink));
    let session = sid("live-001");
    push_turn(&player, &session, 1, 0, 100, 8_000);
    player.end_turn(&session, TurnNo(1));
    // Let some audio play first, so the STOP interrupts something (not needed for the bound).
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.audible(SILENCE) < Duration::from_millis(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        player.stop_turn(&session, TurnNo(1)),
        "the turn was still playing"
    );
    let stopped_at = handle.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.elapsed() < stopped_at + Duration::from_millis(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = handle
        .last_audible(SILENCE)
        .expect("audio played before the STOP");
    eprintln!(
        "real time: last audible sample {:?} after STOP returned",
        last.saturating_sub(stopped_at)
    );
    assert!(
        last <= stopped_at + BOUND,
        "nothing audible consumed later than STOP + 30 ms: last {last:?}, STOP {stopped_at:?}"
    );
    assert!(
        handle.audible(SILENCE) < Duration::from_millis(1_900),
        "the 2 s turn did not play out"
    );
}
