//! Ingest validation through the `Producer` API: seq rules, turn order, PCM shape, controls.
//! Refused frames are errors with counters, never panics, and never reach a client.

use std::time::Duration;

use koto_core::TurnNo;
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_relay::{ClientFilter, IngestError, Ingested, Relay, RelayConfig};

use crate::support::{Seen, ack, chunk, chunks_of, control, end, recv_for, sid};

#[tokio::test(start_paused = true)]
async fn seq_gaps_and_duplicates_are_refused_and_the_stream_resyncs() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let s = sid("seq");
    let turn = TurnNo(1);
    assert_eq!(
        engine.send(chunk(&s, 1, 1)).await,
        Err(IngestError::SeqGap {
            turn,
            expected: 0,
            got: 1
        }),
        "a turn starts at seq 0"
    );
    assert_eq!(
        engine.send(chunk(&s, 1, 2)).await,
        Ok(Ingested::Queued),
        "after a gap the next seq is accepted"
    );
    assert_eq!(
        engine.send(chunk(&s, 1, 2)).await,
        Err(IngestError::SeqDuplicate {
            turn,
            expected: 3,
            got: 2
        }),
        "a duplicate is refused"
    );
    assert_eq!(
        engine.send(chunk(&s, 1, 3)).await,
        Ok(Ingested::Queued),
        "a duplicate changes nothing"
    );
    assert_eq!(
        engine.send(chunk(&s, 1, 5)).await,
        Err(IngestError::SeqGap {
            turn,
            expected: 4,
            got: 5
        }),
        "a gap inside a turn"
    );
    assert_eq!(
        engine.send(chunk(&s, 1, 6)).await,
        Ok(Ingested::Queued),
        "resynced at 6"
    );
    let log = recv_for(&mut client, Duration::from_millis(500)).await;
    assert_eq!(
        chunks_of(&log, "seq"),
        vec![(1, 2), (1, 3), (1, 6)],
        "only accepted chunks reach clients, in order"
    );
    assert_eq!(relay.metrics().dropped_bad_seq, 3, "each refusal counted");
}

#[tokio::test(start_paused = true)]
async fn turns_only_move_forward_and_end_closes_a_turn() {
    let relay = Relay::new(RelayConfig::default());
    let (engine, _stops) = relay.attach_producer(true);
    let s = sid("turns");
    engine.send(chunk(&s, 3, 0)).await.expect("turn 3");
    assert_eq!(
        engine.send(chunk(&s, 2, 0)).await,
        Err(IngestError::StaleTurn {
            turn: TurnNo(2),
            current: TurnNo(3)
        }),
        "an older turn is refused"
    );
    assert_eq!(
        engine.send(end(&s, 3)).await,
        Ok(Ingested::Queued),
        "END queued behind chunk 0"
    );
    assert_eq!(
        engine.send(chunk(&s, 3, 1)).await,
        Err(IngestError::TurnEnded { turn: TurnNo(3) }),
        "no chunk after END"
    );
    assert_eq!(
        engine.send(end(&s, 3)).await,
        Err(IngestError::TurnEnded { turn: TurnNo(3) }),
        "no second END"
    );
    assert_eq!(
        engine.send(control(ControlAction::End, &s, None)).await,
        Err(IngestError::MissingTurn),
        "END must name its turn"
    );
    assert_eq!(
        engine.send(control(ControlAction::Stop, &s, None)).await,
        Err(IngestError::UnexpectedStop),
        "STOP goes relay → producer only"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        engine.send(end(&s, 4)).await,
        Ok(Ingested::Forwarded),
        "a turn without audio may still END; with nothing queued it goes out at once"
    );
    let metrics = relay.metrics();
    assert_eq!(
        metrics.dropped_stale_turn, 3,
        "stale turn, chunk after END, second END"
    );
    assert_eq!(
        metrics.frames_malformed, 2,
        "END without turn, producer STOP"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_pcm_is_refused_with_a_reason() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let s = sid("pcm");
    let with = |edit: &dyn Fn(&mut koto_protocol::ingest::SpeechChunk)| {
        let RelayFrame::SpeechChunk(mut c) = chunk(&s, 0, 0) else {
            unreachable!()
        };
        edit(&mut c);
        RelayFrame::SpeechChunk(c)
    };
    assert!(
        matches!(
            engine.send(with(&|c| c.pcm = "***".into())).await,
            Err(IngestError::InvalidPcm(_))
        ),
        "invalid base64"
    );
    assert!(
        matches!(
            engine.send(with(&|c| c.pcm = "AAEC".into())).await,
            Err(IngestError::InvalidPcm(_))
        ),
        "odd byte count"
    );
    assert_eq!(
        engine.send(with(&|c| c.sample_rate = Some(0))).await,
        Err(IngestError::InvalidSampleRate(0)),
        "a zero sample rate"
    );
    assert_eq!(
        engine.send(with(&|c| c.sample_rate = Some(48_000))).await,
        Ok(Ingested::Queued),
        "48 kHz is fine"
    );
    let log = recv_for(&mut client, Duration::from_millis(100)).await;
    assert_eq!(
        log.len(),
        1,
        "only the valid chunk reached the client: {log:?}"
    );
    assert_eq!(relay.metrics().frames_malformed, 3, "counted");
}

#[tokio::test(start_paused = true)]
async fn chunks_for_fenced_or_unknown_turns() {
    let relay = Relay::new(RelayConfig::default());
    let mut client = relay.subscribe(ClientFilter::default());
    let (engine, _stops) = relay.attach_producer(true);
    let s = sid("fence");
    // An unsolicited STOP_ACK (the engine stopped turn 9 by itself) fences it too.
    assert_eq!(
        engine.send(ack(&s, Some(9))).await,
        Ok(Ingested::Forwarded),
        "unsolicited ACK accepted"
    );
    assert_eq!(
        engine.send(chunk(&s, 9, 0)).await,
        Ok(Ingested::Fenced),
        "turn 9 is fenced"
    );
    assert_eq!(
        engine.send(chunk(&s, 3, 0)).await,
        Ok(Ingested::Fenced),
        "so is every older turn"
    );
    assert_eq!(
        engine.send(chunk(&s, 10, 0)).await,
        Ok(Ingested::Queued),
        "a later turn is new and plays"
    );
    let log = recv_for(&mut client, Duration::from_millis(100)).await;
    assert_eq!(
        log.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        vec![
            Seen::StopAck {
                session: "fence".into(),
                turn: Some(9)
            },
            Seen::Chunk {
                session: "fence".into(),
                turn: 10,
                seq: 0
            },
        ],
        "clients saw the ACK and turn 10 only"
    );
    assert_eq!(relay.metrics().dropped_fenced, 2, "fenced chunks counted");
}
