//! Per-viewer memory for live chat: who a viewer is (platform + user id, name, first and last
//! seen, how many of their messages were answered) and what they said and were answered, so
//! the prompt can recall them when they speak again. Written by the LTM worker in the same
//! transaction as the exchange's long-term memory (exactly once per outbox id); forgotten on
//! request (`forget_viewer`) or after the retention (`prune_viewers`). No ranking, no prompts.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::StoreError;
use crate::store::Store;

/// The viewer an exchange came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerRef {
    pub platform: String,
    pub user_id: String,
    pub name: String,
}

/// What is known of a viewer, newest exchanges first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerRecall {
    pub name: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Their exchanges remembered (answered messages).
    pub exchanges: u64,
    pub recent: Vec<ViewerExchange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerExchange {
    pub said: String,
    pub answered: String,
    pub ts_ms: i64,
}

/// Inside the LTM worker's transaction: the viewer's row and this exchange.
pub(crate) fn remember_viewer_in(
    transaction: &Transaction<'_>,
    viewer: &ViewerRef,
    said: &str,
    answered: &str,
    ts_ms: i64,
) -> Result<(), StoreError> {
    transaction
        .prepare_cached(
            "INSERT INTO viewers(platform, user_id, name, first_seen, last_seen, exchanges)
             VALUES (?1, ?2, ?3, ?4, ?4, 1)
             ON CONFLICT(platform, user_id) DO UPDATE SET
               name = excluded.name,
               first_seen = MIN(first_seen, excluded.first_seen),
               last_seen = MAX(last_seen, excluded.last_seen),
               exchanges = exchanges + 1",
        )?
        .execute(params![viewer.platform, viewer.user_id, viewer.name, ts_ms])?;
    transaction
        .prepare_cached(
            "INSERT INTO viewer_memories(platform, user_id, said, answered, ts)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            viewer.platform,
            viewer.user_id,
            said,
            answered,
            ts_ms
        ])?;
    Ok(())
}

impl Store {
    /// The viewer and up to `k` of their latest exchanges; `None` for a viewer never answered.
    pub fn viewer_recall(
        &self,
        platform: &str,
        user_id: &str,
        k: usize,
    ) -> Result<Option<ViewerRecall>, StoreError> {
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        self.read(|conn| {
            let viewer = conn
                .prepare_cached(
                    "SELECT name, first_seen, last_seen, exchanges FROM viewers
                     WHERE platform = ?1 AND user_id = ?2",
                )?
                .query_row(params![platform, user_id], |row| {
                    Ok(ViewerRecall {
                        name: row.get(0)?,
                        first_seen_ms: row.get(1)?,
                        last_seen_ms: row.get(2)?,
                        exchanges: row.get::<_, i64>(3)?.max(0) as u64,
                        recent: Vec::new(),
                    })
                })
                .optional()?;
            let Some(mut viewer) = viewer else {
                return Ok(None);
            };
            let mut select = conn.prepare_cached(
                "SELECT said, answered, ts FROM viewer_memories
                 WHERE platform = ?1 AND user_id = ?2 ORDER BY ts DESC, id DESC LIMIT ?3",
            )?;
            viewer.recent = select
                .query_map(params![platform, user_id, limit], |row| {
                    Ok(ViewerExchange {
                        said: row.get(0)?,
                        answered: row.get(1)?,
                        ts_ms: row.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(viewer))
        })
    }

    /// Forgets a viewer: their row and every exchange kept for them. Returns the exchanges
    /// removed.
    pub fn forget_viewer(&self, platform: &str, user_id: &str) -> Result<u64, StoreError> {
        self.write(|transaction| {
            let removed = transaction
                .prepare_cached("DELETE FROM viewer_memories WHERE platform = ?1 AND user_id = ?2")?
                .execute(params![platform, user_id])?;
            transaction
                .prepare_cached("DELETE FROM viewers WHERE platform = ?1 AND user_id = ?2")?
                .execute(params![platform, user_id])?;
            Ok(removed as u64)
        })
    }

    /// Retention: exchanges older than `before_ms` go, and viewers with none left. Returns the
    /// exchanges removed.
    pub fn prune_viewers(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.write(|transaction| {
            let removed = transaction
                .prepare_cached("DELETE FROM viewer_memories WHERE ts < ?1")?
                .execute(params![before_ms])?;
            transaction
                .prepare_cached(
                    "DELETE FROM viewers WHERE NOT EXISTS (SELECT 1 FROM viewer_memories AS m
                       WHERE m.platform = viewers.platform AND m.user_id = viewers.user_id)",
                )?
                .execute([])?;
            Ok(removed as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use koto_core::{SessionId, TurnNo};

    use super::*;
    use crate::memory::NewMemory;
    use crate::test_support::temp_store;

    fn exchange(store: &Store, outbox_id: i64, user: &str, said: &str, ts_ms: i64) {
        let memory = NewMemory {
            session: SessionId::parse("live-chat").unwrap(),
            turn: TurnNo(outbox_id as u64),
            user_text: said.into(),
            reply_text: format!("answer to {said}"),
            ts_ms,
            viewer: Some(ViewerRef {
                platform: "twitch".into(),
                user_id: user.into(),
                name: format!("{user}_tv"),
            }),
        };
        store
            .remember("ltm-workers", "events.ltm", outbox_id, &memory)
            .unwrap();
    }

    #[test]
    fn a_viewer_is_recalled_with_first_seen_and_latest_exchanges() {
        let (_dir, store) = temp_store();
        exchange(&store, 1, "alice", "what game?", 100);
        exchange(&store, 2, "alice", "any tips?", 200);
        exchange(&store, 2, "alice", "any tips?", 200);
        exchange(&store, 3, "bob", "hi", 300);
        let alice = store.viewer_recall("twitch", "alice", 5).unwrap().unwrap();
        assert_eq!(alice.first_seen_ms, 100);
        assert_eq!(alice.exchanges, 2, "a redelivered outbox id counts once");
        let said: Vec<&str> = alice.recent.iter().map(|e| e.said.as_str()).collect();
        assert_eq!(said, ["any tips?", "what game?"], "newest first, only hers");
        assert_eq!(
            store.viewer_recall("youtube", "alice", 5).unwrap(),
            None,
            "keyed by platform too"
        );
    }

    #[test]
    fn forgetting_and_retention_remove_a_viewer() {
        let (_dir, store) = temp_store();
        exchange(&store, 1, "alice", "old", 100);
        exchange(&store, 2, "alice", "new", 900);
        exchange(&store, 3, "bob", "hi", 300);
        assert_eq!(store.forget_viewer("twitch", "bob").unwrap(), 1);
        assert_eq!(store.viewer_recall("twitch", "bob", 5).unwrap(), None);
        assert_eq!(
            store.prune_viewers(500).unwrap(),
            1,
            "the old exchange goes"
        );
        let alice = store.viewer_recall("twitch", "alice", 5).unwrap().unwrap();
        assert_eq!(alice.recent.len(), 1);
        assert_eq!(store.prune_viewers(1000).unwrap(), 1);
        assert_eq!(
            store.viewer_recall("twitch", "alice", 5).unwrap(),
            None,
            "a viewer with nothing left is gone"
        );
    }
}
