//! Real-time pacing with a bounded lead (CONTRACTS §2), END ordering, backpressure.

use std::time::Duration;

use koto_relay::{ClientFilter, Ingested, Relay, RelayConfig};
use tokio::time::Instant;

use crate::support::{CHUNK_MS, Seen, chunk, end, recv_until, sid};

const LEAD: Duration = Duration::from_millis(200);

#[tokio::test(start_paused = true)]
async fn first_chunk_is_immediate_and_the_lead_never_exceeds_the_bound() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let session = sid("pace");
    let t0 = Instant::now();
    let n_chunks = 50u64;
    // TTS far faster than real time: everything is offered at t0.
    for seq in 0..n_chunks {
        let accepted = producer.send(chunk(&session, 1, seq)).await;
        assert_eq!(
            accepted,
            Ok(Ingested::Queued),
            "chunk {seq} fits the 3 s session queue"
        );
    }
    assert_eq!(
        producer.send(end(&session, 1)).await,
        Ok(Ingested::Queued),
        "END waits behind its chunks"
    );
    let log = recv_until(&mut client, Duration::from_secs(5), |s| {
        matches!(s, Seen::End { .. })
    })
    .await;

    let chunks: Vec<_> = log
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Chunk { .. }))
        .collect();
    assert_eq!(chunks.len() as u64, n_chunks, "every chunk arrives");
    assert_eq!(
        chunks[0].0, t0,
        "the first chunk of a turn is never delayed by pacing"
    );
    let chunk_len = Duration::from_millis(CHUNK_MS);
    for (index, (at, _)) in chunks.iter().enumerate() {
        let audio_released = chunk_len * (index as u32 + 1);
        let played = *at - t0;
        assert!(
            audio_released <= played + LEAD,
            "chunk {index} at {played:?}: {audio_released:?} released is at most {LEAD:?} ahead of playback"
        );
        assert!(
            audio_released > played,
            "chunk {index}: the listener never runs dry while the producer is ahead"
        );
    }
    let last = chunks.last().expect("50 chunks").0;
    assert_eq!(
        last - t0,
        chunk_len * n_chunks as u32 - LEAD,
        "1 s of audio leaves in real time: the last chunk goes out one lead before it is due to play"
    );
    let (end_at, end_seen) = log.last().expect("END arrived");
    assert_eq!(
        *end_seen,
        Seen::End {
            session: "pace".into(),
            turn: 1
        },
        "END is the last frame"
    );
    assert_eq!(
        *end_at, last,
        "END goes out as soon as the last chunk is released, not later"
    );
    let metrics = relay.metrics();
    assert!(
        metrics.max_audio_lead <= LEAD,
        "the relay's own lead gauge agrees: {:?}",
        metrics.max_audio_lead
    );
    assert_eq!(metrics.chunks_released, n_chunks, "all released");
    tokio::task::yield_now().await;
    assert_eq!(
        relay.metrics().pacers_active,
        0,
        "the session's pacer ended once its queue drained"
    );
}

#[tokio::test(start_paused = true)]
async fn an_underrun_rebases_the_clock_instead_of_bursting() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let session = sid("underrun");
    for seq in 0..3 {
        producer
            .send(chunk(&session, 1, seq))
            .await
            .expect("queued");
    }
    let first = recv_until(&mut client, Duration::from_secs(1), |s| {
        matches!(s, Seen::Chunk { seq: 2, .. })
    })
    .await;
    assert_eq!(
        first.len(),
        3,
        "the first burst of 60 ms goes out within the lead"
    );
    // The TTS stalls for two seconds: the listener has long run dry.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resumed_at = Instant::now();
    for seq in 3..20 {
        producer
            .send(chunk(&session, 1, seq))
            .await
            .expect("queued");
    }
    let rest = recv_until(&mut client, Duration::from_secs(2), |s| {
        matches!(s, Seen::Chunk { seq: 19, .. })
    })
    .await;
    assert_eq!(rest.len(), 17, "chunks 3..=19 arrive");
    assert_eq!(
        rest[0].0, resumed_at,
        "the chunk after an underrun goes out at once"
    );
    let chunk_len = Duration::from_millis(CHUNK_MS);
    for (index, (at, _)) in rest.iter().enumerate() {
        let released = chunk_len * (index as u32 + 1);
        assert!(
            released <= (*at - resumed_at) + LEAD,
            "after the re-base chunk {} is within the lead: no catch-up burst",
            index + 3
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_session_queue_makes_the_producer_wait() {
    let config = RelayConfig {
        session_queue_ms: 100,
        ..RelayConfig::default()
    };
    let relay = Relay::new(config);
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let session = sid("backpressure");
    let t0 = Instant::now();
    let mut returned_at = Vec::new();
    for seq in 0..40u64 {
        producer
            .send(chunk(&session, 1, seq))
            .await
            .expect("accepted eventually");
        returned_at.push(Instant::now());
    }
    // 40 × 20 ms = 800 ms of audio; the relay holds ≤ 100 ms queued plus ≤ 200 ms at clients.
    let last_return = *returned_at.last().expect("40 sends");
    assert!(
        last_return - t0 >= Duration::from_millis(800 - 100 - 200 - 20),
        "the producer was held back to roughly real time, returned after {:?}",
        last_return - t0
    );
    let log = recv_until(&mut client, Duration::from_secs(2), |s| {
        matches!(s, Seen::Chunk { seq: 39, .. })
    })
    .await;
    let seqs: Vec<u64> = log
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Chunk { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (0..40).collect::<Vec<_>>(),
        "backpressure loses nothing and keeps order"
    );
}

#[tokio::test(start_paused = true)]
async fn the_next_turn_after_silence_starts_at_once() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, _stops) = relay.attach_producer(true);
    let session = sid("turns");
    for seq in 0..5 {
        producer
            .send(chunk(&session, 1, seq))
            .await
            .expect("queued");
    }
    producer.send(end(&session, 1)).await.expect("END queued");
    recv_until(&mut client, Duration::from_secs(1), |s| {
        matches!(s, Seen::End { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    producer
        .send(chunk(&session, 2, 0))
        .await
        .expect("next turn");
    let log = recv_until(&mut client, Duration::from_secs(1), |_| true).await;
    assert_eq!(
        log[0],
        (
            started,
            Seen::Chunk {
                session: "turns".into(),
                turn: 2,
                seq: 0
            }
        ),
        "a new turn's first chunk after silence is not delayed"
    );
}
