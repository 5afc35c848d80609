//! Voice activity detection: 16 kHz frames → onset, start, end of speech, on a frame clock.
//!
//! Scores come from `earshot` (a pure-Rust VAD whose weights are compiled in: nothing is
//! downloaded). The decisions are [`VadLogic`], plain arithmetic over scores and frame numbers,
//! so they are tested without audio. Time is the number of samples seen, never the wall clock.

use std::fmt;

/// Samples per frame earshot scores (16 ms at 16 kHz).
pub const FRAME_SAMPLES: usize = 256;
/// Length of one frame on the audio clock.
pub const FRAME_MS: u64 = 16;

/// What the VAD decides with (`VAD_*` keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// A frame scoring at or above this is voiced (0..1). earshot suggests 0.5; measured here
    /// (after warm-up), espeak speech scores 0.92 median, loud white noise (−9 dBFS) 0.57–0.78
    /// and a sustained chord mix 0.70–0.76, so the default sits above both.
    pub threshold: f32,
    /// Voiced audio before an *onset*: enough to pause the co-host (reversible, so short).
    pub onset_ms: u64,
    /// Voiced audio before an onset counts as speech (shorter runs are a click or a cough).
    pub min_speech_ms: u64,
    /// Unvoiced audio that ends speech (pauses between words are shorter).
    pub hangover_ms: u64,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.8,
            onset_ms: 32,
            min_speech_ms: 200,
            hangover_ms: 480,
        }
    }
}

/// What the VAD saw. Times are audio ms since the stream began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// `onset_ms` of voice starting at `at_ms`: maybe speech.
    Onset { at_ms: u64 },
    /// The onset at `at_ms` lasted `min_speech_ms`: speech.
    SpeechStart { at_ms: u64 },
    /// The onset at `at_ms` ended before `min_speech_ms` (`end_ms`): not speech.
    OnsetCancelled { at_ms: u64, end_ms: u64 },
    /// Speech from `start_ms` to the end of its last voiced frame, `end_ms`.
    SpeechEnd { start_ms: u64, end_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Silent,
    /// A run of voiced frames from `first`; `onset` once it was reported.
    Rising {
        first: u64,
        onset: bool,
        last_voiced: u64,
    },
    Speaking {
        first: u64,
        last_voiced: u64,
    },
}

/// The VAD's decisions over per-frame scores; frame `n` covers `[n·16, (n+1)·16)` ms.
#[derive(Debug, Clone)]
pub struct VadLogic {
    config: VadConfig,
    phase: Phase,
    next_frame: u64,
}

impl VadLogic {
    pub fn new(config: VadConfig) -> Self {
        VadLogic {
            config,
            phase: Phase::Silent,
            next_frame: 0,
        }
    }

    pub fn config(&self) -> VadConfig {
        self.config
    }

    /// Audio ms seen so far.
    pub fn now_ms(&self) -> u64 {
        self.next_frame * FRAME_MS
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.phase, Phase::Speaking { .. })
    }

    /// One frame's score; at most one event (the clock moves one frame per call).
    pub fn step(&mut self, score: f32) -> Option<VadEvent> {
        let frame = self.next_frame;
        self.next_frame += 1;
        let voiced = score >= self.config.threshold;
        let frames_ms = |from: u64, to_inclusive: u64| (to_inclusive + 1 - from) * FRAME_MS;
        // A short dip inside a rising run (a plosive, a breath) must not cancel it: the run
        // survives gaps shorter than one onset.
        let gap_tolerance = self.config.onset_ms.max(FRAME_MS);
        match self.phase {
            Phase::Silent => {
                if voiced {
                    self.phase = Phase::Rising {
                        first: frame,
                        onset: false,
                        last_voiced: frame,
                    };
                    return self.rise(frame);
                }
                None
            }
            Phase::Rising {
                first,
                onset,
                last_voiced,
            } => {
                if voiced {
                    self.phase = Phase::Rising {
                        first,
                        onset,
                        last_voiced: frame,
                    };
                    return self.rise(frame);
                }
                if (frame - last_voiced) * FRAME_MS < gap_tolerance {
                    return None;
                }
                self.phase = Phase::Silent;
                onset.then_some(VadEvent::OnsetCancelled {
                    at_ms: first * FRAME_MS,
                    end_ms: (last_voiced + 1) * FRAME_MS,
                })
            }
            Phase::Speaking { first, last_voiced } => {
                if voiced {
                    self.phase = Phase::Speaking {
                        first,
                        last_voiced: frame,
                    };
                    return None;
                }
                if frames_ms(last_voiced + 1, frame) < self.config.hangover_ms {
                    return None;
                }
                self.phase = Phase::Silent;
                Some(VadEvent::SpeechEnd {
                    start_ms: first * FRAME_MS,
                    end_ms: (last_voiced + 1) * FRAME_MS,
                })
            }
        }
    }

    /// The stream ended (device gone, PTT released): close what is open.
    pub fn finish(&mut self) -> Option<VadEvent> {
        let phase = std::mem::replace(&mut self.phase, Phase::Silent);
        match phase {
            Phase::Silent => None,
            Phase::Rising {
                first,
                onset,
                last_voiced,
            } => onset.then_some(VadEvent::OnsetCancelled {
                at_ms: first * FRAME_MS,
                end_ms: (last_voiced + 1) * FRAME_MS,
            }),
            Phase::Speaking { first, last_voiced } => Some(VadEvent::SpeechEnd {
                start_ms: first * FRAME_MS,
                end_ms: (last_voiced + 1) * FRAME_MS,
            }),
        }
    }

    /// A voiced `frame` in a rising run: report the onset, then the start of speech.
    fn rise(&mut self, frame: u64) -> Option<VadEvent> {
        let Phase::Rising { first, onset, .. } = self.phase else {
            return None;
        };
        let voiced_ms = (frame + 1 - first) * FRAME_MS;
        if voiced_ms >= self.config.min_speech_ms {
            self.phase = Phase::Speaking {
                first,
                last_voiced: frame,
            };
            // An onset not yet reported is implied by the start (min_speech ≤ onset).
            return Some(VadEvent::SpeechStart {
                at_ms: first * FRAME_MS,
            });
        }
        if !onset && voiced_ms >= self.config.onset_ms {
            self.phase = Phase::Rising {
                first,
                onset: true,
                last_voiced: frame,
            };
            return Some(VadEvent::Onset {
                at_ms: first * FRAME_MS,
            });
        }
        None
    }
}

/// A frame quieter than this (RMS, s16; about −60 dBFS, under a quiet room's mic noise) holds
/// no voice, whatever the model scores it.
const SILENT_FRAME_RMS: f64 = 32.0;

fn is_silent(frame: &[i16]) -> bool {
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    energy < SILENT_FRAME_RMS * SILENT_FRAME_RMS * frame.len() as f64
}

/// Frames after a (re)start whose scores decide nothing: earshot normalises its features with
/// running statistics, and until they settle a plain noise floor scores ~0.6 (measured on
/// white noise at −20 dBFS: 0.59–0.62 for the first 12 frames, then below 0.35).
const WARMUP_FRAMES: u32 = 20;

/// earshot's scores fed to [`VadLogic`], over samples of any length (cut into 16 ms frames).
pub struct Vad {
    detector: Box<earshot::Detector>,
    logic: VadLogic,
    pending: Vec<i16>,
    last_score: f32,
    warmup: u32,
}

impl fmt::Debug for Vad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vad")
            .field("logic", &self.logic)
            .field("last_score", &self.last_score)
            .finish_non_exhaustive()
    }
}

impl Vad {
    pub fn new(config: VadConfig) -> Self {
        Vad {
            detector: earshot::Detector::default_boxed(),
            logic: VadLogic::new(config),
            pending: Vec::with_capacity(FRAME_SAMPLES),
            last_score: 0.0,
            warmup: WARMUP_FRAMES,
        }
    }

    /// Score and decide whole frames of 16 kHz `samples` (a tail waits for the next call).
    pub fn push(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) {
        for &sample in samples {
            self.pending.push(sample);
            if self.pending.len() == FRAME_SAMPLES {
                let score = self.detector.predict_i16(&self.pending);
                let silent = is_silent(&self.pending);
                self.pending.clear();
                self.last_score = score.max(0.0);
                let decided = if self.warmup > 0 {
                    self.warmup -= 1;
                    0.0
                } else if silent && self.logic.is_speaking() {
                    // earshot scores from context: the frame after the last word often still
                    // scores as voice. A frame with no sound is not, so the hangover that ends
                    // speech starts at the sound's end (2–3 frames sooner on espeak speech).
                    // Only while speaking: in a rising run the canceller can duck the streamer
                    // to near silence for a frame or two of double talk, and unvoicing those
                    // would cancel a real onset.
                    0.0
                } else {
                    self.last_score
                };
                events.extend(self.logic.step(decided));
            }
        }
    }

    /// The last frame's voice score (0..1), for the level meter.
    pub fn last_score(&self) -> f32 {
        self.last_score
    }

    pub fn logic(&self) -> &VadLogic {
        &self.logic
    }

    pub fn finish(&mut self) -> Option<VadEvent> {
        self.pending.clear();
        self.logic.finish()
    }

    /// A new stream (device change): the detector's context and the decisions start over, the
    /// clock keeps running.
    pub fn reset(&mut self) {
        self.detector.reset();
        self.pending.clear();
        self.warmup = WARMUP_FRAMES;
        let now = self.logic.next_frame;
        self.logic = VadLogic::new(self.logic.config);
        self.logic.next_frame = now;
    }

    /// New thresholds (a saved `VAD_*` key): the decisions start over on the same clock, as in
    /// [`reset`](Self::reset), but the detector keeps its context (the audio did not change).
    /// Speech in progress is forgotten; the pipeline abandons its utterance.
    pub fn set_config(&mut self, config: VadConfig) {
        let now = self.logic.next_frame;
        self.logic = VadLogic::new(config);
        self.logic.next_frame = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scores: &[f32]) -> Vec<(u64, VadEvent)> {
        let mut logic = VadLogic::new(VadConfig::default());
        let mut out = Vec::new();
        for &score in scores {
            let at = logic.now_ms();
            if let Some(event) = logic.step(score) {
                out.push((at, event));
            }
        }
        if let Some(event) = logic.finish() {
            out.push((logic.now_ms(), event));
        }
        out
    }

    fn scores(runs: &[(f32, usize)]) -> Vec<f32> {
        runs.iter()
            .flat_map(|&(score, n)| std::iter::repeat_n(score, n))
            .collect()
    }

    #[test]
    fn speech_gets_onset_start_and_end_at_frame_boundaries() {
        // 10 silent frames, 30 voiced (480 ms), 40 silent.
        let events = run(&scores(&[(0.1, 10), (0.9, 30), (0.1, 40)]));
        assert_eq!(
            events,
            vec![
                // Reported on the 2nd voiced frame (32 ms onset), dated to the 1st.
                (176, VadEvent::Onset { at_ms: 160 }),
                // 200 ms of voice: 13 frames (208 ms), reported on the 13th.
                (352, VadEvent::SpeechStart { at_ms: 160 }),
                // 480 ms hangover after the last voiced frame ending at 640 ms.
                (
                    640 + 464,
                    VadEvent::SpeechEnd {
                        start_ms: 160,
                        end_ms: 640
                    }
                ),
            ],
            "onset after 32 ms, start after 200 ms, end after the 480 ms hangover"
        );
    }

    #[test]
    fn a_cough_is_an_onset_that_is_cancelled() {
        let events = run(&scores(&[(0.1, 5), (0.9, 6), (0.1, 10)]));
        assert_eq!(
            events,
            vec![
                (96, VadEvent::Onset { at_ms: 80 }),
                (
                    // The run survives a gap shorter than one onset (32 ms), then ends.
                    176 + 16,
                    VadEvent::OnsetCancelled {
                        at_ms: 80,
                        end_ms: 176
                    }
                ),
            ],
            "96 ms of voice is below the 200 ms minimum"
        );
    }

    #[test]
    fn pauses_between_words_shorter_than_the_hangover_keep_one_segment() {
        let events = run(&scores(&[(0.9, 20), (0.1, 20), (0.9, 20), (0.1, 40)]));
        let ends: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, VadEvent::SpeechEnd { .. }))
            .collect();
        assert_eq!(
            ends,
            vec![&(
                60 * 16 + 464,
                VadEvent::SpeechEnd {
                    start_ms: 0,
                    end_ms: 960
                }
            )],
            "a 320 ms pause is inside the 480 ms hangover"
        );
    }

    #[test]
    fn a_single_voiced_frame_is_no_onset() {
        assert!(
            run(&scores(&[(0.9, 1), (0.1, 10)])).is_empty(),
            "16 ms is below the 32 ms onset"
        );
    }

    #[test]
    fn the_stream_ending_mid_speech_closes_the_segment() {
        let events = run(&scores(&[(0.9, 20)]));
        assert_eq!(
            events.last(),
            Some(&(
                320,
                VadEvent::SpeechEnd {
                    start_ms: 0,
                    end_ms: 320
                }
            )),
            "finish ends what is open"
        );
    }
}
