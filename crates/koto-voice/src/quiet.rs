//! Silence at the microphone itself, on the sample clock: whether a span of the mic's raw
//! samples holds any sound above the room's floor, and where the last sound in a span ends.
//!
//! The VAD scores 16 ms frames of the *cleaned* signal, and earshot scores from context, so a
//! frame's score says nothing about where in the frame a voice stopped. The echo canceller
//! also delays what it returns (AEC3: 8 ms, `aec::AEC_LATENCY`) and leaves a decaying
//! residue of 30–100 (s16 RMS) for ~50 ms after a voice that ends in digital silence. The raw
//! mic has neither, and a canceller only ever removes sound: where the raw mic is quiet, the
//! cleaned signal holds no voice.
//!
//! The raw samples come aligned with the cleaned ones (the canceller delays them by its own
//! latency), so a span means the same audio in both; times are the VAD's sample clock.

use std::collections::VecDeque;

/// Quieter than this (s16 RMS, about −60 dBFS) is silence in any room.
const ABSOLUTE_QUIET_RMS: f64 = 32.0;
/// The room's floor (the quietest recent unvoiced frames) is believed up to this level
/// (about −40 dBFS): louder rooms keep the absolute threshold, so a streamer speaking softly
/// over a loud fan is never taken for silence.
const MAX_FLOOR_RMS: f64 = 328.0;
/// Sound is what stands this far above the floor (+3.5 dB; a frame's RMS of steady noise
/// varies by about ±1 dB).
const FLOOR_MARGIN: f64 = 1.5;
/// Unvoiced frames the floor is the minimum of (4 s of 16 ms frames).
const FLOOR_FRAMES: usize = 250;
/// Raw samples kept: a frame and its margins, with room to spare.
const KEEP_SAMPLES: usize = 4_096;
/// Where a sound ends is found in slices of this many samples (1 ms at 16 kHz).
const SLICE: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct MicQuiet {
    raw: VecDeque<i16>,
    /// Clock index of `raw[0]`.
    raw_start: u64,
    /// RMS of recent unvoiced frames, oldest first.
    floor_frames: VecDeque<f64>,
}

impl MicQuiet {
    pub fn new() -> Self {
        MicQuiet {
            raw: VecDeque::with_capacity(KEEP_SAMPLES),
            raw_start: 0,
            floor_frames: VecDeque::with_capacity(FLOOR_FRAMES),
        }
    }

    /// The clock jumped to `at` (the VAD dropped a partial frame): what is held no longer lines
    /// up. The room's floor stays.
    pub fn restart_at(&mut self, at: u64) {
        self.raw.clear();
        self.raw_start = at;
    }

    /// The mic's samples before any canceller, next on the clock.
    pub fn push_raw(&mut self, samples: &[i16]) {
        self.raw.extend(samples.iter().copied());
        let excess = self.raw.len().saturating_sub(KEEP_SAMPLES);
        self.raw.drain(..excess);
        self.raw_start += excess as u64;
    }

    /// Sound at or above this RMS is not the room.
    pub fn threshold(&self) -> f64 {
        let floor = self
            .floor_frames
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        if floor.is_finite() {
            (floor.min(MAX_FLOOR_RMS) * FLOOR_MARGIN).max(ABSOLUTE_QUIET_RMS)
        } else {
            ABSOLUTE_QUIET_RMS
        }
    }

    /// A frame `[from, to)` the VAD found unvoiced: part of the room's floor.
    pub fn observe_unvoiced(&mut self, from: u64, to: u64) {
        let Some(span) = self.span(from, to) else {
            return;
        };
        if self.floor_frames.len() == FLOOR_FRAMES {
            self.floor_frames.pop_front();
        }
        self.floor_frames.push_back(rms(&span));
    }

    /// Whether `[from, to)` holds no sound. Unknown audio (not yet heard, or long gone) is
    /// not quiet.
    pub fn is_quiet(&self, from: u64, to: u64) -> bool {
        self.span(from, to)
            .is_some_and(|span| rms(&span) < self.threshold())
    }

    /// Whether samples not on the clock yet (held ahead of it) hold no sound.
    pub fn is_quiet_samples(&self, samples: &[i16]) -> bool {
        rms(samples) < self.threshold()
    }

    /// Where the last sound in `[from, to)` ends (to the slice), or `None` if it holds none.
    pub fn sound_end(&self, from: u64, to: u64) -> Option<u64> {
        let span = self.span(from, to)?;
        let threshold = self.threshold();
        let slices = span.len().div_ceil(SLICE);
        (0..slices).rev().find_map(|i| {
            let slice = &span[i * SLICE..((i + 1) * SLICE).min(span.len())];
            (rms(slice) >= threshold).then(|| (from + ((i + 1) * SLICE) as u64).min(to))
        })
    }

    /// Raw samples of `[from, to)`, if all of them are held.
    fn span(&self, from: u64, to: u64) -> Option<Vec<i16>> {
        let held_to = self.raw_start + self.raw.len() as u64;
        if from < self.raw_start || to > held_to || from >= to {
            return None;
        }
        let start = (from - self.raw_start) as usize;
        let end = (to - self.raw_start) as usize;
        Some(self.raw.range(start..end).copied().collect())
    }
}

fn rms(samples: &[i16]) -> f64 {
    f64::from(koto_providers::audio::mouth::rms(samples))
}
