//! Voice barge-in that does not cut itself off: pause on a voice onset, STOP only once the ASR
//! has confirmed real words, else resume where playback paused.
//!
//! Pure state over the audio clock (ms since the mic stream began): the pipeline tells it what
//! the VAD and the ASR saw, it answers with what to do to playback. It does not decide whether
//! a transcript is echo (the caller filters those out before calling).

/// `VOICE_BARGE_IN_*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BargeInConfig {
    /// Whether a voice onset may interrupt the co-host at all (`VOICE_BARGE_IN`).
    pub enabled: bool,
    /// A transcript with at least this many words confirms at once.
    pub confirm_words: usize,
    /// Or any words once this much speech was heard.
    pub confirm_speech_ms: u64,
    /// Unconfirmed this long after the onset: resume (the false alarm is counted).
    pub window_ms: u64,
}

impl Default for BargeInConfig {
    fn default() -> Self {
        BargeInConfig {
            enabled: false,
            confirm_words: 2,
            confirm_speech_ms: 600,
            window_ms: 3_000,
        }
    }
}

/// What playback must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackAction {
    Pause,
    Resume {
        cause: ResumeCause,
    },
    /// STOP through the one stop path; the utterance becomes the next turn.
    Stop,
}

/// Why a pause ended without a STOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeCause {
    /// The onset was not speech (shorter than the VAD's minimum).
    TooShort,
    /// The ASR heard no words (or too few, too briefly).
    NoWords,
    /// Nothing confirmed within the window.
    Window,
    /// The transcript was the co-host's own voice.
    Echo,
    /// A saved setting turned barge-in off, or ended the utterance that paused it.
    Reconfigured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listening,
    Paused {
        onset_ms: u64,
        deadline_ms: u64,
        /// A pause on energy alone: resumed unless the VAD hears voice by then.
        voice_by_ms: Option<u64>,
    },
    /// STOP sent; the utterance's final transcript is the next turn.
    Stopped,
}

/// Counters for `/health` and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BargeInStats {
    pub pauses: u64,
    pub stops: u64,
    pub false_alarms: u64,
    /// Audio ms from the onset's first voiced frame to the pause, the last time.
    pub last_onset_to_pause_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct BargeIn {
    config: BargeInConfig,
    phase: Phase,
    stats: BargeInStats,
}

impl BargeIn {
    pub fn new(config: BargeInConfig) -> Self {
        BargeIn {
            config,
            phase: Phase::Listening,
            stats: BargeInStats::default(),
        }
    }

    pub fn stats(&self) -> BargeInStats {
        self.stats
    }

    pub fn is_paused(&self) -> bool {
        matches!(self.phase, Phase::Paused { .. })
    }

    /// Whether an utterance now in progress interrupted the co-host (its final is the next turn).
    pub fn has_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Whether `words` over `speech_ms` of speech are real words by the configured rule.
    pub fn confirms(&self, words: usize, speech_ms: u64) -> bool {
        words >= self.config.confirm_words
            || (words >= 1 && speech_ms >= self.config.confirm_speech_ms)
    }

    /// The VAD saw an onset dated `onset_ms`, reported at `now_ms`.
    pub fn onset(
        &mut self,
        onset_ms: u64,
        now_ms: u64,
        cohost_speaking: bool,
    ) -> Option<PlaybackAction> {
        self.voice_heard();
        self.pause(onset_ms, now_ms, cohost_speaking, None)
    }

    /// An onset on energy alone (the raw mic louder than any echo could be), dated `onset_ms`:
    /// a pause that resumes at `voice_by_ms` unless the VAD hears voice first
    /// ([`voice_heard`](Self::voice_heard)).
    pub fn energy_onset(
        &mut self,
        onset_ms: u64,
        now_ms: u64,
        cohost_speaking: bool,
        voice_by_ms: u64,
    ) -> Option<PlaybackAction> {
        self.pause(onset_ms, now_ms, cohost_speaking, Some(voice_by_ms))
    }

    /// The VAD heard voice (an onset or the start of speech): an energy pause stands.
    pub fn voice_heard(&mut self) {
        if let Phase::Paused { voice_by_ms, .. } = &mut self.phase {
            *voice_by_ms = None;
        }
    }

    fn pause(
        &mut self,
        onset_ms: u64,
        now_ms: u64,
        cohost_speaking: bool,
        voice_by_ms: Option<u64>,
    ) -> Option<PlaybackAction> {
        if !self.config.enabled || !cohost_speaking || self.phase != Phase::Listening {
            return None;
        }
        self.phase = Phase::Paused {
            onset_ms,
            deadline_ms: onset_ms + self.config.window_ms,
            voice_by_ms,
        };
        self.stats.pauses += 1;
        self.stats.last_onset_to_pause_ms = Some(now_ms.saturating_sub(onset_ms));
        Some(PlaybackAction::Pause)
    }

    /// The onset ended before it was speech.
    pub fn onset_cancelled(&mut self) -> Option<PlaybackAction> {
        self.resume(ResumeCause::TooShort)
    }

    /// A transcript (partial, probe or final, echo already removed) of `words` words over
    /// `speech_ms` of speech.
    pub fn heard(&mut self, words: usize, speech_ms: u64) -> Option<PlaybackAction> {
        if !self.is_paused() || !self.confirms(words, speech_ms) {
            return None;
        }
        self.phase = Phase::Stopped;
        self.stats.stops += 1;
        Some(PlaybackAction::Stop)
    }

    /// The utterance's final transcript was handled (`cause` if it was not real words); the
    /// machine listens for the next onset.
    pub fn utterance_done(&mut self, cause: ResumeCause) -> Option<PlaybackAction> {
        if self.phase == Phase::Stopped {
            self.phase = Phase::Listening;
            return None;
        }
        self.resume(cause)
    }

    /// New rules (a saved setting). A pause in progress keeps its deadline; if barge-in is
    /// turned off during one, playback resumes at once: the co-host is never left paused by a
    /// rule that no longer exists. A STOP already sent stands.
    pub fn set_config(&mut self, config: BargeInConfig) -> Option<PlaybackAction> {
        self.config = config;
        if config.enabled {
            return None;
        }
        self.resume(ResumeCause::Reconfigured)
    }

    /// The audio clock moved to `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Option<PlaybackAction> {
        match self.phase {
            Phase::Paused { deadline_ms, .. } if now_ms >= deadline_ms => {
                self.resume(ResumeCause::Window)
            }
            Phase::Paused {
                voice_by_ms: Some(voice_by_ms),
                ..
            } if now_ms >= voice_by_ms => self.resume(ResumeCause::TooShort),
            _ => None,
        }
    }

    /// The co-host stopped by another path (a STOP, the reply ended): nothing to resume.
    pub fn cohost_ended(&mut self) {
        if self.is_paused() {
            self.phase = Phase::Listening;
        }
    }

    /// Audio ms of the pause so far, if paused.
    pub fn paused_since(&self) -> Option<u64> {
        match self.phase {
            Phase::Paused { onset_ms, .. } => Some(onset_ms),
            _ => None,
        }
    }

    fn resume(&mut self, cause: ResumeCause) -> Option<PlaybackAction> {
        if !self.is_paused() {
            return None;
        }
        self.phase = Phase::Listening;
        self.stats.false_alarms += 1;
        Some(PlaybackAction::Resume { cause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> BargeIn {
        BargeIn::new(BargeInConfig {
            enabled: true,
            ..BargeInConfig::default()
        })
    }

    #[test]
    fn a_cough_pauses_then_resumes_and_counts_a_false_alarm() {
        let mut barge_in = enabled();
        assert_eq!(
            barge_in.onset(1_000, 1_016, true),
            Some(PlaybackAction::Pause)
        );
        assert_eq!(
            barge_in.onset_cancelled(),
            Some(PlaybackAction::Resume {
                cause: ResumeCause::TooShort
            })
        );
        assert_eq!(barge_in.stats().false_alarms, 1);
        assert_eq!(barge_in.stats().stops, 0, "a cough never stops the co-host");
        assert_eq!(barge_in.stats().last_onset_to_pause_ms, Some(16));
    }

    #[test]
    fn a_real_sentence_pauses_then_stops_and_the_final_is_the_turn() {
        let mut barge_in = enabled();
        assert_eq!(
            barge_in.onset(1_000, 1_032, true),
            Some(PlaybackAction::Pause)
        );
        assert_eq!(
            barge_in.heard(1, 300),
            None,
            "one word over 300 ms is not enough"
        );
        assert_eq!(barge_in.heard(3, 700), Some(PlaybackAction::Stop));
        assert!(
            barge_in.has_stopped(),
            "the final transcript becomes the next turn"
        );
        assert_eq!(barge_in.tick(10_000), None, "no resume after a STOP");
        assert_eq!(barge_in.utterance_done(ResumeCause::NoWords), None);
        assert_eq!(barge_in.stats().stops, 1);
        assert_eq!(barge_in.stats().false_alarms, 0);
    }

    #[test]
    fn one_word_confirms_once_enough_speech_was_heard() {
        let mut barge_in = enabled();
        barge_in.onset(0, 32, true);
        assert_eq!(
            barge_in.heard(1, 600),
            Some(PlaybackAction::Stop),
            "“wait!” held 600 ms"
        );
    }

    #[test]
    fn nothing_confirmed_within_the_window_resumes() {
        let mut barge_in = enabled();
        barge_in.onset(5_000, 5_032, true);
        assert_eq!(barge_in.tick(7_999), None);
        assert_eq!(
            barge_in.tick(8_000),
            Some(PlaybackAction::Resume {
                cause: ResumeCause::Window
            })
        );
        assert_eq!(
            barge_in.heard(5, 2_000),
            None,
            "too late: playback already resumed"
        );
    }

    #[test]
    fn no_barge_in_when_off_or_when_the_co_host_is_silent() {
        let mut off = BargeIn::new(BargeInConfig::default());
        assert_eq!(
            off.onset(0, 32, true),
            None,
            "VOICE_BARGE_IN is off by default"
        );
        let mut barge_in = enabled();
        assert_eq!(barge_in.onset(0, 32, false), None, "nothing to pause");
        assert_eq!(barge_in.heard(5, 2_000), None);
    }

    #[test]
    fn an_energy_pause_resumes_unless_the_vad_hears_voice_in_time() {
        let mut clap = enabled();
        assert_eq!(
            clap.energy_onset(1_000, 1_020, true, 1_500),
            Some(PlaybackAction::Pause)
        );
        assert_eq!(clap.tick(1_499), None);
        assert_eq!(
            clap.tick(1_500),
            Some(PlaybackAction::Resume {
                cause: ResumeCause::TooShort
            }),
            "a clap: no voice followed"
        );
        assert_eq!(clap.stats().false_alarms, 1);

        let mut voice = enabled();
        voice.energy_onset(1_000, 1_020, true, 1_500);
        assert_eq!(
            voice.onset(1_010, 1_140, true),
            None,
            "already paused: the VAD's onset only confirms it"
        );
        assert_eq!(voice.tick(1_500), None, "voice heard: the pause stands");
        assert_eq!(voice.heard(3, 700), Some(PlaybackAction::Stop));
        assert_eq!(voice.stats().last_onset_to_pause_ms, Some(20));
    }

    #[test]
    fn a_stop_from_elsewhere_while_paused_needs_no_resume() {
        let mut barge_in = enabled();
        barge_in.onset(0, 32, true);
        barge_in.cohost_ended();
        assert_eq!(barge_in.onset_cancelled(), None);
        assert_eq!(barge_in.stats().false_alarms, 0);
    }

    #[test]
    fn turning_barge_in_off_while_paused_resumes_and_on_again_pauses() {
        let mut barge_in = BargeIn::new(BargeInConfig::default());
        assert_eq!(barge_in.onset(0, 32, true), None, "off: no pause");
        assert_eq!(
            barge_in.set_config(BargeInConfig {
                enabled: true,
                ..BargeInConfig::default()
            }),
            None,
            "nothing to resume"
        );
        assert_eq!(
            barge_in.onset(1_000, 1_032, true),
            Some(PlaybackAction::Pause)
        );
        assert_eq!(
            barge_in.set_config(BargeInConfig::default()),
            Some(PlaybackAction::Resume {
                cause: ResumeCause::Reconfigured
            }),
            "turned off mid-pause: the co-host resumes, never stays paused"
        );
        assert!(!barge_in.is_paused());
        assert_eq!(barge_in.onset(2_000, 2_032, true), None, "off again");
    }
}
