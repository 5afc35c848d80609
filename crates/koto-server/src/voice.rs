//! The app's microphone: starts `koto-voice`'s pipeline (when `MIC_MODE` is not off, or once the
//! panel switches it on), feeds it what the co-host is playing (from the relay), and applies its
//! effects through the app's one path for each: `Relay::pause`/`resume` for the duck,
//! `Engine::interrupt` for STOP, `Engine::submit` (`ASR_FINAL`, `meta.source=mic`) for a turn,
//! `Relay::publish` for the panel's level meter, partial transcripts and dropped inputs.
//!
//! Saved voice settings reach the running pipeline through [`VoiceIn::reconfigure`]: the
//! pipeline takes them between two mic blocks, the mode goes through the panel's own switch and
//! a new device reopens the capture.
//!
//! It decides nothing about speech (that is `koto-voice`) and builds no ASR: the provider is
//! handed in (`None` = no ASR provider, reported as such instead of silence).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use koto_core::asr::AsrProvider;
use koto_core::turn::{InputKind, InputMeta};
use koto_core::{SessionId, TurnNo};
use koto_engine::{Engine, Submission, TurnEvent, TurnRequest};
use koto_protocol::chat::TurnStats;
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_protocol::voice::{AsrPartialFrame, MicLevelFrame, VoiceDroppedFrame};
use koto_relay::{ClientFilter, Relay};
use koto_voice::capture::{self, CaptureHandle, InputDevice};
use koto_voice::{
    EchoMode, MicMode, PlaybackAction, VoiceConfig, VoiceEffect, VoiceInput, VoicePipeline,
    VoiceStats,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Mic blocks (10 ms each) the pipeline may fall behind by before the capture thread drops.
const MIC_QUEUE: usize = 256;
/// A pause lasts at most the barge-in window plus this (the relay lifts it by itself after).
const PAUSE_MARGIN: Duration = Duration::from_secs(2);
/// A lost or missing microphone is tried again after this, then twice as long each time…
const REOPEN_FIRST: Duration = Duration::from_secs(2);
/// …up to this: a USB mic plugged back in is heard again within half a minute at worst.
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// The `MIC_*`, `VAD_*`, `BARGE_IN_*` and `ECHO_CANCEL` keys (the desktop's push-to-talk
/// hotkey is a `DesktopConfig` key: the shell registers it and calls [`VoiceIn::ptt`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceSettings {
    pub pipeline: VoiceConfig,
    /// `None`: the system default input.
    pub device: Option<String>,
    pub session: SessionId,
}

/// Where the pipeline's mic audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicSource {
    /// A cpal input device (`MIC_DEVICE`, `None` = default).
    Device(Option<String>),
    /// Only what [`VoiceIn::mic_sender`] is given (tests, the bench).
    Frames,
}

#[derive(Debug, Clone, PartialEq)]
struct MicStatus {
    mode: MicMode,
    /// `off`, `listening`, `no_device`, `lost`.
    device_state: &'static str,
    device: Option<String>,
    warning: Option<String>,
    /// The last voice turn that ended, and its `done.stats` (no SSE client saw them).
    last_turn: Option<(TurnNo, TurnStats)>,
}

/// The microphone as the routes and `/health` see it. One per app.
pub struct VoiceIn {
    /// The pipeline's input; `None` when voice input was never started.
    inputs: Option<mpsc::Sender<VoiceInput>>,
    session: Arc<Mutex<SessionId>>,
    status: Arc<Mutex<MicStatus>>,
    stats: Option<Arc<Mutex<VoiceStats>>>,
    capture: Mutex<Option<CaptureHandle>>,
    /// Changed by a saved `MIC_DEVICE` (a device source only).
    source: Mutex<MicSource>,
    /// What it hears with (the app's `LiveAsr`, or a test's fake); `None` when never started.
    asr: Option<Arc<dyn AsrProvider>>,
    /// The saved settings the pipeline was last given (its mode is the saved `MIC_MODE`, not
    /// the panel's switch, which is `MicStatus::mode`). Read by the co-host follower (whether
    /// the canceller wants the played audio) and the effects' driver (how long a pause lasts).
    config: Arc<Mutex<VoiceConfig>>,
}

impl std::fmt::Debug for VoiceIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceIn")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl VoiceIn {
    /// Voice input that is not running at all (no engine relay, or built without one).
    pub fn off() -> Arc<VoiceIn> {
        Arc::new(VoiceIn {
            inputs: None,
            session: Arc::new(Mutex::new(default_session())),
            status: Arc::new(Mutex::new(MicStatus {
                mode: MicMode::Off,
                device_state: "off",
                device: None,
                warning: None,
                last_turn: None,
            })),
            stats: None,
            capture: Mutex::new(None),
            source: Mutex::new(MicSource::Frames),
            asr: None,
            config: Arc::new(Mutex::new(VoiceConfig {
                mode: MicMode::Off,
                ..VoiceConfig::default()
            })),
        })
    }

    /// Start the pipeline and its drivers (they end with `shutdown`). The device opens now if
    /// `MIC_MODE` is not off, else when the panel switches the mic on.
    pub fn start(
        settings: &VoiceSettings,
        source: MicSource,
        engine: Engine,
        asr: Arc<dyn AsrProvider>,
        shutdown: CancellationToken,
    ) -> Arc<VoiceIn> {
        let Some(relay) = engine.relay().cloned() else {
            return VoiceIn::off();
        };
        let config = settings.pipeline.clone();
        warn_if_barge_in_is_gated(&config);
        // The pipeline runs whatever the mode (off ignores mic audio), so the panel can switch.
        let mode = config.mode;
        let (pipeline, effects) = VoicePipeline::new(config.clone(), Some(Arc::clone(&asr)));
        let stats = pipeline.stats_handle();
        let (inputs, receiver) = mpsc::channel(MIC_QUEUE);
        let session = Arc::new(Mutex::new(settings.session.clone()));
        let status = Arc::new(Mutex::new(MicStatus {
            mode,
            device_state: "off",
            device: None,
            warning: None,
            last_turn: None,
        }));
        let shared_config = Arc::new(Mutex::new(config));
        tokio::spawn(pipeline.run(receiver, shutdown.clone()));
        tokio::spawn(apply_effects(
            effects,
            engine.clone(),
            relay.clone(),
            Arc::clone(&session),
            Arc::clone(&status),
            Arc::clone(&shared_config),
        ));
        let voice_shutdown = shutdown.clone();
        tokio::spawn(follow_cohost(
            relay,
            inputs.clone(),
            Arc::clone(&status),
            Arc::clone(&shared_config),
            shutdown,
        ));
        let voice = Arc::new(VoiceIn {
            inputs: Some(inputs),
            session,
            status,
            stats: Some(stats),
            capture: Mutex::new(None),
            source: Mutex::new(source),
            asr: Some(asr),
            config: shared_config,
        });
        if mode != MicMode::Off {
            voice.open_device();
        }
        if matches!(*lock(&voice.source), MicSource::Device(_)) {
            tokio::spawn(reopen_lost_mic(Arc::downgrade(&voice), voice_shutdown));
        }
        voice
    }

    /// Whether the mic should be listening but its device is missing or was lost.
    fn wants_device(&self) -> bool {
        let status = lock(&self.status);
        needs_reopen(status.mode, status.device_state)
    }

    /// Where synthetic mic audio goes in (tests, the bench); the device sends here too.
    pub fn mic_sender(&self) -> Option<mpsc::Sender<VoiceInput>> {
        self.inputs.clone()
    }

    /// The session voice turns go to now.
    pub fn session(&self) -> SessionId {
        lock(&self.session).clone()
    }

    /// Push-to-talk pressed or released (the panel's button, the desktop hotkey).
    pub async fn ptt(&self, pressed: bool, session: Option<SessionId>) -> Result<(), VoiceError> {
        let inputs = self.inputs.as_ref().ok_or(VoiceError::NotRunning)?;
        if lock(&self.status).mode != MicMode::Ptt {
            return Err(VoiceError::NotPtt);
        }
        if let Some(session) = session {
            *lock(&self.session) = session;
        }
        inputs
            .send(VoiceInput::Ptt(pressed))
            .await
            .map_err(|_| VoiceError::NotRunning)
    }

    /// Switch the mode while running; the device opens on the first switch away from off.
    pub async fn set_mode(
        &self,
        mode: MicMode,
        session: Option<SessionId>,
    ) -> Result<(), VoiceError> {
        let inputs = self.inputs.as_ref().ok_or(VoiceError::NotRunning)?;
        if let Some(session) = session {
            *lock(&self.session) = session;
        }
        inputs
            .send(VoiceInput::Mode(mode))
            .await
            .map_err(|_| VoiceError::NotRunning)?;
        lock(&self.status).mode = mode;
        if mode == MicMode::Off {
            // Closing the device frees it for other apps; it reopens on the next switch.
            *lock(&self.capture) = None;
            let mut status = lock(&self.status);
            status.device_state = "off";
        } else {
            // Not yet open, or lost / never found: try the device again (it may be back).
            let usable = matches!(lock(&self.status).device_state, "listening");
            let frames = *lock(&self.source) == MicSource::Frames;
            if !usable || lock(&self.capture).is_none() && !frames {
                *lock(&self.capture) = None;
                self.open_device();
            }
        }
        Ok(())
    }

    fn open_device(&self) {
        self.open_device_logged(true);
    }

    /// Opens the configured device; a failure is a warning when `loud` (a start or a switch the
    /// streamer made), a debug line for the watchdog's quiet retries.
    fn open_device_logged(&self, loud: bool) {
        let Some(inputs) = self.inputs.clone() else {
            return;
        };
        let source = lock(&self.source).clone();
        let wanted = match source {
            MicSource::Frames => {
                let mut status = lock(&self.status);
                status.device_state = "listening";
                status.device = Some("synthetic".into());
                return;
            }
            MicSource::Device(wanted) => wanted,
        };
        match capture::open(wanted.as_deref(), inputs) {
            Ok(handle) => {
                if !loud {
                    tracing::info!(device = %handle.device, "microphone back: listening again");
                }
                let mut status = lock(&self.status);
                status.device_state = "listening";
                status.device = Some(handle.device.clone());
                status.warning = None;
                *lock(&self.capture) = Some(handle);
            }
            Err(error) => {
                if loud {
                    tracing::warn!(%error, "microphone unavailable; text input keeps working (retried by itself)");
                } else {
                    tracing::debug!(%error, "microphone still unavailable");
                }
                let mut status = lock(&self.status);
                status.device_state = "no_device";
                status.warning = Some(error.to_string());
            }
        }
    }

    /// Saved voice settings, applied while running: the pipeline takes them before its next
    /// mic block (`VoiceInput::Reconfigure`), a new saved `MIC_MODE` goes through
    /// [`set_mode`](Self::set_mode) as the panel's switch does, and a new `MIC_DEVICE` closes the
    /// capture and opens the new device. `Ok(Some(warning))`: applied, but that device cannot be
    /// opened now (the warning of a start without it; text keeps working, and it is tried again
    /// by itself).
    pub async fn reconfigure(
        &self,
        settings: &VoiceSettings,
    ) -> Result<Option<String>, VoiceError> {
        let inputs = self.inputs.as_ref().ok_or(VoiceError::NotRunning)?;
        let config = settings.pipeline.clone();
        warn_if_barge_in_is_gated(&config);
        inputs
            .send(VoiceInput::Reconfigure(Box::new(config.clone())))
            .await
            .map_err(|_| VoiceError::NotRunning)?;
        let saved_mode = std::mem::replace(&mut *lock(&self.config), config).mode;
        if saved_mode != settings.pipeline.mode {
            self.set_mode(settings.pipeline.mode, None).await?;
        }
        if !self.set_device(settings.device.clone()) {
            return Ok(None);
        }
        if lock(&self.status).mode == MicMode::Off {
            // Opened at the next switch away from off, as at start.
            return Ok(None);
        }
        *lock(&self.capture) = None;
        self.open_device();
        let status = lock(&self.status);
        Ok(status
            .warning
            .clone()
            .filter(|_| status.device_state != "listening"))
    }

    /// Points a device source at `device`; whether that changed anything (a synthetic source
    /// has no device).
    fn set_device(&self, device: Option<String>) -> bool {
        let mut source = lock(&self.source);
        match &*source {
            MicSource::Device(current) if *current != device => {
                *source = MicSource::Device(device);
                true
            }
            _ => false,
        }
    }

    /// The mic's part of `/health` and `GET /voice`.
    pub fn status(&self) -> Value {
        let status = lock(&self.status).clone();
        let (echo, barge_in) = {
            let config = lock(&self.config);
            (config.echo, config.barge_in.enabled)
        };
        let stats = self
            .stats
            .as_ref()
            .map(|stats| *lock(stats))
            .unwrap_or_default();
        // Read now: a saved ASR setting may have switched it on or off since the start.
        let asr = self
            .asr
            .as_ref()
            .map(|asr| asr.name())
            .filter(|name| *name != "off");
        let state = match (status.mode, status.device_state, asr) {
            (MicMode::Off, _, _) => "off",
            (_, "no_device" | "lost", _) => status.device_state,
            (_, _, None) => "asr_off",
            _ => "listening",
        };
        let warning = match state {
            "asr_off" => {
                Some("mic on but ASR_PROVIDER is off: nothing you say is heard".to_owned())
            }
            _ => status.warning.clone(),
        };
        json!({
            "mode": status.mode.as_str(),
            "state": state,
            "device": status.device,
            "warning": warning,
            "session": self.session().to_string(),
            "asr": asr,
            "echoCancel": echo.as_str(),
            "bargeIn": barge_in,
            "utterances": stats.utterances,
            "submitted": stats.submitted,
            "droppedEcho": stats.dropped_echo,
            "droppedOther": stats.dropped_other,
            "pauses": stats.barge_in.pauses,
            "voiceStops": stats.barge_in.stops,
            "falseAlarms": stats.barge_in.false_alarms,
            "lastOnsetToPauseMs": stats.barge_in.last_onset_to_pause_ms,
            "lastTurn": status.last_turn.as_ref().map(|(turn, stats)| json!({
                "turn": turn,
                "stats": stats,
            })),
        })
    }

    /// Input devices for the settings page.
    pub fn devices() -> Vec<InputDevice> {
        capture::input_devices()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VoiceError {
    #[error("voice input is not running (no relay)")]
    NotRunning,
    #[error("push-to-talk needs MIC_MODE=ptt (switch the mode first)")]
    NotPtt,
}

/// The gate mutes the mic while the co-host speaks, so barge-in cannot hear anything: said at
/// start and at each save that sets both.
fn warn_if_barge_in_is_gated(config: &VoiceConfig) {
    if config.echo == EchoMode::Gate && config.barge_in.enabled {
        tracing::warn!(
            "VOICE_BARGE_IN needs ECHO_CANCEL=aec or headphones: the gate mutes the mic while the co-host speaks"
        );
    }
}

fn default_session() -> SessionId {
    // Invariant: "mic" is a valid id (ASCII letters), as MIC_SESSION's default.
    SessionId::parse("mic").expect("`mic` is a valid session id")
}

/// The mic is on (push-to-talk or hands-free) but has no working device.
fn needs_reopen(mode: MicMode, device_state: &str) -> bool {
    mode != MicMode::Off && matches!(device_state, "no_device" | "lost")
}

/// The wait before the next try: doubled after each failed one, back to the first once the
/// device works (or the mic is off).
fn next_reopen_wait(wait: Duration, still_missing: bool) -> Duration {
    if still_missing {
        (wait * 2).min(REOPEN_MAX)
    } else {
        REOPEN_FIRST
    }
}

/// Tries a lost or missing microphone again by itself, with a growing pause, so a mic unplugged
/// and plugged back in (or one that was busy at start) is heard again without the streamer
/// switching the mode. Ends with the app, or when the `VoiceIn` is gone.
async fn reopen_lost_mic(voice: std::sync::Weak<VoiceIn>, shutdown: CancellationToken) {
    let mut wait = REOPEN_FIRST;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let Some(voice) = voice.upgrade() else { return };
        if !voice.wants_device() {
            wait = REOPEN_FIRST;
            continue;
        }
        // The old stream (a lost one) is dropped before the device is asked again.
        *lock(&voice.capture) = None;
        voice.open_device_logged(false);
        if lock(&voice.status).mode == MicMode::Off {
            // Switched off while the device was being opened: it must not stay held.
            *lock(&voice.capture) = None;
            lock(&voice.status).device_state = "off";
        }
        wait = next_reopen_wait(wait, voice.wants_device());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the co-host is playing → the pipeline (echo reference, "is it speaking", what an echo
/// would say). Every session counts: the app has one voice and one loudspeaker, whichever
/// session the audio belongs to.
/// What the co-host says and plays, for the echo handling. The played samples (the AEC's far
/// end) go only while the mic is on and the AEC is what handles echo: the canceller's analysis
/// costs CPU on every chunk, which a streamer who never uses the mic must not pay.
async fn follow_cohost(
    relay: Relay,
    inputs: mpsc::Sender<VoiceInput>,
    status: Arc<Mutex<MicStatus>>,
    config: Arc<Mutex<VoiceConfig>>,
    shutdown: CancellationToken,
) {
    let mut speaking: std::collections::HashSet<SessionId> = std::collections::HashSet::new();
    loop {
        let mut client = relay.subscribe(ClientFilter::default());
        loop {
            let frame = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                frame = client.recv() => frame,
            };
            let Some(frame) = frame else { break };
            let mut sends = Vec::new();
            match frame.frame() {
                RelayFrame::SpeechChunk(chunk) => {
                    speaking.insert(chunk.session_id.clone());
                    if let Some(segment) = &chunk.segment {
                        sends.push(VoiceInput::CohostSentence(segment.text.clone()));
                    }
                    // Read per chunk: a saved ECHO_CANCEL starts or stops the feed.
                    let feeds_aec = lock(&config).echo == EchoMode::Aec;
                    let listening = feeds_aec && lock(&status).mode != MicMode::Off;
                    if let Some(samples) = frame.samples().filter(|_| listening) {
                        sends.push(VoiceInput::Played {
                            samples: samples.to_vec(),
                            rate: chunk.sample_rate(),
                        });
                    }
                }
                RelayFrame::Control(control) => {
                    // Every PAUSE and STOP reaches the player through these frames, whatever
                    // path sent it: the canceller's reference follows the player.
                    match control.action {
                        ControlAction::Pause => sends.push(VoiceInput::CohostHeld(true)),
                        ControlAction::Resume => sends.push(VoiceInput::CohostHeld(false)),
                        ControlAction::StopAck => sends.push(VoiceInput::CohostFlushed),
                        _ => {}
                    }
                    if matches!(control.action, ControlAction::End | ControlAction::StopAck)
                        && speaking.remove(&control.session_id)
                        && speaking.is_empty()
                    {
                        sends.push(VoiceInput::CohostEnded);
                    }
                }
                _ => {}
            }
            for input in sends {
                if inputs.send(input).await.is_err() {
                    return;
                }
            }
        }
        if shutdown.is_cancelled() || client.disconnect_reason().is_none() {
            return;
        }
        // Too slow once (a busy machine): subscribe again.
    }
}

/// The pipeline's effects, in order. A STOP is awaited before the turn it precedes is
/// submitted, so the new turn is never cancelled by its own barge-in.
async fn apply_effects(
    mut effects: mpsc::UnboundedReceiver<VoiceEffect>,
    engine: Engine,
    relay: Relay,
    session: Arc<Mutex<SessionId>>,
    status: Arc<Mutex<MicStatus>>,
    config: Arc<Mutex<VoiceConfig>>,
) {
    while let Some(effect) = effects.recv().await {
        let session_id = lock(&session).clone();
        match effect {
            VoiceEffect::Playback { action, at_ms } => match action {
                PlaybackAction::Pause => {
                    // The window as saved now (BARGE_IN_WINDOW_MS applies live).
                    let window_ms = lock(&config).barge_in.window_ms;
                    let max_pause = Duration::from_millis(window_ms) + PAUSE_MARGIN;
                    tracing::info!(sessionId = %session_id, at_ms, "voice onset: pausing the co-host");
                    relay.pause(&session_id, max_pause);
                }
                PlaybackAction::Resume { cause } => {
                    tracing::info!(sessionId = %session_id, at_ms, ?cause, "no words: resuming the co-host");
                    relay.resume(&session_id);
                }
                PlaybackAction::Stop => {
                    tracing::info!(sessionId = %session_id, at_ms, "words confirmed: STOP");
                    if let Err(error) = engine.interrupt(&session_id, "voice_barge_in").await {
                        tracing::warn!(%error, "voice barge-in STOP refused");
                        relay.resume(&session_id);
                    }
                }
            },
            VoiceEffect::Submit(heard) => {
                let request = TurnRequest {
                    session: session_id.clone(),
                    turn: None,
                    kind: InputKind::AsrFinal,
                    content: heard.text.clone(),
                    lang: heard.language.clone(),
                    meta: InputMeta {
                        confidence: heard.confidence,
                        duration_ms: Some(heard.duration_ms),
                        ..InputMeta::from_source(InputMeta::MIC)
                    },
                    received_at: tokio::time::Instant::now(),
                };
                match engine.submit(request).await {
                    Ok(Submission::Turn(handle)) => {
                        tokio::spawn(run_turn(handle, Arc::clone(&status)));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "voice turn refused");
                        relay.publish(RelayFrame::VoiceDropped(VoiceDroppedFrame {
                            session_id,
                            reason: "refused".into(),
                            text: Some(heard.text),
                        }));
                    }
                }
            }
            VoiceEffect::Level {
                rms_dbfs,
                voice,
                speaking,
            } => {
                relay.publish(RelayFrame::MicLevel(MicLevelFrame {
                    session_id,
                    rms_dbfs,
                    voice,
                    speaking,
                }));
            }
            VoiceEffect::Partial { text } => {
                relay.publish(RelayFrame::AsrPartial(AsrPartialFrame { session_id, text }));
            }
            VoiceEffect::Dropped { reason, text } => {
                relay.publish(RelayFrame::VoiceDropped(VoiceDroppedFrame {
                    session_id,
                    reason: reason.as_str().into(),
                    text,
                }));
            }
            VoiceEffect::MicLost { reason } => {
                let mut status = lock(&status);
                status.device_state = "lost";
                status.warning = Some(format!("microphone lost: {reason}"));
            }
        }
    }
}

/// Keep a voice turn's handle until it is done (dropping it would cancel the turn); its text
/// and audio reach the panel through the relay like any turn's.
/// Drives a voice turn to its end (dropping the handle would cancel it) and keeps its stats.
async fn run_turn(mut handle: koto_engine::TurnHandle, status: Arc<Mutex<MicStatus>>) {
    while let Some(event) = handle.events.recv().await {
        if let TurnEvent::Done(stats) = event {
            lock(&status).last_turn = Some((handle.turn, stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_mic_that_is_on_and_has_no_device_is_reopened() {
        for mode in [MicMode::Ptt, MicMode::Vad] {
            assert!(needs_reopen(mode, "lost"), "{mode:?} lost");
            assert!(needs_reopen(mode, "no_device"), "{mode:?} never found");
            assert!(!needs_reopen(mode, "listening"));
        }
        assert!(
            !needs_reopen(MicMode::Off, "lost"),
            "off means off: nothing is opened"
        );
    }

    #[test]
    fn retries_back_off_to_half_a_minute_and_start_over_once_it_works() {
        let mut wait = REOPEN_FIRST;
        let mut waits = Vec::new();
        for _ in 0..6 {
            wait = next_reopen_wait(wait, true);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [4, 8, 16, 30, 30, 30]);
        assert_eq!(next_reopen_wait(wait, false), REOPEN_FIRST);
    }
}
