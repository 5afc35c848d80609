//! STOP: fences, per-session routing, repeats, timeouts, and session isolation.

use std::time::Duration;

use koto_core::TurnNo;
use koto_protocol::ingest::ControlAction;
use koto_relay::{ClientFilter, Ingested, Relay, RelayConfig, StopResolution};
use tokio::time::Instant;

use crate::support::{Seen, ack, chunk, chunks_of, end, record, recv_for, recv_until, sid};

#[tokio::test(start_paused = true)]
async fn stop_clears_the_queue_and_no_chunk_of_the_turn_follows_the_ack() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let session = sid("live-001");
    for seq in 0..50 {
        engine.send(chunk(&session, 7, seq)).await.expect("queued");
    }
    // Let 300 ms of playback pass: about 25 chunks released, 25 still queued.
    let before = recv_for(&mut client, Duration::from_millis(300)).await;
    let heard = chunks_of(&before, "live-001");
    assert!(
        heard.len() > 10 && heard.len() < 50,
        "some but not all audio went out: {}",
        heard.len()
    );

    let pending = relay.begin_stop(&session, "user_interrupt");
    let stop = stops
        .try_recv()
        .expect("the STOP went to the engine at once");
    assert_eq!(stop.action, ControlAction::Stop, "a CONTROL STOP");
    assert_eq!(stop.session_id, session, "for this session only");
    assert_eq!(
        stop.reason.as_deref(),
        Some("user_interrupt"),
        "with the reason"
    );

    // The engine is slow to react: chunks it had in flight arrive between STOP and its ACK.
    for seq in 50..55 {
        assert_eq!(
            engine.send(chunk(&session, 7, seq)).await,
            Ok(Ingested::Fenced),
            "chunk {seq} of a stopping session is dropped, not an error"
        );
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        engine.send(ack(&session, Some(7))).await,
        Ok(Ingested::Forwarded),
        "STOP_ACK accepted"
    );
    // And after its ACK, stragglers of turn 7, even its END.
    assert_eq!(
        engine.send(chunk(&session, 7, 55)).await,
        Ok(Ingested::Fenced),
        "after the ACK the turn is fenced"
    );
    assert_eq!(
        engine.send(end(&session, 7)).await,
        Ok(Ingested::Fenced),
        "no END after STOP_ACK"
    );
    // A new turn plays.
    for seq in 0..3 {
        assert_eq!(
            engine.send(chunk(&session, 8, seq)).await,
            Ok(Ingested::Queued),
            "turn 8 is a new turn"
        );
    }
    engine.send(end(&session, 8)).await.expect("END of turn 8");

    let outcome = pending.outcome().await;
    assert_eq!(
        outcome,
        StopResolution::Acked {
            turn: Some(TurnNo(7)),
            latency: Duration::from_millis(30)
        },
        "the STOP was acknowledged for turn 7 after 30 ms"
    );
    let after = recv_until(&mut client, Duration::from_secs(2), |s| {
        matches!(s, Seen::End { turn: 8, .. })
    })
    .await;
    let frames: Vec<&Seen> = after.iter().map(|(_, s)| s).collect();
    let stop_at = frames
        .iter()
        .position(|s| matches!(s, Seen::Stop { .. }))
        .expect("clients got STOP");
    let ack_at = frames
        .iter()
        .position(|s| matches!(s, Seen::StopAck { .. }))
        .expect("clients got STOP_ACK");
    assert!(stop_at < ack_at, "STOP before STOP_ACK");
    assert!(
        !frames[stop_at..]
            .iter()
            .any(|s| matches!(s, Seen::Chunk { turn: 7, .. })),
        "no chunk of turn 7 reaches a client after the STOP (queued ones were taken back): {frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|s| matches!(s, Seen::End { turn: 7, .. })),
        "turn 7 never ends with END"
    );
    assert_eq!(
        *frames[ack_at],
        Seen::StopAck {
            session: "live-001".into(),
            turn: Some(7)
        },
        "clients learn which turn was stopped"
    );
    assert_eq!(
        chunks_of(&after[ack_at..], "live-001"),
        vec![(8, 0), (8, 1), (8, 2)],
        "turn 8 plays in full after the ACK"
    );
    let last_heard = chunks_of(&[before, after.clone()].concat(), "live-001")
        .into_iter()
        .filter(|(turn, _)| *turn == 7)
        .map(|(_, seq)| seq)
        .max();
    assert_eq!(
        relay.released_seq(&session, TurnNo(7)),
        last_heard,
        "released_seq is the last chunk of turn 7 a client got"
    );
    let metrics = relay.metrics();
    assert!(
        metrics.dropped_queued_on_stop > 0,
        "queued audio was dropped by the STOP"
    );
    assert_eq!(
        metrics.dropped_fenced, 7,
        "5 chunks while stopping + 1 chunk and 1 END after the ACK"
    );
    assert_eq!(
        metrics.stop_ack_latency.last,
        Some(Duration::from_millis(30)),
        "latency recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_one_session_leaves_the_other_playing_untouched() {
    let relay = Relay::new(RelayConfig::default());
    let recorder = record(
        relay.subscribe(ClientFilter::default()),
        Duration::from_secs(3),
        |s| matches!(s, Seen::End { .. }),
    );
    let (engine, mut stops) = relay.attach_producer(true);
    let (a, b) = (sid("a"), sid("b"));
    let t0 = Instant::now();
    for seq in 0..40 {
        engine.send(chunk(&a, 1, seq)).await.expect("a queued");
        engine.send(chunk(&b, 1, seq)).await.expect("b queued");
    }
    engine.send(end(&b, 1)).await.expect("b END queued");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pending = relay.begin_stop(&a, "user_interrupt");
    let stop = stops.try_recv().expect("STOP for a");
    assert_eq!(stop.session_id, a, "only a is stopped");
    engine.send(ack(&a, Some(1))).await.expect("ack");
    assert!(
        matches!(pending.outcome().await, StopResolution::Acked { .. }),
        "a acknowledged"
    );
    assert!(stops.try_recv().is_err(), "nothing was sent about b");

    let log = recorder.await.expect("recorder ran");
    let b_chunks: Vec<(Instant, u64)> = log
        .iter()
        .filter_map(|(at, s)| match s {
            Seen::Chunk { session, seq, .. } if session == "b" => Some((*at, *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        b_chunks.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        (0..40).collect::<Vec<_>>(),
        "b lost nothing"
    );
    for (at, seq) in &b_chunks {
        let due =
            t0 + Duration::from_millis((seq + 1) * 20).saturating_sub(Duration::from_millis(200));
        assert_eq!(
            *at,
            due.max(t0),
            "b's chunk {seq} left exactly on its own clock, unaffected by a's STOP"
        );
    }
    assert!(
        log.iter().any(|(_, s)| *s
            == Seen::End {
                session: "b".into(),
                turn: 1
            }),
        "b's turn ended normally"
    );
    let a_stop = log
        .iter()
        .position(|(_, s)| {
            *s == Seen::Stop {
                session: "a".into(),
            }
        })
        .expect("clients saw a's STOP");
    assert!(
        chunks_of(&log[a_stop..], "a").is_empty(),
        "a went silent at its STOP while b played on"
    );
    assert!(
        !log.iter()
            .any(|(_, s)| matches!(s, Seen::Stop { session } if session == "b")),
        "no STOP was ever shown for b"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_goes_to_the_producer_that_owns_the_session_not_the_latest_one() {
    let relay = Relay::new(RelayConfig::default());
    let (engine, mut engine_stops) = relay.attach_producer(true);
    let (first, mut first_stops) = relay.attach_producer(false);
    let (second, mut second_stops) = relay.attach_producer(false);
    let (a, b, c) = (sid("a"), sid("b"), sid("c"));
    first.send(chunk(&a, 0, 0)).await.expect("first produces a");
    second
        .send(chunk(&b, 0, 0))
        .await
        .expect("second (the latest connection) produces b");

    drop(relay.begin_stop(&a, "user_interrupt"));
    assert_eq!(
        first_stops.try_recv().map(|s| s.session_id).ok(),
        Some(a.clone()),
        "a's STOP reaches a's producer"
    );
    assert!(
        second_stops.try_recv().is_err(),
        "the latest connection is not bothered"
    );
    assert!(engine_stops.try_recv().is_err(), "nor the engine");

    drop(relay.begin_stop(&b, "user_interrupt"));
    assert_eq!(
        second_stops.try_recv().map(|s| s.session_id).ok(),
        Some(b.clone()),
        "b's STOP reaches b's producer"
    );
    assert!(
        first_stops.try_recv().is_err(),
        "a's producer gets nothing for b"
    );

    drop(relay.begin_stop(&c, "user_interrupt"));
    assert_eq!(
        engine_stops.try_recv().map(|s| s.session_id).ok(),
        Some(c.clone()),
        "an unowned session's STOP goes to the default producer"
    );

    // a's producer leaves while a's STOP is in flight: the STOP resolves, the next goes to the engine.
    first.send(ack(&a, Some(0))).await.expect("first acks");
    drop(first);
    drop(relay.begin_stop(&a, "again"));
    assert_eq!(
        engine_stops.try_recv().map(|s| s.session_id).ok(),
        Some(a),
        "after its producer detached, a routes to the default producer"
    );
    assert!(
        second_stops.try_recv().is_err(),
        "never to the other remote producer"
    );
    assert_eq!(relay.metrics().producers, 2, "engine and second remain");
    drop(engine);
}

#[tokio::test(start_paused = true)]
async fn repeated_stops_join_and_stops_between_turns_are_harmless() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let session = sid("s");
    engine.send(chunk(&session, 3, 0)).await.expect("queued");
    let first = relay.begin_stop(&session, "user_interrupt");
    let second = relay.begin_stop(&session, "user_interrupt");
    assert!(stops.try_recv().is_ok(), "one STOP to the producer");
    assert!(
        stops.try_recv().is_err(),
        "a repeat while one is in flight joins it instead of resending"
    );
    engine.send(ack(&session, Some(3))).await.expect("ack");
    let expected = StopResolution::Acked {
        turn: Some(TurnNo(3)),
        latency: Duration::ZERO,
    };
    assert_eq!(
        first.outcome().await,
        expected,
        "the first STOP acknowledged"
    );
    assert_eq!(
        second.outcome().await,
        expected,
        "the repeat gets the same answer"
    );

    // Between turns: the engine has nothing running and answers without a turn.
    let idle = relay.begin_stop(&session, "user_interrupt");
    assert!(
        stops.try_recv().is_ok(),
        "a STOP after the ACK is a new STOP"
    );
    engine
        .send(ack(&session, None))
        .await
        .expect("ack without a turn");
    assert_eq!(
        idle.outcome().await,
        StopResolution::Acked {
            turn: Some(TurnNo(3)),
            latency: Duration::ZERO
        },
        "without a turn the relay fences the last turn it saw"
    );
    engine.send(chunk(&session, 4, 0)).await.expect("turn 4");
    let log = recv_until(&mut client, Duration::from_secs(1), |s| {
        matches!(s, Seen::Chunk { turn: 4, .. })
    })
    .await;
    assert_eq!(
        chunks_of(&log, "s").last(),
        Some(&(4, 0)),
        "the next turn plays after idle STOPs"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_before_any_audio_fences_the_turn_that_was_about_to_speak() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let session = sid("early");
    let pending = relay.begin_stop(&session, "user_interrupt");
    assert!(
        stops.try_recv().is_ok(),
        "the engine (default producer) gets the STOP of a session it has not spoken in yet"
    );
    // The engine's turn 0 produced its first chunk before it saw the STOP.
    assert_eq!(
        engine.send(chunk(&session, 0, 0)).await,
        Ok(Ingested::Fenced),
        "dropped: the session is stopping"
    );
    engine.send(ack(&session, Some(0))).await.expect("ack");
    assert!(
        matches!(
            pending.outcome().await,
            StopResolution::Acked {
                turn: Some(TurnNo(0)),
                ..
            }
        ),
        "acked turn 0"
    );
    engine.send(chunk(&session, 1, 0)).await.expect("turn 1");
    let log = recv_until(&mut client, Duration::from_secs(1), |s| {
        matches!(s, Seen::Chunk { .. })
    })
    .await;
    assert_eq!(
        chunks_of(&log, "early"),
        vec![(1, 0)],
        "only turn 1 is heard"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_without_a_producer_fences_by_itself() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let session = sid("orphan");
    {
        let (gone, _stops) = relay.attach_producer(false);
        for seq in 0..30 {
            gone.send(chunk(&session, 2, seq)).await.expect("queued");
        }
    }
    assert_eq!(
        relay.metrics().producers,
        0,
        "the producer detached; its audio is still queued"
    );
    let outcome = relay.stop(&session, "user_interrupt").await;
    assert_eq!(
        outcome,
        StopResolution::NoProducer {
            fence: Some(TurnNo(2))
        },
        "nobody to ask: the relay fences turn 2"
    );
    let log = recv_for(&mut client, Duration::from_secs(1)).await;
    let frames: Vec<&Seen> = log.iter().map(|(_, s)| s).collect();
    let ack_at = frames
        .iter()
        .position(|s| matches!(s, Seen::StopAck { turn: Some(2), .. }))
        .expect("clients still get STOP_ACK so they drop buffered audio");
    assert!(
        !frames[ack_at..]
            .iter()
            .any(|s| matches!(s, Seen::Chunk { .. })),
        "nothing of turn 2 after it"
    );
    let (late, _stops) = relay.attach_producer(false);
    assert_eq!(
        late.send(chunk(&session, 2, 30)).await,
        Ok(Ingested::Fenced),
        "turn 2 stays fenced for anyone"
    );
    let fresh = relay.stop(&sid("never-seen"), "user_interrupt").await;
    assert_eq!(
        fresh,
        StopResolution::NoProducer { fence: None },
        "a STOP for an unknown session without producers is harmless"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_stop_times_out_and_fences() {
    let config = RelayConfig::default();
    let timeout = config.stop_ack_timeout;
    let relay = Relay::new(config);
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let session = sid("mute-engine");
    engine.send(chunk(&session, 5, 0)).await.expect("queued");
    let t0 = Instant::now();
    let outcome = relay.stop(&session, "user_interrupt").await;
    assert_eq!(
        outcome,
        StopResolution::TimedOut {
            fence: Some(TurnNo(5))
        },
        "no ACK: the relay fenced turn 5"
    );
    assert_eq!(
        Instant::now() - t0,
        timeout,
        "exactly stop_ack_timeout later"
    );
    assert!(stops.try_recv().is_ok(), "the STOP had been sent");
    let log = recv_for(&mut client, Duration::from_millis(10)).await;
    assert!(
        log.iter().any(|(_, s)| *s
            == Seen::StopAck {
                session: "mute-engine".into(),
                turn: Some(5)
            }),
        "clients were told, so they drop buffered audio: {log:?}"
    );
    assert_eq!(
        engine.send(chunk(&session, 5, 1)).await,
        Ok(Ingested::Fenced),
        "turn 5 stays fenced"
    );
    engine
        .send(ack(&session, Some(5)))
        .await
        .expect("a late ACK is harmless");
    assert_eq!(
        engine.send(chunk(&session, 6, 0)).await,
        Ok(Ingested::Queued),
        "turn 6 plays"
    );
    assert_eq!(relay.metrics().stop_timeouts, 1, "counted");
}

#[tokio::test(start_paused = true)]
async fn a_producer_leaving_mid_stop_resolves_it_at_once() {
    let relay = Relay::new(RelayConfig::default());
    let (remote, _stops) = relay.attach_producer(false);
    let session = sid("leaver");
    remote.send(chunk(&session, 1, 0)).await.expect("queued");
    let pending = relay.begin_stop(&session, "user_interrupt");
    let t0 = Instant::now();
    drop(remote);
    assert_eq!(
        pending.outcome().await,
        StopResolution::NoProducer {
            fence: Some(TurnNo(1))
        },
        "its ACK can no longer come"
    );
    assert_eq!(Instant::now(), t0, "without waiting for the timeout");
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_pacers_clients_and_pending_stops() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    for seq in 0..100 {
        engine.send(chunk(&sid("x"), 1, seq)).await.expect("queued");
    }
    let pending = relay.begin_stop(&sid("y"), "user_interrupt");
    assert!(relay.metrics().pacers_active >= 1, "pacers are running");
    assert!(
        relay.shutdown(Duration::from_secs(1)).await,
        "every pacer ended within the grace"
    );
    assert_eq!(
        pending.outcome().await,
        StopResolution::ShuttingDown,
        "pending STOPs are answered"
    );
    // Drain what was already delivered, then the subscription ends.
    while client.recv().await.is_some() {}
    assert_eq!(
        client.disconnect_reason(),
        Some(koto_relay::DisconnectReason::ShuttingDown),
        "clients are told why"
    );
    assert_eq!(
        engine.send(chunk(&sid("x"), 1, 100)).await,
        Err(koto_relay::IngestError::ShuttingDown),
        "producers are refused"
    );
}

#[test]
fn begin_stop_works_from_a_thread_outside_the_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a runtime");
    let config = RelayConfig {
        stop_ack_timeout: Duration::from_millis(50),
        ..RelayConfig::default()
    };
    let relay = runtime.block_on(async { Relay::new(config) });
    let (engine, mut stops) = runtime.block_on(async { relay.attach_producer(true) });
    let session = sid("tray");
    // A tray/hotkey callback: a plain thread, no runtime context.
    let pending = std::thread::scope(|scope| {
        scope
            .spawn(|| relay.begin_stop(&session, "tray"))
            .join()
            .expect("the callback thread did not panic")
    });
    let outcome = runtime.block_on(async {
        let stop = stops.recv().await.expect("the engine got the STOP");
        engine
            .send(ack(&stop.session_id, None))
            .await
            .expect("ack accepted");
        pending.outcome().await
    });
    assert!(
        matches!(outcome, StopResolution::Acked { turn: None, .. }),
        "the STOP completed normally: {outcome:?}"
    );
    let timed_out = std::thread::scope(|scope| {
        scope
            .spawn(|| relay.begin_stop(&session, "tray"))
            .join()
            .expect("the callback thread did not panic")
    });
    assert!(
        matches!(
            runtime.block_on(timed_out.outcome()),
            StopResolution::TimedOut { .. }
        ),
        "its deadline runs on the relay's runtime even though it started outside one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_a_client_reconnects_leaves_it_nothing_of_the_stopped_turn() {
    let relay = Relay::new(RelayConfig::default());
    let (engine, mut stops) = relay.attach_producer(true);
    let session = sid("live-001");
    let first = relay.subscribe(ClientFilter::default());
    for seq in 0..50 {
        engine.send(chunk(&session, 3, seq)).await.expect("queued");
    }
    recv_for(&mut { first }, Duration::from_millis(100)).await;
    // The overlay's socket dropped (the `first` client is gone); the STOP lands in between.
    relay.begin_stop(&session, "user_interrupt");
    assert!(stops.try_recv().is_ok(), "the engine was told");
    for seq in 50..53 {
        assert_eq!(
            engine.send(chunk(&session, 3, seq)).await,
            Ok(Ingested::Fenced)
        );
    }
    // It reconnects before the engine's STOP_ACK.
    let mut again = relay.subscribe(ClientFilter::default());
    engine.send(ack(&session, Some(3))).await.expect("ack");
    let log = recv_for(&mut again, Duration::from_millis(500)).await;
    assert!(
        chunks_of(&log, "live-001").is_empty(),
        "nothing of the stopped turn reaches the reconnected client: {log:?}"
    );
    assert!(
        log.iter()
            .any(|(_, s)| matches!(s, Seen::StopAck { turn: Some(3), .. })),
        "it still learns that the turn was stopped: {log:?}"
    );
    // The next turn plays to the reconnected client.
    engine.send(chunk(&session, 4, 0)).await.expect("queued");
    let next = recv_for(&mut again, Duration::from_millis(100)).await;
    assert_eq!(chunks_of(&next, "live-001"), [(4, 0)]);
}

#[tokio::test(start_paused = true)]
async fn a_turn_fenced_by_its_producer_drops_its_audio_and_end_and_tells_every_client() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let session = sid("live-001");
    for seq in 0..50 {
        engine.send(chunk(&session, 5, seq)).await.expect("queued");
    }
    let receipt = engine
        .send_end(&session, TurnNo(5))
        .expect("END queued behind the chunks");
    recv_for(&mut client, Duration::from_millis(100)).await;
    assert!(
        relay.fence_turn(&session, TurnNo(5), "client_disconnected"),
        "this call fenced it"
    );
    assert!(
        !relay.fence_turn(&session, TurnNo(5), "client_disconnected"),
        "a second fence of the same turn changes nothing and tells no one again"
    );
    assert!(!receipt.played().await, "the END was dropped, not played");
    let log = recv_for(&mut client, Duration::from_millis(500)).await;
    let acks = log
        .iter()
        .filter(|(_, s)| matches!(s, Seen::StopAck { turn: Some(5), .. }))
        .count();
    assert_eq!(acks, 1, "one STOP_ACK for the turn: {log:?}");
    let after_ack: Vec<_> = log
        .iter()
        .skip_while(|(_, s)| !matches!(s, Seen::StopAck { .. }))
        .filter(|(_, s)| matches!(s, Seen::Chunk { .. } | Seen::End { .. }))
        .collect();
    assert!(
        after_ack.is_empty(),
        "nothing of turn 5 after its STOP_ACK: {after_ack:?}"
    );

    // A turn that plays out: its receipt resolves when the END leaves for clients.
    for seq in 0..5 {
        engine.send(chunk(&session, 6, seq)).await.expect("queued");
    }
    let receipt = engine.send_end(&session, TurnNo(6)).expect("END queued");
    assert!(receipt.played().await, "played once released");
    let log = recv_for(&mut client, Duration::from_millis(50)).await;
    assert_eq!(chunks_of(&log, "live-001").len(), 5);
}
