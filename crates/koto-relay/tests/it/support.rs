//! Builders for frames and a client recorder shared by the test modules.

use std::time::Duration;

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame, SpeechChunk, Viseme};
use koto_relay::{LiveClient, LiveFrame};
use tokio::time::Instant;

pub const SAMPLE_RATE: u32 = 24_000;
pub const CHUNK_MS: u64 = 20;

pub fn sid(raw: &str) -> SessionId {
    SessionId::parse(raw).expect("test session ids are valid")
}

/// A SPEECH_CHUNK of `ms` milliseconds of silence-ish PCM at 24 kHz.
pub fn chunk_ms(session: &SessionId, turn: u64, seq: u64, ms: u64) -> RelayFrame {
    let samples = usize::try_from(ms * u64::from(SAMPLE_RATE) / 1000).expect("small");
    let pcm: Vec<i16> = (0..samples).map(|n| (n % 100) as i16).collect();
    RelayFrame::SpeechChunk(SpeechChunk {
        session_id: session.clone(),
        turn: TurnNo(turn),
        seq,
        pcm: SpeechChunk::encode_pcm(&pcm),
        sample_rate: None,
        viseme: Viseme { mouth_open: 0.3 },
        segment: None,
    })
}

/// A 20 ms chunk.
pub fn chunk(session: &SessionId, turn: u64, seq: u64) -> RelayFrame {
    chunk_ms(session, turn, seq, CHUNK_MS)
}

pub fn control(action: ControlAction, session: &SessionId, turn: Option<u64>) -> RelayFrame {
    RelayFrame::Control(Control {
        action,
        session_id: session.clone(),
        turn: turn.map(TurnNo),
        reason: None,
    })
}

pub fn end(session: &SessionId, turn: u64) -> RelayFrame {
    control(ControlAction::End, session, Some(turn))
}

pub fn ack(session: &SessionId, turn: Option<u64>) -> RelayFrame {
    control(ControlAction::StopAck, session, turn)
}

/// What a client saw, with when it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Chunk {
        session: String,
        turn: u64,
        seq: u64,
    },
    End {
        session: String,
        turn: u64,
    },
    Stop {
        session: String,
    },
    StopAck {
        session: String,
        turn: Option<u64>,
    },
    Paused {
        session: String,
    },
    Resumed {
        session: String,
    },
    Other,
}

pub fn seen(frame: &LiveFrame) -> Seen {
    match frame.frame() {
        RelayFrame::SpeechChunk(chunk) => Seen::Chunk {
            session: chunk.session_id.to_string(),
            turn: chunk.turn.0,
            seq: chunk.seq,
        },
        RelayFrame::Control(control) => match control.action {
            ControlAction::End => Seen::End {
                session: control.session_id.to_string(),
                turn: control.turn.map_or(u64::MAX, |t| t.0),
            },
            ControlAction::Stop => Seen::Stop {
                session: control.session_id.to_string(),
            },
            ControlAction::StopAck => Seen::StopAck {
                session: control.session_id.to_string(),
                turn: control.turn.map(|t| t.0),
            },
            ControlAction::Pause => Seen::Paused {
                session: control.session_id.to_string(),
            },
            ControlAction::Resume => Seen::Resumed {
                session: control.session_id.to_string(),
            },
        },
        _ => Seen::Other,
    }
}

/// Receive until `done` holds for a frame (inclusive) or `limit` of (paused) time passes.
pub async fn recv_until(
    client: &mut LiveClient,
    limit: Duration,
    mut done: impl FnMut(&Seen) -> bool,
) -> Vec<(Instant, Seen)> {
    let mut log = Vec::new();
    let deadline = Instant::now() + limit;
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, client.recv()).await {
        let item = seen(&frame);
        let stop = done(&item);
        log.push((Instant::now(), item));
        if stop {
            break;
        }
    }
    log
}

/// Everything that arrives within `limit` of (paused) time.
pub async fn recv_for(client: &mut LiveClient, limit: Duration) -> Vec<(Instant, Seen)> {
    recv_until(client, limit, |_| false).await
}

pub fn chunks_of(log: &[(Instant, Seen)], session: &str) -> Vec<(u64, u64)> {
    log.iter()
        .filter_map(|(_, s)| match s {
            Seen::Chunk {
                session: got,
                turn,
                seq,
            } if got == session => Some((*turn, *seq)),
            _ => None,
        })
        .collect()
}

/// Record a client from now on in its own task (so arrival times are release times).
pub fn record(
    mut client: LiveClient,
    limit: Duration,
    done: impl FnMut(&Seen) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<Vec<(Instant, Seen)>> {
    tokio::spawn(async move { recv_until(&mut client, limit, done).await })
}
