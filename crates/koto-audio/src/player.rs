//! `Player`: the handle the desktop app holds — push PCM, stop turns, flush, set the volume
//! and the device, read the status — and the output thread that owns the sink and falls back
//! when it fails.
//!
//! Every `Player` method is a short synchronous step under one lock (safe from async code and
//! from tray callbacks); none waits for the sound card. The output thread exists because cpal
//! streams must stay on the thread that made them on some hosts; it only opens, watches and
//! replaces sinks, never touches samples.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::DEFAULT_SAMPLE_RATE;

use crate::error::{AudioError, PushError};
use crate::playback::{DEFAULT_JITTER_MS, Playback, PlaybackStats, Pushed};
use crate::sink::{DeviceLost, DeviceSink, NullSink, OutputEvent, Sink};
use crate::source::{PlaybackSource, Shared};

/// How a player starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerConfig {
    /// A `DeviceInfo::id` or `name` from `output_devices()`; `None`: the host's default.
    pub device: Option<String>,
    /// `0.0..=2.0`, 1 = unchanged.
    pub volume: f32,
    /// Jitter buffer, clamped to `MAX_JITTER_MS` (see `playback` for the policy).
    pub jitter_ms: u32,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            device: None,
            volume: 1.0,
            jitter_ms: DEFAULT_JITTER_MS,
        }
    }
}

/// Where the audio goes now, for the settings page and the tray.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaybackStatus {
    /// The device's name, `"null"`, or `"recording"` (tests).
    pub device: String,
    /// Audio is consumed in real time but nobody hears it.
    pub null_sink: bool,
    /// Why this is not what was configured (device missing, unplugged, larger buffer).
    pub warning: Option<String>,
}

impl PlaybackStatus {
    pub(crate) fn starting() -> Self {
        PlaybackStatus {
            device: "none".to_owned(),
            null_sink: true,
            warning: None,
        }
    }
}

/// Local playback of relay PCM. Cheap to clone; all clones are one player. The output stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Player {
    shared: Arc<Shared>,
    output: Arc<Output>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The output thread, shut down and joined when the last `Player` goes.
struct Output {
    /// To the output thread; also held by every sink's `DeviceLost`, so the thread is told to
    /// stop explicitly rather than by the channel closing.
    events: mpsc::Sender<OutputEvent>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.events.send(OutputEvent::Shutdown);
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // It only waits on `events`: it ends as soon as it has dropped its sink.
            let _ = thread.join();
        }
    }
}

impl Player {
    /// Start playback on `config.device`, falling back to the default device and then to a
    /// null sink (each step logged and shown in `status().warning`). Never fails: without a
    /// sound card the player runs on the null sink. Blocks until the output is open (a few ms).
    pub fn start(config: PlayerConfig) -> Player {
        Self::spawn(config, None)
    }

    /// Start playback on `sink` (tests: a `RecordingSink`; embedders: their own output).
    /// `config.device` and `set_device` are ignored; if the sink reports itself lost the
    /// player goes on with a null sink, never with a sound card.
    pub fn start_with_sink(config: PlayerConfig, sink: Box<dyn Sink + Send>) -> Player {
        Self::spawn(config, Some(sink))
    }

    fn spawn(config: PlayerConfig, injected: Option<Box<dyn Sink + Send>>) -> Player {
        let shared = Arc::new(Shared::new(
            Playback::new(DEFAULT_SAMPLE_RATE, config.jitter_ms, config.volume),
            PlaybackStatus::starting(),
        ));
        let (events, receiver) = mpsc::channel();
        let (ready, started) = mpsc::sync_channel(1);
        let thread = OutputThread {
            shared: Arc::clone(&shared),
            events: events.clone(),
            receiver,
            injected: injected.is_some(),
            next_sink: 0,
        };
        let spawned = std::thread::Builder::new()
            .name("koto-audio-output".to_owned())
            .spawn(move || thread.run(config.device, injected, ready));
        let handle = match spawned {
            Ok(handle) => {
                // The thread answers once its first sink plays (or it gave up and runs null);
                // an error means it died, which `status` then shows.
                let _ = started.recv();
                Some(handle)
            }
            Err(error) => {
                let error = AudioError::Thread("output", error.to_string());
                tracing::error!(%error, "audio output not started");
                *shared.status() = PlaybackStatus {
                    device: "none".to_owned(),
                    null_sink: true,
                    warning: Some(error.to_string()),
                };
                None
            }
        };
        Player {
            shared,
            output: Arc::new(Output {
                events,
                thread: Mutex::new(handle),
            }),
        }
    }

    /// Queue one chunk of s16 mono PCM of `(session, turn, seq)` at `sample_rate` Hz.
    /// `Ok(Pushed::Queued)` if it will play; other `Pushed` values say which policy dropped it.
    pub fn push(
        &self,
        session: &SessionId,
        turn: TurnNo,
        seq: u64,
        sample_rate: u32,
        samples: &[i16],
    ) -> Result<Pushed, PushError> {
        let mut playback = self.shared.lock();
        playback.push(session, turn, seq, sample_rate, samples)
    }

    /// The turn's END arrived: play out what is queued of it without waiting for more.
    pub fn end_turn(&self, session: &SessionId, turn: TurnNo) {
        self.shared.lock().end_turn(session, turn);
    }

    /// Silence `session`'s turns `≤ turn` now and drop their later chunks (STOP_ACK).
    /// `true` if queued audio was removed.
    pub fn stop_turn(&self, session: &SessionId, turn: TurnNo) -> bool {
        self.shared.remove_audio(|p| p.stop_turn(session, turn))
    }

    /// Silence `session` now and drop later chunks of every turn seen so far (STOP).
    /// `true` if queued audio was removed.
    pub fn stop_session(&self, session: &SessionId) -> bool {
        self.shared.remove_audio(|p| p.stop_session(session))
    }

    /// Hold `session`'s audio where it is (relay PAUSE) or play on (RESUME); nothing is
    /// dropped. Heard within the output buffer, as a STOP.
    pub fn set_paused(&self, session: &SessionId, paused: bool) {
        self.shared.lock().set_paused(session, paused);
    }

    /// Silence everything now; every session's current turn is fenced.
    pub fn flush(&self) -> bool {
        self.shared.remove_audio(Playback::flush)
    }

    /// `0.0..=2.0` (clamped; NaN ignored). Heard within one block (~1–2 ms) plus the output
    /// buffer.
    pub fn set_volume(&self, volume: f32) {
        self.shared.lock().set_volume(volume);
    }

    pub fn volume(&self) -> f32 {
        self.shared.lock().volume()
    }

    /// Move playback to another device (`None`: the default). Asynchronous: `status()` shows
    /// the result a moment later; failure falls back as in `start`. Queued audio carries on
    /// (at the player's rate; rodio converts to the new device's).
    pub fn set_device(&self, device: Option<String>) {
        let _ = self.output.events.send(OutputEvent::Switch(device));
    }

    pub fn status(&self) -> PlaybackStatus {
        self.shared.status().clone()
    }

    pub fn stats(&self) -> PlaybackStats {
        self.shared.lock().stats()
    }

    /// Whether any audio is queued.
    pub fn is_playing(&self) -> bool {
        self.shared.lock().is_busy()
    }

    /// Resolves once no audio is queued (it played out or was stopped). Cancel-safe.
    pub async fn drained(&self) {
        loop {
            let notified = self.shared.drained().notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so emptying right after the look still wakes us.
            notified.as_mut().enable();
            if !self.is_playing() {
                return;
            }
            notified.await;
        }
    }
}

/// The thread that owns the current sink.
struct OutputThread {
    shared: Arc<Shared>,
    events: mpsc::Sender<OutputEvent>,
    receiver: mpsc::Receiver<OutputEvent>,
    /// The first sink was given by the caller: on loss go to the null sink, never to a device.
    injected: bool,
    next_sink: u64,
}

/// The sink playing now, with its number (to ignore late `Lost` reports of replaced sinks).
struct Current {
    id: u64,
    sink: Box<dyn Sink>,
}

/// Where to try to play, in order.
enum Candidate {
    Named(String),
    Default,
    Null,
}

impl OutputThread {
    fn run(
        mut self,
        device: Option<String>,
        injected: Option<Box<dyn Sink + Send>>,
        ready: mpsc::SyncSender<()>,
    ) {
        let mut current = match injected {
            Some(sink) => {
                self.set_rate(sink.sample_rate());
                self.play(sink, Vec::new())
                    .unwrap_or_else(|warnings| self.fall_back(&[Candidate::Null], warnings, true))
            }
            None => self.open(device, Vec::new(), true),
        };
        let _ = ready.send(());
        loop {
            match self.receiver.recv() {
                Ok(OutputEvent::Lost { sink, reason }) if sink == current.id => {
                    let lost = current.sink.device();
                    tracing::warn!(device = %lost, %reason, "audio output lost");
                    // The old stream goes first: a device cannot be reopened while held.
                    drop(current);
                    let warning = format!("output {lost:?} lost: {reason}");
                    current = if self.injected {
                        self.fall_back(&[Candidate::Null], vec![warning], false)
                    } else {
                        self.open(None, vec![warning], false)
                    };
                }
                // A sink that was already replaced, reporting again.
                Ok(OutputEvent::Lost { .. }) => {}
                Ok(OutputEvent::Switch(_)) if self.injected => {
                    tracing::debug!("player runs on a given sink: device switch ignored");
                }
                Ok(OutputEvent::Switch(device)) => {
                    drop(current);
                    current = self.open(device, Vec::new(), false);
                }
                Ok(OutputEvent::Shutdown) | Err(_) => return,
            }
        }
    }

    /// Open `device` (or the default), else the default, else the null sink.
    fn open(&mut self, device: Option<String>, warnings: Vec<String>, first: bool) -> Current {
        let chain: Vec<Candidate> = match device {
            Some(name) => vec![Candidate::Named(name), Candidate::Default, Candidate::Null],
            None => vec![Candidate::Default, Candidate::Null],
        };
        self.fall_back(&chain, warnings, first)
    }

    /// The first candidate that plays. The null sink always does, short of the OS refusing a
    /// thread; then the player has no output and says so.
    fn fall_back(
        &mut self,
        chain: &[Candidate],
        mut warnings: Vec<String>,
        first: bool,
    ) -> Current {
        for candidate in chain {
            let sink: Result<Box<dyn Sink>, AudioError> = match candidate {
                Candidate::Named(name) => DeviceSink::open(Some(name)).map(|s| Box::new(s) as _),
                Candidate::Default => DeviceSink::open(None).map(|s| Box::new(s) as _),
                Candidate::Null => {
                    // A fresh player without a device mixes at the wire's default rate (no
                    // resampling); later the null sink takes whatever rate the player has.
                    let rate = if first {
                        DEFAULT_SAMPLE_RATE
                    } else {
                        self.shared.lock().rate()
                    };
                    Ok(Box::new(NullSink::new(rate)))
                }
            };
            let sink = match sink {
                Ok(sink) => sink,
                Err(error) => {
                    tracing::warn!(%error, "audio output unavailable, trying the next");
                    warnings.push(error.to_string());
                    continue;
                }
            };
            if first {
                self.set_rate(sink.sample_rate());
            }
            match self.play(sink, warnings) {
                Ok(current) => return current,
                Err(carried) => warnings = carried,
            }
        }
        warnings.push("no audio output at all: audio is queued but not consumed".to_owned());
        *self.shared.status() = PlaybackStatus {
            device: "none".to_owned(),
            null_sink: true,
            warning: Some(warnings.join("; ")),
        };
        Current {
            id: u64::MAX,
            sink: Box::new(NullSink::new(DEFAULT_SAMPLE_RATE)),
        }
    }

    /// Start `sink` and publish the status; on failure hand the warnings back with its error.
    fn play(
        &mut self,
        mut sink: Box<dyn Sink>,
        mut warnings: Vec<String>,
    ) -> Result<Current, Vec<String>> {
        self.next_sink += 1;
        let id = self.next_sink;
        let source = PlaybackSource {
            shared: Arc::clone(&self.shared),
        };
        if let Err(error) = sink.play(source, DeviceLost::new(self.events.clone(), id)) {
            tracing::warn!(%error, "audio output failed to start");
            warnings.push(error.to_string());
            return Err(warnings);
        }
        warnings.extend(sink.warning());
        let status = PlaybackStatus {
            device: sink.device(),
            null_sink: sink.is_null(),
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        };
        if let Some(warning) = &status.warning {
            tracing::warn!(device = %status.device, null_sink = status.null_sink, %warning, "audio output");
        } else {
            tracing::info!(device = %status.device, "audio output");
        }
        *self.shared.status() = status;
        Ok(Current { id, sink })
    }

    fn set_rate(&self, rate: u32) {
        self.shared.lock().set_rate(rate);
    }
}
