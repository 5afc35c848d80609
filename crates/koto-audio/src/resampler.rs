//! Linear sample-rate conversion of one turn's PCM to the player's rate, carried across chunks.
//!
//! Speech at 16–48 kHz only; it deliberately has no anti-aliasing filter (a downsampled voice
//! loses nothing audible that matters here) and no lookahead, so it adds no latency: a chunk's
//! samples are playable the moment it is pushed.

/// Converts a stream of samples at `from` Hz to `to` Hz. One per lane, reset at each new turn.
#[derive(Debug, Clone)]
pub(crate) struct Resampler {
    from: u32,
    to: u32,
    /// The last input sample of the previous chunk (position 0 in the next chunk's coordinates,
    /// where input sample `i` sits at `i + 1`).
    last: f32,
    /// Where the next output sample falls, in those coordinates.
    phase: f64,
}

impl Resampler {
    pub(crate) fn new(from: u32, to: u32) -> Self {
        Resampler {
            from,
            to,
            last: 0.0,
            // The first output sample is the first input sample.
            phase: 1.0,
        }
    }

    pub(crate) fn input_rate(&self) -> u32 {
        self.from
    }

    /// Append `input` converted to the output rate to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut impl Extend<f32>) {
        if self.from == self.to {
            out.extend(input.iter().copied());
            return;
        }
        if input.is_empty() {
            return;
        }
        let step = f64::from(self.from) / f64::from(self.to);
        let len = input.len() as f64;
        let at = |coordinate: usize| -> f32 {
            match coordinate {
                0 => self.last,
                n => input[n - 1],
            }
        };
        let mut converted = Vec::with_capacity((len / step) as usize + 1);
        let mut position = self.phase;
        // Strictly below `len` so both neighbours exist; the last input sample is interpolated
        // from in the next chunk (one sample of delay, 21–125 µs).
        while position < len {
            let left = position.floor();
            let fraction = (position - left) as f32;
            let index = left as usize;
            let (a, b) = (at(index), at(index + 1));
            converted.push(a + (b - a) * fraction);
            position += step;
        }
        out.extend(converted);
        self.phase = position - len;
        self.last = input[input.len() - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(from: u32, to: u32, chunks: &[&[f32]]) -> Vec<f32> {
        let mut resampler = Resampler::new(from, to);
        let mut out = Vec::new();
        for chunk in chunks {
            resampler.process(chunk, &mut out);
        }
        out
    }

    #[test]
    fn equal_rates_pass_through_unchanged() {
        let input = [0.1, -0.2, 0.3];
        assert_eq!(
            run(24_000, 24_000, &[&input]),
            input.to_vec(),
            "no conversion means no change"
        );
    }

    #[test]
    fn doubling_the_rate_interpolates_between_samples_across_chunks() {
        let out = run(24_000, 48_000, &[&[0.0, 1.0], &[0.0]]);
        assert_eq!(
            out,
            vec![0.0, 0.5, 1.0, 0.5],
            "midpoints inserted, also across the chunk boundary"
        );
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let signal: Vec<f32> = (0..480).map(|n| ((n as f32) * 0.05).sin()).collect();
        let whole = run(22_050, 48_000, &[&signal]);
        let pieces: Vec<&[f32]> = signal.chunks(37).collect();
        let chunked = run(22_050, 48_000, &pieces);
        assert_eq!(whole.len(), chunked.len(), "same number of output samples");
        for (a, b) in whole.iter().zip(&chunked) {
            assert!(
                (a - b).abs() < 1e-4,
                "same samples however the input is cut"
            );
        }
        let expected = 480.0 * 48_000.0 / 22_050.0;
        assert!(
            (whole.len() as f64 - expected).abs() <= 3.0,
            "duration is kept: {} vs {expected}",
            whole.len()
        );
    }
}
