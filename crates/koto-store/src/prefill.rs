//! Bulk synthetic history for the benchmark's large database. Not used on any request path.

use koto_core::SessionId;
use rusqlite::params;

use crate::error::StoreError;
use crate::store::Store;

/// Timestamps of synthetic rows start here (2026-01-01T00:00:00Z) and grow by 1 ms per turn.
const PREFILL_BASE_TS_MS: i64 = 1_767_225_600_000;

impl Store {
    /// The id of the `index`-th synthetic session `prefill` writes (`bench-000042`).
    pub fn prefill_session_id(index: usize) -> SessionId {
        // Digits and a dash are inside the sessionId alphabet and far below 64 characters.
        SessionId::parse(&format!("bench-{index:06}")).expect("bench-NNNNNN is a valid session id")
    }

    /// Writes `sessions × turns_per_session` done turns (two rows each: `2 × sessions ×
    /// turns_per_session` rows) in one transaction, plus the sessions' counters. Rows that already
    /// exist are kept, so running it twice is harmless. Holds the writer for the whole run.
    pub fn prefill(&self, sessions: usize, turns_per_session: usize) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let next_turn = i64::try_from(turns_per_session).unwrap_or(i64::MAX);
        self.write(|transaction| {
            let mut insert_turn = transaction.prepare_cached(
                "INSERT INTO turns(sessionId, turn, role, text, ts, status, interrupted, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'done', 0, ?6)
                 ON CONFLICT(sessionId, turn, role) DO NOTHING",
            )?;
            let mut upsert_session = transaction.prepare_cached(
                "INSERT INTO sessions(sessionId, next_turn, context_from, created_at, updated_at)
                 VALUES (?1, ?2, 0, ?3, ?4)
                 ON CONFLICT(sessionId) DO UPDATE SET next_turn = MAX(next_turn, excluded.next_turn)",
            )?;
            for session_index in 0..sessions {
                let session = Store::prefill_session_id(session_index);
                let session = session.as_str();
                for turn in 0..next_turn {
                    let ts_ms = PREFILL_BASE_TS_MS + turn;
                    // 'assistant' sorts before 'user': inserting in key order keeps every insert
                    // an append to the b-tree.
                    insert_turn.execute(params![
                        session,
                        turn,
                        "assistant",
                        prefill_reply_text(session, turn),
                        ts_ms,
                        Option::<&str>::None
                    ])?;
                    insert_turn.execute(params![session, turn, "user", prefill_user_text(session, turn), ts_ms, "TEXT"])?;
                }
                upsert_session.execute(params![session, next_turn, PREFILL_BASE_TS_MS, PREFILL_BASE_TS_MS + next_turn])?;
            }
            Ok(())
        })?;
        tracing::info!(
            sessions,
            turns_per_session,
            rows = 2 * sessions * turns_per_session,
            elapsed_ms = started.elapsed().as_millis(),
            "prefilled synthetic turns"
        );
        Ok(())
    }
}

/// The user text of a synthetic turn (public so benchmarks and tests can check context content).
pub fn prefill_user_text(session: &str, turn: i64) -> String {
    format!("[{session}] question {turn}: what should we play tonight, and why that one?")
}

pub fn prefill_reply_text(session: &str, turn: i64) -> String {
    format!(
        "[{session}] reply {turn}: something cooperative and short, so chat can join in; \
         we can switch if it drags."
    )
}
