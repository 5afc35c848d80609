//! No sound card, a missing device, a device unplugged mid-turn: the player falls back,
//! says so in its status, keeps consuming in real time, and never panics.

use std::time::{Duration, Instant};

use koto_audio::{Player, PlayerConfig, output_devices};
use koto_core::TurnNo;

use crate::support::{RATE, advance, manual_player, push_turn, sid, tone};

/// Wait (polling, bounded) for the output thread to publish a status that satisfies `done`.
fn wait_for_status(player: &Player, done: impl Fn(&koto_audio::PlaybackStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&player.status()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test]
async fn a_missing_device_falls_back_and_audio_is_still_consumed_in_real_time() {
    // Volume 0: on a developer's machine with a sound card this falls back to the default
    // device, and a test must not make noise.
    let player = Player::start(PlayerConfig {
        device: Some("No Such Cable 9000".into()),
        volume: 0.0,
        jitter_ms: 40,
    });
    let status = player.status();
    let warning = status.warning.clone().expect("the fallback is reported");
    assert!(
        warning.contains("No Such Cable 9000"),
        "the warning names the missing device: {warning}"
    );
    assert_ne!(status.device, "No Such Cable 9000", "it plays elsewhere");
    let has_default = output_devices().iter().any(|d| d.is_default);
    if !has_default {
        assert!(
            status.null_sink && status.device == "null",
            "no sound card here: the null sink, said so: {status:?}"
        );
    }

    let session = sid("live-001");
    let started = Instant::now();
    for seq in 0..10 {
        player
            .push(&session, TurnNo(1), seq, RATE, &tone(20, 8_000))
            .unwrap();
    }
    player.end_turn(&session, TurnNo(1));
    tokio::time::timeout(Duration::from_secs(10), player.drained())
        .await
        .expect("the 200 ms of audio is consumed");
    if status.null_sink {
        // A lower bound only: consuming in real time cannot be faster than 200 ms minus the
        // period that was already under way, however fast or slow this machine is.
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the null sink paces like a device, it does not swallow the queue: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_device_unplugged_mid_turn_falls_back_to_the_null_sink() {
    let (player, sink) = manual_player(40, 1.0);
    assert_eq!(
        player.status().device,
        "recording",
        "starts on the given sink"
    );
    let session = sid("live-001");
    push_turn(&player, &session, 1, 0, 25, 8_000);
    player.end_turn(&session, TurnNo(1));
    advance(&sink, Duration::from_millis(100));

    sink.unplug("USB headset removed");
    wait_for_status(&player, |status| status.null_sink);
    let status = player.status();
    assert!(status.null_sink, "fell back to the null sink: {status:?}");
    assert!(
        status
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("USB headset removed")),
        "and says why: {status:?}"
    );
    assert!(!sink.is_attached(), "the lost sink was let go");
    let consumed_before = sink.audible(0.001);
    advance(&sink, Duration::from_millis(100));
    assert_eq!(
        sink.audible(0.001),
        consumed_before,
        "the lost sink pulls nothing more"
    );
    tokio::time::timeout(Duration::from_secs(10), player.drained())
        .await
        .expect("the rest of the turn is consumed by the null sink");
    assert!(
        player.stats().consumed_samples > 0,
        "the clock kept running"
    );
}

#[test]
fn switching_to_a_missing_device_at_runtime_falls_back_without_panicking() {
    let player = Player::start(PlayerConfig {
        volume: 0.0,
        ..PlayerConfig::default()
    });
    player.set_device(Some("Gone Device".into()));
    wait_for_status(&player, |status| {
        status
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("Gone Device"))
    });
    let status = player.status();
    assert!(
        status
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("Gone Device")),
        "the switch failed visibly: {status:?}"
    );
    let session = sid("s");
    assert_eq!(
        player.push(&session, TurnNo(0), 0, RATE, &tone(20, 1)),
        Ok(koto_audio::Pushed::Queued),
        "the player still works"
    );
}
