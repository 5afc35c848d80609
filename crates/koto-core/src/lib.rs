//! Kotodama's shared vocabulary: ids, languages, provider traits, turn outcomes and the segmenter.
//!
//! Architecture invariant: this crate does no IO and knows nothing of tokio, HTTP, SQLite or any
//! vendor. Provider *traits* live here; their implementations live in `koto-providers`.

pub mod asr;
pub mod chain_status;
pub mod chat;
pub mod chat_queue;
pub mod ids;
pub mod lang;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod output_filter;
pub mod provider_error;
pub mod segmenter;
pub mod think;
pub mod tts;
pub mod turn;

pub use ids::{CorrelationId, InvalidSessionId, SessionId, TurnNo};
pub use provider_error::ProviderError;
