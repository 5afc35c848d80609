//! The LLM provider trait: a chat request in, a stream of text deltas out.
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

/// A stream of text deltas. Ends normally when the reply is complete; yields at most one `Err`,
/// after which it ends.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<String, ProviderError>> + Send + 'static>>;

pub trait LlmProvider: Send + Sync + 'static {
    /// Short name for `/health` and logs (`mock`, `openai`).
    fn name(&self) -> &'static str;
    /// Model name for `/health`.
    fn model(&self) -> String;
    /// Start a streamed completion. Lazy: nothing happens until the stream is polled.
    fn stream_chat(&self, request: LlmRequest) -> LlmStream;
}
