//! LLM providers: `mock` (deterministic, the embedded default) and `openai` (OpenAI-compatible
//! streaming). `sse` and `chunk` are the OpenAI client's wire parsing, kept free of IO.

mod chunk;
pub mod mock;
pub mod models;
pub mod openai;
pub mod sse;

pub use mock::MockLlm;

/// Fuzzing and corpus-replay entry (`fuzz/`): one SSE event read as the OpenAI client reads it,
/// as the number of signals it carries; `Err` is an event the client fails the reply on.
#[doc(hidden)]
pub fn fuzz_read_event(event: &sse::SseEvent) -> Result<usize, koto_core::ProviderError> {
    let mut signals = Vec::new();
    chunk::read_event(event, &mut signals)?;
    Ok(signals.len())
}
pub use openai::{OpenAiConfig, OpenAiLlm};
