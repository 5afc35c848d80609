//! What a failover chain (`llm_chain`, `tts_chain`) tells `/health`, `/metrics` and the status
//! bar about each of its providers. The chains themselves live in `koto_providers::failover`.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainLinkStatus {
    /// As configured (`openai gpt-4o-mini @ 127.0.0.1:8080`, `espeak-ng`).
    pub label: String,
    pub provider: &'static str,
    /// The circuit breaker: `closed` | `open` | `half_open`.
    pub state: &'static str,
    /// Failures in a row so far.
    pub failures: u32,
    /// How often the breaker opened since start.
    pub opened_count: u64,
    pub last_error: Option<String>,
    /// This provider served the last request.
    pub current: bool,
}
