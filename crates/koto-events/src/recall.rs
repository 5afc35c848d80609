//! `LtmRecall`: the engine's `MemoryRecall` over the LTM worker's SQLite memories (FTS5 bm25,
//! every session). It writes nothing and never waits past its budget.

use std::time::Duration;

use koto_core::SessionId;
use koto_core::memory::{MemoryRecall, RecallError, RecallFuture};
use koto_store::{Memory, Store, StoreError};

#[derive(Debug, Clone)]
pub struct LtmRecall {
    store: Store,
    budget: Duration,
}

impl LtmRecall {
    /// `budget` is `LTM_INLINE_BUDGET_MS`: past it the recall answers `Timeout` (the query itself
    /// finishes on the blocking pool and is discarded).
    pub fn new(store: Store, budget: Duration) -> LtmRecall {
        LtmRecall { store, budget }
    }
}

/// One prompt line per memory: what the user said and what was answered.
pub fn memory_line(memory: &Memory) -> String {
    format!(
        "user: {} | you: {}",
        memory.user_text.trim(),
        memory.reply_text.trim()
    )
}

impl MemoryRecall for LtmRecall {
    fn recall(&self, _session: &SessionId, query: &str, k: usize) -> RecallFuture {
        let store = self.store.clone();
        let query = query.to_owned();
        let budget = self.budget;
        Box::pin(async move {
            let search = tokio::task::spawn_blocking(move || store.recall_memories(&query, k));
            match tokio::time::timeout(budget, search).await {
                Err(_elapsed) => Err(RecallError::Timeout),
                Ok(Err(join_error)) => Err(RecallError::Storage(join_error.to_string())),
                Ok(Ok(Err(StoreError::Busy))) => Err(RecallError::Timeout),
                Ok(Ok(Err(error))) => Err(RecallError::Storage(error.to_string())),
                Ok(Ok(Ok(memories))) => Ok(memories.iter().map(memory_line).collect()),
            }
        })
    }
}
