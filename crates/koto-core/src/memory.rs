//! Long-term memory recall as the engine sees it: a query in, a few remembered lines out.
//! It does not say how memories are stored or ranked (`koto-events` implements it over SQLite
//! FTS5), and it never blocks: the engine awaits the future within its own time budget.

use std::future::Future;
use std::pin::Pin;

use crate::SessionId;

/// Why a recall produced nothing. The engine logs it and answers without memories: recall is an
/// enrichment, never a reason to fail a turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecallError {
    /// The implementation's own time budget ran out (`LTM_INLINE_BUDGET_MS`).
    #[error("memory recall took longer than its budget")]
    Timeout,
    /// The backing store failed (busy, disk, corrupt); the message says which.
    #[error("memory recall failed: {0}")]
    Storage(String),
}

pub type RecallFuture =
    Pin<Box<dyn Future<Output = Result<Vec<String>, RecallError>> + Send + 'static>>;

pub trait MemoryRecall: Send + Sync + 'static {
    /// Up to `k` remembered lines relevant to `query`, best first. Memories of every session
    /// count (a fact told in an old session is recalled in a new one); `session` is the asking
    /// session, which an implementation may use to rank or to skip what is already in context.
    /// `query` is raw user text: implementations must treat it as data, never as query syntax.
    fn recall(&self, session: &SessionId, query: &str, k: usize) -> RecallFuture;
}

/// Remembers nothing: for configurations without long-term memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecall;

impl MemoryRecall for NoRecall {
    fn recall(&self, _session: &SessionId, _query: &str, _k: usize) -> RecallFuture {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}
