//! Sound-card output through rodio's mixer on a cpal stream, the device list for settings, and
//! `RodioSource`, the adapter that lets rodio pull from the player.
//!
//! Flush latency is decided here: the cpal stream is opened with a `OUTPUT_PERIOD_MS` period
//! (cpal's ALSA backend then keeps two periods in the hardware buffer), and `RodioSource` holds
//! at most `BLOCK` samples, dropped the moment the flush generation changes. So after a STOP at
//! most ~2 periods + one block (≈ 21 ms) of audio are still audible. It does not pick fallbacks
//! (the player's output thread does) and has no decoders: it only plays the player's PCM.

use std::num::NonZero;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{BufferSize, ErrorKind};
use rodio::{DeviceSinkBuilder, MixerDeviceSink};

use super::{DeviceLost, Sink};
use crate::error::AudioError;
use crate::source::PlaybackSource;

/// The output period asked of the sound card. Two of these sit in ALSA's buffer, which bounds
/// what a STOP cannot take back; smaller risks underruns on a busy 2-core machine.
pub const OUTPUT_PERIOD_MS: u64 = 10;

/// Samples `RodioSource` mixes per lock of the player (≈ 1.3 ms at 48 kHz): the most it can
/// hold when a flush happens, and it drops even that.
const BLOCK: usize = 64;

/// An output device, as the settings page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Stable id (cpal's `host:device`, e.g. `alsa:hw:CARD=PCH,DEV=0`); store this one.
    pub id: String,
    /// Human-readable name; also accepted as `PlayerConfig::device`.
    pub name: String,
    /// The host's default output.
    pub is_default: bool,
}

impl DeviceInfo {
    /// Whether `wanted` (from the settings) names this device: its id, else its name.
    pub fn matches(&self, wanted: &str) -> bool {
        self.id == wanted || self.name == wanted
    }
}

/// The output devices of the default host (virtual cables included). Empty when there is no
/// sound card (this machine) or the host cannot list devices; never panics. ALSA's "null"
/// PCM is left out: it is not paced in real time, and the player has a real null sink.
pub fn output_devices() -> Vec<DeviceInfo> {
    let host = cpal::default_host();
    let default_id = host.default_output_device().and_then(|d| d.id().ok());
    let devices = match host.output_devices() {
        Ok(devices) => devices,
        Err(error) => {
            tracing::warn!(%error, "cannot list audio output devices");
            return Vec::new();
        }
    };
    devices
        .filter_map(|device| {
            let id = device.id().ok()?;
            let info = DeviceInfo {
                id: id.to_string(),
                name: device_name(&device),
                is_default: default_id.as_ref() == Some(&id),
            };
            (!is_alsa_null(&info)).then_some(info)
        })
        .collect()
}

fn is_alsa_null(info: &DeviceInfo) -> bool {
    info.id == "alsa:null"
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|description| description.name().to_owned())
        .unwrap_or_else(|_| device.to_string())
}

/// Errors after which the stream will not play again: the player falls back. Others (xruns,
/// a rerouted default device) are glitches the stream survives.
fn is_fatal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::DeviceNotAvailable
            | ErrorKind::StreamInvalidated
            | ErrorKind::HostUnavailable
            | ErrorKind::BackendError
    )
}

/// A sound card (or virtual cable) output: rodio's mixer on a cpal stream.
pub struct DeviceSink {
    device: cpal::Device,
    name: String,
    rate: u32,
    stream: Option<MixerDeviceSink>,
    warning: Option<String>,
}

impl std::fmt::Debug for DeviceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSink")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("playing", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

impl DeviceSink {
    /// Find the device `requested` names (an id or a name; `None`: the host's default) and
    /// read its default config. Nothing is opened until `play`.
    pub fn open(requested: Option<&str>) -> Result<DeviceSink, AudioError> {
        let host = cpal::default_host();
        let device = match requested {
            None => host
                .default_output_device()
                .ok_or(AudioError::NoDefaultDevice)?,
            Some(wanted) => host
                .output_devices()
                .map_err(|error| AudioError::Device {
                    device: wanted.to_owned(),
                    message: error.to_string(),
                })?
                .find(|device| {
                    let info = DeviceInfo {
                        id: device.id().map(|id| id.to_string()).unwrap_or_default(),
                        name: device_name(device),
                        is_default: false,
                    };
                    // Not offered by `output_devices`, so not accepted either: it would
                    // swallow the queue as fast as the CPU allows.
                    info.matches(wanted) && !is_alsa_null(&info)
                })
                .ok_or_else(|| AudioError::DeviceNotFound(wanted.to_owned()))?,
        };
        Self::from_device(device)
    }

    fn from_device(device: cpal::Device) -> Result<DeviceSink, AudioError> {
        let name = device_name(&device);
        let config = device
            .default_output_config()
            .map_err(|error| AudioError::Device {
                device: name.clone(),
                message: error.to_string(),
            })?;
        Ok(DeviceSink {
            device,
            name,
            rate: config.sample_rate(),
            stream: None,
            warning: None,
        })
    }

    fn device_error(&self, error: impl std::fmt::Display) -> AudioError {
        AudioError::Device {
            device: self.name.clone(),
            message: error.to_string(),
        }
    }
}

impl Sink for DeviceSink {
    fn device(&self) -> String {
        self.name.clone()
    }

    fn is_null(&self) -> bool {
        false
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn play(&mut self, source: PlaybackSource, lost: DeviceLost) -> Result<(), AudioError> {
        let on_error = move |error: cpal::Error| {
            if is_fatal(error.kind()) {
                lost.report(error.to_string());
            } else {
                tracing::debug!(%error, "audio output glitch");
            }
        };
        let period_frames = u32::try_from(u64::from(self.rate) * OUTPUT_PERIOD_MS / 1000)
            .unwrap_or(480)
            .max(1);
        let small = DeviceSinkBuilder::from_device(self.device.clone())
            .map_err(|error| self.device_error(error))?
            .with_buffer_size(BufferSize::Fixed(period_frames))
            .with_error_callback(on_error.clone())
            .open_stream();
        let mut stream = match small {
            Ok(stream) => stream,
            Err(refused) => {
                // Some devices (or PipeWire's ALSA plugin) refuse small periods: play anyway
                // with rodio's own choice, and say what that costs.
                let stream = DeviceSinkBuilder::from_device(self.device.clone())
                    .map_err(|error| self.device_error(error))?
                    .with_error_callback(on_error)
                    .open_sink_or_fallback()
                    .map_err(|error| self.device_error(error))?;
                let buffer = match stream.config().buffer_size() {
                    BufferSize::Fixed(frames) => format!(
                        "{} ms",
                        u64::from(*frames) * 1000 / u64::from(stream.config().sample_rate().get())
                    ),
                    BufferSize::Default => "the system's default".to_owned(),
                };
                self.warning = Some(format!(
                    "{} refused a {OUTPUT_PERIOD_MS} ms period ({refused}); playing with {buffer} \
                     periods, so STOP may stay audible for up to two of them",
                    self.name
                ));
                stream
            }
        };
        stream.log_on_drop(false);
        stream.mixer().add(RodioSource::new(source));
        tracing::info!(
            device = %self.name,
            config = ?stream.config(),
            "audio output opened"
        );
        self.stream = Some(stream);
        Ok(())
    }

    fn warning(&self) -> Option<String> {
        self.warning.clone()
    }
}

/// The player as an endless rodio `Source`: mono at the player's rate, silence when nothing
/// is due, never exhausted (the mixer would drop an exhausted source).
pub(crate) struct RodioSource {
    source: PlaybackSource,
    block: [f32; BLOCK],
    position: usize,
    generation: u64,
    rate: NonZero<u32>,
}

impl RodioSource {
    pub(crate) fn new(source: PlaybackSource) -> Self {
        let rate = NonZero::new(source.sample_rate()).unwrap_or(NonZero::<u32>::MIN);
        RodioSource {
            generation: source.generation(),
            source,
            block: [0.0; BLOCK],
            // Empty: the first `next` pulls.
            position: BLOCK,
            rate,
        }
    }
}

impl Iterator for RodioSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        // A flush since this block was mixed makes all of it stale.
        if self.position >= BLOCK || self.source.generation() != self.generation {
            self.generation = self.source.fill(&mut self.block);
            self.position = 0;
        }
        let sample = self.block[self.position];
        self.position += 1;
        Some(sample)
    }
}

impl rodio::Source for RodioSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }

    fn channels(&self) -> rodio::ChannelCount {
        NonZero::<u16>::MIN
    }

    fn sample_rate(&self) -> rodio::SampleRate {
        self.rate
    }

    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use koto_core::{SessionId, TurnNo};

    use super::*;
    use crate::playback::Playback;
    use crate::player::PlaybackStatus;
    use crate::source::Shared;

    #[test]
    fn a_device_is_chosen_by_id_or_by_name() {
        let info = DeviceInfo {
            id: "alsa:hw:CARD=Loopback,DEV=0".into(),
            name: "Loopback, Loopback PCM".into(),
            is_default: false,
        };
        assert!(
            info.matches("alsa:hw:CARD=Loopback,DEV=0"),
            "by the stored id"
        );
        assert!(info.matches("Loopback, Loopback PCM"), "by the shown name");
        assert!(!info.matches("Loopback"), "not by a fragment: no surprises");
    }

    #[test]
    fn listing_devices_never_panics_even_without_a_sound_card() {
        let devices = output_devices();
        assert!(
            devices.iter().all(|d| !is_alsa_null(d)),
            "ALSA's unpaced null PCM is never offered"
        );
        assert!(
            devices.iter().filter(|d| d.is_default).count() <= 1,
            "at most one default"
        );
    }

    #[test]
    fn alsa_null_is_refused_as_a_configured_device() {
        assert_eq!(
            DeviceSink::open(Some("alsa:null")).map(|_| ()),
            Err(AudioError::DeviceNotFound("alsa:null".into())),
            "an unpaced device would make STOP and pacing meaningless"
        );
    }

    /// The real rodio + cpal path, on ALSA's null PCM (present wherever alsa-lib is, sound
    /// card or not). That PCM is not paced, so this checks wiring, not timing.
    #[test]
    fn the_device_sink_plays_the_player_through_rodio_and_cpal() {
        let null = cpal::default_host()
            .output_devices()
            .ok()
            .and_then(|mut devices| {
                devices.find(|d| d.id().is_ok_and(|id| id.to_string() == "alsa:null"))
            });
        let Some(device) = null else {
            eprintln!("no ALSA null PCM on this host: nothing to check");
            return;
        };
        let mut sink = DeviceSink::from_device(device).unwrap();
        let device_rate = u64::from(sink.sample_rate());
        let shared = Arc::new(Shared::new(
            Playback::new(sink.sample_rate(), 0, 1.0),
            PlaybackStatus::starting(),
        ));
        let session = SessionId::parse("s").unwrap();
        shared
            .lock()
            .push(&session, TurnNo(1), 0, 24_000, &[8_000; 2_400])
            .unwrap();
        shared.lock().end_turn(&session, TurnNo(1));
        let (events, _receiver) = std::sync::mpsc::channel();
        sink.play(
            PlaybackSource {
                shared: Arc::clone(&shared),
            },
            DeviceLost::new(events, 1),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while shared.lock().is_busy() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !shared.lock().is_busy(),
            "the cpal callback pulled the queued audio through rodio's mixer"
        );
        assert!(
            shared.lock().stats().consumed_samples >= device_rate / 10,
            "at least the 100 ms pushed was consumed"
        );
    }

    #[test]
    fn the_rodio_adapter_drops_its_block_on_flush() {
        let shared = Arc::new(Shared::new(
            Playback::new(24_000, 0, 1.0),
            PlaybackStatus::starting(),
        ));
        let source = PlaybackSource {
            shared: Arc::clone(&shared),
        };
        let session = SessionId::parse("s").unwrap();
        shared
            .lock()
            .push(&session, TurnNo(1), 0, 24_000, &[16_384; 480])
            .unwrap();
        let mut rodio = RodioSource::new(source);
        assert_eq!(rodio.next(), Some(0.5), "plays the pushed audio");
        assert!(
            shared.remove_audio(|p| p.stop_session(&session)),
            "the flush removed queued audio"
        );
        assert_eq!(
            rodio.next(),
            Some(0.0),
            "the rest of the already mixed block is not played"
        );
        assert!(
            rodio.by_ref().take(BLOCK * 4).all(|s| s == 0.0),
            "silence from then on, and the source never ends"
        );
    }
}
