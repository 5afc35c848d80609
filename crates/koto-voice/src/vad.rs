//! Voice activity detection: 16 kHz frames → onset, start, end of speech, on the audio clock.
//!
//! Scores come from `earshot` (a pure-Rust VAD whose weights are compiled in: nothing is
//! downloaded). The decisions are [`VadLogic`], plain arithmetic over scores and times, so they
//! are tested without audio. Time is the number of samples seen, never the wall clock.
//!
//! Speech is scored in 16 ms frames, but it ends on the sample clock: the hangover counts from
//! where the last sound stopped (to the ms, [`MicQuiet`]), and once it has passed the end is
//! decided within the mic block that completes it, not at the next frame edge.

use std::fmt;

use crate::quiet::MicQuiet;

/// Samples per frame earshot scores (16 ms at 16 kHz).
pub const FRAME_SAMPLES: usize = 256;
/// Length of one frame on the audio clock.
pub const FRAME_MS: u64 = 16;
const SAMPLES_PER_MS: u64 = FRAME_SAMPLES as u64 / FRAME_MS;

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
    /// Speech from `start_ms` to where its last sound stopped, `end_ms` (the end of its last
    /// voiced frame when that is not known).
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
        sound_end_ms: u64,
    },
    /// The hangover counts from `sound_end_ms`, within the last voiced frame.
    Speaking {
        first: u64,
        sound_end_ms: u64,
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

    /// One frame's score; at most one event (the clock moves one frame per call). A voiced
    /// frame's sound is taken to last to its end.
    pub fn step(&mut self, score: f32) -> Option<VadEvent> {
        self.step_frame(score, None)
    }

    /// One frame's score, and where the sound in it ends if that is known (audio ms, inside
    /// the frame).
    pub fn step_frame(&mut self, score: f32, sound_end_ms: Option<u64>) -> Option<VadEvent> {
        let frame = self.next_frame;
        self.next_frame += 1;
        let voiced = score >= self.config.threshold;
        let frame_end = (frame + 1) * FRAME_MS;
        let sound_end =
            sound_end_ms.map_or(frame_end, |end| end.clamp(frame * FRAME_MS, frame_end));
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
                        sound_end_ms: sound_end,
                    };
                    return self.rise(frame);
                }
                None
            }
            Phase::Rising {
                first,
                onset,
                last_voiced,
                ..
            } => {
                if voiced {
                    self.phase = Phase::Rising {
                        first,
                        onset,
                        last_voiced: frame,
                        sound_end_ms: sound_end,
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
            Phase::Speaking { first, .. } => {
                if voiced {
                    self.phase = Phase::Speaking {
                        first,
                        sound_end_ms: sound_end,
                    };
                    return None;
                }
                self.quiet_until(frame_end)
            }
        }
    }

    /// Nothing but quiet was heard up to `now_ms` (on or after the last frame edge): the end
    /// of speech, if the hangover has passed since its last sound.
    pub fn quiet_until(&mut self, now_ms: u64) -> Option<VadEvent> {
        let Phase::Speaking {
            first,
            sound_end_ms,
        } = self.phase
        else {
            return None;
        };
        if now_ms.saturating_sub(sound_end_ms) < self.config.hangover_ms {
            return None;
        }
        self.phase = Phase::Silent;
        Some(VadEvent::SpeechEnd {
            start_ms: first * FRAME_MS,
            end_ms: sound_end_ms,
        })
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
                ..
            } => onset.then_some(VadEvent::OnsetCancelled {
                at_ms: first * FRAME_MS,
                end_ms: (last_voiced + 1) * FRAME_MS,
            }),
            Phase::Speaking {
                first,
                sound_end_ms,
            } => Some(VadEvent::SpeechEnd {
                start_ms: first * FRAME_MS,
                end_ms: sound_end_ms,
            }),
        }
    }

    /// A voiced `frame` in a rising run: report the onset, then the start of speech.
    fn rise(&mut self, frame: u64) -> Option<VadEvent> {
        let Phase::Rising {
            first,
            onset,
            sound_end_ms,
            ..
        } = self.phase
        else {
            return None;
        };
        let voiced_ms = (frame + 1 - first) * FRAME_MS;
        if voiced_ms >= self.config.min_speech_ms {
            self.phase = Phase::Speaking {
                first,
                sound_end_ms,
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
                sound_end_ms,
            };
            return Some(VadEvent::Onset {
                at_ms: first * FRAME_MS,
            });
        }
        None
    }
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
    /// The raw mic on the same clock: where sound is and where it stops.
    quiet: MicQuiet,
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
            quiet: MicQuiet::new(),
            last_score: 0.0,
            warmup: WARMUP_FRAMES,
        }
    }

    /// Score and decide 16 kHz mic `samples` (no echo canceller before the VAD).
    pub fn push(&mut self, samples: &[i16], events: &mut Vec<VadEvent>) {
        self.push_cleaned(samples, samples, events);
    }

    /// Score `cleaned` (what the echo canceller returned) and judge silence on `raw`, the mic
    /// before it, sample for sample in step with `cleaned`. Whole frames are decided; the end of
    /// speech may be decided inside the tail that waits for the next call.
    pub fn push_cleaned(&mut self, cleaned: &[i16], raw: &[i16], events: &mut Vec<VadEvent>) {
        if raw.len() == cleaned.len() {
            self.quiet.push_raw(raw);
        } else {
            debug_assert!(false, "raw and cleaned out of step");
            self.quiet.push_raw(cleaned);
        }
        for &sample in cleaned {
            self.pending.push(sample);
            if self.pending.len() == FRAME_SAMPLES {
                self.decide_frame(events);
            }
        }
        // Past the hangover with nothing since but quiet: the end is now, not at the frame edge.
        let from = self.logic.next_frame * FRAME_SAMPLES as u64;
        let now = from + self.pending.len() as u64;
        if !self.pending.is_empty() && self.logic.is_speaking() && self.quiet.is_quiet(from, now) {
            events.extend(self.logic.quiet_until(now / SAMPLES_PER_MS));
        }
    }

    /// The raw mic the canceller holds beyond what `push_cleaned` was given (its latency and a
    /// partial frame). A canceller only removes sound, so if that is quiet too the end of
    /// speech need not wait for the canceller to return it: AEC3's 8 ms are not in the wait.
    pub fn hear_ahead(&mut self, ahead: &[i16], events: &mut Vec<VadEvent>) {
        if ahead.is_empty() || !self.logic.is_speaking() {
            return;
        }
        let from = self.logic.next_frame * FRAME_SAMPLES as u64;
        let now = from + self.pending.len() as u64;
        let pending_quiet = self.pending.is_empty() || self.quiet.is_quiet(from, now);
        if pending_quiet && self.quiet.is_quiet_samples(ahead) {
            events.extend(
                self.logic
                    .quiet_until((now + ahead.len() as u64) / SAMPLES_PER_MS),
            );
        }
    }

    fn decide_frame(&mut self, events: &mut Vec<VadEvent>) {
        let from = self.logic.next_frame * FRAME_SAMPLES as u64;
        let to = from + FRAME_SAMPLES as u64;
        let score = self.detector.predict_i16(&self.pending);
        self.pending.clear();
        self.last_score = score.max(0.0);
        let voiced = self.last_score >= self.logic.config.threshold;
        if !voiced {
            self.quiet.observe_unvoiced(from, to);
        }
        let decided = if self.warmup > 0 {
            self.warmup -= 1;
            0.0
        } else if self.logic.is_speaking() && self.quiet.is_quiet(from, to) {
            // earshot scores from context: the frame after the last word often still scores
            // as voice. A frame with no sound at the mic is not, so the hangover that ends
            // speech starts at the sound's end (2–3 frames sooner on espeak speech), and the
            // canceller's residue after a voice (quiet at the raw mic) does not carry it on.
            // Only while speaking: in a rising run the canceller can duck the streamer to near
            // silence for a frame or two of double talk, and unvoicing those would cancel a
            // real onset.
            0.0
        } else {
            self.last_score
        };
        let sound_end = self
            .quiet
            .sound_end(from, to)
            .map(|end| end.div_ceil(SAMPLES_PER_MS));
        events.extend(self.logic.step_frame(decided, sound_end));
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
        self.set_config(self.logic.config);
        self.quiet
            .restart_at(self.logic.next_frame * FRAME_SAMPLES as u64);
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
    fn the_hangover_counts_from_where_the_sound_stopped_inside_its_frame() {
        let mut logic = VadLogic::new(VadConfig::default());
        for _ in 0..20 {
            let at = logic.now_ms();
            // Every frame's sound lasts to its end but the last one's, which stops 5 ms in.
            logic.step_frame(0.9, Some(at + 16));
        }
        let last = logic.now_ms();
        assert_eq!(logic.step_frame(0.9, Some(last + 5)), None);
        let sound_end = last + 5;
        while logic.now_ms() + 16 <= sound_end + 480 {
            assert_eq!(logic.step_frame(0.1, None), None, "inside the hangover");
        }
        // The frame edge is past the end by less than a frame: a block inside it decides.
        assert_eq!(logic.quiet_until(sound_end + 479), None);
        assert_eq!(
            logic.quiet_until(sound_end + 480),
            Some(VadEvent::SpeechEnd {
                start_ms: 0,
                end_ms: sound_end
            }),
            "480 ms after the sound stopped, on the sample clock"
        );
        assert_eq!(logic.step_frame(0.1, None), None, "ended once");
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
