//! The voice pipeline: mic frames → (AEC or gate) → VAD → utterance → ASR → what to do.
//!
//! One task owns all the state (one writer). Its inputs arrive on one channel in order (mic
//! frames, the audio being played, the co-host's sentences, push-to-talk); its outputs are an
//! ordered stream of [`VoiceEffect`]s that a thin driver applies (pause/resume the relay, STOP
//! through `Engine::interrupt`, submit the turn, tell the panel). Time is the mic's audio clock,
//! so every decision is reproducible on synthetic audio. It knows no engine, relay or socket.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::StreamExt;
use koto_core::asr::{ASR_SAMPLE_RATE, AsrEvent, AsrProvider, AsrRequest, Transcript};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "aec")]
use crate::aec::{AEC_FRAME, EchoCanceller};
use crate::barge_in::{BargeIn, BargeInConfig, BargeInStats, PlaybackAction, ResumeCause};
use crate::echo::{EchoMode, is_echo, word_count};
use crate::onset::{ONSET_FRAME, OnsetConfig, OnsetDetector};
use crate::utterance::{Assembler, Utterance, UtteranceConfig};
use crate::vad::{Vad, VadConfig, VadEvent};

/// `MIC_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicMode {
    Off,
    /// Push-to-talk: an utterance is what is said while the button or hotkey is held.
    Ptt,
    /// Hands-free: the VAD finds utterances.
    Vad,
}

impl MicMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MicMode::Off => "off",
            MicMode::Ptt => "ptt",
            MicMode::Vad => "vad",
        }
    }
}

impl fmt::Display for MicMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MicMode {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(MicMode::Off),
            "ptt" => Ok(MicMode::Ptt),
            "vad" => Ok(MicMode::Vad),
            other => Err(format!("`{other}` is not off, ptt or vad")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VoiceConfig {
    pub mode: MicMode,
    pub vad: VadConfig,
    pub utterance: UtteranceConfig,
    pub barge_in: BargeInConfig,
    /// The PAUSE's fast energy onset.
    pub onset: OnsetConfig,
    pub echo: EchoMode,
    /// ISO 639-1 hint for the ASR.
    pub language: Option<String>,
    /// The co-host counts as speaking this long after its audio ended (room reverb, the
    /// device's buffer): the gate stays shut and an echo is still recognised.
    pub echo_tail_ms: u64,
    /// A push-to-talk hold shorter than this is a mis-click.
    pub min_ptt_ms: u64,
    /// How often the level meter is reported.
    pub level_every_ms: u64,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            mode: MicMode::Vad,
            vad: VadConfig::default(),
            utterance: UtteranceConfig::default(),
            barge_in: BargeInConfig::default(),
            onset: OnsetConfig::default(),
            echo: EchoMode::Aec,
            language: None,
            echo_tail_ms: 300,
            min_ptt_ms: 250,
            level_every_ms: 100,
        }
    }
}

/// What the pipeline is told, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceInput {
    /// Mic samples, 16 kHz mono.
    Mic(Vec<i16>),
    /// The mic stopped delivering (device unplugged): what is open is finished.
    MicLost {
        reason: String,
    },
    /// Audio the app is playing (the AEC's reference), at `rate` Hz.
    Played {
        samples: Vec<i16>,
        rate: u32,
    },
    /// The co-host started a sentence (its text is what an echo would be transcribed as).
    CohostSentence(String),
    /// The co-host's reply ended or was stopped.
    CohostEnded,
    /// The app's player holds (`true`: a PAUSE, from any path) or plays on: what it holds is not
    /// playing, so it is not echo yet.
    CohostHeld(bool),
    /// The player dropped what it had not played (STOP_ACK): it never will be echo.
    CohostFlushed,
    /// Push-to-talk pressed (`true`) or released.
    Ptt(bool),
    Mode(MicMode),
    /// Saved settings, applied before the next mic block (the mode is left to [`Mode`]
    /// (VoiceInput::Mode), the path that also opens and closes the device).
    Reconfigure(Box<VoiceConfig>),
}

/// Why a voice input did not become a turn (the panel shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The co-host's own sentence, heard back.
    Echo,
    /// Shorter than a word (a click, a cough, a mis-click of push-to-talk).
    TooShort,
    /// Paused the co-host, but no real words followed.
    FalseAlarm,
    /// The ASR heard nothing.
    Empty,
    AsrFailed,
    /// The mic is on but there is no ASR provider (`ASR_PROVIDER=off`).
    AsrOff,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Echo => "echo",
            DropReason::TooShort => "too_short",
            DropReason::FalseAlarm => "false_alarm",
            DropReason::Empty => "empty",
            DropReason::AsrFailed => "asr_failed",
            DropReason::AsrOff => "asr_off",
        }
    }
}

/// An utterance that is a turn: its final transcript and how long it was.
#[derive(Debug, Clone, PartialEq)]
pub struct HeardUtterance {
    pub text: String,
    pub language: Option<String>,
    pub confidence: Option<f32>,
    pub duration_ms: u64,
    /// It interrupted the co-host (a STOP went out before it).
    pub barged_in: bool,
}

/// What the driver does, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceEffect {
    /// `at_ms`: the mic's audio clock when it was decided.
    Playback {
        action: PlaybackAction,
        at_ms: u64,
    },
    Submit(HeardUtterance),
    Level {
        rms_dbfs: f32,
        voice: f32,
        speaking: bool,
    },
    Partial {
        text: String,
    },
    Dropped {
        reason: DropReason,
        text: Option<String>,
    },
    MicLost {
        reason: String,
    },
}

/// Counters for `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoiceStats {
    pub utterances: u64,
    pub submitted: u64,
    pub dropped_echo: u64,
    pub dropped_other: u64,
    pub barge_in: BargeInStats,
}

/// ASR answers back into the pipeline's task.
#[derive(Debug)]
enum AsrDone {
    Partial {
        utterance: u64,
        text: String,
    },
    Probe {
        utterance: u64,
        speech_ms: u64,
        result: Result<Transcript, String>,
    },
    Final {
        speech_ms: u64,
        result: Result<Transcript, String>,
    },
}

pub struct VoicePipeline {
    config: VoiceConfig,
    asr: Option<Arc<dyn AsrProvider>>,
    vad: Vad,
    assembler: Assembler,
    barge_in: BargeIn,
    #[cfg(feature = "aec")]
    aec: Option<EchoCanceller>,
    /// The PAUSE's fast onset on the raw mic, and the raw and reference samples not yet a
    /// whole 10 ms frame for it.
    onset: OnsetDetector,
    onset_near: Vec<i16>,
    onset_far: VecDeque<i16>,
    /// Audio ms of the mic clock.
    now_ms: u64,
    /// The co-host is speaking, or was until `cohost_until_ms` (its tail).
    cohost_speaking: bool,
    cohost_until_ms: u64,
    /// The co-host's recent sentences (what an echo would say).
    spoken: VecDeque<String>,
    ptt_down_at: Option<u64>,
    /// Counts utterances; ASR answers for an older one are stale.
    utterance_id: u64,
    probe_sent: bool,
    level_sum: f64,
    level_n: usize,
    level_last_ms: u64,
    stats: VoiceStats,
    effects: mpsc::UnboundedSender<VoiceEffect>,
    asr_tx: mpsc::UnboundedSender<AsrDone>,
    asr_rx: mpsc::UnboundedReceiver<AsrDone>,
    stats_out: Arc<std::sync::Mutex<VoiceStats>>,
}

impl fmt::Debug for VoicePipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoicePipeline")
            .field("config", &self.config)
            .field("now_ms", &self.now_ms)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Sentences remembered for the echo check.
const SPOKEN_KEPT: usize = 4;
/// An energy onset's pause stands only if the VAD hears voice within this (audio ms): earshot
/// scores espeak speech voiced ~130 ms in, and the AEC's output may lag the raw mic a little
/// more in double talk; a clap or a knock resumes after it.
const ENERGY_ONSET_VOICE_MS: u64 = 500;

impl VoicePipeline {
    /// The pipeline and the receiver of its effects.
    pub fn new(
        config: VoiceConfig,
        asr: Option<Arc<dyn AsrProvider>>,
    ) -> (VoicePipeline, mpsc::UnboundedReceiver<VoiceEffect>) {
        let (effects, effects_rx) = mpsc::unbounded_channel();
        let (asr_tx, asr_rx) = mpsc::unbounded_channel();
        let pipeline = VoicePipeline {
            vad: Vad::new(config.vad),
            assembler: Assembler::new(config.utterance, config.vad.min_speech_ms),
            barge_in: BargeIn::new(config.barge_in),
            #[cfg(feature = "aec")]
            aec: (config.echo == EchoMode::Aec).then(EchoCanceller::new),
            onset: OnsetDetector::new(config.onset),
            onset_near: Vec::with_capacity(ONSET_FRAME * 2),
            onset_far: VecDeque::with_capacity(ONSET_FRAME * 2),
            config,
            asr,
            now_ms: 0,
            cohost_speaking: false,
            cohost_until_ms: 0,
            spoken: VecDeque::new(),
            ptt_down_at: None,
            utterance_id: 0,
            probe_sent: false,
            level_sum: 0.0,
            level_n: 0,
            level_last_ms: 0,
            stats: VoiceStats::default(),
            effects,
            asr_tx,
            asr_rx,
            stats_out: Arc::default(),
        };
        (pipeline, effects_rx)
    }

    /// Counters, readable while the pipeline runs.
    pub fn stats_handle(&self) -> Arc<std::sync::Mutex<VoiceStats>> {
        Arc::clone(&self.stats_out)
    }

    /// Whether echo is handled by an acoustic canceller in this build and config.
    pub fn echo_mode(&self) -> EchoMode {
        self.config.echo
    }

    /// Run until `inputs` closes or `shutdown`; ASR requests in flight are dropped then.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<VoiceInput>,
        shutdown: CancellationToken,
    ) {
        let asr_tasks = tokio_util::task::TaskTracker::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                done = self.asr_rx.recv() => {
                    if let Some(done) = done {
                        self.asr_done(done);
                    }
                }
                input = inputs.recv() => match input {
                    Some(input) => self.input(input, &asr_tasks, &shutdown),
                    None => break,
                },
            }
            self.publish_stats();
        }
        asr_tasks.close();
        shutdown.cancel();
    }

    /// Handle one input (public for tests that step the pipeline without a task).
    fn input(
        &mut self,
        input: VoiceInput,
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        match input {
            VoiceInput::Mic(samples) => self.mic(&samples, tasks, token),
            VoiceInput::MicLost { reason } => {
                let events: Vec<VadEvent> = self.vad.finish().into_iter().collect();
                self.vad_events(events, tasks, token);
                if let Some(down) = self.ptt_down_at.take() {
                    self.ptt_released(down, tasks, token);
                }
                if let Some(action) = self.barge_in.tick(u64::MAX) {
                    self.playback(action);
                }
                self.vad.reset();
                self.emit(VoiceEffect::MicLost { reason });
            }
            VoiceInput::Played { samples, rate } => {
                self.cohost_speaking = true;
                #[cfg(feature = "aec")]
                if let Some(aec) = &mut self.aec {
                    aec.push_far(&samples, rate);
                }
                let _ = (samples, rate);
            }
            VoiceInput::CohostSentence(text) => {
                self.cohost_speaking = true;
                self.spoken.push_back(text);
                while self.spoken.len() > SPOKEN_KEPT {
                    self.spoken.pop_front();
                }
            }
            VoiceInput::CohostHeld(held) => {
                #[cfg(feature = "aec")]
                if let Some(aec) = &mut self.aec {
                    aec.hold_far(held);
                }
                let _ = held;
            }
            VoiceInput::CohostFlushed =>
            {
                #[cfg(feature = "aec")]
                if let Some(aec) = &mut self.aec {
                    aec.flush_far();
                }
            }
            VoiceInput::CohostEnded => {
                if self.cohost_speaking {
                    self.cohost_until_ms = self.now_ms + self.config.echo_tail_ms;
                }
                self.cohost_speaking = false;
                self.barge_in.cohost_ended();
            }
            VoiceInput::Ptt(true) => {
                if self.config.mode == MicMode::Ptt && self.ptt_down_at.is_none() {
                    let now = self.now_ms;
                    self.ptt_down_at = Some(now);
                    self.assembler.start(now);
                    self.utterance_id += 1;
                    self.probe_sent = false;
                    let speaking = self.cohost_active();
                    if let Some(action) = self.barge_in.onset(now, now, speaking) {
                        self.playback(action);
                    }
                }
            }
            VoiceInput::Ptt(false) => {
                if let Some(down) = self.ptt_down_at.take() {
                    self.ptt_released(down, tasks, token);
                }
            }
            VoiceInput::Mode(mode) => {
                self.config.mode = mode;
                self.assembler.abandon();
                self.ptt_down_at = None;
                self.vad.reset();
                if let Some(action) = self.barge_in.tick(u64::MAX) {
                    self.playback(action);
                }
            }
            VoiceInput::Reconfigure(config) => self.reconfigure(*config),
        }
    }

    /// New voice settings between two mic blocks. The audio clock, the co-host's state, the
    /// counters and, where its mode stays, the echo canceller's model of the room carry over.
    /// An open utterance is abandoned when its VAD or its echo handling changes: the new VAD
    /// cannot end speech the old one began, and its audio would be half cleaned one way, half
    /// the other; what was being said is not sent (a setting changed mid-sentence).
    fn reconfigure(&mut self, mut config: VoiceConfig) {
        config.mode = self.config.mode;
        let old = std::mem::replace(&mut self.config, config);
        let vad_changed = old.vad != self.config.vad;
        let echo_changed = old.echo != self.config.echo;
        if vad_changed || echo_changed {
            self.abandon_utterance();
        }
        if vad_changed {
            self.vad.set_config(self.config.vad);
        }
        if echo_changed {
            self.set_echo(self.config.echo);
        }
        self.assembler
            .set_config(self.config.utterance, self.config.vad.min_speech_ms);
        self.onset.set_config(self.config.onset);
        if let Some(action) = self.barge_in.set_config(self.config.barge_in) {
            self.playback(action);
        }
    }

    /// Drops the utterance being recorded (and a push-to-talk hold): ASR answers still due for
    /// it are stale, and a pause it caused is lifted.
    fn abandon_utterance(&mut self) {
        self.assembler.abandon();
        self.ptt_down_at = None;
        self.utterance_id += 1;
        self.probe_sent = false;
        self.utterance_done(ResumeCause::Reconfigured);
    }

    /// Creates or drops the acoustic canceller for `echo`; the far-end frames queued for the
    /// onset detector belonged to the old one.
    fn set_echo(&mut self, echo: EchoMode) {
        #[cfg(feature = "aec")]
        {
            self.aec = (echo == EchoMode::Aec).then(EchoCanceller::new);
        }
        let _ = echo;
        self.onset_far.clear();
    }

    fn cohost_active(&self) -> bool {
        self.cohost_speaking || self.now_ms < self.cohost_until_ms
    }

    fn mic(
        &mut self,
        samples: &[i16],
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        if self.config.mode == MicMode::Off {
            return;
        }
        self.meter(samples);
        let mut cleaned = Vec::with_capacity(samples.len());
        // The mic's own samples in step with `cleaned` (the canceller delays its output).
        let mut raw = Vec::new();
        #[cfg(feature = "aec")]
        let cancelled = match &mut self.aec {
            Some(aec) => {
                let mut rendered = Vec::with_capacity(samples.len() + AEC_FRAME);
                raw.reserve(samples.len() + AEC_FRAME);
                aec.process_with_reference(samples, &mut cleaned, &mut rendered, &mut raw);
                self.onset_far.extend(rendered);
                true
            }
            None => false,
        };
        #[cfg(not(feature = "aec"))]
        let cancelled = false;
        if !cancelled {
            cleaned.extend_from_slice(samples);
            raw.extend_from_slice(samples);
        }
        // Without a canceller, what the mic hears while the co-host speaks is the co-host.
        let gated = self.config.echo == EchoMode::Gate && self.cohost_active();
        if gated {
            cleaned.iter_mut().for_each(|sample| *sample = 0);
            raw.iter_mut().for_each(|sample| *sample = 0);
        }
        self.now_ms += cleaned.len() as u64 * 1000 / u64::from(ASR_SAMPLE_RATE);
        match self.config.mode {
            MicMode::Vad => {
                self.energy_onsets(samples, gated);
                let mut events = Vec::new();
                self.vad.push_cleaned(&cleaned, &raw, &mut events);
                #[cfg(feature = "aec")]
                if let Some(aec) = self.aec.as_ref().filter(|_| !gated) {
                    let ahead: Vec<i16> = aec.raw_ahead().collect();
                    self.vad.hear_ahead(&ahead, &mut events);
                }
                if let Some(cut) = self.assembler.push(&cleaned) {
                    self.transcribe_final(cut, tasks, token);
                }
                self.vad_events(events, tasks, token);
                self.maybe_probe(tasks, token);
            }
            MicMode::Ptt => {
                if let Some(cut) = self.assembler.push(&cleaned) {
                    self.transcribe_final(cut, tasks, token);
                }
                self.maybe_probe(tasks, token);
            }
            MicMode::Off => {}
        }
        if let Some(action) = self.barge_in.tick(self.now_ms) {
            let reason = match action {
                PlaybackAction::Resume {
                    cause: ResumeCause::TooShort,
                } => DropReason::TooShort,
                _ => DropReason::FalseAlarm,
            };
            self.drop_input(reason, None);
            self.playback(action);
        }
    }

    /// The raw mic (before the AEC's suppressor, which attenuates the streamer during double
    /// talk) through the fast onset: a PAUSE on energy that no echo explains, confirmed or
    /// resumed by the VAD. Not while the VAD already hears speech: an utterance begun before
    /// the co-host spoke is not an interruption (as before this detector).
    fn energy_onsets(&mut self, raw: &[i16], gated: bool) {
        self.onset_near.extend_from_slice(raw);
        while self.onset_near.len() >= ONSET_FRAME {
            let near: Vec<i16> = self.onset_near.drain(..ONSET_FRAME).collect();
            let n_far = self.onset_far.len().min(ONSET_FRAME);
            let far: Vec<i16> = self.onset_far.drain(..n_far).collect();
            let Some(onset) = self.onset.push(&near, &far) else {
                continue;
            };
            if gated || self.vad.logic().is_speaking() {
                continue;
            }
            let speaking = self.cohost_active();
            let voice_by = onset.at_ms + ENERGY_ONSET_VOICE_MS;
            if let Some(action) =
                self.barge_in
                    .energy_onset(onset.at_ms, self.now_ms, speaking, voice_by)
            {
                tracing::debug!(at_ms = onset.at_ms, "energy onset over the co-host");
                self.playback(action);
            }
        }
    }

    fn vad_events(
        &mut self,
        events: Vec<VadEvent>,
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        for event in events {
            match event {
                VadEvent::Onset { at_ms } => {
                    let speaking = self.cohost_active();
                    if let Some(action) =
                        self.barge_in
                            .onset(at_ms, self.vad.logic().now_ms(), speaking)
                    {
                        self.playback(action);
                    }
                }
                VadEvent::SpeechStart { at_ms } => {
                    self.barge_in.voice_heard();
                    self.assembler.start(at_ms);
                    self.utterance_id += 1;
                    self.probe_sent = false;
                }
                VadEvent::OnsetCancelled { .. } => {
                    if let Some(action) = self.barge_in.onset_cancelled() {
                        self.drop_input(DropReason::TooShort, None);
                        self.playback(action);
                    }
                }
                VadEvent::SpeechEnd { end_ms, .. } => {
                    if let Some(utterance) = self.assembler.end(end_ms) {
                        self.transcribe_final(utterance, tasks, token);
                    }
                }
            }
        }
    }

    fn ptt_released(
        &mut self,
        down: u64,
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        if self.now_ms.saturating_sub(down) < self.config.min_ptt_ms {
            self.assembler.abandon();
            self.drop_input(DropReason::TooShort, None);
            if let Some(action) = self.barge_in.utterance_done(ResumeCause::TooShort) {
                self.playback(action);
            }
            return;
        }
        if let Some(utterance) = self.assembler.end(self.now_ms) {
            self.transcribe_final(utterance, tasks, token);
        }
    }

    /// While the co-host is paused, ask the ASR early about the speech so far: waiting for the
    /// end of a long sentence would leave the co-host paused for all of it.
    fn maybe_probe(&mut self, tasks: &tokio_util::task::TaskTracker, token: &CancellationToken) {
        if self.probe_sent || !self.barge_in.is_paused() {
            return;
        }
        let Some(so_far) = self.assembler.open_so_far() else {
            return;
        };
        if so_far.speech_ms() < self.config.barge_in.confirm_speech_ms {
            return;
        }
        self.probe_sent = true;
        self.spawn_asr(so_far, true, tasks, token);
    }

    fn transcribe_final(
        &mut self,
        utterance: Utterance,
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        self.stats.utterances += 1;
        self.spawn_asr(utterance, false, tasks, token);
    }

    fn spawn_asr(
        &mut self,
        utterance: Utterance,
        probe: bool,
        tasks: &tokio_util::task::TaskTracker,
        token: &CancellationToken,
    ) {
        let id = self.utterance_id;
        let speech_ms = utterance.speech_ms();
        let Some(asr) = self.hearing() else {
            if !probe {
                let _ = self.asr_tx.send(AsrDone::Final {
                    speech_ms,
                    result: Err(String::new()),
                });
            }
            return;
        };
        let request = AsrRequest {
            samples: utterance.samples,
            language: self.config.language.clone(),
            correlation_id: format!("mic#{id}"),
        };
        let answers = self.asr_tx.clone();
        let token = token.clone();
        tasks.spawn(async move {
            let mut stream = asr.transcribe(request);
            let result = loop {
                let next = tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(AsrEvent::Partial { text })) => {
                        if !probe {
                            let _ = answers.send(AsrDone::Partial {
                                utterance: id,
                                text,
                            });
                        }
                    }
                    Some(Ok(AsrEvent::Final(transcript))) => break Ok(transcript),
                    Some(Err(error)) => break Err(error.to_string()),
                    None => break Err("the ASR ended without a transcript".to_owned()),
                }
            };
            let done = if probe {
                AsrDone::Probe {
                    utterance: id,
                    speech_ms,
                    result,
                }
            } else {
                AsrDone::Final { speech_ms, result }
            };
            let _ = answers.send(done);
        });
    }

    fn asr_done(&mut self, done: AsrDone) {
        match done {
            AsrDone::Partial { utterance, text } => {
                self.emit(VoiceEffect::Partial { text: text.clone() });
                if utterance == self.utterance_id {
                    self.confirm(&text, 0);
                }
            }
            AsrDone::Probe {
                utterance,
                speech_ms,
                result,
            } => {
                if utterance == self.utterance_id
                    && let Ok(transcript) = result
                {
                    self.confirm(&transcript.text, speech_ms);
                }
            }
            AsrDone::Final {
                speech_ms, result, ..
            } => self.final_transcript(speech_ms, result),
        }
    }

    /// Words heard while paused: a STOP if they are real and not the co-host's own.
    fn confirm(&mut self, text: &str, speech_ms: u64) {
        if !self.barge_in.is_paused() || self.is_echo(text) {
            return;
        }
        if let Some(action) = self.barge_in.heard(word_count(text), speech_ms) {
            self.playback(action);
        }
    }

    fn is_echo(&self, text: &str) -> bool {
        let recent = self.cohost_active() || self.barge_in.is_paused();
        recent && is_echo(text, self.spoken.iter().map(String::as_str))
    }

    /// The ASR to hear with now: `None` when there is none, or it is a switch that is off (its
    /// name says `off`; the app's ASR can be turned off while it runs).
    fn hearing(&self) -> Option<Arc<dyn AsrProvider>> {
        self.asr.clone().filter(|asr| asr.name() != "off")
    }

    fn final_transcript(&mut self, speech_ms: u64, result: Result<Transcript, String>) {
        let transcript = match result {
            Ok(transcript) => transcript,
            Err(message) => {
                let reason = if self.hearing().is_none() {
                    DropReason::AsrOff
                } else {
                    DropReason::AsrFailed
                };
                self.drop_input(reason, (!message.is_empty()).then_some(message));
                self.utterance_done(ResumeCause::NoWords);
                return;
            }
        };
        let text = transcript.text.trim().to_owned();
        let words = word_count(&text);
        if words == 0 {
            self.drop_input(DropReason::Empty, None);
            self.utterance_done(ResumeCause::NoWords);
            return;
        }
        if self.is_echo(&text) {
            self.drop_input(DropReason::Echo, Some(text));
            self.utterance_done(ResumeCause::Echo);
            return;
        }
        if self.barge_in.is_paused() {
            match self.barge_in.heard(words, speech_ms) {
                Some(action) => self.playback(action),
                None => {
                    self.drop_input(DropReason::FalseAlarm, Some(text));
                    self.utterance_done(ResumeCause::NoWords);
                    return;
                }
            }
        }
        let barged_in = self.barge_in.has_stopped();
        self.stats.submitted += 1;
        self.emit(VoiceEffect::Submit(HeardUtterance {
            text,
            language: transcript.language,
            confidence: transcript.confidence,
            duration_ms: transcript.duration_ms.max(speech_ms),
            barged_in,
        }));
        self.utterance_done(ResumeCause::NoWords);
    }

    fn utterance_done(&mut self, cause: ResumeCause) {
        if let Some(action) = self.barge_in.utterance_done(cause) {
            self.playback(action);
        }
    }

    fn drop_input(&mut self, reason: DropReason, text: Option<String>) {
        if reason == DropReason::Echo {
            self.stats.dropped_echo += 1;
        } else {
            self.stats.dropped_other += 1;
        }
        tracing::debug!(reason = reason.as_str(), "voice input dropped");
        self.emit(VoiceEffect::Dropped { reason, text });
    }

    fn meter(&mut self, samples: &[i16]) {
        for &sample in samples {
            let x = f64::from(sample) / 32_768.0;
            self.level_sum += x * x;
        }
        self.level_n += samples.len();
        let now = self.now_ms;
        if now.saturating_sub(self.level_last_ms) < self.config.level_every_ms || self.level_n == 0
        {
            return;
        }
        let rms = (self.level_sum / self.level_n as f64).sqrt();
        let rms_dbfs = if rms > 0.0 {
            (20.0 * rms.log10()).max(-100.0) as f32
        } else {
            -100.0
        };
        self.level_sum = 0.0;
        self.level_n = 0;
        self.level_last_ms = now;
        let effect = VoiceEffect::Level {
            rms_dbfs,
            voice: self.vad.last_score(),
            speaking: self.vad.logic().is_speaking() || self.ptt_down_at.is_some(),
        };
        self.emit(effect);
    }

    fn playback(&mut self, action: PlaybackAction) {
        let at_ms = self.now_ms;
        self.emit(VoiceEffect::Playback { action, at_ms });
    }

    fn emit(&mut self, effect: VoiceEffect) {
        self.stats.barge_in = self.barge_in.stats();
        // The driver going away ends the app's voice input; nothing else to do with it.
        let _ = self.effects.send(effect);
    }

    fn publish_stats(&mut self) {
        self.stats.barge_in = self.barge_in.stats();
        if let Ok(mut out) = self.stats_out.lock() {
            *out = self.stats;
        }
    }
}
