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

const MIGRATION_LIST: &[M<'static>] = &[M::up(M1_TURNS_SESSIONS_OUTBOX)];

pub(crate) const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

/// The `user_version` a database has once this build's migrations ran.
pub const LATEST_SCHEMA_VERSION: u32 = MIGRATION_LIST.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        // validate() runs every migration on an in-memory database.
        MIGRATIONS
            .validate()
            .expect("the migration list must apply cleanly to an empty database");
    }
}
