//! Integration tests of the SQLite store on real files in temp dirs. No mocks, no sleeps.
#![allow(clippy::unwrap_used)]

mod concurrency;
mod open;
mod prefill;
mod turns;

use std::path::PathBuf;

use koto_core::{SessionId, TurnNo};
use koto_store::{FailedTurn, FinishedTurn, NewOutboxEvent, NewTurn, Store};

/// A store in its own temp dir; the dir lives as long as the fixture.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl Fixture {
    pub fn fresh() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        Fixture { dir, store }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("koto.sqlite3")
    }
}

pub fn session(raw: &str) -> SessionId {
    SessionId::parse(raw).unwrap()
}

pub fn new_turn(session: &SessionId, turn: u64, user_text: &str) -> NewTurn {
    NewTurn {
        session: session.clone(),
        turn: TurnNo(turn),
        user_text: user_text.into(),
        kind: "TEXT".into(),
        meta: None,
        ts_ms: 1_000 + turn as i64,
    }
}

pub fn event(session: &SessionId, turn: u64, event_type: &str, stream: &str) -> NewOutboxEvent {
    NewOutboxEvent {
        event_type: event_type.into(),
        stream: stream.into(),
        correlation_id: format!("{session}#{turn}"),
        payload: serde_json::json!({ "sessionId": session.as_str(), "turn": turn }),
        ts_ms: 2_000 + turn as i64,
    }
}

pub fn finished(
    session: &SessionId,
    turn: u64,
    reply: &str,
    events: Vec<NewOutboxEvent>,
) -> FinishedTurn {
    FinishedTurn {
        session: session.clone(),
        turn: TurnNo(turn),
        reply_text: reply.into(),
        interrupted: false,
        reason: None,
        ts_ms: 2_000 + turn as i64,
        events,
    }
}

pub fn failed(
    session: &SessionId,
    turn: u64,
    heard: &str,
    reason: &str,
    events: Vec<NewOutboxEvent>,
) -> FailedTurn {
    FailedTurn {
        session: session.clone(),
        turn: TurnNo(turn),
        heard_text: heard.into(),
        reason: reason.into(),
        ts_ms: 3_000 + turn as i64,
        events,
    }
}

/// Begins and finishes a turn with one outbox event.
pub fn complete_turn(store: &Store, session: &SessionId, turn: u64, user_text: &str, reply: &str) {
    store
        .begin_turn(&new_turn(session, turn, user_text))
        .unwrap();
    let events = vec![event(session, turn, "TurnCompleted", "events.plugins")];
    store
        .finish_turn(&finished(session, turn, reply, events))
        .unwrap();
}
