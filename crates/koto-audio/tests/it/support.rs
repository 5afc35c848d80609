//! Builders shared by the test modules: ids, constant-level PCM, a player on a manual
//! recording sink, and classification of recorded samples by level.

use std::time::Duration;

use koto_audio::{
    MANUAL_LOOKAHEAD_PERIODS, OUTPUT_PERIOD_MS, Pace, Player, PlayerConfig, RecordingHandle,
    RecordingSink,
};
use koto_core::{SessionId, TurnNo};

pub const RATE: u32 = 24_000;
pub const CHUNK_MS: usize = 20;
/// What a sink consumes per pull.
pub const PERIOD: Duration = Duration::from_millis(OUTPUT_PERIOD_MS);
/// What the manual sink holds beyond "now", like a sound card's buffer.
pub const LOOKAHEAD: Duration = Duration::from_millis(OUTPUT_PERIOD_MS * MANUAL_LOOKAHEAD_PERIODS);
/// Anything quieter is silence (the quietest test level is ~0.06).
pub const SILENCE: f32 = 0.001;

pub fn sid(raw: &str) -> SessionId {
    SessionId::parse(raw).expect("test session ids are valid")
}

/// `ms` of a constant s16 `level` at `RATE`.
pub fn tone(ms: usize, level: i16) -> Vec<i16> {
    vec![level; ms * RATE as usize / 1000]
}

/// The float a constant s16 `level` plays as at volume 1.
pub fn as_float(level: i16) -> f32 {
    f32::from(level) / 32_768.0
}

/// A player on a manual recording sink at `RATE`.
pub fn manual_player(jitter_ms: u32, volume: f32) -> (Player, RecordingHandle) {
    let (sink, handle) = RecordingSink::new(RATE, Pace::Manual);
    let player = Player::start_with_sink(
        PlayerConfig {
            device: None,
            volume,
            jitter_ms,
        },
        Box::new(sink),
    );
    (player, handle)
}

/// Push `n_chunks` 20 ms chunks of `turn` at `level`, seq from `first_seq`.
pub fn push_turn(
    player: &Player,
    session: &SessionId,
    turn: u64,
    first_seq: u64,
    n_chunks: u64,
    level: i16,
) {
    for seq in first_seq..first_seq + n_chunks {
        let pushed = player
            .push(session, TurnNo(turn), seq, RATE, &tone(CHUNK_MS, level))
            .expect("valid chunk");
        assert_eq!(
            pushed,
            koto_audio::Pushed::Queued,
            "chunk {seq} of turn {turn} queued"
        );
    }
}

/// Advance the manual sink by `total` in `PERIOD` steps.
pub fn advance(handle: &RecordingHandle, total: Duration) {
    let mut left = total;
    while left > Duration::ZERO {
        let step = left.min(PERIOD);
        handle.advance(step);
        left -= step;
    }
}

/// When samples of `level` (at `volume`) were played: (first, last), `None` if never.
pub fn span_of(handle: &RecordingHandle, level: f32) -> Option<(Duration, Duration)> {
    let times: Vec<Duration> = handle
        .timeline()
        .into_iter()
        .filter(|(_, sample)| (sample - level).abs() < 1e-4)
        .map(|(at, _)| at)
        .collect();
    Some((*times.first()?, *times.last()?))
}

/// How long samples of `level` played in total.
pub fn duration_of(handle: &RecordingHandle, level: f32) -> Duration {
    let count = handle
        .timeline()
        .into_iter()
        .filter(|(_, sample)| (sample - level).abs() < 1e-4)
        .count();
    Duration::from_micros(count as u64 * 1_000_000 / u64::from(RATE))
}
