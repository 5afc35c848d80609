//! `ScriptedLlm`: an in-process LLM whose replies a test writes down, for engine timelines under
//! paused tokio time. Records every request so tests can assert on the prompt.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use koto_core::ProviderError;
use koto_core::llm::{LlmProvider, LlmRequest, LlmStream};

/// One step of a scripted reply.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait (tokio time), then yield this delta.
    Delta(Duration, String),
    /// Yield this error and end.
    Fail(ProviderError),
    /// Never yield again (a hung upstream).
    Hang,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptedLlm {
    replies: Arc<Mutex<VecDeque<Vec<Step>>>>,
    requests: Arc<Mutex<Vec<LlmRequest>>>,
}

impl ScriptedLlm {
    pub fn new() -> Self {
        ScriptedLlm::default()
    }

    /// Queues the reply for the next call. Calls beyond the queue get `["ok."]` at once.
    pub fn push_reply(&self, steps: Vec<Step>) -> &Self {
        self.replies.lock().expect("script lock").push_back(steps);
        self
    }

    /// A reply of `tokens`, each after `gap`.
    pub fn push_tokens(&self, gap: Duration, tokens: &[&str]) -> &Self {
        self.push_reply(tokens.iter().map(|token| Step::Delta(gap, (*token).to_owned())).collect())
    }

    pub fn requests(&self) -> Vec<LlmRequest> {
        self.requests.lock().expect("request log lock").clone()
    }
}

impl LlmProvider for ScriptedLlm {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn model(&self) -> String {
        "script".into()
    }

    fn stream_chat(&self, request: LlmRequest) -> LlmStream {
        self.requests.lock().expect("request log lock").push(request);
        let steps = self
            .replies
            .lock()
            .expect("script lock")
            .pop_front()
            .unwrap_or_else(|| vec![Step::Delta(Duration::ZERO, "ok.".into())]);
        Box::pin(stream::unfold(VecDeque::from(steps), |mut steps| async move {
            match steps.pop_front()? {
                Step::Delta(gap, text) => {
                    tokio::time::sleep(gap).await;
                    Some((Ok(text), steps))
                }
                Step::Fail(error) => {
                    steps.clear();
                    Some((Err(error), steps))
                }
                Step::Hang => {
                    std::future::pending::<()>().await;
                    None
                }
            }
        }))
    }
}
