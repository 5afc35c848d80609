//! Utterance assembly: keep a pre-roll of recent audio, cut one utterance from a VAD segment
//! (or a push-to-talk hold), bound its length. Pure: samples and audio-clock times in, owned
//! utterances out.

use std::collections::VecDeque;
use std::sync::Arc;

use koto_core::asr::ASR_SAMPLE_RATE;

const SAMPLES_PER_MS: u64 = ASR_SAMPLE_RATE as u64 / 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtteranceConfig {
    /// Audio kept before the detected start (the VAD dates a start after the fact, and the
    /// first consonant is often below its threshold).
    pub pre_roll_ms: u64,
    /// Audio kept after the detected end.
    pub tail_ms: u64,
    /// Longer speech is cut here and sent as it is (`MIC_MAX_UTTERANCE_MS`).
    pub max_ms: u64,
}

impl Default for UtteranceConfig {
    fn default() -> Self {
        UtteranceConfig {
            pre_roll_ms: 300,
            tail_ms: 160,
            max_ms: 15_000,
        }
    }
}

/// One utterance for the ASR: 16 kHz mono samples and where they sit on the audio clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub samples: Arc<[i16]>,
    /// Start of the samples (pre-roll included) and of the speech in them.
    pub audio_start_ms: u64,
    pub speech_start_ms: u64,
    pub speech_end_ms: u64,
    /// Cut at `max_ms`, not at the end of speech.
    pub truncated: bool,
}

impl Utterance {
    /// Voiced length, pre-roll and tail excluded.
    pub fn speech_ms(&self) -> u64 {
        self.speech_end_ms.saturating_sub(self.speech_start_ms)
    }
}

/// The audio clock's recent past plus the utterance being recorded.
#[derive(Debug, Clone)]
pub struct Assembler {
    config: UtteranceConfig,
    /// Recent samples; `history_start` is the audio-clock sample of its front.
    history: VecDeque<i16>,
    history_start: u64,
    /// Bound of `history` while no utterance is open.
    keep_samples: usize,
    /// Sample (audio clock) where the open utterance's speech starts.
    open: Option<u64>,
}

impl Assembler {
    /// `lookback_ms`: how far back a start may be dated (the VAD's `min_speech_ms`).
    pub fn new(config: UtteranceConfig, lookback_ms: u64) -> Self {
        Assembler {
            config,
            history: VecDeque::new(),
            history_start: 0,
            keep_samples: Self::keep_samples(config, lookback_ms),
            open: None,
        }
    }

    /// New bounds (a saved setting), applied to the next push: the recent audio (the next
    /// utterance's pre-roll) and an open utterance are kept.
    pub fn set_config(&mut self, config: UtteranceConfig, lookback_ms: u64) {
        self.config = config;
        self.keep_samples = Self::keep_samples(config, lookback_ms);
    }

    fn keep_samples(config: UtteranceConfig, lookback_ms: u64) -> usize {
        ((config.pre_roll_ms + lookback_ms + 100) * SAMPLES_PER_MS) as usize
    }

    pub fn now_ms(&self) -> u64 {
        (self.history_start + self.history.len() as u64) / SAMPLES_PER_MS
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Audio of the open utterance so far (for a barge-in probe), if any.
    pub fn open_so_far(&self) -> Option<Utterance> {
        let start = self.open?;
        let end = self.history_start + self.history.len() as u64;
        Some(self.cut(start, end, false))
    }

    /// Append samples; returns an utterance cut at `max_ms` (speech continues in a new one).
    pub fn push(&mut self, samples: &[i16]) -> Option<Utterance> {
        self.history.extend(samples.iter().copied());
        match self.open {
            None => {
                let excess = self.history.len().saturating_sub(self.keep_samples);
                self.history.drain(..excess);
                self.history_start += excess as u64;
                None
            }
            Some(start) => {
                let end = self.history_start + self.history.len() as u64;
                let audio_start = self.audio_start(start);
                if (end - audio_start) / SAMPLES_PER_MS < self.config.max_ms {
                    return None;
                }
                let utterance = self.cut(start, end, true);
                self.open = Some(end);
                self.trim_to(end);
                Some(utterance)
            }
        }
    }

    /// Speech started at `at_ms` (possibly in the past): open an utterance.
    pub fn start(&mut self, at_ms: u64) {
        if self.open.is_none() {
            self.open = Some((at_ms * SAMPLES_PER_MS).max(self.history_start));
        }
    }

    /// Speech ended at `end_ms`: the utterance with its tail (as far as audio exists).
    pub fn end(&mut self, end_ms: u64) -> Option<Utterance> {
        let start = self.open.take()?;
        let available = self.history_start + self.history.len() as u64;
        let speech_end = (end_ms * SAMPLES_PER_MS).clamp(start, available);
        let end = (speech_end + self.config.tail_ms * SAMPLES_PER_MS).min(available);
        let mut utterance = self.cut(start, end, false);
        utterance.speech_end_ms = speech_end / SAMPLES_PER_MS;
        Some(utterance)
    }

    /// Drop the open utterance (a cancelled onset, the mic gated).
    pub fn abandon(&mut self) {
        self.open = None;
    }

    fn audio_start(&self, speech_start: u64) -> u64 {
        speech_start
            .saturating_sub(self.config.pre_roll_ms * SAMPLES_PER_MS)
            .max(self.history_start)
    }

    fn cut(&self, speech_start: u64, end: u64, truncated: bool) -> Utterance {
        let audio_start = self.audio_start(speech_start);
        let from = (audio_start - self.history_start) as usize;
        let to = ((end - self.history_start) as usize).min(self.history.len());
        let samples: Arc<[i16]> = self.history.range(from..to.max(from)).copied().collect();
        Utterance {
            samples,
            audio_start_ms: audio_start / SAMPLES_PER_MS,
            speech_start_ms: speech_start / SAMPLES_PER_MS,
            speech_end_ms: end / SAMPLES_PER_MS,
            truncated,
        }
    }

    fn trim_to(&mut self, sample: u64) {
        let excess = (sample.saturating_sub(self.history_start) as usize).min(self.history.len());
        self.history.drain(..excess);
        self.history_start += excess as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 ms of audio whose samples carry the ms index, so cuts can be checked exactly.
    fn ms(index: u64) -> Vec<i16> {
        vec![index as i16; SAMPLES_PER_MS as usize]
    }

    fn feed(assembler: &mut Assembler, from: u64, to: u64) -> Vec<Utterance> {
        (from..to).filter_map(|i| assembler.push(&ms(i))).collect()
    }

    #[test]
    fn an_utterance_keeps_its_pre_roll_and_tail() {
        let mut assembler = Assembler::new(UtteranceConfig::default(), 200);
        feed(&mut assembler, 0, 1_500);
        // The VAD dates the start 200 ms back, after the fact.
        assembler.start(1_300);
        feed(&mut assembler, 1_500, 3_000);
        let utterance = assembler.end(2_500).expect("open");
        assert_eq!(utterance.audio_start_ms, 1_000, "300 ms pre-roll");
        assert_eq!(utterance.samples.first(), Some(&1_000));
        assert_eq!(
            utterance.samples.last(),
            Some(&2_659),
            "160 ms tail after the end"
        );
        assert_eq!(utterance.speech_ms(), 1_200);
        assert!(!assembler.is_open());
    }

    #[test]
    fn speech_longer_than_the_maximum_is_cut_and_continues() {
        let config = UtteranceConfig {
            max_ms: 1_000,
            ..UtteranceConfig::default()
        };
        let mut assembler = Assembler::new(config, 200);
        feed(&mut assembler, 0, 400);
        assembler.start(300);
        let cut = feed(&mut assembler, 400, 1_500);
        assert_eq!(cut.len(), 1, "one cut within 1.1 s");
        assert!(cut[0].truncated);
        assert_eq!(cut[0].samples.len() as u64, 1_000 * SAMPLES_PER_MS);
        let rest = assembler.end(1_500).expect("still open");
        assert_eq!(
            rest.samples.first().copied(),
            cut[0].samples.last().map(|last| last + 1),
            "the next part starts where the cut ended: nothing lost, nothing twice"
        );
    }

    #[test]
    fn without_an_utterance_memory_is_bounded() {
        let mut assembler = Assembler::new(UtteranceConfig::default(), 200);
        feed(&mut assembler, 0, 60_000);
        assert!(
            assembler.history.len() <= assembler.keep_samples,
            "a minute of silence keeps only the pre-roll window"
        );
        assert_eq!(assembler.now_ms(), 60_000);
    }
}
