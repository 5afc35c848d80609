//! `play_relay` against a real in-process relay: chunks paced by the relay play, a STOP
//! silences the player within the bound, the next turn plays to its END, and shutdown ends
//! the task. The relay paces on tokio's paused clock; the manual sink is advanced in step.

use std::time::Duration;

use koto_audio::play_relay;
use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame, SpeechChunk, Viseme};
use koto_relay::{ClientFilter, Ingested, Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use crate::support::{
    CHUNK_MS, PERIOD, advance, as_float, duration_of, manual_player, sid, span_of, tone,
};

fn chunk(session: &SessionId, turn: u64, seq: u64, level: i16) -> RelayFrame {
    RelayFrame::SpeechChunk(SpeechChunk {
        session_id: session.clone(),
        turn: TurnNo(turn),
        seq,
        pcm: SpeechChunk::encode_pcm(&tone(CHUNK_MS, level)),
        sample_rate: None,
        viseme: Viseme { mouth_open: 0.3 },
        segment: None,
    })
}

fn control(action: ControlAction, session: &SessionId, turn: u64) -> RelayFrame {
    RelayFrame::Control(Control {
        action,
        session_id: session.clone(),
        turn: Some(TurnNo(turn)),
        reason: None,
    })
}

/// Let `total` of (paused) time pass in sink periods: first the tasks run (the relay releases,
/// the glue pushes or stops), then the sink consumes that period.
async fn play_for(sink: &koto_audio::RecordingHandle, total: Duration) {
    let mut left = total;
    while left > Duration::ZERO {
        tokio::time::sleep(PERIOD).await;
        advance(sink, PERIOD);
        left = left.saturating_sub(PERIOD);
    }
}

#[tokio::test(start_paused = true)]
async fn relay_audio_plays_a_stop_silences_it_and_the_next_turn_plays_out() {
    let relay = Relay::new(RelayConfig::default());
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("live-001");
    let shutdown = CancellationToken::new();
    let glue = tokio::spawn(play_relay(
        relay.clone(),
        player.clone(),
        ClientFilter {
            session: Some(session.clone()),
            ..ClientFilter::default()
        },
        shutdown.clone(),
    ));
    while relay.metrics().clients_connected == 0 {
        tokio::task::yield_now().await;
    }
    let (engine, mut stops) = relay.attach_producer(true);

    // Turn 1: 2 s of audio. The relay releases it in real time, 200 ms ahead.
    for seq in 0..100 {
        assert_eq!(
            engine.send(chunk(&session, 1, seq, 8_000)).await,
            Ok(Ingested::Queued),
            "chunk {seq} accepted"
        );
    }
    // Another session's audio is not this player's business.
    engine
        .send(chunk(&sid("other"), 1, 0, 4_000))
        .await
        .expect("queued");
    play_for(&sink, Duration::from_millis(400)).await;

    let pending = relay.begin_stop(&session, "user_interrupt");
    let stopped_at = sink.elapsed();
    let stop = stops.recv().await.expect("the engine gets the STOP");
    assert_eq!(stop.action, ControlAction::Stop, "a CONTROL STOP");
    engine
        .send(control(ControlAction::StopAck, &session, 1))
        .await
        .expect("STOP_ACK accepted");
    assert_eq!(
        engine.send(chunk(&session, 1, 100, 8_000)).await,
        Ok(Ingested::Fenced),
        "the relay drops turn 1's stragglers"
    );
    play_for(&sink, Duration::from_millis(200)).await;

    // Turn 2: 200 ms, then END.
    for seq in 0..10 {
        engine
            .send(chunk(&session, 2, seq, 16_000))
            .await
            .expect("turn 2 queued");
    }
    engine
        .send(control(ControlAction::End, &session, 2))
        .await
        .expect("END queued");
    play_for(&sink, Duration::from_millis(600)).await;

    let (turn1_first, turn1_last) = span_of(&sink, as_float(8_000)).expect("turn 1 played");
    eprintln!(
        "relay: turn 1 audible from {turn1_first:?}, last {:?} after STOP",
        turn1_last.saturating_sub(stopped_at)
    );
    assert!(
        duration_of(&sink, as_float(8_000)) >= Duration::from_millis(300),
        "turn 1 played until the STOP"
    );
    assert!(
        turn1_last <= stopped_at + Duration::from_millis(30),
        "silent within 30 ms of STOP: last {turn1_last:?}, STOP {stopped_at:?}"
    );
    assert_eq!(
        duration_of(&sink, as_float(16_000)),
        Duration::from_millis(200),
        "turn 2 played to its END, all of it"
    );
    assert_eq!(
        span_of(&sink, as_float(4_000)),
        None,
        "the other session was filtered out"
    );
    assert!(!player.is_playing(), "drained after END");
    assert!(
        matches!(
            pending.outcome().await,
            koto_relay::StopResolution::Acked { .. }
        ),
        "the STOP was acknowledged"
    );

    shutdown.cancel();
    glue.await.expect("the glue task ends on shutdown");
}

#[tokio::test(start_paused = true)]
async fn the_glue_ends_when_the_relay_shuts_down() {
    let relay = Relay::new(RelayConfig::default());
    let (player, _sink) = manual_player(40, 1.0);
    let glue = tokio::spawn(play_relay(
        relay.clone(),
        player,
        ClientFilter::default(),
        CancellationToken::new(),
    ));
    while relay.metrics().clients_connected == 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        relay.shutdown(Duration::from_secs(1)).await,
        "relay shut down"
    );
    tokio::time::timeout(Duration::from_secs(5), glue)
        .await
        .expect("the glue noticed")
        .expect("and ended cleanly");
}

#[tokio::test(start_paused = true)]
async fn a_relay_pause_silences_the_player_at_once_and_resume_plays_every_sample_once() {
    let relay = Relay::new(RelayConfig::default());
    let (player, sink) = manual_player(40, 1.0);
    let session = sid("duck");
    let shutdown = CancellationToken::new();
    let glue = tokio::spawn(play_relay(
        relay.clone(),
        player.clone(),
        ClientFilter {
            session: Some(session.clone()),
            ..ClientFilter::default()
        },
        shutdown.clone(),
    ));
    while relay.metrics().clients_connected == 0 {
        tokio::task::yield_now().await;
    }
    let (engine, _stops) = relay.attach_producer(true);
    // 1 s of audio, then END.
    let sender = tokio::spawn(async move {
        for seq in 0..50 {
            engine
                .send(chunk(&session, 1, seq, 8_000))
                .await
                .expect("queued");
        }
        engine
            .send(control(ControlAction::End, &session, 1))
            .await
            .expect("END queued");
        engine
    });
    play_for(&sink, Duration::from_millis(300)).await;
    assert!(relay.pause(&sid("duck"), Duration::from_secs(10)));
    let paused_at = sink.elapsed();
    play_for(&sink, Duration::from_millis(1_000)).await;
    let heard_by_resume = duration_of(&sink, as_float(8_000));
    let (_, last_before_resume) = span_of(&sink, as_float(8_000)).expect("played before the pause");
    assert!(relay.resume(&sid("duck")));
    play_for(&sink, Duration::from_millis(1_500)).await;
    eprintln!(
        "player pause: audible {:?} after the pause",
        last_before_resume.saturating_sub(paused_at)
    );
    assert!(
        last_before_resume <= paused_at + Duration::from_millis(30),
        "silent within 30 ms of the pause (the device buffer): last {last_before_resume:?}, pause {paused_at:?}"
    );
    assert!(
        heard_by_resume < Duration::from_millis(400),
        "held through the pause"
    );
    assert_eq!(
        duration_of(&sink, as_float(8_000)),
        Duration::from_millis(1_000),
        "every sample played exactly once: nothing lost to the pause, nothing twice"
    );
    drop(sender.await.expect("sender"));
    shutdown.cancel();
    glue.await.expect("the glue task ends on shutdown");
}
