//! [`TurnServices`]: the part of the engine's state a running turn uses — the store, the relay
//! and the engine's producer on it, long-term memory, metrics, the session map, the shutdown
//! token and the quick-acknowledgment fillers. The engine owns it and hands each turn's job an
//! `Arc` of it, so the turn task never holds (or names) the `Engine` that spawned it.
//!
//! It holds no profile (a turn keeps the one it was submitted under) and no task tracker (only
//! the engine spawns turns).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use koto_core::memory::MemoryRecall;
use koto_core::{SessionId, TurnNo};
use koto_relay::{Producer, Relay};
use koto_store::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::EngineMetrics;
use crate::profile::EngineConfig;
use crate::quick_ack::QuickAckCache;
use crate::session::SessionSlot;

pub(crate) struct TurnServices {
    pub store: Store,
    pub relay: Option<Relay>,
    /// This engine as the relay's default producer.
    pub producer: Option<Arc<Producer>>,
    recall: Option<Arc<dyn MemoryRecall>>,
    pub metrics: EngineMetrics,
    sessions: Mutex<HashMap<SessionId, Arc<SessionSlot>>>,
    /// Parent of every session and turn token; cancelled on shutdown.
    pub root: CancellationToken,
    /// `QUICK_ACK_MS`: the current voice's fillers, made when the voice is set.
    pub quick_acks: Arc<QuickAckCache>,
}

impl TurnServices {
    pub fn new(
        store: Store,
        relay: Option<Relay>,
        producer: Option<Arc<Producer>>,
        recall: Option<Arc<dyn MemoryRecall>>,
        metrics: EngineMetrics,
    ) -> TurnServices {
        TurnServices {
            store,
            relay,
            producer,
            recall,
            metrics,
            sessions: Mutex::new(HashMap::new()),
            root: CancellationToken::new(),
            quick_acks: Arc::default(),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.root.is_cancelled()
    }

    /// The highest seq of `turn` the relay released to clients (what was heard); `None`
    /// without a relay.
    pub fn released_seq(&self, session: &SessionId, turn: TurnNo) -> Option<u64> {
        self.relay
            .as_ref()
            .and_then(|relay| relay.released_seq(session, turn))
    }

    /// The producer's side of the fence for a turn the engine stopped by itself (its caller
    /// went away, shutdown): the relay drops what it holds of the turn and tells every client
    /// STOP_ACK, exactly as for a STOP. A no-op when a STOP already covers it.
    pub fn fence_turn(&self, session: &SessionId, turn: TurnNo, reason: &str) {
        if let Some(relay) = &self.relay {
            relay.fence_turn(session, turn, reason);
        }
    }

    /// Long-term memories for the prompt (`ENABLE_LTM_INLINE`); none without a memory store.
    pub async fn recall(
        &self,
        config: &EngineConfig,
        session: &SessionId,
        text: &str,
    ) -> Vec<String> {
        if !config.flags.ltm_inline {
            return Vec::new();
        }
        let Some(recall) = &self.recall else {
            return Vec::new();
        };
        // The implementation keeps its own budget (LTM_INLINE_BUDGET_MS); this bound only guards
        // against one that does not.
        let budget = config.recall_budget;
        match tokio::time::timeout(budget, recall.recall(session, text, config.recall_top_k)).await
        {
            Ok(Ok(memories)) => memories,
            Ok(Err(error)) => {
                tracing::warn!(%error, "answering without long-term memories");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(?budget, "memory recall over budget; answering without it");
                Vec::new()
            }
        }
    }

    /// The session's slot, made on first use.
    pub fn slot(&self, session: &SessionId) -> Arc<SessionSlot> {
        self.lock_sessions()
            .entry(session.clone())
            .or_insert_with(|| Arc::new(SessionSlot::new(session.clone())))
            .clone()
    }

    /// Drops an idle slot so the map does not grow with every session ever seen. Only when no
    /// one else holds it: a request that got the slot keeps it alive, so no turn number is
    /// ever decided on a slot the map has forgotten.
    pub fn forget_if_idle(&self, slot: Arc<SessionSlot>) {
        let mut sessions = self.lock_sessions();
        let id = slot.id.clone();
        drop(slot);
        if let Some(entry) = sessions.get(&id)
            && Arc::strong_count(entry) == 1
            && entry.is_idle()
        {
            sessions.remove(&id);
        }
    }

    pub fn lock_sessions(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<SessionSlot>>> {
        // Entries are plain Arcs; a panic elsewhere cannot leave the map half-updated.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
