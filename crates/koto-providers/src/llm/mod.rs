//! LLM providers: `mock` (deterministic, the embedded default) and `openai` (OpenAI-compatible
//! streaming). `sse` and `chunk` are the OpenAI client's wire parsing, kept free of IO.

mod chunk;
pub mod mock;
pub mod models;
pub mod openai;
pub mod sse;

pub use mock::MockLlm;
pub use openai::{OpenAiConfig, OpenAiLlm};
