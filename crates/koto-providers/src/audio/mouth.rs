//! How far the avatar's mouth is open (0..1) for each audio chunk, from the chunk's loudness.
//! No IO; no phoneme-level visemes (no provider here reports phonemes with timings).
//!
//! The mapping, in two steps:
//! 1. **Level.** The chunk's RMS in dBFS (`20·log10(rms / 32768)`) is mapped linearly from the
//!    noise floor [`NOISE_FLOOR_DBFS`] (−50 dBFS → 0) to [`FULL_OPEN_DBFS`] (−15 dBFS → 1) and
//!    clamped. dB because loudness is perceived logarithmically: a linear RMS scale leaves the mouth
//!    nearly shut for all but the loudest vowels. The end points come from measured speech: the
//!    loud 10 % of 20 ms frames of espeak-ng and Piper sit around −15 dBFS, the median near −25,
//!    and pauses below −60 (digital silence is −∞).
//! 2. **Smoothing.** A one-pole follower with a fast attack (time constant 10 ms) and a slower
//!    release (30 ms), scaled to the chunk length, so the mouth opens with the onset of a syllable
//!    but does not flicker shut between two. Values under 0.02 snap to 0, so the mouth really
//!    closes in a pause (and stays exactly 0 in silence).

/// RMS level (dBFS) at and below which the mouth is closed.
pub const NOISE_FLOOR_DBFS: f32 = -50.0;
/// RMS level (dBFS) at and above which the mouth is fully open.
pub const FULL_OPEN_DBFS: f32 = -15.0;
const ATTACK_TAU_MS: f32 = 10.0;
const RELEASE_TAU_MS: f32 = 30.0;
const CLOSED_BELOW: f32 = 0.02;

/// Root mean square of the samples, in sample units (0..=32768); 0 for no samples.
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}

/// Step 1 of the mapping: the unsmoothed openness for an RMS level. Monotonic, 0 for silence.
pub fn openness_for_rms(rms: f32) -> f32 {
    if rms.is_nan() || rms <= 0.0 {
        return 0.0;
    }
    let dbfs = 20.0 * (rms / 32_768.0).log10();
    ((dbfs - NOISE_FLOOR_DBFS) / (FULL_OPEN_DBFS - NOISE_FLOOR_DBFS)).clamp(0.0, 1.0)
}

/// Step 2: the smoothed mouth over consecutive chunks of one stream.
#[derive(Debug, Clone)]
pub struct MouthEnvelope {
    value: f32,
    attack: f32,
    release: f32,
}

impl MouthEnvelope {
    /// `chunk_ms` is the duration of the chunks that will be fed, for the smoothing constants.
    pub fn new(chunk_ms: u32) -> Self {
        let chunk_ms = chunk_ms.max(1) as f32;
        Self {
            value: 0.0,
            attack: 1.0 - (-chunk_ms / ATTACK_TAU_MS).exp(),
            release: 1.0 - (-chunk_ms / RELEASE_TAU_MS).exp(),
        }
    }

    /// The mouth for the next chunk of audio.
    pub fn next(&mut self, samples: &[i16]) -> f32 {
        let target = openness_for_rms(rms(samples));
        let rate = if target > self.value {
            self.attack
        } else {
            self.release
        };
        self.value += rate * (target - self.value);
        if self.value < CLOSED_BELOW {
            self.value = 0.0;
        }
        self.value
    }

    /// Mouth shut, for the start of a new stream.
    pub fn reset(&mut self) {
        self.value = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openness_is_monotonic_and_zero_for_silence() {
        assert_eq!(
            openness_for_rms(0.0),
            0.0,
            "digital silence closes the mouth"
        );
        assert_eq!(
            openness_for_rms(10.0),
            0.0,
            "−70 dBFS is below the noise floor"
        );
        let levels = [
            0.0f32, 5.0, 20.0, 100.0, 300.0, 1_000.0, 3_000.0, 6_000.0, 32_768.0,
        ];
        let open: Vec<f32> = levels.iter().map(|&l| openness_for_rms(l)).collect();
        assert!(
            open.windows(2).all(|w| w[0] <= w[1]),
            "louder never means a more closed mouth: {open:?}"
        );
        assert!(
            open.iter().all(|o| (0.0..=1.0).contains(o)),
            "openness stays in 0..1: {open:?}"
        );
        assert_eq!(openness_for_rms(32_768.0), 1.0, "full scale is fully open");
        assert!(
            open[5] > 0.3 && open[5] < 0.9,
            "ordinary speech (−30 dBFS) is half open, not pinned to an end: {}",
            open[5]
        );
    }

    #[test]
    fn envelope_opens_fast_closes_smoothly_and_rests_at_zero() {
        let mut mouth = MouthEnvelope::new(20);
        let silence = vec![0i16; 480];
        let loud: Vec<i16> = (0..480)
            .map(|i| if i % 2 == 0 { 8_000 } else { -8_000 })
            .collect();
        assert_eq!(mouth.next(&silence), 0.0, "silence from the start: closed");
        let first = mouth.next(&loud);
        assert!(
            first > 0.8,
            "the attack follows an onset within one chunk: {first}"
        );
        let mut closing = vec![];
        for _ in 0..12 {
            closing.push(mouth.next(&silence));
        }
        assert!(
            closing[0] > 0.0 && closing[0] < first,
            "the release is smoothed, not a snap shut: {closing:?}"
        );
        assert!(
            closing.windows(2).all(|w| w[1] <= w[0]),
            "in silence the mouth only closes: {closing:?}"
        );
        assert_eq!(
            closing.last().copied(),
            Some(0.0),
            "after a pause the mouth is exactly closed"
        );
    }
}
