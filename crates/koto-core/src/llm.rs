//! The LLM provider trait: a chat request in, a stream of reply deltas (text, reasoning) out.
//!
//! Cancellation is by drop: dropping the stream must abort the upstream request (close the
//! connection), so a STOP or a client disconnect stops generation upstream too.

use std::pin::Pin;

use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub messages: Vec<ChatMessage>,
    /// BCP-47-ish language hint from `meta.lang` (`zh`, `en`, `ja`), if the client gave one.
    pub lang: Option<String>,
    /// Correlation id for upstream logs (`sessionId#turn`).
    pub correlation_id: String,
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmDelta {
    /// Reply text: shown, spoken, stored and sent back in later prompts.
    Text(String),
    /// The model thinking aloud (`reasoning_content`, or inline `<think>…</think>` split off by
    /// [`crate::think::ThinkSplitter`]): proof the model is working, never spoken, never stored
    /// as the reply, never sent back.
    Reasoning(String),
    /// The server stopped the reply at its length cap (`finish_reason: "length"`); the stream
    /// ends after it.
    Capped,
}

impl LlmDelta {
    pub fn text(text: impl Into<String>) -> LlmDelta {
        LlmDelta::Text(text.into())
    }
}

/// A stream of reply deltas. Ends normally when the reply is complete; yields at most one
/// `Err`, after which it ends.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmDelta, ProviderError>> + Send + 'static>>;

pub trait LlmProvider: Send + Sync + 'static {
    /// Short name for `/health` and logs (`mock`, `openai`).
    fn name(&self) -> &'static str;
    /// Model name for `/health`.
    fn model(&self) -> String;
    /// Start a streamed completion. Lazy: nothing happens until the stream is polled.
    fn stream_chat(&self, request: LlmRequest) -> LlmStream;
    /// True for a server on this machine that keeps a prompt cache (llama.cpp, LM Studio,
    /// Ollama): the engine may then warm it with a prompt's new prefix between turns. Never for
    /// a cloud API, where that request would be billed.
    fn caches_prompts(&self) -> bool {
        false
    }
    /// A failover chain's providers and their breakers (`llm_chain`); `None` for one provider.
    fn chain(&self) -> Option<Vec<crate::chain_status::ChainLinkStatus>> {
        None
    }
}
