//! Property test of the fence invariant over random interleavings of chunks, ENDs, STOPs,
//! ACKs, stale chunks and time passing, on two sessions.
//!
//! Checked on what clients receive, per session:
//! - after STOP_ACK for turn F, no SPEECH_CHUNK (and no END) of a turn ≤ F ever follows;
//! - between a STOP and its STOP_ACK, no SPEECH_CHUNK of the session is relayed at all;
//! - within a turn, seqs strictly increase.

use std::collections::HashMap;
use std::time::Duration;

use koto_core::SessionId;
use koto_protocol::ingest::ControlAction;
use koto_relay::{ClientFilter, LiveClient, Relay, RelayConfig};
use proptest::prelude::*;

use crate::support::{Seen, ack, chunk, end, seen, sid};

#[derive(Debug, Clone)]
enum Op {
    Chunk(usize),
    End(usize),
    Stop(usize),
    /// The producer reads its STOPs and acknowledges those of this session.
    Ack(usize),
    /// The next chunk of the previous turn, arriving late (a producer that ignores its ACK).
    LateChunk(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let session = 0usize..2;
    prop_oneof![
        6 => session.clone().prop_map(Op::Chunk),
        1 => session.clone().prop_map(Op::End),
        2 => session.clone().prop_map(Op::Stop),
        2 => session.clone().prop_map(Op::Ack),
        2 => session.prop_map(Op::LateChunk),
        3 => (0u64..1_500).prop_map(Op::Advance),
    ]
}

/// What the (scripted) producer believes about one session.
#[derive(Default, Clone, Copy)]
struct Speaker {
    turn: u64,
    next_seq: u64,
    stop_pending: bool,
    /// The previous turn and its next seq, for late chunks.
    previous: Option<(u64, u64)>,
}

impl Speaker {
    fn next_turn(&mut self) {
        self.previous = Some((self.turn, self.next_seq));
        self.turn += 1;
        self.next_seq = 0;
    }
}

fn drain(client: &mut LiveClient, log: &mut Vec<Seen>) {
    while let Ok(Some(frame)) = client.try_recv() {
        log.push(seen(&frame));
    }
}

async fn run(ops: Vec<Op>) -> Vec<Seen> {
    let config = RelayConfig {
        client_queue_frames: 100_000,
        session_queue_ms: 60_000,
        ..RelayConfig::default()
    };
    let relay = Relay::new(config);
    let mut client = relay.subscribe(ClientFilter::default());
    let (producer, mut stops) = relay.attach_producer(true);
    let sessions: [SessionId; 2] = [sid("p0"), sid("p1")];
    let mut speakers = [Speaker::default(); 2];
    let mut log = Vec::new();
    for op in ops {
        match op {
            Op::Chunk(n) => {
                let speaker = &mut speakers[n];
                // Refusals (fenced, seq) are fine here; panics and leaks are not.
                let _ = producer
                    .send(chunk(&sessions[n], speaker.turn, speaker.next_seq))
                    .await;
                speaker.next_seq += 1;
            }
            Op::End(n) => {
                let speaker = &mut speakers[n];
                let _ = producer.send(end(&sessions[n], speaker.turn)).await;
                speaker.next_turn();
            }
            Op::Stop(n) => drop(relay.begin_stop(&sessions[n], "user_interrupt")),
            Op::Ack(n) => {
                while let Ok(stop) = stops.try_recv() {
                    assert_eq!(
                        stop.action,
                        ControlAction::Stop,
                        "only STOPs reach producers"
                    );
                    let index = sessions
                        .iter()
                        .position(|s| *s == stop.session_id)
                        .expect("STOPs only for sessions that were stopped");
                    speakers[index].stop_pending = true;
                }
                let speaker = &mut speakers[n];
                if speaker.stop_pending {
                    let _ = producer.send(ack(&sessions[n], Some(speaker.turn))).await;
                    speaker.stop_pending = false;
                    speaker.next_turn();
                }
            }
            Op::LateChunk(n) => {
                if let Some((turn, seq)) = &mut speakers[n].previous {
                    let _ = producer.send(chunk(&sessions[n], *turn, *seq)).await;
                    *seq += 1;
                }
            }
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        drain(&mut client, &mut log);
    }
    // Let every queue drain and every STOP time out.
    tokio::time::sleep(Duration::from_secs(120)).await;
    drain(&mut client, &mut log);
    assert!(
        relay.shutdown(Duration::from_secs(1)).await,
        "no pacer outlives the relay"
    );
    log
}

fn check(log: &[Seen]) -> Result<(), TestCaseError> {
    #[derive(Default)]
    struct View {
        fence: Option<u64>,
        stopping: bool,
        last_seq: HashMap<u64, u64>,
    }
    let mut views: HashMap<String, View> = HashMap::new();
    for (index, item) in log.iter().enumerate() {
        match item {
            Seen::Chunk { session, turn, seq } => {
                let view = views.entry(session.clone()).or_default();
                prop_assert!(
                    !view.stopping,
                    "frame {index}: chunk {item:?} between STOP and STOP_ACK"
                );
                prop_assert!(
                    view.fence.is_none_or(|fence| *turn > fence),
                    "frame {index}: chunk {item:?} of a turn fenced at {:?}",
                    view.fence
                );
                if let Some(last) = view.last_seq.insert(*turn, *seq) {
                    prop_assert!(
                        *seq > last,
                        "frame {index}: seq {seq} after {last} in turn {turn}"
                    );
                }
            }
            Seen::End { session, turn } => {
                let view = views.entry(session.clone()).or_default();
                prop_assert!(
                    view.fence.is_none_or(|fence| *turn > fence),
                    "frame {index}: END of fenced turn {turn}"
                );
            }
            Seen::Stop { session } => views.entry(session.clone()).or_default().stopping = true,
            Seen::StopAck { session, turn } => {
                let view = views.entry(session.clone()).or_default();
                view.stopping = false;
                if let Some(turn) = turn {
                    view.fence = Some(view.fence.map_or(*turn, |f| f.max(*turn)));
                }
            }
            Seen::Paused { .. } | Seen::Resumed { .. } | Seen::Other => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_chunk_of_a_fenced_turn_ever_reaches_a_client(ops in proptest::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a paused test runtime");
        let log = runtime.block_on(run(ops));
        check(&log)?;
    }
}

#[test]
fn the_checker_catches_a_violation() {
    let bad = [
        Seen::Chunk {
            session: "p0".into(),
            turn: 1,
            seq: 0,
        },
        Seen::StopAck {
            session: "p0".into(),
            turn: Some(1),
        },
        Seen::Chunk {
            session: "p0".into(),
            turn: 1,
            seq: 1,
        },
    ];
    assert!(
        check(&bad).is_err(),
        "a chunk of turn 1 after its STOP_ACK must fail the check"
    );
    let stopping = [
        Seen::Stop {
            session: "p0".into(),
        },
        Seen::Chunk {
            session: "p0".into(),
            turn: 2,
            seq: 0,
        },
    ];
    assert!(
        check(&stopping).is_err(),
        "a chunk between STOP and STOP_ACK must fail the check"
    );
}

/// The same invariant on a multi-thread runtime in real time: four remote producers speak
/// 2 ms chunks while STOPs hit random sessions from another task and a client reads along. No
/// timing is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_holds_under_real_concurrency() {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use crate::support::chunk_ms;

    let relay = Relay::new(RelayConfig {
        client_queue_frames: 100_000,
        // Small, so producers are held back (backpressure) and keep speaking during the STOPs.
        session_queue_ms: 20,
        ..RelayConfig::default()
    });
    let stopped_stopping = CancellationToken::new();
    let everything_released = CancellationToken::new();
    let recorder = tokio::spawn({
        let mut client = relay.subscribe(ClientFilter::default());
        let everything_released = everything_released.clone();
        async move {
            let mut log = Vec::new();
            loop {
                tokio::select! {
                    frame = client.recv() => {
                        let frame = frame.expect("the client keeps up and is never disconnected");
                        log.push(seen(&frame));
                    }
                    () = everything_released.cancelled() => break,
                }
            }
            drain(&mut client, &mut log);
            log
        }
    });
    let sessions: Arc<Vec<SessionId>> = Arc::new((0..4).map(|n| sid(&format!("c{n}"))).collect());
    // Every session is owned (has spoken) before the first STOP.
    let all_speaking = Arc::new(tokio::sync::Barrier::new(sessions.len() + 1));
    let mut speakers = tokio::task::JoinSet::new();
    for index in 0..sessions.len() {
        let relay = relay.clone();
        let sessions = Arc::clone(&sessions);
        let stopped_stopping = stopped_stopping.clone();
        let all_speaking = Arc::clone(&all_speaking);
        speakers.spawn(async move {
            let session = &sessions[index];
            let (producer, mut stops) = relay.attach_producer(false);
            producer
                .send(chunk_ms(session, 0, 0, 2))
                .await
                .expect("first chunk accepted");
            all_speaking.wait().await;
            let (mut turn, mut seq) = (0u64, 1u64);
            loop {
                tokio::select! {
                    biased;
                    Some(stop) = stops.recv() => {
                        assert_eq!(&stop.session_id, session, "each producer only gets its own session's STOPs");
                        producer.send(ack(session, Some(turn))).await.expect("ack accepted");
                        turn += 1;
                        seq = 0;
                    }
                    () = stopped_stopping.cancelled() => break,
                    // Cancel-safe: a send cancelled while waiting for space queued nothing.
                    result = producer.send(chunk_ms(session, turn, seq, 2)) => {
                        result.expect("a well-formed chunk is never an error");
                        seq += 1;
                        if seq == 60 {
                            producer.send(end(session, turn)).await.expect("END accepted");
                            turn += 1;
                            seq = 0;
                        }
                    }
                }
            }
            // No STOP is pending any more: a last, short turn must be heard in full.
            let last_turn = turn + 1;
            for seq in 0..5 {
                producer
                    .send(chunk_ms(session, last_turn, seq, 2))
                    .await
                    .expect("last turn accepted");
            }
            producer.send(end(session, last_turn)).await.expect("END accepted");
            (session.to_string(), last_turn)
        });
    }
    all_speaking.wait().await;
    for round in 0..40usize {
        let session = &sessions[(round * 7 + round / 3) % sessions.len()];
        let outcome = relay.stop(session, "user_interrupt").await;
        assert!(
            matches!(outcome, koto_relay::StopResolution::Acked { .. }),
            "a live producer acknowledges every STOP: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    stopped_stopping.cancel();
    let mut last_turns = Vec::new();
    while let Some(done) = speakers.join_next().await {
        last_turns.push(done.expect("a speaker task panicked"));
    }
    // Wait for the condition (every queue drained), not for a length of time.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while relay.metrics().pacers_active > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "every pacer finishes once its queue is empty"
    );
    everything_released.cancel();
    let log = recorder.await.expect("the recorder task panicked");
    assert!(
        relay.shutdown(Duration::from_secs(5)).await,
        "nothing left running"
    );
    for (session, last_turn) in &last_turns {
        let heard: Vec<u64> = log
            .iter()
            .filter_map(|s| match s {
                Seen::Chunk {
                    session: got,
                    turn,
                    seq,
                } if got == session && turn == last_turn => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(
            heard,
            vec![0, 1, 2, 3, 4],
            "{session}: the turn after the last STOP is heard in full"
        );
        assert!(
            log.contains(&Seen::End {
                session: session.clone(),
                turn: *last_turn
            }),
            "{session}: and ends"
        );
    }
    assert_eq!(
        log.iter()
            .filter(|s| matches!(s, Seen::StopAck { .. }))
            .count(),
        40,
        "one STOP_ACK per STOP"
    );
    check(&log).expect("the fence invariant holds under concurrency");
}
