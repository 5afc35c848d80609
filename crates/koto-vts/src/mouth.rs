//! How open the mouth is: a level from PCM ([`mouth_open_from_pcm`]) and the envelope that turns
//! per-chunk levels into a mouth that opens fast and closes a little slower ([`MouthEnvelope`]).
//!
//! Pure arithmetic: no clock, no IO. The caller says how much time passed; lip shapes (visemes)
//! are deliberately out of scope, VTube Studio's `MouthOpen` is one number.

use std::time::Duration;

/// Below this RMS level (dBFS) a chunk counts as silence: breath and dither keep the mouth shut.
const GATE_DBFS: f32 = -45.0;
/// At and above this RMS level (dBFS) the mouth is fully open (normalised TTS speech sits around
/// -20 dBFS, its loud syllables near -12).
const FULL_DBFS: f32 = -14.0;

/// The mouth opening (0..1) for one chunk of 16-bit PCM (any rate, any channel layout: only the
/// RMS matters).
///
/// The RMS is taken in dBFS and mapped linearly from [`GATE_DBFS`] (closed) to [`FULL_DBFS`]
/// (open): loudness is heard logarithmically, so a linear RMS would leave quiet syllables almost
/// shut and saturate on every vowel.
pub fn mouth_open_from_pcm(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum_of_squares: f64 = samples
        .iter()
        .map(|&sample| {
            let normalised = f64::from(sample) / 32768.0;
            normalised * normalised
        })
        .sum();
    // Precision: a chunk is at most a few hundred thousand samples; f64 keeps that exact enough.
    #[allow(clippy::cast_precision_loss)]
    let mean = sum_of_squares / samples.len() as f64;
    let rms = mean.sqrt();
    if rms <= 0.0 {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation)]
    let dbfs = (20.0 * rms.log10()) as f32;
    if dbfs < GATE_DBFS {
        return 0.0;
    }
    ((dbfs - GATE_DBFS) / (FULL_DBFS - GATE_DBFS)).clamp(0.0, 1.0)
}

/// Exponential smoothing with two time constants: `attack` while the mouth opens, `release`
/// while it closes. The value always stays within 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthEnvelope {
    attack: Duration,
    release: Duration,
    value: f32,
}

impl MouthEnvelope {
    /// A single step never covers more than this: after a stall (a busy machine, a paused
    /// task) the mouth moves on as if a short time had passed instead of jumping.
    pub const MAX_STEP: Duration = Duration::from_millis(100);

    /// Values closer to 0 than this snap to 0, so a released mouth ends really closed.
    const SNAP: f32 = 0.002;

    pub fn new(attack: Duration, release: Duration) -> MouthEnvelope {
        MouthEnvelope {
            attack,
            release,
            value: 0.0,
        }
    }

    pub fn value(&self) -> f32 {
        self.value
    }

    /// Jump to `value` at once (STOP closes the mouth without a release).
    pub fn reset(&mut self, value: f32) {
        self.value = clamp_level(value);
    }

    /// Move towards `target` for `elapsed` time; returns the new value.
    pub fn step(&mut self, target: f32, elapsed: Duration) -> f32 {
        let target = clamp_level(target);
        let elapsed = elapsed.min(Self::MAX_STEP);
        let time_constant = if target > self.value {
            self.attack
        } else {
            self.release
        };
        let alpha = if time_constant.is_zero() {
            1.0
        } else {
            1.0 - (-elapsed.as_secs_f32() / time_constant.as_secs_f32()).exp()
        };
        self.value = clamp_level(self.value + (target - self.value) * alpha);
        if target == 0.0 && self.value < Self::SNAP {
            self.value = 0.0;
        }
        self.value
    }
}

/// 0..1, with NaN (a broken level computation upstream) as closed.
pub(crate) fn clamp_level(level: f32) -> f32 {
    if level.is_nan() {
        0.0
    } else {
        level.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TICK: Duration = Duration::from_millis(33);

    fn envelope() -> MouthEnvelope {
        MouthEnvelope::new(Duration::from_millis(40), Duration::from_millis(150))
    }

    fn steps_to_reach(
        envelope: &mut MouthEnvelope,
        target: f32,
        done: impl Fn(f32) -> bool,
    ) -> u32 {
        for n in 1..1000 {
            if done(envelope.step(target, TICK)) {
                return n;
            }
        }
        panic!("the envelope never got there");
    }

    #[test]
    fn opens_faster_than_it_closes() {
        let mut mouth = envelope();
        let opening = steps_to_reach(&mut mouth, 1.0, |v| v >= 0.9);
        let closing = steps_to_reach(&mut mouth, 0.0, |v| v <= 0.1);
        assert!(
            opening < closing,
            "attack (40 ms) is shorter than release (150 ms): {opening} vs {closing} ticks"
        );
    }

    #[test]
    fn opening_is_smoothed_not_instant() {
        let mut mouth = envelope();
        let first = mouth.step(1.0, TICK);
        assert!(
            first > 0.0 && first < 1.0,
            "one tick moves part of the way: {first}"
        );
    }

    #[test]
    fn a_stall_is_one_bounded_step() {
        let mut mouth = envelope();
        let after_stall = mouth.step(1.0, Duration::from_secs(5));
        let mut reference = envelope();
        let after_max = reference.step(1.0, MouthEnvelope::MAX_STEP);
        assert_eq!(after_stall, after_max, "elapsed time is capped at MAX_STEP");
        assert!(
            after_stall < 1.0,
            "so even a long stall does not jump fully open"
        );
    }

    #[test]
    fn stays_within_bounds_whatever_the_input() {
        let mut mouth = envelope();
        for target in [5.0, -3.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5] {
            for _ in 0..20 {
                let value = mouth.step(target, TICK);
                assert!((0.0..=1.0).contains(&value), "{target} gave {value}");
            }
        }
    }

    #[test]
    fn release_ends_exactly_closed() {
        let mut mouth = envelope();
        mouth.reset(1.0);
        steps_to_reach(&mut mouth, 0.0, |v| v == 0.0);
        assert_eq!(mouth.value(), 0.0, "snaps to 0 instead of creeping forever");
    }

    #[test]
    fn reset_jumps() {
        let mut mouth = envelope();
        mouth.reset(0.8);
        assert_eq!(mouth.value(), 0.8);
        mouth.reset(0.0);
        assert_eq!(mouth.value(), 0.0);
        mouth.reset(f32::NAN);
        assert_eq!(mouth.value(), 0.0, "NaN is closed");
    }

    fn sine(amplitude: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let sample = (amplitude * 32767.0 * (i as f32 * 0.07).sin()) as i16;
                sample
            })
            .collect()
    }

    #[test]
    fn silence_and_empty_are_closed() {
        assert_eq!(mouth_open_from_pcm(&[]), 0.0);
        assert_eq!(mouth_open_from_pcm(&[0; 480]), 0.0);
    }

    #[test]
    fn the_gate_keeps_noise_out() {
        // ±8 LSB of noise is about -72 dBFS.
        let noise: Vec<i16> = (0..480).map(|i| if i % 2 == 0 { 8 } else { -8 }).collect();
        assert_eq!(
            mouth_open_from_pcm(&noise),
            0.0,
            "well under the -45 dBFS gate"
        );
    }

    #[test]
    fn loud_speech_opens_fully_and_levels_are_monotonic() {
        assert_eq!(
            mouth_open_from_pcm(&sine(0.9, 960)),
            1.0,
            "-4 dBFS is fully open"
        );
        assert_eq!(
            mouth_open_from_pcm(&[i16::MIN; 16]),
            1.0,
            "full scale stays at 1"
        );
        let levels: Vec<f32> = [0.01, 0.03, 0.1, 0.2]
            .iter()
            .map(|&amplitude| mouth_open_from_pcm(&sine(amplitude, 960)))
            .collect();
        assert!(
            levels.windows(2).all(|pair| pair[0] < pair[1]),
            "louder is more open: {levels:?}"
        );
        assert!(
            levels.iter().all(|level| (0.0..1.0).contains(level)),
            "quiet speech is partly open: {levels:?}"
        );
    }
}
