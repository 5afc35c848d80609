//! Fixtures shared by this crate's unit tests: a store on a real SQLite file in a temp dir, and
//! outbox events numbered `n`. Test-only; nothing here ships.

#![allow(clippy::unwrap_used)]

use crate::{NewOutboxEvent, Store};

/// A fresh store; keep the dir alive as long as the store.
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
    (dir, store)
}

/// Event number `n` on `stream`, its number in the payload and the correlation id.
pub(crate) fn event(stream: &str, n: i64) -> NewOutboxEvent {
    NewOutboxEvent {
        event_type: "TurnCompleted".into(),
        stream: stream.into(),
        correlation_id: format!("s#{n}"),
        payload: serde_json::json!({ "n": n }),
        ts_ms: 1_000 + n,
    }
}
