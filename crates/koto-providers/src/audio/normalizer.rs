//! `PcmNormalizer`: provider PCM at any rate in, fixed-length chunks at the stream rate out, each
//! with its mouth openness. No IO; it does not decode (see `mp3`, `wav`) and knows no wire format.

use koto_core::tts::PcmBlock;

use super::mouth::MouthEnvelope;
use super::resample::StreamResampler;

/// One piece of speech ready for the wire: `chunk_ms` of mono s16 PCM at the normaliser's target
/// rate (the last chunk of a segment may be shorter), with how far the mouth is open (0..1).
pub use koto_core::tts::AudioChunk;

/// Provider rates outside this range are refused (a provider bug, not audio).
const PLAUSIBLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Resamples to `target_rate` and cuts exact `chunk_ms` chunks, for one segment at a time.
///
/// Feed a segment's blocks with [`push`](Self::push), end it with [`finish`](Self::finish) (which
/// emits the short last chunk and makes the normaliser ready for the next segment). If the input
/// rate changes mid-segment (a provider that switches format), the old resampler's tail is flushed
/// and a fresh resampler takes over: no audio is lost, but the join is not filtered across, so a
/// click is possible exactly there.
#[derive(Debug)]
pub struct PcmNormalizer {
    target_rate: u32,
    chunk_ms: u32,
    chunk_samples: usize,
    input_rate: Option<u32>,
    /// Present while the input rate differs from the target rate.
    resampler: Option<StreamResampler>,
    /// Target-rate samples not yet cut into a chunk (always fewer than `chunk_samples`).
    pending: Vec<i16>,
    mouth: MouthEnvelope,
}

impl PcmNormalizer {
    pub const DEFAULT_CHUNK_MS: u32 = 20;

    /// `target_rate` is clamped to 8–192 kHz and `chunk_ms` to 20–40 ms (the wire contract).
    /// A chunk holds `round(target_rate × chunk_ms / 1000)` samples: 480 at 24 kHz / 20 ms.
    pub fn new(target_rate: u32, chunk_ms: u32) -> Self {
        let target_rate = target_rate.clamp(8_000, 192_000);
        let chunk_ms = chunk_ms.clamp(20, 40);
        let chunk_samples = ((u64::from(target_rate) * u64::from(chunk_ms) + 500) / 1000) as usize;
        Self {
            target_rate,
            chunk_ms,
            chunk_samples,
            input_rate: None,
            resampler: None,
            pending: Vec::with_capacity(chunk_samples),
            mouth: MouthEnvelope::new(chunk_ms),
        }
    }

    pub fn target_rate(&self) -> u32 {
        self.target_rate
    }

    /// Whether a resampler is running (the segment's input is at another rate).
    pub fn resampling(&self) -> bool {
        self.resampler.is_some()
    }

    pub fn chunk_ms(&self) -> u32 {
        self.chunk_ms
    }

    /// Samples in every chunk but a segment's last.
    pub fn chunk_samples(&self) -> usize {
        self.chunk_samples
    }

    /// Takes the next provider block; returns every chunk it completes (often none or several).
    /// A block with an implausible rate (0 Hz, 5 MHz) is dropped with a warning.
    pub fn push(&mut self, block: &PcmBlock) -> Vec<AudioChunk> {
        if block.samples.is_empty() {
            return Vec::new();
        }
        if !PLAUSIBLE_RATES.contains(&block.sample_rate) {
            tracing::warn!(
                sample_rate = block.sample_rate,
                "dropping a PCM block with an implausible sample rate"
            );
            return Vec::new();
        }
        if self.input_rate != Some(block.sample_rate) {
            if let Some(mut old) = self.resampler.take() {
                let tail = old.finish();
                self.pending.extend(tail);
            }
            if self.input_rate.is_some() {
                tracing::debug!(
                    from = ?self.input_rate,
                    to = block.sample_rate,
                    "input rate changed mid-segment; restarting the resampler"
                );
            }
            self.input_rate = Some(block.sample_rate);
            if block.sample_rate != self.target_rate {
                match StreamResampler::new(block.sample_rate, self.target_rate) {
                    Ok(resampler) => self.resampler = Some(resampler),
                    Err(error) => {
                        tracing::warn!(%error, "dropping PCM that cannot be resampled");
                        self.input_rate = None;
                        return Vec::new();
                    }
                }
            }
        }
        match &mut self.resampler {
            Some(resampler) => {
                let resampled = resampler.push(&block.samples);
                self.pending.extend(resampled);
            }
            None => self.pending.extend_from_slice(&block.samples),
        }
        self.cut(false)
    }

    /// Ends the segment: flushes the resampler and returns the remaining chunks, the last one
    /// possibly shorter. Afterwards the normaliser starts afresh (mouth closed, no rate).
    pub fn finish(&mut self) -> Vec<AudioChunk> {
        if let Some(mut resampler) = self.resampler.take() {
            let tail = resampler.finish();
            self.pending.extend(tail);
        }
        let chunks = self.cut(true);
        self.input_rate = None;
        self.mouth.reset();
        chunks
    }

    fn cut(&mut self, include_partial: bool) -> Vec<AudioChunk> {
        let mut chunks = Vec::with_capacity(self.pending.len() / self.chunk_samples + 1);
        let mut start = 0;
        while self.pending.len() - start >= self.chunk_samples
            || (include_partial && start < self.pending.len())
        {
            let end = (start + self.chunk_samples).min(self.pending.len());
            let samples = self.pending[start..end].to_vec();
            let mouth_open = self.mouth.next(&samples);
            chunks.push(AudioChunk {
                samples,
                mouth_open,
            });
            start = end;
        }
        self.pending.drain(..start);
        chunks
    }
}

impl Default for PcmNormalizer {
    /// 24 kHz (the wire's default stream rate), 20 ms chunks.
    fn default() -> Self {
        Self::new(24_000, Self::DEFAULT_CHUNK_MS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::audio::resample::tests::{sine, upward_zero_crossings};

    fn run(normalizer: &mut PcmNormalizer, blocks: &[PcmBlock]) -> Vec<AudioChunk> {
        let mut chunks = Vec::new();
        for block in blocks {
            chunks.extend(normalizer.push(block));
        }
        chunks.extend(normalizer.finish());
        chunks
    }

    fn blocks_of(samples: &[i16], rate: u32, size: usize) -> Vec<PcmBlock> {
        samples
            .chunks(size)
            .map(|s| PcmBlock {
                sample_rate: rate,
                samples: s.to_vec(),
            })
            .collect()
    }

    #[test]
    fn espeak_rate_to_stream_rate_keeps_duration_and_pitch() {
        // 1.5 s of a 220 Hz tone at espeak's 22 050 Hz, in odd-sized blocks like a pipe gives.
        let input = sine(22_050, 220.0, 1.5, 9_000.0);
        let mut normalizer = PcmNormalizer::new(24_000, 20);
        let chunks = run(&mut normalizer, &blocks_of(&input, 22_050, 4_097));
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        assert!(
            total.abs_diff(36_000) <= 480,
            "1.5 s in is 1.5 s out at 24 kHz (within one chunk): {total}"
        );
        let all: Vec<i16> = chunks.iter().flat_map(|c| c.samples.clone()).collect();
        let crossings = upward_zero_crossings(&all);
        assert!(
            (329..=331).contains(&crossings),
            "a 220 Hz tone keeps its frequency: {crossings} periods in 1.5 s"
        );
    }

    #[test]
    fn chunks_are_exactly_chunk_ms_except_the_last() {
        for (rate, chunk_ms, expected) in [(24_000, 20, 480), (24_000, 40, 960), (22_050, 20, 441)]
        {
            let mut normalizer = PcmNormalizer::new(rate, chunk_ms);
            assert_eq!(normalizer.chunk_samples(), expected);
            let input = sine(rate, 300.0, 0.25, 5_000.0);
            let chunks = run(&mut normalizer, &blocks_of(&input, rate, 1_000));
            let (last, whole) = chunks.split_last().unwrap();
            assert!(
                whole.iter().all(|c| c.samples.len() == expected),
                "{rate} Hz / {chunk_ms} ms: every chunk but the last has {expected} samples"
            );
            assert!(
                !last.samples.is_empty() && last.samples.len() <= expected,
                "the last chunk holds the remainder"
            );
            let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
            assert_eq!(total, input.len(), "same rate: nothing added or lost");
        }
    }

    #[test]
    fn chunk_ms_is_clamped_to_the_contract() {
        assert_eq!(PcmNormalizer::new(24_000, 5).chunk_ms(), 20);
        assert_eq!(PcmNormalizer::new(24_000, 100).chunk_ms(), 40);
        assert_eq!(PcmNormalizer::default().chunk_samples(), 480);
    }

    #[test]
    fn mouth_follows_the_envelope_and_is_zero_for_silence() {
        let mut samples = vec![0i16; 4_800];
        samples.extend(sine(24_000, 200.0, 0.2, 12_000.0));
        samples.extend(vec![0i16; 9_600]);
        let mut normalizer = PcmNormalizer::new(24_000, 20);
        let chunks = run(&mut normalizer, &blocks_of(&samples, 24_000, 777));
        let mouth: Vec<f32> = chunks.iter().map(|c| c.mouth_open).collect();
        assert!(
            mouth[..10].iter().all(|&m| m == 0.0),
            "leading silence: closed {mouth:?}"
        );
        assert!(
            mouth[11..20].iter().all(|&m| m > 0.8),
            "a loud tone opens the mouth {mouth:?}"
        );
        assert_eq!(
            mouth.last().copied(),
            Some(0.0),
            "trailing silence closes it again"
        );
    }

    #[test]
    fn a_rate_change_mid_segment_loses_no_audio() {
        let first = sine(22_050, 200.0, 0.5, 5_000.0);
        let second = sine(16_000, 200.0, 0.5, 5_000.0);
        let mut blocks = blocks_of(&first, 22_050, 2_000);
        blocks.extend(blocks_of(&second, 16_000, 2_000));
        let mut normalizer = PcmNormalizer::new(24_000, 20);
        let total: usize = run(&mut normalizer, &blocks)
            .iter()
            .map(|c| c.samples.len())
            .sum();
        assert!(
            total.abs_diff(24_000) <= 1,
            "0.5 s + 0.5 s at two rates is 1 s at 24 kHz: {total}"
        );
    }

    #[test]
    fn implausible_rates_and_empty_blocks_are_ignored() {
        let mut normalizer = PcmNormalizer::default();
        let zero_rate = PcmBlock {
            sample_rate: 0,
            samples: vec![1; 1_000],
        };
        let empty = PcmBlock {
            sample_rate: 24_000,
            samples: vec![],
        };
        assert!(normalizer.push(&zero_rate).is_empty(), "0 Hz is dropped");
        assert!(normalizer.push(&empty).is_empty());
        assert!(normalizer.finish().is_empty(), "nothing was accepted");
    }
}
