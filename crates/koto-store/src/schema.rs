//! The schema, as an append-only list of migrations. It never rewrites a shipped migration:
//! later changes are new `M::up` entries at the end.

use rusqlite_migration::{M, Migrations};

/// M1: short-term memory (`turns`), per-session counters (`sessions`) and the outbox.
///
/// ADR §6 names are kept exactly (`turns.sessionId`, `outbox_events.type`, `delivered`, …) because
/// consumers outside this codebase read them; extra columns are additive.
///
/// `turns` is `WITHOUT ROWID`: the table *is* its `(sessionId, turn, role)` b-tree, so a session's
/// user and assistant rows sit next to each other and the context window is one short range scan
/// from the end of the session, whatever the table size.
const M1_TURNS_SESSIONS_OUTBOX: &str = r#"
CREATE TABLE turns(
  sessionId   TEXT    NOT NULL,
  turn        INTEGER NOT NULL CHECK(turn >= 0),
  role        TEXT    NOT NULL CHECK(role IN ('user','assistant')),
  text        TEXT    NOT NULL,
  ts          INTEGER NOT NULL,
  status      TEXT    NOT NULL CHECK(status IN ('open','done','failed','abandoned')),
  interrupted INTEGER NOT NULL DEFAULT 0 CHECK(interrupted IN (0,1)),
  kind        TEXT,
  PRIMARY KEY(sessionId, turn, role)
) WITHOUT ROWID;

-- Only turns in flight are in it (a handful), so marking them abandoned on open does not scan
-- the whole history.
CREATE INDEX turns_open ON turns(sessionId, turn) WHERE status = 'open';

CREATE TABLE sessions(
  sessionId    TEXT    PRIMARY KEY NOT NULL,
  next_turn    INTEGER NOT NULL CHECK(next_turn >= 0),
  context_from INTEGER NOT NULL DEFAULT 0 CHECK(context_from >= 0),
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE outbox_events(
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  type           TEXT    NOT NULL CHECK(type <> ''),
  payload        TEXT    NOT NULL,
  created_at     INTEGER NOT NULL,
  delivered      INTEGER NOT NULL DEFAULT 0,
  stream         TEXT    NOT NULL CHECK(stream <> ''),
  correlation_id TEXT    NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT,
  delivered_at   INTEGER
);

CREATE INDEX outbox_events_pending ON outbox_events(delivered, id);
"#;

/// M2: what the event consumers need (`koto-events`).
///
/// - `event_meta.stream_epoch_ms`: fixed when this database was created; Redis entry ids are
///   `<epoch>-<outbox id>`, so they grow with the outbox, are the same on every re-send (a replay
///   is rejected by Redis), and a newer database's ids sort after an older one's.
/// - `outbox_events_stream`: embedded consumers read one stream in id order.
/// - `consumer_cursors` / `consumer_processed`: per consumer group, every row with
///   `id <= last_id` of the stream is handled, plus the handled ids above it (out of order
///   deliveries); together they make every effect idempotent by outbox id.
/// - `consumer_failures`: failed attempts per (group, outbox id), for the dead-letter limit.
/// - `dead_letters`: what a group gave up on, with the error (mirrors Redis `events.dlq`).
/// - `memories` + `memories_fts`: long-term memory; the FTS body is the text with every CJK
///   character spaced out, so `unicode61` makes one token per character and a query can match
///   CJK words as adjacent-character phrases (see `memory.rs`).
/// - `analytics_turns` / `analytics_sessions`: raw per-turn samples and running totals.
const M2_EVENT_CONSUMERS: &str = r#"
CREATE TABLE event_meta(
  key   TEXT    PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO event_meta(key, value)
  VALUES ('stream_epoch_ms', CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));

CREATE INDEX outbox_events_stream ON outbox_events(stream, id);

CREATE TABLE consumer_cursors(
  consumer   TEXT    NOT NULL,
  stream     TEXT    NOT NULL,
  last_id    INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(consumer, stream)
) WITHOUT ROWID;

CREATE TABLE consumer_processed(
  consumer     TEXT    NOT NULL,
  stream       TEXT    NOT NULL,
  outbox_id    INTEGER NOT NULL,
  processed_at INTEGER NOT NULL,
  PRIMARY KEY(consumer, stream, outbox_id)
) WITHOUT ROWID;

CREATE TABLE consumer_failures(
  consumer   TEXT    NOT NULL,
  outbox_id  INTEGER NOT NULL,
  attempts   INTEGER NOT NULL,
  last_error TEXT    NOT NULL,
  failed_at  INTEGER NOT NULL,
  PRIMARY KEY(consumer, outbox_id)
) WITHOUT ROWID;

CREATE TABLE dead_letters(
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  consumer       TEXT    NOT NULL,
  stream         TEXT    NOT NULL,
  outbox_id      INTEGER,
  type           TEXT,
  payload        TEXT,
  correlation_id TEXT,
  error          TEXT    NOT NULL,
  attempts       INTEGER NOT NULL,
  ts             INTEGER NOT NULL
);

CREATE TABLE memories(
  id          INTEGER PRIMARY KEY,
  outbox_id   INTEGER UNIQUE,
  sessionId   TEXT    NOT NULL,
  turn        INTEGER NOT NULL,
  user_text   TEXT    NOT NULL,
  reply_text  TEXT    NOT NULL,
  ts          INTEGER NOT NULL
);
CREATE VIRTUAL TABLE memories_fts USING fts5(body, tokenize = 'porter unicode61 remove_diacritics 2');

CREATE TABLE analytics_turns(
  outbox_id      INTEGER PRIMARY KEY,
  sessionId      TEXT    NOT NULL,
  turn           INTEGER NOT NULL,
  outcome        TEXT    NOT NULL,
  interrupted    INTEGER NOT NULL,
  tokens         INTEGER NOT NULL,
  ttft_ms        REAL,
  first_audio_ms REAL,
  ts             INTEGER NOT NULL
);
CREATE INDEX analytics_turns_session ON analytics_turns(sessionId, outbox_id);

CREATE TABLE analytics_sessions(
  sessionId   TEXT    PRIMARY KEY NOT NULL,
  turns       INTEGER NOT NULL,
  completed   INTEGER NOT NULL,
  interrupted INTEGER NOT NULL,
  failed      INTEGER NOT NULL,
  tokens      INTEGER NOT NULL,
  first_ts    INTEGER NOT NULL,
  last_ts     INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// M3: `turns.end_reason`, why a turn did not simply complete (`user_interrupt`,
/// `client_disconnected`, `shutdown`, `tts_failed`, `speech_crashed`, or an error code such as
/// `llm_timeout`). It is set on the *user* row, next to `status`: every turn has a user row, so
/// its ending is one row whether or not a reply was stored; assistant rows leave it NULL.
/// NULL means a clean completion, and is what rows written before M3 read as. A plain
/// `ADD COLUMN` with no default rewrites nothing, so it is instant on a large database.
const M3_TURN_END_REASON: &str = "ALTER TABLE turns ADD COLUMN end_reason TEXT;";

/// M4: `turns.meta`, where a user row's input came from (JSON `InputMeta`: `mic` with its ASR
/// confidence, a chat platform with the viewer and message id). NULL for typed input and for
/// every row written before M4.
const M4_TURN_META: &str = "ALTER TABLE turns ADD COLUMN meta TEXT;";

/// M5: per-viewer memory for live chat (`viewer.rs`): a viewer by platform + user id, and the
/// exchanges remembered for them; written with the LTM memory, forgotten on request or after
/// `chat_viewer_retention_days`.
const M5_VIEWERS: &str = r#"
CREATE TABLE viewers(
  platform   TEXT    NOT NULL,
  user_id    TEXT    NOT NULL,
  name       TEXT    NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  exchanges  INTEGER NOT NULL,
  PRIMARY KEY(platform, user_id)
) WITHOUT ROWID;
CREATE TABLE viewer_memories(
  id       INTEGER PRIMARY KEY,
  platform TEXT    NOT NULL,
  user_id  TEXT    NOT NULL,
  said     TEXT    NOT NULL,
  answered TEXT    NOT NULL,
  ts       INTEGER NOT NULL
);
CREATE INDEX viewer_memories_user ON viewer_memories(platform, user_id, ts);
CREATE INDEX viewer_memories_ts ON viewer_memories(ts);
"#;

/// M6: `turns.ended_ts` on the user row, when the turn ended however it ended (a failed or
/// interrupted turn may have no assistant row to carry the time). NULL while open and for rows
/// written before M6 (their assistant row's `ts` still tells, when there is one).
const M6_TURN_ENDED_TS: &str = "ALTER TABLE turns ADD COLUMN ended_ts INTEGER;";

const MIGRATION_LIST: &[M<'static>] = &[
    M::up(M1_TURNS_SESSIONS_OUTBOX),
    M::up(M2_EVENT_CONSUMERS),
    M::up(M3_TURN_END_REASON),
    M::up(M4_TURN_META),
    M::up(M5_VIEWERS),
    M::up(M6_TURN_ENDED_TS),
];

pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

/// The `user_version` a database has once this build's migrations ran.
pub const LATEST_SCHEMA_VERSION: u32 = MIGRATION_LIST.len() as u32;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use koto_core::{SessionId, TurnNo};

    use super::*;
    use crate::history::TurnStatus;
    use crate::store::Store;
    use crate::turns::{FailedTurn, NewTurn};

    #[test]
    fn migrations_are_valid() {
        // validate() runs every migration on an in-memory database.
        MIGRATIONS
            .validate()
            .expect("the migration list must apply cleanly to an empty database");
    }

    #[test]
    fn a_version_2_database_migrates_in_place_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("koto.sqlite3");
        {
            // The database as the previous build left it: M1 + M2 only, with rows of each
            // ending that build could write.
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            Migrations::from_slice(&MIGRATION_LIST[..2])
                .to_latest(&mut conn)
                .unwrap();
            let version: u32 = conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            assert_eq!(version, 2, "the fixture is a version-2 database");
            conn.execute_batch(
                "INSERT INTO turns(sessionId, turn, role, text, ts, status, interrupted, kind) VALUES
                   ('old', 0, 'user', 'q0', 10, 'done', 0, 'TEXT'),
                   ('old', 0, 'assistant', 'a0', 11, 'done', 0, NULL),
                   ('old', 1, 'user', 'q1', 20, 'done', 0, 'TEXT'),
                   ('old', 1, 'assistant', 'a1', 21, 'done', 1, NULL),
                   ('old', 2, 'user', 'q2', 30, 'failed', 0, 'TEXT'),
                   ('old', 3, 'user', 'q3', 40, 'open', 0, 'TEXT');
                 INSERT INTO sessions(sessionId, next_turn, context_from, created_at, updated_at)
                   VALUES ('old', 4, 0, 10, 40);",
            )
            .unwrap();
        }

        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.health().unwrap().schema_version,
            LATEST_SCHEMA_VERSION,
            "opening ran the pending migration"
        );
        let old = SessionId::parse("old").unwrap();
        let turns = store.history(&old, None, 10).unwrap();
        let summary: Vec<_> = turns
            .iter()
            .map(|turn| {
                (
                    turn.turn.0,
                    turn.status,
                    turn.reply_text.as_deref(),
                    turn.reason.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, TurnStatus::Completed, Some("a0"), None),
                (1, TurnStatus::Interrupted, Some("a1"), None),
                (2, TurnStatus::Failed, None, None),
                (3, TurnStatus::Abandoned, None, None),
            ],
            "old rows read back unchanged, with no reason (none was kept)"
        );
        assert_eq!(
            store.context(&old, 10).unwrap().len(),
            2,
            "the old done turns are still context"
        );

        // The migrated table takes new endings with their reasons.
        store
            .begin_turn(&NewTurn {
                session: old.clone(),
                turn: TurnNo(4),
                user_text: "q4".into(),
                kind: "TEXT".into(),
                meta: None,
                ts_ms: 50,
            })
            .unwrap();
        store
            .fail_turn(&FailedTurn {
                session: old.clone(),
                turn: TurnNo(4),
                heard_text: "half".into(),
                reason: "storage_error".into(),
                ts_ms: 51,
                events: Vec::new(),
            })
            .unwrap();
        let newest = store.history(&old, None, 1).unwrap();
        assert_eq!(
            (newest[0].reply_text.as_deref(), newest[0].reason.as_deref()),
            (Some("half"), Some("storage_error")),
            "a failure on the migrated database keeps what was heard and why"
        );
    }
}
