//! A streaming mono resampler over `rubato`'s windowed-sinc resampler: `i16` in, `i16` out, with
//! the filter state kept across pushes (no clicks at block boundaries) and the exact duration kept
//! at `finish`. No IO, no chunking.
//!
//! Alignment: rubato's `SincFixedIn` starts its output at input frame 0 (checked by the tests
//! below); the filter's look-ahead (`output_delay()`, half the filter) is output frames it holds
//! back until more input arrives, and `finish` pushes them out with zeros, then cuts the output to
//! `round(frames_in × output_rate / input_rate)`.
//!
//! Deliberately a sinc resampler with a 10 ms input chunk rather than an FFT one: it takes any pair
//! of rates (an FFT resampler's chunk grows with `rate / gcd`, huge for odd rates) and adds only
//! ~10 ms + half the filter (~3 ms) of latency.

use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Length of the sinc filter in input samples: plenty for speech, cheap on two cores.
const SINC_LEN: usize = 128;

/// Why a resampler could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resample {input_rate} Hz to {output_rate} Hz: {reason}")]
pub struct ResampleSetupError {
    pub input_rate: u32,
    pub output_rate: u32,
    pub reason: String,
}

/// Converts one mono stream from `input_rate` to `output_rate`.
pub struct StreamResampler {
    inner: SincFixedIn<f32>,
    input_rate: u32,
    output_rate: u32,
    /// Input frames the resampler consumes per call.
    chunk_in: usize,
    /// Input not yet handed to rubato (always shorter than `chunk_in` between calls).
    pending_input: Vec<f32>,
    frames_in: u64,
    frames_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("frames_in", &self.frames_in)
            .field("frames_out", &self.frames_out)
            .finish()
    }
}

impl StreamResampler {
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, ResampleSetupError> {
        let setup_error = |reason: String| ResampleSetupError {
            input_rate,
            output_rate,
            reason,
        };
        if input_rate == 0 || output_rate == 0 {
            return Err(setup_error("a rate is 0".into()));
        }
        let parameters = SincInterpolationParameters {
            sinc_len: SINC_LEN,
            f_cutoff: rubato::calculate_cutoff(SINC_LEN, WindowFunction::BlackmanHarris2),
            oversampling_factor: 256,
            interpolation: SincInterpolationType::Linear,
            window: WindowFunction::BlackmanHarris2,
        };
        let chunk_in = (input_rate as usize / 100).max(1);
        let ratio = f64::from(output_rate) / f64::from(input_rate);
        let inner = SincFixedIn::<f32>::new(ratio, 1.0, parameters, chunk_in, 1)
            .map_err(|e| setup_error(e.to_string()))?;
        Ok(Self {
            inner,
            input_rate,
            output_rate,
            chunk_in,
            pending_input: Vec::with_capacity(chunk_in),
            frames_in: 0,
            frames_out: 0,
        })
    }

    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Resamples what it can of `samples`; the rest waits for the next push or `finish`.
    pub fn push(&mut self, samples: &[i16]) -> Vec<i16> {
        self.frames_in += samples.len() as u64;
        let mut output = Vec::new();
        for &sample in samples {
            self.pending_input.push(f32::from(sample) / 32_768.0);
            if self.pending_input.len() == self.chunk_in {
                let processed = self.inner.process(&[&self.pending_input], None);
                self.pending_input.clear();
                match processed {
                    Ok(frames) => self.emit(&frames, &mut output, None),
                    // Cannot happen with a full chunk and one channel; losing 10 ms beats a panic.
                    Err(error) => tracing::warn!(%error, "resampler refused a chunk"),
                }
            }
        }
        output
    }

    /// Flushes the tail: the pending input and the filter's delay line. The total output is then
    /// `round(frames_in × output_rate / input_rate)` frames. The resampler is spent afterwards.
    pub fn finish(&mut self) -> Vec<i16> {
        let expected = (self.frames_in * u64::from(self.output_rate)
            + u64::from(self.input_rate) / 2)
            / u64::from(self.input_rate);
        let mut output = Vec::new();
        let pending = std::mem::take(&mut self.pending_input);
        let mut input: Option<&[f32]> = (!pending.is_empty()).then_some(&pending[..]);
        // Each round feeds a chunk of zeros (after the real rest), pushing the held-back frames
        // out; a few rounds always suffice, the bound only guards against a logic error.
        for _ in 0..(SINC_LEN / self.chunk_in + 4) {
            if self.frames_out >= expected {
                break;
            }
            let processed = match input.take() {
                Some(rest) => self.inner.process_partial(Some(&[rest][..]), None),
                None => self.inner.process_partial::<&[f32]>(None, None),
            };
            match processed {
                Ok(frames) => self.emit(&frames, &mut output, Some(expected)),
                Err(error) => {
                    tracing::warn!(%error, "resampler refused the tail");
                    break;
                }
            }
        }
        output
    }

    fn emit(&mut self, frames: &[Vec<f32>], output: &mut Vec<i16>, limit: Option<u64>) {
        let Some(channel) = frames.first() else {
            return;
        };
        let mut usable = &channel[..];
        if let Some(limit) = limit {
            let room = limit.saturating_sub(self.frames_out) as usize;
            usable = &usable[..usable.len().min(room)];
        }
        self.frames_out += usable.len() as u64;
        output.extend(usable.iter().map(|&s| to_i16(s)));
    }
}

fn to_i16(sample: f32) -> i16 {
    // The filter can overshoot full scale slightly; clamp instead of wrapping.
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(crate) fn sine(rate: u32, hz: f64, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds).round() as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    /// Sign changes from negative to non-negative: twice per period would double count, once is a
    /// frequency estimate.
    pub(crate) fn upward_zero_crossings(samples: &[i16]) -> usize {
        samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    fn resample_in_blocks(input: &[i16], from: u32, to: u32, block: usize) -> Vec<i16> {
        let mut resampler = StreamResampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(block) {
            out.extend(resampler.push(piece));
        }
        out.extend(resampler.finish());
        out
    }

    #[test]
    fn duration_is_exact_and_frequency_kept() {
        for (from, to) in [
            (22_050, 24_000),
            (16_000, 24_000),
            (44_100, 24_000),
            (48_000, 24_000),
        ] {
            let input = sine(from, 440.0, 1.0, 10_000.0);
            let out = resample_in_blocks(&input, from, to, 1_000);
            assert_eq!(
                out.len(),
                to as usize,
                "{from}→{to}: one second in is one second out"
            );
            let crossings = upward_zero_crossings(&out);
            assert!(
                (439..=441).contains(&crossings),
                "{from}→{to}: a 440 Hz tone stays 440 Hz, got {crossings} periods"
            );
        }
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        let input = sine(22_050, 300.0, 0.5, 12_000.0);
        let whole = resample_in_blocks(&input, 22_050, 24_000, input.len());
        for block in [1, 7, 441, 2_048] {
            let pieces = resample_in_blocks(&input, 22_050, 24_000, block);
            assert_eq!(
                pieces, whole,
                "state carries over between pushes of {block} samples, so there is no seam"
            );
        }
    }

    #[test]
    fn output_is_aligned_with_input_and_continuous() {
        let input = sine(22_050, 200.0, 0.5, 10_000.0);
        let out = resample_in_blocks(&input, 22_050, 24_000, 333);
        let reference = sine(24_000, 200.0, 0.5, 10_000.0);
        // Away from the edges (where the filter sees the zero padding) the output is the tone
        // sampled at the new rate: no delay, no seams.
        let worst = out[500..11_500]
            .iter()
            .zip(&reference[500..11_500])
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(
            worst < 200,
            "output starts at input frame 0 and blocks join seamlessly (max error {worst})"
        );
    }

    #[test]
    fn zero_rate_is_refused() {
        assert!(
            StreamResampler::new(0, 24_000).is_err(),
            "0 Hz is not a rate"
        );
    }
}
