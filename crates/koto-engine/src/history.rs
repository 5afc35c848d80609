//! What the control panel shows of past turns: a session's stored transcript and the list of
//! sessions, read from the store off the async workers. It reads only what was committed (no
//! in-memory state of running turns) and changes nothing.

use koto_core::{SessionId, TurnNo};
use koto_store::{HistoryTurn, SessionSummary};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::store_calls::blocking;

impl Engine {
    /// The newest `limit` stored turns of `session` (those below `before`, if given), oldest
    /// first; see `koto_store::Store::history` for the clamp and the statuses.
    pub async fn history(
        &self,
        session: &SessionId,
        before: Option<TurnNo>,
        limit: usize,
    ) -> Result<Vec<HistoryTurn>, EngineError> {
        let store = self.store().clone();
        let session = session.clone();
        blocking(move || store.history(&session, before, limit)).await
    }

    /// Up to `limit` sessions, most recently active first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, EngineError> {
        let store = self.store().clone();
        blocking(move || store.sessions(limit)).await
    }
}
