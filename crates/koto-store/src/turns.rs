//! Short-term memory: one user row and (once the turn ended well) one assistant row per turn.
//! It does not assemble prompts or trim text; the engine renders `ContextTurn`s.
//!
//! A user row's `status` is `open` while the turn runs, then `done` (an assistant row exists),
//! `failed` (an assistant row exists if anything was heard), or `abandoned` (the process died
//! while it was open). Only `done` turns are context, so a half-written or failed turn is never
//! fed back to the LLM. The user row's `end_reason` says why a turn did not simply complete
//! (NULL for a clean completion); see `schema::M3_TURN_END_REASON`.

use koto_core::{SessionId, TurnNo};
use rusqlite::params;

use crate::error::StoreError;
use crate::outbox::{NewOutboxEvent, insert_events};
use crate::session::{turn_from_sql, turn_to_sql};
use crate::store::Store;

/// The start of a turn: the user's input, stored before the LLM is called.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTurn {
    pub session: SessionId,
    pub turn: TurnNo,
    pub user_text: String,
    /// The input type (`TEXT`, `ASR_FINAL`, `COMMAND`), kept for analytics.
    pub kind: String,
    /// Where the input came from; `None` for typed input (stored as NULL).
    pub meta: Option<koto_core::turn::InputMeta>,
    pub ts_ms: i64,
}

/// The end of a turn that produced a reply, completed or interrupted.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedTurn {
    pub session: SessionId,
    pub turn: TurnNo,
    /// What the listener actually got: for an interrupted turn, the spoken part only, unmarked
    /// (no "..." that later replies would learn to imitate).
    pub reply_text: String,
    pub interrupted: bool,
    /// Why the turn did not simply complete: `None` for a clean completion; `Some` for an
    /// interrupted turn (`user_interrupt`, `client_disconnected`, …) and for a completed but
    /// flagged one (`tts_failed`: the text went out, `reply_text` is what was heard). Stored as
    /// given; an empty string is stored as `None`.
    pub reason: Option<String>,
    pub ts_ms: i64,
    /// Outbox rows committed in the same transaction as the reply.
    pub events: Vec<NewOutboxEvent>,
}

/// The end of a turn that failed (provider error, crashed speech task, storage error, …).
#[derive(Debug, Clone, PartialEq)]
pub struct FailedTurn {
    pub session: SessionId,
    pub turn: TurnNo,
    /// What the listener got before the failure, unmarked; empty if nothing was heard (then no
    /// assistant row is written).
    pub heard_text: String,
    /// Why it failed: an error code (`llm_timeout`, `storage_error`) or `speech_crashed`, …
    /// Stored as given; an empty string is stored as NULL (reason unknown).
    pub reason: String,
    pub ts_ms: i64,
    /// Outbox rows committed in the same transaction as the failure.
    pub events: Vec<NewOutboxEvent>,
}

/// One completed exchange of the context window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextTurn {
    pub turn: TurnNo,
    pub user_text: String,
    pub reply_text: String,
    pub interrupted: bool,
    /// Who wrote `user_text`, for a turn from live chat (from the user row's `meta`), so the
    /// prompt can name them.
    pub viewer: Option<ContextViewer>,
}

/// A chat viewer as the prompt names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextViewer {
    pub platform: String,
    pub id: String,
    pub name: String,
}

fn viewer_from_meta(meta: Option<String>) -> Option<ContextViewer> {
    let meta: koto_core::turn::InputMeta = serde_json::from_str(&meta?).ok()?;
    let user = meta.user?;
    Some(ContextViewer {
        platform: meta.source,
        id: user.id,
        name: user.name,
    })
}

/// Newest first from the end of the session, then reversed in Rust: SQLite walks the
/// `(sessionId, turn, role)` primary key backwards and stops after `LIMIT` done turns; each
/// assistant row is a point lookup in the same b-tree. `CROSS JOIN` pins `u` as the outer loop so
/// the planner can never start from the assistant side. Cost depends on the window, not on the
/// table size.
pub(crate) const CONTEXT_SQL: &str = "
SELECT u.turn, u.text, a.text, a.interrupted, u.meta
FROM turns AS u
CROSS JOIN turns AS a
  ON a.sessionId = u.sessionId AND a.turn = u.turn AND a.role = 'assistant'
WHERE u.sessionId = ?1
  AND u.turn >= COALESCE((SELECT context_from FROM sessions WHERE sessionId = ?1), 0)
  AND u.role = 'user'
  AND u.status = 'done'
ORDER BY u.turn DESC
LIMIT ?2";

impl Store {
    /// Stores the user row (`open`) and advances `sessions.next_turn` past it, atomically.
    /// A user row for `(session, turn)` in any status → `TurnExists`.
    pub fn begin_turn(&self, turn: &NewTurn) -> Result<(), StoreError> {
        let turn_no = turn_to_sql(turn.turn)?;
        self.write(|transaction| insert_user_row(transaction, turn, turn_no))
    }

    /// `begin_turn` plus outbox rows (e.g. `UserInput` for plugins) in the same transaction.
    /// Returns the outbox ids in the order given; outbox listeners run after the commit.
    pub fn begin_turn_with_events(
        &self,
        turn: &NewTurn,
        events: &[NewOutboxEvent],
    ) -> Result<Vec<i64>, StoreError> {
        let turn_no = turn_to_sql(turn.turn)?;
        let ids = self.write(|transaction| {
            insert_user_row(transaction, turn, turn_no)?;
            insert_events(transaction, events)
        })?;
        self.outbox_committed(&ids);
        Ok(ids)
    }

    /// One transaction: the assistant row (what was delivered, with the interrupted flag), the
    /// user row → `done` with its `end_reason`, and the outbox rows. Returns the outbox ids in
    /// the order given. Either all of it is committed or none of it.
    pub fn finish_turn(&self, finished: &FinishedTurn) -> Result<Vec<i64>, StoreError> {
        let turn_no = turn_to_sql(finished.turn)?;
        let session = finished.session.as_str();
        self.write(|transaction| {
            close_user_row(
                transaction,
                &finished.session,
                finished.turn,
                "done",
                finished.reason.as_deref(),
                finished.ts_ms,
            )?;
            insert_assistant_row(
                transaction,
                session,
                turn_no,
                &finished.reply_text,
                finished.ts_ms,
                "done",
                finished.interrupted,
            )?;
            let ids = insert_events(transaction, &finished.events)?;
            touch_session(transaction, session, finished.ts_ms)?;
            Ok(ids)
        })
        .inspect(|ids| self.outbox_committed(ids))
    }

    /// One transaction: the user row → `failed` with `end_reason = reason` (never context), an
    /// assistant row with the heard text if any (`interrupted`: the failure cut it), and the
    /// outbox rows. Returns the outbox ids in the order given.
    pub fn fail_turn(&self, failed: &FailedTurn) -> Result<Vec<i64>, StoreError> {
        let turn_no = turn_to_sql(failed.turn)?;
        let session = failed.session.as_str();
        self.write(|transaction| {
            close_user_row(
                transaction,
                &failed.session,
                failed.turn,
                "failed",
                Some(&failed.reason),
                failed.ts_ms,
            )?;
            if !failed.heard_text.is_empty() {
                // Status `failed` like its user row: nothing reads an assistant row's status,
                // but a row claiming `done` for a failed turn would mislead whoever looks.
                insert_assistant_row(
                    transaction,
                    session,
                    turn_no,
                    &failed.heard_text,
                    failed.ts_ms,
                    "failed",
                    true,
                )?;
            }
            let ids = insert_events(transaction, &failed.events)?;
            touch_session(transaction, session, failed.ts_ms)?;
            Ok(ids)
        })
        .inspect(|ids| self.outbox_committed(ids))
    }

    /// The last `max_turns` done turns at or after the session's `context_from`, oldest first.
    pub fn context(
        &self,
        session: &SessionId,
        max_turns: usize,
    ) -> Result<Vec<ContextTurn>, StoreError> {
        if max_turns == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max_turns).unwrap_or(i64::MAX);
        let mut newest_first = self.read(|conn| {
            let mut select = conn.prepare_cached(CONTEXT_SQL)?;
            let rows = select.query_map(params![session.as_str(), limit], |row| {
                Ok(ContextTurn {
                    turn: turn_from_sql(row, 0)?,
                    user_text: row.get(1)?,
                    reply_text: row.get(2)?,
                    interrupted: row.get(3)?,
                    viewer: viewer_from_meta(row.get(4)?),
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Whether a user row exists for `(session, turn)`, whatever its status.
    pub fn turn_exists(&self, session: &SessionId, turn: TurnNo) -> Result<bool, StoreError> {
        let turn_no = turn_to_sql(turn)?;
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM turns WHERE sessionId = ?1 AND turn = ?2 AND role = 'user')",
            )?
            .query_row(params![session.as_str(), turn_no], |row| row.get(0))
        })
    }
}

/// The user row (`open`) and the session counter past it; `TurnExists` if the row is there.
fn insert_user_row(
    conn: &rusqlite::Connection,
    turn: &NewTurn,
    turn_no: i64,
) -> Result<(), StoreError> {
    // A struct of strings and numbers always serialises.
    let meta = turn
        .meta
        .as_ref()
        .and_then(|meta| serde_json::to_string(meta).ok());
    let inserted = conn
        .prepare_cached(
            "INSERT INTO turns(sessionId, turn, role, text, ts, status, interrupted, kind, meta)
             VALUES (?1, ?2, 'user', ?3, ?4, 'open', 0, ?5, ?6)
             ON CONFLICT(sessionId, turn, role) DO NOTHING",
        )?
        .execute(params![
            turn.session.as_str(),
            turn_no,
            turn.user_text,
            turn.ts_ms,
            turn.kind,
            meta
        ])?;
    if inserted == 0 {
        return Err(StoreError::TurnExists {
            session: turn.session.clone(),
            turn: turn.turn,
        });
    }
    conn.prepare_cached(
        "INSERT INTO sessions(sessionId, next_turn, context_from, created_at, updated_at)
         VALUES (?1, ?2 + 1, 0, ?3, ?3)
         ON CONFLICT(sessionId) DO UPDATE SET
           next_turn = MAX(next_turn, excluded.next_turn),
           updated_at = MAX(updated_at, excluded.updated_at)",
    )?
    .execute(params![turn.session.as_str(), turn_no, turn.ts_ms])?;
    Ok(())
}

/// Moves the user row from `open` to `status` with its `end_reason` (an empty one is NULL);
/// anything else is `TurnNotOpen` (and the caller's transaction rolls back).
fn close_user_row(
    conn: &rusqlite::Connection,
    session: &SessionId,
    turn: TurnNo,
    status: &str,
    reason: Option<&str>,
    ended_ms: i64,
) -> Result<(), StoreError> {
    let reason = reason.filter(|reason| !reason.is_empty());
    let updated = conn
        .prepare_cached(
            "UPDATE turns SET status = ?3, end_reason = ?4, ended_ts = ?5
             WHERE sessionId = ?1 AND turn = ?2 AND role = 'user' AND status = 'open'",
        )?
        .execute(params![
            session.as_str(),
            turn_to_sql(turn)?,
            status,
            reason,
            ended_ms
        ])?;
    if updated == 0 {
        return Err(StoreError::TurnNotOpen {
            session: session.clone(),
            turn,
        });
    }
    Ok(())
}

fn insert_assistant_row(
    conn: &rusqlite::Connection,
    session: &str,
    turn_no: i64,
    text: &str,
    ts_ms: i64,
    status: &str,
    interrupted: bool,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO turns(sessionId, turn, role, text, ts, status, interrupted, kind)
         VALUES (?1, ?2, 'assistant', ?3, ?4, ?5, ?6, NULL)",
    )?
    .execute(params![session, turn_no, text, ts_ms, status, interrupted])?;
    Ok(())
}

fn touch_session(conn: &rusqlite::Connection, session: &str, ts_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE sessions SET updated_at = MAX(updated_at, ?2) WHERE sessionId = ?1",
    )?
    .execute(params![session, ts_ms])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn session(raw: &str) -> SessionId {
        SessionId::parse(raw).unwrap()
    }

    fn event(session: &SessionId, turn: u64, stream: &str) -> NewOutboxEvent {
        NewOutboxEvent {
            event_type: "TurnCompleted".into(),
            stream: stream.into(),
            correlation_id: format!("{session}#{turn}"),
            payload: serde_json::json!({ "turn": turn }),
            ts_ms: 10,
        }
    }

    #[test]
    fn context_is_a_primary_key_range_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let plan: Vec<String> = store
            .read(|conn| {
                let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {CONTEXT_SQL}"))?;
                explain
                    .query_map(params!["s", 20], |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        // "SCAN u" would read every row of the table: the window must cost the same at 1M rows.
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "no full scan in the context query: {plan:?}"
        );
        assert!(
            plan.iter()
                .any(|step| step.contains("SEARCH u USING PRIMARY KEY (sessionId=? AND turn>?)")),
            "the user rows are a PK range on (sessionId, turn): {plan:?}"
        );
        assert!(
            plan.iter().all(|step| !step.contains("TEMP B-TREE")),
            "ORDER BY turn DESC is served by the key order, not a sort: {plan:?}"
        );
    }

    #[test]
    fn crash_leftovers_are_abandoned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("koto.sqlite3");
        let live = session("live-001");
        let store = Store::open(&path).unwrap();
        let begin = NewTurn {
            session: live.clone(),
            turn: TurnNo(0),
            user_text: "hi".into(),
            kind: "TEXT".into(),
            meta: None,
            ts_ms: 1,
        };
        store.begin_turn(&begin).unwrap();
        // Leak the store instead of closing it: no destructor runs, as in a crash.
        std::mem::forget(store);

        let reopened = Store::open(&path).unwrap();
        let status: String = reopened
            .read(|conn| {
                conn.query_row(
                    "SELECT status FROM turns WHERE sessionId = 'live-001' AND turn = 0 AND role = 'user'",
                    [],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(
            status, "abandoned",
            "a turn open at startup can only be a crash leftover"
        );
    }

    #[test]
    fn readers_never_see_a_reply_without_its_outbox_rows() {
        const TURNS: u64 = 200;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let live = session("live-001");
        let writer_done = AtomicBool::new(false);

        std::thread::scope(|scope| {
            scope.spawn(|| {
                for turn in 0..TURNS {
                    let begin = NewTurn {
                        session: live.clone(),
                        turn: TurnNo(turn),
                        user_text: format!("q{turn}"),
                        kind: "TEXT".into(),
                        meta: None,
                        ts_ms: 1,
                    };
                    store.begin_turn(&begin).unwrap();
                    let finished = FinishedTurn {
                        session: live.clone(),
                        turn: TurnNo(turn),
                        reply_text: format!("a{turn}"),
                        interrupted: false,
                        reason: None,
                        ts_ms: 2,
                        events: vec![
                            event(&live, turn, "events.ltm"),
                            event(&live, turn, "events.analytics"),
                        ],
                    };
                    store.finish_turn(&finished).unwrap();
                }
                writer_done.store(true, Ordering::Release);
            });

            let mut observations = 0_u64;
            loop {
                let finished_before_read = writer_done.load(Ordering::Acquire);
                let (replies, events): (i64, i64) = store
                    .read(|conn| {
                        conn.query_row(
                            "SELECT (SELECT COUNT(*) FROM turns WHERE role = 'assistant'),
                                    (SELECT COUNT(*) FROM outbox_events)",
                            [],
                            |row| Ok((row.get(0)?, row.get(1)?)),
                        )
                    })
                    .unwrap();
                assert_eq!(
                    events,
                    2 * replies,
                    "each reply commits with exactly its two outbox rows, never apart"
                );
                observations += 1;
                if finished_before_read {
                    assert_eq!(
                        replies, TURNS as i64,
                        "after the writer finished every reply is visible"
                    );
                    break;
                }
            }
            assert!(observations >= 1, "the observer read at least once");
        });
    }
}
