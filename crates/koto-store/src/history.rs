//! Read-only views of stored turns for people, not for the LLM: a session's transcript page by
//! page, and the list of sessions by recent activity. It writes nothing and builds no context
//! (`turns::context` does that, from `done` turns only); every turn is shown here, whatever its
//! status.

use koto_core::{SessionId, TurnNo};
use rusqlite::params;

use crate::error::StoreError;
use crate::session::turn_from_sql;
use crate::store::Store;

/// The most turns one `history` call returns; larger limits are clamped to it.
pub const HISTORY_LIMIT_MAX: usize = 1000;

/// The most sessions one `sessions` call returns; larger limits are clamped to it.
pub const SESSIONS_LIMIT_MAX: usize = 1000;

/// How a stored turn ended (or that it has not ended yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnStatus {
    /// Still running (or queued) in this process.
    Open,
    /// The reply was delivered in full.
    Completed,
    /// Barge-in or disconnect: the stored reply is what was heard, possibly empty.
    Interrupted,
    /// The provider, the speech task or the store failed; the stored reply is what was heard
    /// before it, if anything.
    Failed,
    /// The process died while the turn was open; no reply was stored.
    Abandoned,
}

impl TurnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Open => "open",
            TurnStatus::Completed => "completed",
            TurnStatus::Interrupted => "interrupted",
            TurnStatus::Failed => "failed",
            TurnStatus::Abandoned => "abandoned",
        }
    }
}

/// One turn of a session's transcript as stored, with why it ended the way it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTurn {
    pub turn: TurnNo,
    pub user_text: String,
    /// The input type (`TEXT`, `ASR_FINAL`, `COMMAND`); `None` for rows written without one.
    pub kind: Option<String>,
    /// The stored reply: the whole reply for a completed turn, what was heard for an
    /// interrupted or failed one; `None` when no reply row exists (open, abandoned, or failed
    /// before anything was heard).
    pub reply_text: Option<String>,
    pub status: TurnStatus,
    /// Why the turn did not simply complete (`user_interrupt`, `tts_failed`, `llm_timeout`, …);
    /// `None` for a clean completion, a turn still open or abandoned, and rows stored before
    /// reasons were kept. A completed turn can have one (`tts_failed`: not all of it was spoken).
    pub reason: Option<String>,
    /// When the input was stored (ms since the Unix epoch).
    pub started_ms: i64,
    /// When the reply was stored; `None` without a reply row (a failure's time is not kept
    /// when nothing was heard).
    pub ended_ms: Option<i64>,
}

/// One session in the picker's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub session: SessionId,
    /// The latest input, reply, failure or reset of the session (ms since the Unix epoch).
    pub last_active_ms: i64,
    pub created_ms: i64,
    /// Stored turns (user rows), whatever their status.
    pub turns: u64,
}

/// The newest `LIMIT` user rows below `?2`, newest first, each with its assistant row if any.
/// SQLite walks the `(sessionId, turn, role)` primary key backwards from `?2` and stops after
/// `LIMIT` user rows; the assistant row is a point lookup in the same b-tree (`LEFT JOIN` keeps
/// `u` the outer loop). Cost depends on the page size, not on the table or session size.
pub(crate) const HISTORY_SQL: &str = "
SELECT u.turn, u.text, u.kind, u.status, u.ts, a.text, COALESCE(a.ts, u.ended_ts), a.interrupted, u.end_reason
FROM turns AS u
LEFT JOIN turns AS a
  ON a.sessionId = u.sessionId AND a.turn = u.turn AND a.role = 'assistant'
WHERE u.sessionId = ?1
  AND u.turn < ?2
  AND u.role = 'user'
ORDER BY u.turn DESC
LIMIT ?3";

/// The `LIMIT` most recently active sessions first (inner query: one pass over `sessions`,
/// which has a row per session, not per turn), then a turn count for those only: each count is
/// a primary-key range of that session. Counting before the limit would walk every session's
/// turns (0.25 s on the 1M-turn bench database); this way it costs the listed sessions' turns
/// (about 10 ms for 50 sessions of 1000 turns there).
pub(crate) const SESSIONS_SQL: &str = "
SELECT recent.sessionId, recent.updated_at, recent.created_at,
       (SELECT COUNT(*) FROM turns AS t WHERE t.sessionId = recent.sessionId AND t.role = 'user')
FROM (SELECT sessionId, updated_at, created_at
      FROM sessions
      ORDER BY updated_at DESC, sessionId
      LIMIT ?1) AS recent
ORDER BY recent.updated_at DESC, recent.sessionId";

impl Store {
    /// The newest `limit` turns of `session` (only turns numbered below `before`, if given),
    /// oldest first. `limit` is clamped to [`HISTORY_LIMIT_MAX`]; an unknown session or
    /// `limit == 0` is an empty list. To page back, pass the first turn of a page as `before`.
    pub fn history(
        &self,
        session: &SessionId,
        before: Option<TurnNo>,
        limit: usize,
    ) -> Result<Vec<HistoryTurn>, StoreError> {
        let limit = limit.min(HISTORY_LIMIT_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Stored turns fit i64 (`turn_to_sql`), so a larger bound means "no bound".
        let below = before.map_or(i64::MAX, |turn| i64::try_from(turn.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut newest_first = self.read(|conn| {
            let mut select = conn.prepare_cached(HISTORY_SQL)?;
            let rows = select.query_map(params![session.as_str(), below, limit], |row| {
                let status: String = row.get(3)?;
                let interrupted: Option<bool> = row.get(7)?;
                Ok(HistoryTurn {
                    turn: turn_from_sql(row, 0)?,
                    user_text: row.get(1)?,
                    kind: row.get(2)?,
                    status: turn_status(&status, interrupted)
                        .ok_or_else(|| unknown_status(3, status))?,
                    started_ms: row.get(4)?,
                    reply_text: row.get(5)?,
                    ended_ms: row.get(6)?,
                    reason: row.get(8)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Up to `limit` sessions (clamped to [`SESSIONS_LIMIT_MAX`]), most recently active first;
    /// ties by session id. A session exists once it stored a turn or was reset.
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let limit = limit.min(SESSIONS_LIMIT_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut select = conn.prepare_cached(SESSIONS_SQL)?;
            let rows = select.query_map([limit], |row| {
                let raw: String = row.get(0)?;
                let turns: i64 = row.get(3)?;
                Ok(SessionSummary {
                    // Every id was validated before it was stored; one that is not valid now
                    // is a damaged row, reported rather than shown.
                    session: SessionId::parse(&raw).map_err(|error| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(error),
                        )
                    })?,
                    last_active_ms: row.get(1)?,
                    created_ms: row.get(2)?,
                    turns: u64::try_from(turns)
                        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(3, turns))?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
    }
}

/// The user row's status plus the reply's flag → one status. A `done` user row always has its
/// reply row (`finish_turn` writes both in one transaction); without one it still reads as
/// completed rather than failing the whole page.
fn turn_status(user_status: &str, interrupted: Option<bool>) -> Option<TurnStatus> {
    Some(match user_status {
        "open" => TurnStatus::Open,
        "done" if interrupted == Some(true) => TurnStatus::Interrupted,
        "done" => TurnStatus::Completed,
        "failed" => TurnStatus::Failed,
        "abandoned" => TurnStatus::Abandoned,
        _ => return None,
    })
}

fn unknown_status(index: usize, status: String) -> rusqlite::Error {
    // The schema's CHECK allows only the four statuses above.
    rusqlite::Error::FromSqlConversionFailure(
        index,
        rusqlite::types::Type::Text,
        format!("unknown turn status {status:?}").into(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::turns::{FailedTurn, FinishedTurn, NewTurn};

    fn session(raw: &str) -> SessionId {
        SessionId::parse(raw).unwrap()
    }

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("koto.sqlite3")).unwrap()
    }

    fn begin(store: &Store, session: &SessionId, turn: u64, ts_ms: i64) {
        store
            .begin_turn(&NewTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                user_text: format!("q{turn}"),
                kind: "TEXT".into(),
                meta: None,
                ts_ms,
            })
            .unwrap();
    }

    fn finish(store: &Store, session: &SessionId, turn: u64, interrupted: bool, ts_ms: i64) {
        finish_with(
            store,
            session,
            turn,
            &format!("a{turn}"),
            interrupted,
            None,
            ts_ms,
        );
    }

    fn finish_with(
        store: &Store,
        session: &SessionId,
        turn: u64,
        reply: &str,
        interrupted: bool,
        reason: Option<&str>,
        ts_ms: i64,
    ) {
        store
            .finish_turn(&FinishedTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                reply_text: reply.into(),
                interrupted,
                reason: reason.map(str::to_owned),
                ts_ms,
                events: Vec::new(),
            })
            .unwrap();
    }

    fn fail(store: &Store, session: &SessionId, turn: u64, heard: &str, reason: &str, ts_ms: i64) {
        store
            .fail_turn(&FailedTurn {
                session: session.clone(),
                turn: TurnNo(turn),
                heard_text: heard.into(),
                reason: reason.into(),
                ts_ms,
                events: Vec::new(),
            })
            .unwrap();
    }

    /// `n` completed turns 0..n, turn t begun at 100·t and finished at 100·t + 1.
    fn completed_turns(store: &Store, session: &SessionId, n: u64) {
        for turn in 0..n {
            let ts = i64::try_from(turn).unwrap() * 100;
            begin(store, session, turn, ts);
            finish(store, session, turn, false, ts + 1);
        }
    }

    fn turn_numbers(turns: &[HistoryTurn]) -> Vec<u64> {
        turns.iter().map(|turn| turn.turn.0).collect()
    }

    fn plan(store: &Store, sql: &str, bind: impl rusqlite::Params) -> Vec<String> {
        store
            .read(|conn| {
                let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                explain
                    .query_map(bind, |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap()
    }

    #[test]
    fn history_is_a_primary_key_range_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let steps = plan(&store, HISTORY_SQL, params!["s", i64::MAX, 50]);
        // The bench database has a million turns: a page must cost the same as on an empty one.
        assert!(
            steps.iter().all(|step| !step.starts_with("SCAN")),
            "no full scan in the history query: {steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("SEARCH u USING PRIMARY KEY (sessionId=? AND turn<?)")),
            "the user rows are a PK range on (sessionId, turn): {steps:?}"
        );
        assert!(
            steps.iter().any(|step| step
                .contains("SEARCH a USING PRIMARY KEY (sessionId=? AND turn=? AND role=?)")),
            "each reply is a PK point lookup: {steps:?}"
        );
        assert!(
            steps.iter().all(|step| !step.contains("TEMP B-TREE")),
            "ORDER BY turn DESC is served by the key order, not a sort: {steps:?}"
        );
    }

    #[test]
    fn sessions_never_scan_the_turns() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let steps = plan(&store, SESSIONS_SQL, [50]);
        // `sessions` has a row per session; `turns` a row per message and must only be
        // searched by key, for the listed sessions.
        assert!(
            steps
                .iter()
                .all(|step| !step.starts_with("SCAN turns") && !step.starts_with("SCAN t")),
            "turns are never scanned: {steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.contains("SEARCH t USING PRIMARY KEY (sessionId=?)")),
            "the count is a PK range of one session: {steps:?}"
        );
    }

    #[test]
    fn history_is_oldest_first_and_pages_back_with_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let live = session("live-001");
        completed_turns(&store, &live, 7);
        // Another session's rows sit right next to it in the b-tree and must not leak in.
        completed_turns(&store, &session("live-002"), 3);

        let newest = store.history(&live, None, 3).unwrap();
        assert_eq!(
            turn_numbers(&newest),
            [4, 5, 6],
            "the newest three, oldest first"
        );
        let first = &newest[0];
        assert_eq!(first.user_text, "q4", "the input as stored");
        assert_eq!(
            first.reply_text.as_deref(),
            Some("a4"),
            "the reply as stored"
        );
        assert_eq!(first.kind.as_deref(), Some("TEXT"));
        assert_eq!(first.status, TurnStatus::Completed);
        assert_eq!(
            (first.started_ms, first.ended_ms),
            (400, Some(401)),
            "input and reply times"
        );

        let older = store.history(&live, Some(newest[0].turn), 3).unwrap();
        assert_eq!(
            turn_numbers(&older),
            [1, 2, 3],
            "before is exclusive: the page right before"
        );
        let oldest = store.history(&live, Some(older[0].turn), 3).unwrap();
        assert_eq!(turn_numbers(&oldest), [0], "the last page is short");
        assert!(
            store.history(&live, Some(TurnNo(0)), 3).unwrap().is_empty(),
            "nothing is older than turn 0"
        );
        assert_eq!(
            turn_numbers(&store.history(&live, Some(TurnNo(u64::MAX)), 2).unwrap()),
            [5, 6],
            "a bound beyond what SQLite stores means no bound"
        );
    }

    #[test]
    fn limit_is_clamped_and_zero_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let live = session("live-001");
        let n = u64::try_from(HISTORY_LIMIT_MAX).unwrap() + 5;
        store
            .write(|transaction| {
                // One transaction: a thousand separate commits would be slow for no purpose.
                let mut insert = transaction.prepare(
                    "INSERT INTO turns(sessionId, turn, role, text, ts, status, interrupted, kind)
                     VALUES ('live-001', ?1, 'user', 'q', ?1, 'done', 0, 'TEXT'),
                            ('live-001', ?1, 'assistant', 'a', ?1, 'done', 0, NULL)",
                )?;
                for turn in 0..n {
                    insert.execute([i64::try_from(turn).unwrap()])?;
                }
                Ok(())
            })
            .unwrap();

        let all = store.history(&live, None, usize::MAX).unwrap();
        assert_eq!(
            all.len(),
            HISTORY_LIMIT_MAX,
            "a huge limit is clamped to the maximum"
        );
        assert_eq!(
            all.last().unwrap().turn.0,
            n - 1,
            "the clamped page still ends at the newest turn"
        );
        assert!(
            store.history(&live, None, 0).unwrap().is_empty(),
            "limit 0 asks for nothing"
        );
        assert!(
            store.sessions(0).unwrap().is_empty(),
            "limit 0 asks for nothing"
        );
    }

    #[test]
    fn an_unknown_session_has_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        completed_turns(&store, &session("live-001"), 2);
        assert!(
            store
                .history(&session("never-seen"), None, 50)
                .unwrap()
                .is_empty(),
            "an unknown session is an empty transcript, not an error"
        );
    }

    #[test]
    fn every_status_is_shown_with_what_was_stored_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("koto.sqlite3");
        let live = session("live-001");
        let store = Store::open(&path).unwrap();
        begin(&store, &live, 0, 10);
        finish(&store, &live, 0, false, 11);
        begin(&store, &live, 1, 20);
        finish_with(&store, &live, 1, "a1", true, Some("user_interrupt"), 21);
        begin(&store, &live, 2, 30);
        fail(&store, &live, 2, "", "llm_timeout", 31);
        begin(&store, &live, 3, 40);
        fail(&store, &live, 3, "Half a sen", "speech_crashed", 41);
        begin(&store, &live, 4, 50);
        // The text went out but speech failed midway: completed, flagged, with what was heard.
        finish_with(
            &store,
            &live,
            4,
            "Spoken part.",
            false,
            Some("tts_failed"),
            51,
        );
        begin(&store, &live, 5, 60);
        // Leak the store as in a crash: turn 5 stays open and is abandoned on the next open.
        std::mem::forget(store);
        let store = Store::open(&path).unwrap();
        begin(&store, &live, 6, 70);

        let turns = store.history(&live, None, 10).unwrap();
        let summary: Vec<_> = turns
            .iter()
            .map(|turn| {
                (
                    turn.turn.0,
                    turn.status,
                    turn.reply_text.as_deref(),
                    turn.reason.as_deref(),
                    turn.ended_ms,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, TurnStatus::Completed, Some("a0"), None, Some(11)),
                // What was heard is stored unmarked; the status and reason say it was cut.
                (
                    1,
                    TurnStatus::Interrupted,
                    Some("a1"),
                    Some("user_interrupt"),
                    Some(21)
                ),
                (2, TurnStatus::Failed, None, Some("llm_timeout"), Some(31)),
                (
                    3,
                    TurnStatus::Failed,
                    Some("Half a sen"),
                    Some("speech_crashed"),
                    Some(41)
                ),
                (
                    4,
                    TurnStatus::Completed,
                    Some("Spoken part."),
                    Some("tts_failed"),
                    Some(51)
                ),
                (5, TurnStatus::Abandoned, None, None, None),
                (6, TurnStatus::Open, None, None, None),
            ],
            "each turn with its status, the reply that was heard, and why it ended so"
        );
        assert!(
            turns.iter().all(|turn| turn.user_text.starts_with('q')),
            "the input is shown whatever became of the turn"
        );
        assert_eq!(
            store
                .context(&live, 10)
                .unwrap()
                .iter()
                .map(|turn| turn.turn.0)
                .collect::<Vec<_>>(),
            [0, 1, 4],
            "history shows failed turns' heard text, context still never does"
        );
    }

    #[test]
    fn sessions_are_listed_by_last_activity_with_turn_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let (early, late, quiet) = (session("early"), session("late"), session("quiet"));
        begin(&store, &early, 0, 1_000);
        finish(&store, &early, 0, false, 1_001);
        begin(&store, &late, 0, 2_000);
        fail(&store, &late, 0, "", "llm_timeout", 2_001);
        begin(&store, &late, 5, 2_010);
        finish(&store, &late, 5, true, 2_011);
        // A later reply of `early` makes it the most recently active.
        begin(&store, &early, 1, 3_000);
        finish(&store, &early, 1, false, 3_005);
        store.reset_session(&quiet).unwrap();

        let listed = store.sessions(10).unwrap();
        let summary: Vec<(&str, u64)> = listed
            .iter()
            .map(|entry| (entry.session.as_str(), entry.turns))
            .collect();
        // `reset` stamps the wall clock, far later than these synthetic times.
        assert_eq!(
            summary,
            [("quiet", 0), ("early", 2), ("late", 2)],
            "newest activity first; counts are stored turns whatever their status or numbering"
        );
        assert_eq!(
            listed[1].last_active_ms, 3_005,
            "the last reply is the last activity"
        );
        assert_eq!(
            (listed[2].last_active_ms, listed[2].created_ms),
            (2_011, 2_000),
            "activity and creation times"
        );
        assert_eq!(
            store
                .sessions(2)
                .unwrap()
                .iter()
                .map(|entry| entry.session.as_str())
                .collect::<Vec<_>>(),
            ["quiet", "early"],
            "the limit keeps the most recent"
        );
    }
}
