//! Microphone capture: the input device list (like the output picker), a cpal input stream
//! on its own thread, and [`ToAsrRate`], which turns any device format into 16 kHz mono with
//! the project's rubato resampler. No device is a normal case: [`open`] says why in a
//! [`CaptureError`] and the app keeps working with text.
//!
//! It lives here rather than in `koto-audio` (playback only) because it needs the rubato
//! resampler of `koto-providers` and feeds only the voice pipeline. It decides nothing about
//! speech.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use koto_core::asr::ASR_SAMPLE_RATE;
use koto_providers::audio::resample::StreamResampler;
use tokio::sync::mpsc;

use crate::pipeline::VoiceInput;

/// An input device, as the settings page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDevice {
    /// cpal's `host:device` id; store this one.
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

impl InputDevice {
    /// Whether `wanted` (`MIC_DEVICE`) names this device: its id, else its name.
    pub fn matches(&self, wanted: &str) -> bool {
        self.id == wanted || self.name == wanted
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("no microphone found (the app keeps working with text)")]
    NoDevice,
    #[error("MIC_DEVICE `{0}` is not an input device here")]
    DeviceNotFound(String),
    #[error("microphone `{device}`: {message}")]
    Device { device: String, message: String },
    #[error("microphone `{device}` delivers {format}, which is not supported")]
    UnsupportedFormat { device: String, format: String },
}

/// The input devices of the default host. Empty without a sound card; never panics.
pub fn input_devices() -> Vec<InputDevice> {
    let host = cpal::default_host();
    let default_id = host.default_input_device().and_then(|d| d.id().ok());
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    devices
        .filter_map(|device| {
            let id = device.id().ok()?;
            let info = InputDevice {
                id: id.to_string(),
                name: device_name(&device),
                is_default: default_id.as_ref() == Some(&id),
            };
            // ALSA's "null" PCM records silence as fast as the CPU allows: not a microphone.
            (info.id != "alsa:null").then_some(info)
        })
        .collect()
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|description| description.name().to_owned())
        .unwrap_or_else(|_| device.to_string())
}

/// Interleaved samples of any channel count and rate → 16 kHz mono s16.
#[derive(Debug)]
pub struct ToAsrRate {
    channels: usize,
    resampler: Option<StreamResampler>,
}

impl ToAsrRate {
    pub fn new(channels: u16, rate: u32) -> Result<Self, String> {
        let resampler = if rate == ASR_SAMPLE_RATE {
            None
        } else {
            Some(StreamResampler::new(rate, ASR_SAMPLE_RATE).map_err(|e| e.to_string())?)
        };
        Ok(ToAsrRate {
            channels: usize::from(channels.max(1)),
            resampler,
        })
    }

    /// Downmix (average of channels) then resample.
    pub fn push_f32(&mut self, interleaved: &[f32]) -> Vec<i16> {
        let mono: Vec<i16> = interleaved
            .chunks(self.channels)
            .map(|frame| {
                let mean = frame.iter().sum::<f32>() / frame.len() as f32;
                (mean.clamp(-1.0, 1.0) * 32_767.0) as i16
            })
            .collect();
        self.resample(mono)
    }

    pub fn push_i16(&mut self, interleaved: &[i16]) -> Vec<i16> {
        let mono: Vec<i16> = interleaved
            .chunks(self.channels)
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                (sum / frame.len() as i32) as i16
            })
            .collect();
        self.resample(mono)
    }

    fn resample(&mut self, mono: Vec<i16>) -> Vec<i16> {
        match &mut self.resampler {
            Some(resampler) => resampler.push(&mono),
            None => mono,
        }
    }
}

/// A running microphone. Dropping it closes the stream (its thread ends).
#[derive(Debug)]
pub struct CaptureHandle {
    pub device: String,
    pub input_rate: u32,
    /// Blocks the pipeline could not take in time (it was busy): lost mic audio.
    pub overruns: Arc<AtomicU64>,
    _close: std_mpsc::Sender<()>,
}

/// Open `wanted` (or the default input) and send 16 kHz mono blocks as [`VoiceInput::Mic`];
/// a device that fails later sends [`VoiceInput::MicLost`].
pub fn open(
    wanted: Option<&str>,
    to_pipeline: mpsc::Sender<VoiceInput>,
) -> Result<CaptureHandle, CaptureError> {
    let (opened_tx, opened_rx) = std_mpsc::channel();
    let (close_tx, close_rx) = std_mpsc::channel::<()>();
    let wanted = wanted.map(str::to_owned);
    let overruns = Arc::new(AtomicU64::new(0));
    let thread_overruns = Arc::clone(&overruns);
    // cpal streams are not `Send` on every platform: the stream lives and dies on this thread.
    let spawned = std::thread::Builder::new()
        .name("koto-mic".into())
        .spawn(move || {
            let stream = match build(wanted.as_deref(), to_pipeline, thread_overruns) {
                Ok((stream, device, rate)) => {
                    let _ = opened_tx.send(Ok((device, rate)));
                    stream
                }
                Err(error) => {
                    let _ = opened_tx.send(Err(error));
                    return;
                }
            };
            // Until the handle drops (its sender disconnects).
            let _ = close_rx.recv();
            drop(stream);
        });
    if let Err(error) = spawned {
        return Err(CaptureError::Device {
            device: "default".into(),
            message: format!("cannot start the capture thread: {error}"),
        });
    }
    match opened_rx.recv() {
        Ok(Ok((device, input_rate))) => Ok(CaptureHandle {
            device,
            input_rate,
            overruns,
            _close: close_tx,
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(CaptureError::Device {
            device: "default".into(),
            message: "the capture thread ended before opening the device".into(),
        }),
    }
}

fn build(
    wanted: Option<&str>,
    to_pipeline: mpsc::Sender<VoiceInput>,
    overruns: Arc<AtomicU64>,
) -> Result<(cpal::Stream, String, u32), CaptureError> {
    let host = cpal::default_host();
    let device = match wanted.filter(|w| !w.is_empty() && *w != "default") {
        None => host.default_input_device().ok_or(CaptureError::NoDevice)?,
        Some(wanted) => host
            .input_devices()
            .map_err(|_| CaptureError::NoDevice)?
            .find(|device| {
                let id = device.id().map(|id| id.to_string()).unwrap_or_default();
                id == wanted || device_name(device) == wanted
            })
            .ok_or_else(|| CaptureError::DeviceNotFound(wanted.to_owned()))?,
    };
    let name = device_name(&device);
    let device_error = |message: String| CaptureError::Device {
        device: name.clone(),
        message,
    };
    let supported = device
        .default_input_config()
        .map_err(|e| device_error(e.to_string()))?;
    let config = supported.config();
    let rate = config.sample_rate;
    let mut convert = ToAsrRate::new(config.channels, rate).map_err(device_error)?;
    let lost = to_pipeline.clone();
    let on_error = move |error: cpal::Error| {
        tracing::warn!(%error, "microphone error");
        let _ = lost.try_send(VoiceInput::MicLost {
            reason: error.to_string(),
        });
    };
    let send = move |samples: Vec<i16>| {
        if samples.is_empty() {
            return;
        }
        if to_pipeline.try_send(VoiceInput::Mic(samples)).is_err() {
            overruns.fetch_add(1, Ordering::Relaxed);
        }
    };
    let stream = match supported.sample_format() {
        cpal::SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
            config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| send(convert.push_f32(data)),
            on_error,
            None,
        ),
        cpal::SampleFormat::I16 => device.build_input_stream::<i16, _, _>(
            config,
            move |data: &[i16], _: &cpal::InputCallbackInfo| send(convert.push_i16(data)),
            on_error,
            None,
        ),
        other => {
            return Err(CaptureError::UnsupportedFormat {
                device: name,
                format: format!("{other:?}"),
            });
        }
    }
    .map_err(|e| device_error(e.to_string()))?;
    stream.play().map_err(|e| device_error(e.to_string()))?;
    tracing::info!(device = %name, rate, "microphone opened");
    Ok((stream, name, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_48k_becomes_16k_mono() {
        let mut convert = ToAsrRate::new(2, 48_000).expect("valid rates");
        // One second of a 440 Hz tone on both channels.
        let interleaved: Vec<f32> = (0..48_000)
            .flat_map(|n| {
                let x = (n as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.5;
                [x, x]
            })
            .collect();
        let out: usize = interleaved
            .chunks(960)
            .map(|block| convert.push_f32(block).len())
            .sum();
        assert!(
            (15_800..=16_000).contains(&out),
            "one second at 16 kHz, less the resampler's delay: {out}"
        );
    }

    #[test]
    fn without_a_sound_card_open_fails_with_a_clear_error() {
        let (tx, _rx) = mpsc::channel(4);
        match open(Some("no such microphone"), tx) {
            Err(CaptureError::DeviceNotFound(name)) => assert_eq!(name, "no such microphone"),
            Err(CaptureError::NoDevice) => {}
            other => panic!("a missing device must be an error naming it, got {other:?}"),
        }
    }
}
