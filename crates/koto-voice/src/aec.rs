//! Acoustic echo cancellation: what the app plays is the far-end reference, the mic is the
//! near end. A thin layer over `sonora` (a pure-Rust port of WebRTC's AEC3) at 16 kHz mono in
//! 10 ms frames. It does not know where the reference comes from (the relay) or where the
//! cleaned audio goes (the VAD).

use std::collections::VecDeque;

use koto_core::asr::ASR_SAMPLE_RATE;
use koto_providers::audio::resample::StreamResampler;
use sonora::config::{EchoCanceller as Aec3, TransparentModeType};
use sonora::{AudioProcessing, Config, StreamConfig};

/// Samples in one 10 ms frame at 16 kHz, the unit AEC3 works in.
pub const AEC_FRAME: usize = ASR_SAMPLE_RATE as usize / 100;
/// How far AEC3's output runs behind its input (its 4 ms blocks over 10 ms frames), in samples:
/// measured by `tests/it/aec.rs`.
pub const AEC_LATENCY: usize = 128;
/// Reference audio held for the mic to catch up with (a burst released ahead of playback).
const MAX_FAR_QUEUE: usize = ASR_SAMPLE_RATE as usize * 2;

pub struct EchoCanceller {
    apm: Box<AudioProcessing>,
    /// Reference audio not yet rendered: one frame is rendered per mic frame, so the reference
    /// advances on the mic's clock, as the speaker plays it.
    far: VecDeque<i16>,
    /// The reference's rate and its resampler to 16 kHz (rebuilt when the rate changes).
    far_resampler: Option<StreamResampler>,
    near: Vec<i16>,
    /// The raw mic delayed by [`AEC_LATENCY`]: in step with what comes out.
    near_delayed: VecDeque<i16>,
    /// The player holds (PAUSE): the queued reference waits instead of being rendered.
    far_held: bool,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("far_queued", &self.far.len())
            .finish_non_exhaustive()
    }
}

impl Default for EchoCanceller {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoCanceller {
    pub fn new() -> Self {
        let stream = StreamConfig::new(ASR_SAMPLE_RATE, 1);
        let apm = AudioProcessing::builder()
            .config(Config {
                // HMM transparent mode: AEC3's default (Legacy) keeps suppressing a near end that has
                // no echo (a headset, a quiet room) for seconds of double talk; measured on
                // espeak speech over a playing co-host with no echo path, the VAD's onset came
                // 560–1550 ms late with Legacy and 0–240 ms with HMM, echo removal unchanged.
                echo_canceller: Some(Aec3 {
                    transparent_mode: TransparentModeType::Hmm,
                    ..Aec3::default()
                }),
                ..Default::default()
            })
            .capture_config(stream)
            .render_config(stream)
            .build();
        EchoCanceller {
            apm: Box::new(apm),
            far: VecDeque::new(),
            far_resampler: None,
            near: Vec::with_capacity(AEC_FRAME),
            near_delayed: std::iter::repeat_n(0, AEC_LATENCY).collect(),
            far_held: false,
        }
    }

    /// Audio the app just played (any rate): queued as the reference.
    pub fn push_far(&mut self, samples: &[i16], rate: u32) {
        let resampled;
        let samples = if rate == ASR_SAMPLE_RATE {
            samples
        } else {
            if self.far_resampler.as_ref().map(StreamResampler::input_rate) != Some(rate) {
                self.far_resampler = StreamResampler::new(rate, ASR_SAMPLE_RATE).ok();
            }
            let Some(resampler) = self.far_resampler.as_mut() else {
                return;
            };
            resampled = resampler.push(samples);
            &resampled[..]
        };
        self.far.extend(samples.iter().copied());
        let excess = self.far.len().saturating_sub(MAX_FAR_QUEUE);
        self.far.drain(..excess);
    }

    /// The mic's samples the cleaned output has not reached yet (the latency, then a partial
    /// frame), oldest first: where the raw mic is quiet ahead of it, no voice can come out.
    pub fn raw_ahead(&self) -> impl Iterator<Item = i16> + '_ {
        self.near_delayed.iter().chain(&self.near).copied()
    }

    /// The player paused (`true`) or plays again. While it holds, the reference it holds is not
    /// coming out of the speaker: rendering it would have the canceller hunt for an echo that
    /// is not there, and suppress the streamer who just interrupted (double talk with a phantom).
    pub fn hold_far(&mut self, held: bool) {
        self.far_held = held;
    }

    /// The player dropped what it had not played (a STOP): so is the reference.
    pub fn flush_far(&mut self) {
        self.far.clear();
        self.far_held = false;
    }

    /// Mic samples in, echo-cancelled samples out (whole 10 ms frames; a tail waits).
    pub fn process(&mut self, near: &[i16], out: &mut Vec<i16>) {
        self.process_with_reference(near, out, &mut Vec::new(), &mut Vec::new());
    }

    /// As [`process`](Self::process), and for each frame out: the reference rendered with it
    /// goes to `rendered` (the double-talk detector's far end), and the mic's own samples that
    /// are in it (delayed by [`AEC_LATENCY`]) to `raw_out` (where the VAD judges silence).
    pub fn process_with_reference(
        &mut self,
        near: &[i16],
        out: &mut Vec<i16>,
        rendered: &mut Vec<i16>,
        raw_out: &mut Vec<i16>,
    ) {
        let mut render = [0i16; AEC_FRAME];
        let mut scratch = [0i16; AEC_FRAME];
        let mut cleaned = [0i16; AEC_FRAME];
        for &sample in near {
            self.near.push(sample);
            if self.near.len() < AEC_FRAME {
                continue;
            }
            // Silence when nothing plays keeps render and capture in step.
            for slot in render.iter_mut() {
                *slot = if self.far_held {
                    0
                } else {
                    self.far.pop_front().unwrap_or(0)
                };
            }
            rendered.extend_from_slice(&render);
            self.near_delayed.extend(self.near.iter().copied());
            raw_out.extend(self.near_delayed.drain(..AEC_FRAME));
            let render_done = self.apm.process_render_i16(&render, &mut scratch);
            let captured =
                render_done.and_then(|()| self.apm.process_capture_i16(&self.near, &mut cleaned));
            match captured {
                Ok(()) => out.extend_from_slice(&cleaned),
                Err(error) => {
                    // 16 kHz mono 10 ms frames are always supported; pass audio through rather
                    // than lose it if that ever changes.
                    tracing::warn!(?error, "echo canceller refused a frame");
                    out.extend_from_slice(&self.near);
                }
            }
            self.near.clear();
        }
    }
}
