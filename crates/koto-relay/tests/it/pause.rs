//! Pause and resume of a session's release (the voice barge-in's duck): nothing dropped,
//! nothing released while paused, nothing of a turn after a STOP during a pause, and a pause
//! nobody lifts ends by itself.

use std::time::Duration;

use koto_relay::{ClientFilter, Relay, RelayConfig};
use tokio::time::Instant;

use crate::support::{Seen, chunk, chunks_of, end, recv_for, recv_until, sid};

const MAX_PAUSE: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn a_paused_session_holds_its_audio_and_resume_releases_all_of_it_in_order() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let (other_producer, _other_stops) = relay.attach_producer(false);
    let session = sid("duck");
    let other = sid("other");
    let sender = tokio::spawn({
        let session = session.clone();
        async move {
            for seq in 0..50 {
                producer.send(chunk(&session, 1, seq)).await.unwrap();
            }
            producer.send(end(&session, 1)).await.unwrap();
            producer
        }
    });
    let other_sender = tokio::spawn(async move {
        for seq in 0..100 {
            other_producer.send(chunk(&other, 1, seq)).await.unwrap();
        }
        other_producer
    });
    // Half a second in, a voice onset pauses the session.
    let before = recv_for(&mut client, Duration::from_millis(500)).await;
    assert!(
        relay.pause(&session, MAX_PAUSE),
        "a session with audio can pause"
    );
    assert!(relay.is_paused(&session));
    let paused_at = Instant::now();
    let during = recv_for(&mut client, Duration::from_secs(2)).await;
    assert!(
        chunks_of(&during, "duck").is_empty(),
        "nothing of a paused session is released: {during:?}"
    );
    assert!(
        !chunks_of(&during, "other").is_empty(),
        "other sessions play on while one is paused"
    );
    assert!(relay.resume(&session));
    let resumed_at = Instant::now();
    let after = recv_until(
        &mut client,
        Duration::from_secs(5),
        |s| matches!(s, Seen::End { session, .. } if session == "duck"),
    )
    .await;
    let mut seqs: Vec<u64> = chunks_of(&before, "duck")
        .into_iter()
        .chain(chunks_of(&after, "duck"))
        .map(|(_, seq)| seq)
        .collect();
    let released = seqs.clone();
    seqs.dedup();
    assert_eq!(
        seqs,
        (0..50).collect::<Vec<_>>(),
        "every chunk exactly once, in order"
    );
    assert_eq!(released.len(), 50);
    let paused_frame = during
        .iter()
        .position(|(_, s)| matches!(s, Seen::Paused { session } if session == "duck"));
    assert_eq!(
        paused_frame,
        Some(0),
        "clients are told PAUSE before anything else: {during:?}"
    );
    assert!(
        matches!(after.first(), Some((at, Seen::Resumed { session })) if session == "duck" && *at == resumed_at),
        "RESUME goes out at the resume: {:?}",
        after.first()
    );
    // Paced as if the pause never happened: the listener held its lead through it.
    let duck_chunk = |(at, s): &(Instant, Seen)| match s {
        Seen::Chunk { session, .. } if session == "duck" => Some(*at),
        _ => None,
    };
    let first_at = before.iter().find_map(duck_chunk).expect("first chunk");
    let last_at = after.iter().rev().find_map(duck_chunk).expect("last chunk");
    assert_eq!(
        last_at - first_at,
        Duration::from_millis(crate::support::CHUNK_MS * 50) - Duration::from_millis(200)
            + (resumed_at - paused_at),
        "release time = audio − lead + the pause"
    );
    assert!(resumed_at - paused_at >= Duration::from_secs(2));
    let metrics = relay.metrics();
    assert_eq!(metrics.pauses, 1);
    assert_eq!(metrics.pause_timeouts, 0);
    drop(sender.await.unwrap());
    drop(other_sender.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_pause_drops_the_turn_and_resume_has_nothing_to_release() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, mut stops) = relay.attach_producer(true);
    let session = sid("stopped");
    for seq in 0..20 {
        producer.send(chunk(&session, 1, seq)).await.unwrap();
    }
    let _ = recv_for(&mut client, Duration::from_millis(100)).await;
    assert!(relay.pause(&session, MAX_PAUSE));
    let pending = relay.begin_stop(&session, "voice_barge_in");
    // The engine (the default producer) answers STOP with STOP_ACK for turn 1.
    let stop = stops.recv().await.unwrap();
    assert_eq!(stop.session_id, session);
    producer
        .send(crate::support::ack(&session, Some(1)))
        .await
        .unwrap();
    let _ = pending.outcome().await;
    assert!(!relay.is_paused(&session), "a STOP ends the pause");
    assert!(!relay.resume(&session), "nothing to resume after a STOP");
    let log = recv_for(&mut client, Duration::from_secs(3)).await;
    let ack_at = log
        .iter()
        .position(|(_, s)| matches!(s, Seen::StopAck { .. }))
        .expect("STOP_ACK reached the client");
    assert!(
        log[ack_at..]
            .iter()
            .all(|(_, s)| !matches!(s, Seen::Chunk { turn: 1, .. })),
        "nothing of the stopped turn after STOP_ACK: {log:?}"
    );
    // The next turn plays at once: no pause left over.
    producer.send(chunk(&session, 2, 0)).await.unwrap();
    let next = recv_for(&mut client, Duration::from_millis(50)).await;
    assert_eq!(chunks_of(&next, "stopped"), vec![(2, 0)]);
}

#[tokio::test(start_paused = true)]
async fn a_pause_nobody_lifts_ends_by_itself() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let session = sid("forgotten");
    assert!(relay.pause(&session, Duration::from_secs(3)));
    let t0 = Instant::now();
    for seq in 0..5 {
        producer.send(chunk(&session, 1, seq)).await.unwrap();
    }
    let log = recv_until(&mut client, Duration::from_secs(10), |s| {
        matches!(s, Seen::Chunk { .. })
    })
    .await;
    let (at, _) = log.last().expect("released after the limit");
    assert_eq!(
        *at - t0,
        Duration::from_secs(3),
        "held for exactly the pause's limit"
    );
    assert_eq!(relay.metrics().pause_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn published_voice_frames_reach_clients_and_producers_cannot_send_them() {
    use koto_protocol::ingest::RelayFrame;
    use koto_protocol::voice::VoiceDroppedFrame;
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let session = sid("mic");
    let dropped = RelayFrame::VoiceDropped(VoiceDroppedFrame {
        session_id: session.clone(),
        reason: "echo".into(),
        text: None,
    });
    relay.publish(dropped.clone());
    let frame = client.recv().await.expect("published");
    assert_eq!(frame.frame(), &dropped);
    let (producer, _stops) = relay.attach_producer(false);
    assert_eq!(
        producer.send(dropped).await,
        Err(koto_relay::IngestError::NotAProducerFrame),
        "only the app's microphone makes voice frames"
    );
}
