//! The player's state: one lane of queued audio per session, the turn fences, the jitter
//! buffer, the volume, and `fill`, which mixes what is due into the sink's next block.
//!
//! Pure and synchronous: no threads, no locks, no wall clock. Time here is the count of samples
//! the sink has consumed, so the jitter policy behaves the same on a sound card, the null sink
//! and a test's virtual clock. Locking and the flush generation live in `source`.
//!
//! Jitter policy, per session lane: a lane that has nothing playing and receives audio starts
//! *buffering*; it starts playing as soon as either `jitter_ms` of audio is queued, or the
//! turn's END has arrived (nothing more will come), or `jitter_ms` of sink time has passed since
//! that first audio arrived. So the buffer never adds more than `jitter_ms` (≤ 60 ms) of
//! latency. A lane that runs dry before its turn's END counts an underrun and buffers again by
//! the same rule.
//!
//! Fence policy, per session: `fence` is the highest stopped turn; chunks of turns `≤ fence`
//! are dropped (`Pushed::Fenced`), and so are chunks of turns older than the newest turn seen
//! (`Pushed::Stale`) and chunks of a turn after its END.

use std::collections::VecDeque;

use koto_core::{SessionId, TurnNo};

use crate::error::PushError;
use crate::resampler::Resampler;

/// The largest jitter buffer a player accepts; larger configured values are clamped.
pub const MAX_JITTER_MS: u32 = 60;
/// The jitter buffer of `PlayerConfig::default()`: two 20 ms chunks.
pub const DEFAULT_JITTER_MS: u32 = 40;
/// The loudest volume accepted (2 = +6 dB); louder values are clamped.
pub const MAX_VOLUME: f32 = 2.0;
/// Sample rates a pushed chunk may have (as the relay accepts).
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Sessions whose lane (and fence) is remembered; past this the least recently active idle
/// lane is forgotten. The relay keeps at most 200 ms ahead per session, so 64 busy lanes means
/// 64 sessions talking at once.
const MAX_LANES: usize = 64;
/// Audio one session may queue. The relay sends ≤ 200 ms ahead; direct pushes (tests, a
/// producer without the relay) may queue more, but not without bound.
const MAX_BUFFERED_SECS: usize = 30;

/// What became of a pushed chunk. Only `Queued` is played; the rest are dropped by policy,
/// which is normal around a STOP, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for playback.
    Queued,
    /// Its turn was stopped (`stop_turn`, `stop_session`, `flush`).
    Fenced,
    /// A newer turn of the session was already seen, or its turn already ended.
    Stale,
    /// Its `seq` was already queued for this turn.
    Duplicate,
    /// The session already queues `MAX_BUFFERED_SECS` of audio, or too many sessions are busy.
    Overflow,
}

/// Counters since the player started, and what is queued now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaybackStats {
    pub chunks_queued: u64,
    pub chunks_fenced: u64,
    pub chunks_stale: u64,
    pub chunks_duplicate: u64,
    pub chunks_overflow: u64,
    /// A lane ran dry before its turn's END (the producer or relay fell behind).
    pub underruns: u64,
    /// `stop_turn`/`stop_session`/`flush` calls that removed queued audio.
    pub flushes: u64,
    /// Audio queued now over all sessions, at the player's rate.
    pub buffered_ms: u64,
    /// Samples the sink has consumed since the player started: the player's clock.
    pub consumed_samples: u64,
    /// The rate (Hz) the player mixes at.
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneState {
    /// Nothing due: either never started, finished, or ran dry.
    Idle,
    /// Holding audio back until the jitter rule lets it play; `since` is the sink clock when
    /// the first of it arrived.
    Buffering {
        since: u64,
    },
    Playing,
}

/// One turn's queued audio at the player's rate.
struct Segment {
    turn: TurnNo,
    samples: VecDeque<f32>,
}

/// One session's queue and fences.
struct Lane {
    session: SessionId,
    /// The newest turn seen (audio, END, or a stop); older turns are stale.
    latest_turn: Option<TurnNo>,
    /// The turn whose END arrived; when it is `latest_turn`, nothing more is coming.
    ended_turn: Option<TurnNo>,
    /// The highest stopped turn: chunks of turns `≤ fence` are dropped.
    fence: Option<TurnNo>,
    /// The seq expected next in `latest_turn`; lower ones are duplicates.
    next_seq: u64,
    /// Ordered by turn (turns only grow), so a stop removes a prefix... or everything.
    segments: VecDeque<Segment>,
    /// Total samples in `segments`.
    buffered: usize,
    state: LaneState,
    /// Converts `latest_turn`'s rate to the player's; reset at each new turn.
    resampler: Option<Resampler>,
    /// Sink clock of the last push or played sample, for forgetting idle lanes.
    last_active: u64,
    /// Held by a relay PAUSE: nothing of the lane plays, nothing is dropped.
    paused: bool,
}

impl Lane {
    fn new(session: SessionId, now: u64) -> Self {
        Lane {
            session,
            latest_turn: None,
            ended_turn: None,
            fence: None,
            next_seq: 0,
            segments: VecDeque::new(),
            buffered: 0,
            state: LaneState::Idle,
            resampler: None,
            last_active: now,
            paused: false,
        }
    }

    fn is_fenced(&self, turn: TurnNo) -> bool {
        self.fence.is_some_and(|fence| turn <= fence)
    }

    /// Nothing more is coming for the newest turn.
    fn ended(&self) -> bool {
        self.latest_turn.is_some() && self.ended_turn == self.latest_turn
    }

    fn next_sample(&mut self) -> Option<f32> {
        loop {
            let segment = self.segments.front_mut()?;
            if let Some(sample) = segment.samples.pop_front() {
                self.buffered -= 1;
                return Some(sample);
            }
            self.segments.pop_front();
        }
    }

    /// Drop queued audio of turns `≤ up_to` and fence them. `true` if audio was removed.
    fn stop(&mut self, up_to: TurnNo) -> bool {
        // A STOP ends a pause (as in the relay): the next turn must not start held.
        self.paused = false;
        self.fence = self.fence.max(Some(up_to));
        if self.latest_turn.is_none_or(|latest| latest <= up_to) {
            self.latest_turn = Some(up_to);
            self.resampler = None;
        }
        let before = self.buffered;
        self.segments.retain(|segment| segment.turn > up_to);
        self.buffered = self.segments.iter().map(|s| s.samples.len()).sum();
        if self.segments.is_empty() {
            self.state = LaneState::Idle;
        }
        self.buffered != before
    }
}

/// The mixer state behind the player's lock.
pub(crate) struct Playback {
    /// The rate everything is queued and mixed at: the first sink's rate.
    rate: u32,
    jitter_samples: usize,
    volume: f32,
    /// Samples consumed by the sink: the clock of the jitter rule.
    clock: u64,
    lanes: Vec<Lane>,
    stats: PlaybackStats,
}

impl Playback {
    pub(crate) fn new(rate: u32, jitter_ms: u32, volume: f32) -> Self {
        let mut playback = Playback {
            rate,
            jitter_samples: 0,
            volume: 1.0,
            clock: 0,
            lanes: Vec::new(),
            stats: PlaybackStats::default(),
        };
        playback.set_jitter(jitter_ms);
        playback.set_volume(volume);
        playback
    }

    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Set the mixing rate. Only before audio is queued (the output thread does it once, when
    /// the first sink is known); queued audio would otherwise play at the wrong speed.
    pub(crate) fn set_rate(&mut self, rate: u32) {
        if rate == self.rate {
            return;
        }
        self.rate = rate;
        let jitter_ms = self.jitter_ms();
        self.set_jitter(jitter_ms);
        for lane in &mut self.lanes {
            lane.segments.clear();
            lane.buffered = 0;
            lane.resampler = None;
            lane.state = LaneState::Idle;
        }
    }

    fn jitter_ms(&self) -> u32 {
        let ms = self.jitter_samples as u64 * 1000 / u64::from(self.rate.max(1));
        u32::try_from(ms).unwrap_or(MAX_JITTER_MS)
    }

    fn set_jitter(&mut self, jitter_ms: u32) {
        let jitter_ms = jitter_ms.min(MAX_JITTER_MS);
        self.jitter_samples = self.samples_for_ms(u64::from(jitter_ms));
    }

    fn samples_for_ms(&self, ms: u64) -> usize {
        usize::try_from(ms * u64::from(self.rate) / 1000).unwrap_or(usize::MAX)
    }

    pub(crate) fn volume(&self) -> f32 {
        self.volume
    }

    /// Clamped to `0..=MAX_VOLUME`; a non-finite value is ignored.
    pub(crate) fn set_volume(&mut self, volume: f32) {
        if volume.is_finite() {
            self.volume = volume.clamp(0.0, MAX_VOLUME);
        }
    }

    /// Whether any session has audio queued.
    pub(crate) fn is_busy(&self) -> bool {
        self.lanes.iter().any(|lane| lane.buffered > 0)
    }

    pub(crate) fn stats(&self) -> PlaybackStats {
        let buffered: usize = self.lanes.iter().map(|lane| lane.buffered).sum();
        PlaybackStats {
            buffered_ms: buffered as u64 * 1000 / u64::from(self.rate.max(1)),
            consumed_samples: self.clock,
            sample_rate: self.rate,
            ..self.stats.clone()
        }
    }

    /// The lane of `session`, created if new (forgetting the least recently active idle lane
    /// past `MAX_LANES`); `None` when every remembered lane is busy.
    fn lane_mut(&mut self, session: &SessionId) -> Option<&mut Lane> {
        if let Some(index) = self.lanes.iter().position(|l| &l.session == session) {
            return self.lanes.get_mut(index);
        }
        if self.lanes.len() >= MAX_LANES {
            let forgettable = self
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, lane)| lane.buffered == 0)
                .min_by_key(|(_, lane)| lane.last_active)
                .map(|(index, _)| index)?;
            self.lanes.swap_remove(forgettable);
        }
        self.lanes.push(Lane::new(session.clone(), self.clock));
        self.lanes.last_mut()
    }

    /// Queue one chunk of s16 mono PCM at `sample_rate`.
    pub(crate) fn push(
        &mut self,
        session: &SessionId,
        turn: TurnNo,
        seq: u64,
        sample_rate: u32,
        samples: &[i16],
    ) -> Result<Pushed, PushError> {
        let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        self.push_f32(session, turn, seq, sample_rate, &input)
    }

    pub(crate) fn push_f32(
        &mut self,
        session: &SessionId,
        turn: TurnNo,
        seq: u64,
        sample_rate: u32,
        input: &[f32],
    ) -> Result<Pushed, PushError> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(PushError::InvalidSampleRate(sample_rate));
        }
        let (clock, rate) = (self.clock, self.rate);
        let max_buffered = MAX_BUFFERED_SECS * rate as usize;
        let Some(lane) = self.lane_mut(session) else {
            self.stats.chunks_overflow += 1;
            return Ok(Pushed::Overflow);
        };
        let outcome = admit(lane, turn, seq);
        if outcome != Pushed::Queued {
            match outcome {
                Pushed::Fenced => self.stats.chunks_fenced += 1,
                Pushed::Stale => self.stats.chunks_stale += 1,
                Pushed::Duplicate => self.stats.chunks_duplicate += 1,
                Pushed::Overflow | Pushed::Queued => {}
            }
            return Ok(outcome);
        }
        let expected = input.len() * rate as usize / sample_rate as usize;
        if lane.buffered + expected > max_buffered {
            self.stats.chunks_overflow += 1;
            return Ok(Pushed::Overflow);
        }
        lane.next_seq = seq.saturating_add(1);
        let resampler = match &mut lane.resampler {
            Some(resampler) if resampler.input_rate() == sample_rate => resampler,
            slot => slot.insert(Resampler::new(sample_rate, rate)),
        };
        if lane.segments.back().is_none_or(|s| s.turn != turn) {
            lane.segments.push_back(Segment {
                turn,
                samples: VecDeque::new(),
            });
        }
        if let Some(segment) = lane.segments.back_mut() {
            let before = segment.samples.len();
            resampler.process(input, &mut segment.samples);
            lane.buffered += segment.samples.len() - before;
        }
        if lane.state == LaneState::Idle && lane.buffered > 0 {
            lane.state = LaneState::Buffering { since: clock };
        }
        lane.last_active = clock;
        self.stats.chunks_queued += 1;
        Ok(Pushed::Queued)
    }

    /// The turn's END arrived: what is queued of it may play out without waiting for more.
    pub(crate) fn end_turn(&mut self, session: &SessionId, turn: TurnNo) {
        let Some(lane) = self.lane_mut(session) else {
            return;
        };
        if lane.is_fenced(turn) || lane.latest_turn.is_some_and(|latest| turn < latest) {
            return;
        }
        if lane.latest_turn != Some(turn) {
            // An END for a turn that sent no audio: it is now the newest turn.
            lane.latest_turn = Some(turn);
            lane.next_seq = 0;
            lane.resampler = None;
        }
        lane.ended_turn = Some(turn);
    }

    /// Drop `session`'s queued audio of turns `≤ turn` and every later chunk of them.
    /// `true` if queued audio was removed.
    pub(crate) fn stop_turn(&mut self, session: &SessionId, turn: TurnNo) -> bool {
        let Some(lane) = self.lane_mut(session) else {
            tracing::warn!(%session, %turn, "too many busy sessions to fence a stopped turn");
            return false;
        };
        let removed = lane.stop(turn);
        self.stats.flushes += u64::from(removed);
        removed
    }

    /// Drop all of `session`'s queued audio and fence every turn seen so far. `true` if queued
    /// audio was removed.
    pub(crate) fn stop_session(&mut self, session: &SessionId) -> bool {
        let Some(lane) = self.lanes.iter_mut().find(|l| &l.session == session) else {
            // Never heard of: nothing queued, and nothing to fence yet.
            return false;
        };
        let removed = stop_all(lane);
        self.stats.flushes += u64::from(removed);
        removed
    }

    /// Hold (`true`) or release `session`'s audio where it is. `true` if the state changed.
    pub(crate) fn set_paused(&mut self, session: &SessionId, paused: bool) -> bool {
        let Some(lane) = self.lane_mut(session) else {
            return false;
        };
        let changed = lane.paused != paused;
        lane.paused = paused;
        changed
    }

    /// `stop_session` for every session.
    pub(crate) fn flush(&mut self) -> bool {
        let mut removed = false;
        for lane in &mut self.lanes {
            removed |= stop_all(lane);
        }
        self.stats.flushes += u64::from(removed);
        removed
    }

    /// Mix the next `out.len()` samples of every playing lane into `out` (silence where nothing
    /// is due) and advance the clock by as much.
    pub(crate) fn fill(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        let (clock, jitter, volume) = (self.clock, self.jitter_samples, self.volume);
        for lane in &mut self.lanes {
            if lane.paused {
                // Held, not underrun: the jitter rule starts over when it resumes.
                continue;
            }
            if let LaneState::Buffering { since } = lane.state {
                let waited = clock.saturating_sub(since);
                if lane.buffered >= jitter || lane.ended() || waited >= jitter as u64 {
                    lane.state = LaneState::Playing;
                }
            }
            if lane.state != LaneState::Playing {
                continue;
            }
            let mut written = 0;
            for slot in out.iter_mut() {
                let Some(sample) = lane.next_sample() else {
                    break;
                };
                *slot += sample * volume;
                written += 1;
            }
            if written > 0 {
                lane.last_active = clock + written as u64;
            }
            if written < out.len() {
                lane.state = LaneState::Idle;
                if !lane.ended() {
                    self.stats.underruns += 1;
                }
            }
        }
        for sample in out.iter_mut() {
            *sample = sample.clamp(-1.0, 1.0);
        }
        self.clock += out.len() as u64;
    }
}

/// Whether a chunk of `turn`/`seq` may be queued in `lane`; a new turn becomes the newest.
fn admit(lane: &mut Lane, turn: TurnNo, seq: u64) -> Pushed {
    if lane.is_fenced(turn) {
        return Pushed::Fenced;
    }
    match lane.latest_turn {
        Some(latest) if turn < latest => Pushed::Stale,
        Some(latest) if turn == latest => {
            if lane.ended_turn == Some(turn) {
                Pushed::Stale
            } else if seq < lane.next_seq {
                Pushed::Duplicate
            } else {
                // A gap (seq above the expected one) is played as is: the relay already
                // dropped what is missing, and waiting for it would only add silence.
                Pushed::Queued
            }
        }
        _ => {
            lane.latest_turn = Some(turn);
            lane.next_seq = 0;
            lane.resampler = None;
            Pushed::Queued
        }
    }
}

fn stop_all(lane: &mut Lane) -> bool {
    match lane.latest_turn {
        Some(latest) => lane.stop(latest),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const RATE: u32 = 24_000;
    /// Samples in one millisecond at `RATE`.
    const MS: usize = 24;

    fn sid(raw: &str) -> SessionId {
        SessionId::parse(raw).expect("valid test id")
    }

    /// `ms` of a constant `level` (as s16) at `RATE`.
    fn tone(ms: usize, level: i16) -> Vec<i16> {
        vec![level; ms * MS]
    }

    /// Consume `ms` of output and return it.
    fn play(playback: &mut Playback, ms: usize) -> Vec<f32> {
        let mut out = vec![0.0; ms * MS];
        playback.fill(&mut out);
        out
    }

    fn audible(block: &[f32]) -> usize {
        block.iter().filter(|s| s.abs() > 1e-6).count()
    }

    fn level(s: i16) -> f32 {
        f32::from(s) / 32_768.0
    }

    #[test]
    fn buffering_waits_for_the_jitter_target_then_plays_in_order() {
        let mut playback = Playback::new(RATE, 40, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(20, 1000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 10)),
            0,
            "20 ms queued < 40 ms target and only 0 ms waited: still buffering"
        );
        playback
            .push(&s, TurnNo(1), 1, RATE, &tone(20, 2000))
            .unwrap();
        let out = play(&mut playback, 40);
        assert_eq!(
            audible(&out),
            40 * MS,
            "40 ms queued reaches the target: all of it plays"
        );
        assert_eq!(out[0], level(1000), "chunk 0 first");
        assert_eq!(out[20 * MS], level(2000), "then chunk 1");
    }

    #[test]
    fn buffering_never_waits_longer_than_the_jitter_target() {
        let mut playback = Playback::new(RATE, 40, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(20, 1000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 30)),
            0,
            "30 ms waited < 40 ms: held back"
        );
        assert_eq!(
            audible(&play(&mut playback, 10)),
            0,
            "the 40 ms mark is reached during this block; it starts at the next"
        );
        assert_eq!(
            audible(&play(&mut playback, 10)),
            10 * MS,
            "40 ms waited: the short turn plays although only 20 ms are queued"
        );
    }

    #[test]
    fn end_starts_a_short_turn_at_once() {
        let mut playback = Playback::new(RATE, 60, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(10, 1000))
            .unwrap();
        playback.end_turn(&s, TurnNo(1));
        let out = play(&mut playback, 20);
        assert_eq!(
            audible(&out),
            10 * MS,
            "after END nothing more comes: no reason to wait"
        );
        assert_eq!(
            playback.stats().underruns,
            0,
            "running out after END is not an underrun"
        );
        assert!(!playback.is_busy(), "everything played");
    }

    #[test]
    fn an_underrun_buffers_again() {
        let mut playback = Playback::new(RATE, 20, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(20, 1000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 30)),
            20 * MS,
            "plays, then runs dry"
        );
        assert_eq!(
            playback.stats().underruns,
            1,
            "dry before END is an underrun"
        );
        playback
            .push(&s, TurnNo(1), 1, RATE, &tone(10, 1000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 10)),
            0,
            "10 ms queued < 20 ms: buffers again instead of stuttering"
        );
    }

    #[test]
    fn zero_jitter_plays_at_once() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(5, 1000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 5)),
            5 * MS,
            "no buffering at all"
        );
    }

    #[test]
    fn jitter_is_clamped_to_sixty_ms() {
        let playback = Playback::new(RATE, 500, 1.0);
        assert_eq!(
            playback.jitter_ms(),
            MAX_JITTER_MS,
            "the bound the design promises"
        );
    }

    #[test]
    fn a_stopped_turn_is_flushed_and_its_late_chunks_are_fenced() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        for seq in 0..10 {
            playback
                .push(&s, TurnNo(7), seq, RATE, &tone(20, 1000))
                .unwrap();
        }
        play(&mut playback, 50);
        assert!(
            playback.stop_turn(&s, TurnNo(7)),
            "queued audio was removed"
        );
        assert_eq!(
            audible(&play(&mut playback, 10)),
            0,
            "silent right after the stop"
        );
        assert_eq!(
            playback.push(&s, TurnNo(7), 10, RATE, &tone(20, 1000)),
            Ok(Pushed::Fenced),
            "a chunk of the stopped turn arriving late is dropped"
        );
        assert_eq!(
            playback.push(&s, TurnNo(6), 3, RATE, &tone(20, 1000)),
            Ok(Pushed::Fenced),
            "older turns are behind the fence too"
        );
        assert_eq!(
            audible(&play(&mut playback, 20)),
            0,
            "nothing of turn 7 plays"
        );
        assert_eq!(
            playback.push(&s, TurnNo(8), 0, RATE, &tone(20, 2000)),
            Ok(Pushed::Queued),
            "the next turn is not fenced"
        );
        let out = play(&mut playback, 20);
        assert_eq!(out[0], level(2000), "and plays");
    }

    #[test]
    fn stopping_a_turn_before_its_audio_arrives_fences_it() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        assert!(!playback.stop_turn(&s, TurnNo(3)), "nothing was queued");
        assert_eq!(
            playback.push(&s, TurnNo(3), 0, RATE, &tone(20, 1000)),
            Ok(Pushed::Fenced),
            "STOP_ACK for turn 3 came first; its audio must never play"
        );
    }

    #[test]
    fn stale_duplicate_and_after_end_chunks_are_dropped() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(2), 0, RATE, &tone(20, 1000))
            .unwrap();
        assert_eq!(
            playback.push(&s, TurnNo(2), 0, RATE, &tone(20, 1000)),
            Ok(Pushed::Duplicate),
            "the same seq twice is played once"
        );
        playback
            .push(&s, TurnNo(3), 0, RATE, &tone(20, 1000))
            .unwrap();
        assert_eq!(
            playback.push(&s, TurnNo(2), 1, RATE, &tone(20, 1000)),
            Ok(Pushed::Stale),
            "turn 3 started: turn 2 is stale"
        );
        playback.end_turn(&s, TurnNo(3));
        assert_eq!(
            playback.push(&s, TurnNo(3), 1, RATE, &tone(20, 1000)),
            Ok(Pushed::Stale),
            "nothing of a turn after its END"
        );
        let stats = playback.stats();
        assert_eq!(
            (
                stats.chunks_queued,
                stats.chunks_duplicate,
                stats.chunks_stale
            ),
            (2, 1, 2),
            "counted by kind"
        );
    }

    #[test]
    fn a_new_turn_queues_behind_the_ending_one() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(20, 1000))
            .unwrap();
        playback.end_turn(&s, TurnNo(1));
        playback
            .push(&s, TurnNo(2), 0, RATE, &tone(20, 2000))
            .unwrap();
        let out = play(&mut playback, 40);
        assert_eq!(
            (out[0], out[20 * MS]),
            (level(1000), level(2000)),
            "turn 1's tail is not cut by turn 2"
        );
    }

    #[test]
    fn a_paused_session_is_silent_keeps_its_audio_and_resumes_where_it_was() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("duck");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(100, 8_000))
            .unwrap();
        let before = audible(&play(&mut playback, 40));
        assert!(playback.set_paused(&s, true));
        let held = audible(&play(&mut playback, 200));
        assert_eq!(held, 0, "nothing plays while paused");
        assert!(playback.set_paused(&s, false));
        let after = audible(&play(&mut playback, 200));
        assert_eq!(
            before + after,
            100 * MS,
            "every sample plays exactly once: nothing lost to the pause"
        );
        playback.set_paused(&s, true);
        playback.stop_session(&s);
        playback
            .push(&s, TurnNo(2), 0, RATE, &tone(20, 8_000))
            .unwrap();
        assert_eq!(
            audible(&play(&mut playback, 40)),
            20 * MS,
            "a STOP ends the pause"
        );
    }

    #[test]
    fn stop_session_spares_other_sessions() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let (a, b) = (sid("a"), sid("b"));
        playback
            .push(&a, TurnNo(1), 0, RATE, &tone(40, 1000))
            .unwrap();
        playback
            .push(&b, TurnNo(1), 0, RATE, &tone(40, 2000))
            .unwrap();
        let mixed = play(&mut playback, 10);
        assert_eq!(
            mixed[0],
            level(1000) + level(2000),
            "two sessions are mixed"
        );
        assert!(playback.stop_session(&a), "a's audio removed");
        let after = play(&mut playback, 10);
        assert_eq!(after[0], level(2000), "only b remains");
        assert_eq!(
            playback.push(&a, TurnNo(1), 1, RATE, &tone(20, 1000)),
            Ok(Pushed::Fenced),
            "a's turn is fenced"
        );
        assert!(
            !playback.stop_session(&sid("never-seen")),
            "an unknown session has nothing to stop"
        );
    }

    #[test]
    fn flush_stops_everything_and_fences_every_current_turn() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let (a, b) = (sid("a"), sid("b"));
        playback
            .push(&a, TurnNo(4), 0, RATE, &tone(40, 1000))
            .unwrap();
        playback
            .push(&b, TurnNo(9), 0, RATE, &tone(40, 2000))
            .unwrap();
        assert!(playback.flush(), "audio removed");
        assert!(!playback.is_busy(), "nothing queued");
        assert_eq!(audible(&play(&mut playback, 10)), 0, "silence");
        assert_eq!(
            (
                playback.push(&a, TurnNo(4), 1, RATE, &tone(20, 1)),
                playback.push(&b, TurnNo(9), 1, RATE, &tone(20, 1)),
            ),
            (Ok(Pushed::Fenced), Ok(Pushed::Fenced)),
            "stragglers of flushed turns do not resume"
        );
        assert_eq!(playback.stats().flushes, 1, "one flush that removed audio");
    }

    #[test]
    fn volume_scales_and_is_clamped() {
        let mut playback = Playback::new(RATE, 0, 0.5);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, RATE, &tone(10, 8192))
            .unwrap();
        assert_eq!(
            play(&mut playback, 10)[0],
            0.125,
            "0.25 full scale at half volume"
        );
        playback.set_volume(0.0);
        playback
            .push(&s, TurnNo(1), 1, RATE, &tone(10, 8192))
            .unwrap();
        assert_eq!(audible(&play(&mut playback, 10)), 0, "volume 0 is silence");
        playback.set_volume(f32::NAN);
        assert_eq!(playback.volume(), 0.0, "NaN is ignored");
        playback.set_volume(10.0);
        assert_eq!(playback.volume(), MAX_VOLUME, "clamped to +6 dB");
        playback
            .push(&s, TurnNo(1), 2, RATE, &tone(10, 30_000))
            .unwrap();
        assert_eq!(
            play(&mut playback, 10)[0],
            1.0,
            "amplified output is clipped to full scale, not wrapped"
        );
    }

    #[test]
    fn chunks_at_another_rate_are_resampled_to_the_players() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        let s = sid("s");
        playback
            .push(&s, TurnNo(1), 0, 48_000, &vec![1000; 960])
            .unwrap();
        assert_eq!(
            playback.stats().buffered_ms,
            20,
            "20 ms at 48 kHz is still 20 ms at 24 kHz"
        );
        assert_eq!(
            playback.push(&s, TurnNo(1), 1, 1_000, &[1]),
            Err(PushError::InvalidSampleRate(1_000)),
            "nonsense rates are refused"
        );
    }

    #[test]
    fn many_sessions_forget_the_oldest_idle_one() {
        let mut playback = Playback::new(RATE, 0, 1.0);
        for n in 0..MAX_LANES + 5 {
            let s = sid(&format!("s{n}"));
            playback.stop_turn(&s, TurnNo(0));
            play(&mut playback, 1);
        }
        assert_eq!(playback.lanes.len(), MAX_LANES, "memory is bounded");
        assert!(
            playback.lanes.iter().all(|l| l.session != sid("s0")),
            "the least recently active idle session went first"
        );
    }
}
