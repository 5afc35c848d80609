//! Per-session counters: the next turn number and where the context window starts.
//! It does not decide turn numbers for concurrent requests; the engine does that in memory.

use koto_core::{SessionId, TurnNo};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::store::{Store, wall_clock_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// The lowest turn number never used by this session.
    pub next_turn: TurnNo,
    /// Turns below this are history, not context (`reset` moved the window).
    pub context_from: TurnNo,
}

/// `next_turn` is the larger of the stored counter and `max(turn) + 1`, so a session whose
/// counter row is missing or behind (rows written by an older build, a bulk import) still never
/// hands out a used number. One statement, so one snapshot. The `+ 1` stays outside the
/// subquery: a bare `MAX(turn)` is answered by one b-tree seek, `MAX(turn) + 1` would visit
/// every row of the session.
const SESSION_STATE_SQL: &str = "
SELECT MAX(
         COALESCE((SELECT next_turn FROM sessions WHERE sessionId = ?1), 0),
         COALESCE((SELECT MAX(turn) FROM turns WHERE sessionId = ?1) + 1, 0)),
       COALESCE((SELECT context_from FROM sessions WHERE sessionId = ?1), 0)";

impl Store {
    /// A session never seen is `0/0`.
    pub fn session_state(&self, session: &SessionId) -> Result<SessionState, StoreError> {
        self.read(|conn| read_session_state(conn, session))
    }

    /// `COMMAND reset`: the context window starts at the session's next turn. History stays for
    /// analytics and turn numbers keep growing. A turn in flight is below the new start, so it
    /// will not be context either.
    pub fn reset_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let now_ms = wall_clock_ms();
        self.write(|transaction| {
            let state = read_session_state(transaction, session)?;
            transaction
                .prepare_cached(
                    "INSERT INTO sessions(sessionId, next_turn, context_from, created_at, updated_at)
                     VALUES (?1, ?2, ?2, ?3, ?3)
                     ON CONFLICT(sessionId) DO UPDATE SET
                       next_turn = MAX(next_turn, excluded.next_turn),
                       context_from = excluded.context_from,
                       updated_at = excluded.updated_at",
                )?
                .execute(params![session.as_str(), turn_to_sql(state.next_turn)?, now_ms])?;
            Ok(())
        })
    }
}

fn read_session_state(conn: &Connection, session: &SessionId) -> rusqlite::Result<SessionState> {
    let row = conn
        .prepare_cached(SESSION_STATE_SQL)?
        .query_row([session.as_str()], |row| {
            Ok((turn_from_sql(row, 0)?, turn_from_sql(row, 1)?))
        })
        .optional()?;
    let (next_turn, context_from) = row.unwrap_or((TurnNo(0), TurnNo(0)));
    Ok(SessionState {
        next_turn,
        context_from,
    })
}

/// Turn numbers are `u64` in the API and `i64` in SQLite; `turn + 1` must fit as well, because
/// `sessions.next_turn` stores it.
pub(crate) fn turn_to_sql(turn: TurnNo) -> Result<i64, StoreError> {
    i64::try_from(turn.0)
        .ok()
        .filter(|&value| value < i64::MAX)
        .ok_or(StoreError::TurnOutOfRange { turn })
}

pub(crate) fn turn_from_sql(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<TurnNo> {
    let value: i64 = row.get(index)?;
    // The schema's CHECK(turn >= 0) makes a negative value impossible; report it rather than wrap.
    u64::try_from(value)
        .map(TurnNo)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn session_state_reads_only_the_sessions_own_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let plan: Vec<String> = store
            .read(|conn| {
                let mut explain =
                    conn.prepare(&format!("EXPLAIN QUERY PLAN {SESSION_STATE_SQL}"))?;
                explain
                    .query_map(["s"], |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        // Called before every turn: it must cost the same with a million rows of history.
        assert!(
            plan.iter()
                .all(|step| !step.starts_with("SCAN turns") && !step.starts_with("SCAN sessions")),
            "no full scan in session_state: {plan:?}"
        );
    }

    #[test]
    fn turn_numbers_that_do_not_fit_sqlite_are_rejected() {
        assert_eq!(
            turn_to_sql(TurnNo(0)).ok(),
            Some(0),
            "small numbers pass through"
        );
        assert!(
            matches!(
                turn_to_sql(TurnNo(i64::MAX as u64)),
                Err(StoreError::TurnOutOfRange { .. })
            ),
            "i64::MAX is refused because next_turn = turn + 1 would overflow"
        );
        assert!(
            matches!(
                turn_to_sql(TurnNo(u64::MAX)),
                Err(StoreError::TurnOutOfRange { .. })
            ),
            "u64 values above i64::MAX cannot be stored"
        );
    }
}
