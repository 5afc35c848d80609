//! `ScriptedLlm`: an in-process LLM whose replies a test writes down, for engine timelines under
//! paused tokio time. Records every request so tests can assert on the prompt.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use koto_core::ProviderError;
use koto_core::llm::{LlmDelta, LlmProvider, LlmRequest, LlmStream};

/// One step of a scripted reply.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait (tokio time), then yield this text delta.
    Delta(Duration, String),
    /// Wait, then yield this reasoning delta (`reasoning_content`).
    Reasoning(Duration, String),
    /// Yield `LlmDelta::Capped` (the server's length cap) and end.
    Capped,
    /// Yield this error and end.
    Fail(ProviderError),
    /// Never yield again (a hung upstream).
    Hang,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptedLlm {
    replies: Arc<Mutex<VecDeque<Vec<Step>>>>,
    requests: Arc<Mutex<Vec<LlmRequest>>>,
    /// Reply streams not yet dropped: an upstream connection still held open.
    open: Arc<std::sync::atomic::AtomicUsize>,
    /// Claims a prompt cache, as a loopback server does (`LlmProvider::caches_prompts`).
    prompt_cache: bool,
}

impl ScriptedLlm {
    pub fn new() -> Self {
        ScriptedLlm::default()
    }

    /// A scripted server that claims a prompt cache (a loopback llama.cpp).
    pub fn with_prompt_cache() -> Self {
        ScriptedLlm {
            prompt_cache: true,
            ..ScriptedLlm::default()
        }
    }

    /// Queues the reply for the next call. Calls beyond the queue get `["ok."]` at once.
    pub fn push_reply(&self, steps: Vec<Step>) -> &Self {
        self.replies.lock().expect("script lock").push_back(steps);
        self
    }

    /// A reply of `tokens`, each after `gap`.
    pub fn push_tokens(&self, gap: Duration, tokens: &[&str]) -> &Self {
        self.push_reply(
            tokens
                .iter()
                .map(|token| Step::Delta(gap, (*token).to_owned()))
                .collect(),
        )
    }

    pub fn requests(&self) -> Vec<LlmRequest> {
        self.requests.lock().expect("request log lock").clone()
    }

    /// Reply streams the caller still holds (for a real server: open upstream requests).
    pub fn open_streams(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl LlmProvider for ScriptedLlm {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn model(&self) -> String {
        "script".into()
    }

    fn caches_prompts(&self) -> bool {
        self.prompt_cache
    }

    fn stream_chat(&self, request: LlmRequest) -> LlmStream {
        self.requests
            .lock()
            .expect("request log lock")
            .push(request);
        let steps = self
            .replies
            .lock()
            .expect("script lock")
            .pop_front()
            .unwrap_or_else(|| vec![Step::Delta(Duration::ZERO, "ok.".into())]);
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let guard = LiveGuard(self.open.clone());
        Box::pin(stream::unfold(
            (VecDeque::from(steps), guard),
            |(mut steps, guard)| async move {
                match steps.pop_front()? {
                    Step::Delta(gap, text) => {
                        tokio::time::sleep(gap).await;
                        Some((Ok(LlmDelta::Text(text)), (steps, guard)))
                    }
                    Step::Reasoning(gap, text) => {
                        tokio::time::sleep(gap).await;
                        Some((Ok(LlmDelta::Reasoning(text)), (steps, guard)))
                    }
                    Step::Capped => {
                        steps.clear();
                        Some((Ok(LlmDelta::Capped), (steps, guard)))
                    }
                    Step::Fail(error) => {
                        steps.clear();
                        Some((Err(error), (steps, guard)))
                    }
                    Step::Hang => {
                        std::future::pending::<()>().await;
                        None
                    }
                }
            },
        ))
    }
}

/// `ScriptedVoice`: a [`Voice`] that speaks `chunks_per_char` 20 ms chunks of a constant tone per
/// character of the text, each after `chunk_gap` (tokio time), and logs what it was asked to say.
/// A text containing `fail_on` yields an error after its first chunk; one containing
/// `panic_on` panics there (a provider bug).
#[derive(Debug, Clone)]
pub struct ScriptedVoice {
    pub chunks_per_char: usize,
    pub chunk_gap: Duration,
    pub fail_on: Option<String>,
    pub panic_on: Option<String>,
    /// `(text, lang)` of every request, in order.
    spoken: Arc<Mutex<Vec<SpokenRequest>>>,
    /// Syntheses started and not yet dropped (a stopped turn must leave none running).
    live: Arc<std::sync::atomic::AtomicUsize>,
}

/// `(text, lang)` of one synthesis request.
pub type SpokenRequest = (String, Option<String>);

pub const VOICE_RATE: u32 = 24_000;
const CHUNK_SAMPLES: usize = 480;

impl ScriptedVoice {
    pub fn new(chunks_per_char: usize, chunk_gap: Duration) -> Self {
        ScriptedVoice {
            chunks_per_char,
            chunk_gap,
            fail_on: None,
            panic_on: None,
            spoken: Arc::default(),
            live: Arc::default(),
        }
    }

    /// Texts synthesis was started for, in order.
    pub fn spoken(&self) -> Vec<String> {
        let spoken = self.spoken.lock().expect("voice log lock");
        spoken.iter().map(|(text, _)| text.clone()).collect()
    }

    /// `(text, lang)` of every synthesis started, in order: which language each was asked in.
    pub fn spoken_with_lang(&self) -> Vec<SpokenRequest> {
        self.spoken.lock().expect("voice log lock").clone()
    }

    /// Syntheses currently running.
    pub fn live_syntheses(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct LiveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl koto_core::tts::Voice for ScriptedVoice {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn sample_rate(&self) -> u32 {
        VOICE_RATE
    }

    fn speak(&self, request: koto_core::tts::TtsRequest) -> koto_core::tts::ChunkStream {
        self.spoken
            .lock()
            .expect("voice log lock")
            .push((request.text.clone(), request.lang.clone()));
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        let total = request.text.chars().count() * self.chunks_per_char;
        let fails = self
            .fail_on
            .as_ref()
            .is_some_and(|needle| request.text.contains(needle.as_str()));
        let panics = self
            .panic_on
            .as_ref()
            .is_some_and(|needle| request.text.contains(needle.as_str()));
        let gap = self.chunk_gap;
        Box::pin(stream::unfold(
            (0usize, guard),
            move |(n, guard)| async move {
                if n >= total || (fails && n > 1) {
                    return None;
                }
                tokio::time::sleep(gap).await;
                #[allow(clippy::panic)]
                if panics && n == 1 {
                    panic!("scripted TTS panic");
                }
                if fails && n == 1 {
                    return Some((
                        Err(ProviderError::Transport("scripted TTS failure".into())),
                        (n + 1, guard),
                    ));
                }
                let chunk = koto_core::tts::AudioChunk {
                    samples: vec![1000; CHUNK_SAMPLES],
                    mouth_open: 0.5,
                };
                Some((Ok(chunk), (n + 1, guard)))
            },
        ))
    }
}
