//! The error every provider (LLM, TTS, ASR) returns; callers branch on the variant.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Connect, first-token or idle timeout; the message says which.
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("rate limited by the provider (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider rejected the credentials: {0}")]
    Auth(String),
    /// Could not reach the provider, or the connection broke.
    #[error("transport error: {0}")]
    Transport(String),
    /// The provider answered something we cannot understand, or an error status.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Configured but not usable here (missing binary, missing model, …).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

impl ProviderError {
    /// Worth trying again (before any output reached the user).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout(_)
                | ProviderError::Transport(_)
                | ProviderError::RateLimited { .. }
        )
    }
}
