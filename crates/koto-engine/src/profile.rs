//! What the engine answers with: its settings ([`EngineConfig`], [`Flags`]) and the
//! [`Profile`] (settings + LLM + voice) a turn keeps to its end. Plain data; the engine and the
//! turn task both read it, neither is needed to build it.

use std::sync::Arc;
use std::time::Duration;

use koto_core::lang::DefaultLang;
use koto_core::llm::LlmProvider;
use koto_core::output_filter::{FilterAction, OutputFilter};
use koto_core::segmenter::SegmenterConfig;
use koto_core::tts::Voice;

/// CONTRACTS §6 flags. Each has a visible effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `ENABLE_SYNC_CORE`: off → `/chat/stream` refuses with `sync_core_disabled`.
    pub sync_core: bool,
    /// `SYNC_TTS_STREAMING`: off → text only, no audio.
    pub tts_streaming: bool,
    /// `SYNC_TTS_BARGE_IN`: off → STOP is refused with `barge_in_disabled`.
    pub barge_in: bool,
    /// `ENABLE_ASYNC_EXT`: off → no outbox events are written.
    pub async_ext: bool,
    /// `ENABLE_LTM_INLINE`: on → recalled memories are added to the prompt.
    pub ltm_inline: bool,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            sync_core: true,
            tts_streaming: true,
            barge_in: true,
            async_ext: true,
            ltm_inline: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub system_prompt: String,
    /// How long the first segment may wait for a clause break before it goes to TTS anyway.
    pub first_clause_wait: Duration,
    pub segmenter: SegmenterConfig,
    /// `STM_CONTEXT_TURNS`: how many earlier turns go into the prompt.
    pub context_turns: usize,
    pub max_content_chars: usize,
    pub flags: Flags,
    /// Memories recalled into a prompt (`LTM_TOP_K`).
    pub recall_top_k: usize,
    /// Upper bound on a recall (`LTM_INLINE_BUDGET_MS`).
    pub recall_budget: Duration,
    /// `DEFAULT_LANG`: the language replies are spoken in (see `koto_core::lang::speech_lang`).
    pub default_lang: DefaultLang,
    /// `MAX_REPLY_SECONDS`: speech per reply; the reply ends at the first segment boundary past
    /// it (the LLM request ends there too). `None`: no cap.
    pub max_reply_spoken: Option<Duration>,
    /// `SHOW_REASONING`: a reasoning model's thinking goes to `/ws/live` clients as
    /// `REASONING_DELTA` (the panel shows it dimmed); it is never spoken, stored or re-prompted.
    pub show_reasoning: bool,
    /// `QUICK_ACK_MS`: a filler plays when no clause reached TTS this long after the input;
    /// `None`: off.
    pub quick_ack_after: Option<Duration>,
    /// `OUTPUT_FILTER_WORDS` (`None`: no filter) and what a hit does (`OUTPUT_FILTER_ACTION`),
    /// applied to each segment before it is synthesised.
    pub output_filter: Option<(Arc<OutputFilter>, FilterAction)>,
    /// `VETO_WINDOW_MS`: the reply's first line is held this long (from when it was cut, that
    /// is shown on the panel) before it is heard, for the streamer's veto; `None`: off.
    pub veto_window: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            system_prompt: String::new(),
            first_clause_wait: Duration::from_millis(250),
            segmenter: SegmenterConfig::default(),
            context_turns: 20,
            max_content_chars: 4000,
            flags: Flags::default(),
            recall_top_k: 3,
            recall_budget: Duration::from_millis(150),
            default_lang: DefaultLang::Auto,
            max_reply_spoken: Some(Duration::from_secs(90)),
            show_reasoning: false,
            quick_ack_after: None,
            output_filter: None,
            veto_window: None,
        }
    }
}

/// What turns are answered with: the settings and providers a streamer may change while the app
/// runs. A turn takes one snapshot when it is submitted and keeps it to its end, so a change
/// never mixes two personas or two voices in one reply; [`Engine::reconfigure`](crate::Engine::reconfigure) swaps it for the
/// turns after.
#[derive(Clone)]
pub struct Profile {
    pub config: EngineConfig,
    pub llm: Arc<dyn LlmProvider>,
    /// `None`: text only.
    pub voice: Option<Arc<dyn Voice>>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("config", &self.config)
            .field("llm", &self.llm.name())
            .field("voice", &self.voice.as_ref().map(|voice| voice.name()))
            .finish()
    }
}
