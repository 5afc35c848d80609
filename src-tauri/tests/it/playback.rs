//! Local playback: the shell feeds the relay's audio to its player, and a STOP from the desktop
//! silences what the player has queued.

use std::time::Duration;

use koto_audio::{Pace, Player, PlayerConfig, RecordingSink};
use koto_core::SessionId;
use koto_core::turn::InputKind;
use koto_engine::{Submission, TurnRequest};
use serde_json::json;

use crate::harness::Harness;

#[test]
fn the_relay_plays_here_and_stop_silences_it() {
    // A manual sink never consumes: queued audio can only leave the player by a flush.
    let (sink, _recording) = RecordingSink::new(24_000, Pace::Manual);
    let player = Player::start_with_sink(PlayerConfig::default(), Box::new(sink));
    let harness = Harness::with_player(25, Some(player.clone()));
    let engine = harness.shell().engine().expect("engine running");
    let request = TurnRequest {
        session: SessionId::parse("live-say").expect("valid id"),
        turn: None,
        kind: InputKind::Command,
        content: "say Hello everyone, welcome back to the stream. Tonight we play something new."
            .to_owned(),
        lang: Some("en".to_owned()),
        meta: Default::default(),
        received_at: tokio::time::Instant::now(),
    };
    let turn = match tauri::async_runtime::block_on(engine.submit(request)) {
        Ok(Submission::Turn(turn)) => turn,
        other => panic!("`say` starts a spoken turn, got {other:?}"),
    };
    harness.wait_until("the co-host's speech to reach the local player", |_| {
        player.stats().chunks_queued > 0
    });
    assert!(
        harness.shell().info().playback.is_some(),
        "app_info reports where the voice plays"
    );
    harness
        .invoke("stop_talking", json!({"sessionId": "live-say"}))
        .expect("stop is allowed from the panel");
    tauri::async_runtime::block_on(async {
        tokio::time::timeout(Duration::from_secs(20), player.drained())
            .await
            .expect("STOP empties the player's queue")
    });
    assert!(
        player.stats().flushes >= 1,
        "the queue was flushed by the STOP (a manual sink plays nothing out): {:?}",
        player.stats()
    );
    drop(turn);
}
