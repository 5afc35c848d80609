//! Synthetic audio at 16 kHz and a fake ASR.

use std::process::Command;
use std::sync::{Arc, Mutex};

use koto_core::ProviderError;
use koto_core::asr::{ASR_SAMPLE_RATE, AsrEvent, AsrProvider, AsrRequest, AsrStream, Transcript};
use koto_providers::audio::WavStreamDecoder;
use koto_providers::audio::resample::StreamResampler;

pub const RATE: u32 = ASR_SAMPLE_RATE;

pub fn ms_to_samples(ms: u64) -> usize {
    (ms * u64::from(RATE) / 1000) as usize
}

pub fn samples_to_ms(n: usize) -> u64 {
    n as u64 * 1000 / u64::from(RATE)
}

/// `text` spoken by espeak-ng (`voice`: en, ja, cmn), at 16 kHz.
pub fn speech(text: &str, voice: &str) -> Vec<i16> {
    let output = Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .expect("espeak-ng is installed (scripts/deps.sh installs it)");
    assert!(output.status.success(), "espeak-ng failed: {output:?}");
    let mut decoder = WavStreamDecoder::new();
    let block = decoder
        .push(&output.stdout)
        .expect("espeak-ng writes WAV")
        .expect("a whole WAV");
    let mut resampler = StreamResampler::new(block.sample_rate, RATE).expect("rates");
    let mut out = resampler.push(&block.samples);
    out.extend(resampler.finish());
    out
}

/// Where the sound in `clip` starts and ends (samples above 1 % of full scale, in 10 ms
/// windows): the truth VAD boundaries are compared with.
pub fn sound_bounds(clip: &[i16]) -> (usize, usize) {
    let window = ms_to_samples(10);
    let loud = |w: &[i16]| w.iter().any(|s| s.unsigned_abs() > 328);
    let windows: Vec<bool> = clip.chunks(window).map(loud).collect();
    let first = windows.iter().position(|&l| l).unwrap_or(0);
    let last = windows.iter().rposition(|&l| l).unwrap_or(0);
    (first * window, ((last + 1) * window).min(clip.len()))
}

pub fn silence(ms: u64) -> Vec<i16> {
    vec![0; ms_to_samples(ms)]
}

/// A deterministic generator (no `rand` dependency; reproducible noise).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

pub fn white_noise(ms: u64, amplitude: f32, seed: u64) -> Vec<i16> {
    let mut rng = Lcg::new(seed);
    (0..ms_to_samples(ms))
        .map(|_| (rng.next() * amplitude * 32_767.0) as i16)
        .collect()
}

/// Pink noise (Paul Kellet's filter over white noise).
pub fn pink_noise(ms: u64, amplitude: f32, seed: u64) -> Vec<i16> {
    let mut rng = Lcg::new(seed);
    let mut b = [0f32; 7];
    (0..ms_to_samples(ms))
        .map(|_| {
            let white = rng.next();
            b[0] = 0.99886 * b[0] + white * 0.0555179;
            b[1] = 0.99332 * b[1] + white * 0.0750759;
            b[2] = 0.96900 * b[2] + white * 0.153_852;
            b[3] = 0.86650 * b[3] + white * 0.3104856;
            b[4] = 0.55000 * b[4] + white * 0.5329522;
            b[5] = -0.7616 * b[5] - white * 0.0168980;
            let pink = b.iter().sum::<f32>() + white * 0.5362;
            b[6] = white * 0.115926;
            (pink * 0.11 * amplitude * 32_767.0).clamp(-32_767.0, 32_767.0) as i16
        })
        .collect()
}

/// Music-like: a chord progression of sustained tones with harmonics and a beat.
pub fn music(ms: u64, amplitude: f32) -> Vec<i16> {
    let chords = [
        [261.6, 329.6, 392.0],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
        [196.0, 246.9, 293.7],
    ];
    let n = ms_to_samples(ms);
    let bar = ms_to_samples(1_000);
    (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let chord = chords[(i / bar) % chords.len()];
            let mut x = 0.0;
            for f in chord {
                for (h, weight) in [(1.0, 1.0), (2.0, 0.4), (3.0, 0.2)] {
                    x += weight * (std::f32::consts::TAU * f * h * t).sin();
                }
            }
            // A kick on every beat (0.5 s): a decaying 60 Hz thump.
            let beat_t = t % 0.5;
            x += 2.0 * (-beat_t * 30.0).exp() * (std::f32::consts::TAU * 60.0 * t).sin();
            (x / 7.0 * amplitude * 32_767.0).clamp(-32_767.0, 32_767.0) as i16
        })
        .collect()
}

/// `a + b` sample by sample (the longer one's tail kept).
pub fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
    (0..a.len().max(b.len()))
        .map(|i| {
            let x = i32::from(a.get(i).copied().unwrap_or(0))
                + i32::from(b.get(i).copied().unwrap_or(0));
            x.clamp(-32_768, 32_767) as i16
        })
        .collect()
}

pub fn scaled(samples: &[i16], gain: f32) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (f32::from(s) * gain) as i16)
        .collect()
}

/// The echo path of a room: delayed by `delay_ms`, attenuated by `gain`.
pub fn echo_path(played: &[i16], delay_ms: u64, gain: f32) -> Vec<i16> {
    let mut out = silence(delay_ms);
    out.extend(scaled(played, gain));
    out
}

pub fn rms_db(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -100.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| (f64::from(s) / 32_768.0).powi(2))
        .sum();
    let rms = (sum / samples.len() as f64).sqrt();
    if rms > 0.0 {
        20.0 * rms.log10()
    } else {
        -100.0
    }
}

/// What the fake ASR answers for an utterance of `duration_ms`.
/// `None`: the ASR never answers (a hung server).
pub type Answer = dyn Fn(&AsrRequest) -> Option<Result<String, ProviderError>> + Send + Sync;

/// An ASR whose transcript is a function of the request; it records every request.
pub struct FakeAsr {
    answer: Box<Answer>,
    pub requests: Mutex<Vec<u64>>,
}

impl FakeAsr {
    pub fn new(
        answer: impl Fn(&AsrRequest) -> Option<Result<String, ProviderError>> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeAsr {
            answer: Box::new(answer),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// Transcribes anything of at least `min_ms` as `text`, shorter as nothing.
    pub fn says(text: &'static str, min_ms: u64) -> Arc<Self> {
        Self::new(move |request| {
            Some(Ok(if request.duration_ms() >= min_ms {
                text.to_owned()
            } else {
                String::new()
            }))
        })
    }

    pub fn durations(&self) -> Vec<u64> {
        self.requests.lock().expect("lock").clone()
    }
}

impl AsrProvider for FakeAsr {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn transcribe(&self, request: AsrRequest) -> AsrStream {
        self.requests
            .lock()
            .expect("lock")
            .push(request.duration_ms());
        let Some(answer) = (self.answer)(&request) else {
            return Box::pin(futures_util::stream::pending());
        };
        let result = answer.map(|text| {
            AsrEvent::Final(Transcript {
                text,
                language: Some("en".into()),
                confidence: Some(0.9),
                duration_ms: request.duration_ms(),
            })
        });
        Box::pin(futures_util::stream::iter([result]))
    }
}
