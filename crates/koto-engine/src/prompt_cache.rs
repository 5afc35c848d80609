//! Warming a local server's prompt cache between turns.
//!
//! The memory window drops its older half when it is full (`context::window_start`), so the
//! prompt after a drop shares nothing beyond the system prompt with what the server has cached,
//! and that one turn pays for re-evaluating the whole remaining history: 2.9–3.6 s with
//! SmolLM2-135M on two cores, against ~250 ms for the turns around it. When the turn that ends
//! now is the last before a drop, the next prompt's prefix is already known (the system prompt
//! and the turns the next window keeps), so it is sent now, while the stream goes on, and the
//! next turn finds it cached. Only for a server on this machine that caches prompts
//! (`LlmProvider::caches_prompts`): a cloud API would bill the request.

use std::time::Duration;

use futures_util::StreamExt;
use koto_core::llm::LlmRequest;

use crate::context::{prompt_prefix, window_start};
use crate::job::TurnJob;
use crate::store_calls::blocking;

/// A warm-up evaluates the whole window once; a slow machine and a big model take a while.
const WARM_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends the next window's prefix to the LLM if the next turn starts a new window.
pub(crate) fn warm_next_window(job: &TurnJob) {
    let config = &job.profile.config;
    let window = config.context_turns;
    let next = job.turn.0 + 1;
    let start = window_start(next, window);
    if window == 0 || !job.profile.llm.caches_prompts() || start == window_start(job.turn.0, window)
    {
        return;
    }
    let store = job.services.store.clone();
    let session = job.slot.id.clone();
    let llm = job.profile.llm.clone();
    let system_prompt = config.system_prompt.clone();
    let lang = job.lang.clone();
    let correlation_id = format!("{}#warm", job.correlation_id);
    tokio::spawn(async move {
        let history = match blocking(move || store.context(&session, window)).await {
            Ok(history) => history,
            Err(error) => {
                tracing::debug!(%error, "no prompt-cache warm-up: the history could not be read");
                return;
            }
        };
        let history: Vec<_> = history
            .into_iter()
            .filter(|turn| turn.turn.0 >= start)
            .collect();
        if history.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let mut deltas = llm.stream_chat(LlmRequest {
            messages: prompt_prefix(&system_prompt, &history),
            lang,
            correlation_id: correlation_id.clone(),
        });
        // The server has evaluated the prompt once its first token comes; dropping the stream
        // then ends the request (the generation is not wanted).
        match tokio::time::timeout(WARM_TIMEOUT, deltas.next()).await {
            Ok(Some(Ok(_))) => tracing::debug!(
                correlationId = %correlation_id,
                turns = history.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "warmed the LLM's prompt cache for the next window"
            ),
            Ok(Some(Err(error))) => tracing::debug!(
                correlationId = %correlation_id,
                %error,
                "the prompt-cache warm-up failed (the next turn evaluates the window itself)"
            ),
            Ok(None) | Err(_) => tracing::debug!(
                correlationId = %correlation_id,
                "the prompt-cache warm-up got no token"
            ),
        }
    });
}
