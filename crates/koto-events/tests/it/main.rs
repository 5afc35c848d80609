//! Integration tests of the event runtime: real SQLite files in temp dirs, a real `redis-server`
//! per test (feature `redis`) on a free loopback port, real child processes killed with SIGKILL.
//! Waiting is always for a condition with a deadline, never a fixed sleep.
#![allow(clippy::unwrap_used)]

mod crash;
mod embedded;
#[cfg(feature = "redis")]
mod redis_bad_input;
#[cfg(feature = "redis")]
mod redis_delivery;
mod switching;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use koto_core::{SessionId, TurnNo};
use koto_events::EventsConfig;
use koto_protocol::events::{
    AnalyticsChatStats, LtmPayload, LtmWriteRequested, TurnFinished, event_type, stream,
};
use koto_store::{FinishedTurn, NewOutboxEvent, NewTurn, Store};

/// Generous: a loaded 2-core CI machine is slow, and a condition that never holds fails anyway.
pub const DEADLINE: Duration = Duration::from_secs(40);

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

    /// A read-only connection for asserting on tables directly.
    pub fn sql(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(
            self.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.sql().query_row(sql, [], |row| row.get(0)).unwrap()
    }
}

/// Timings short enough for tests, long enough not to race a slow machine.
pub fn test_config(redis_url: Option<String>) -> EventsConfig {
    EventsConfig {
        redis_url,
        outbox_poll: Duration::from_millis(200),
        reclaim_idle: Duration::from_millis(400),
        repair_after: Duration::from_millis(1_500),
        redis_block: Duration::from_millis(200),
        dlq_after_attempts: 3,
        ..EventsConfig::default()
    }
}

pub fn session(raw: &str) -> SessionId {
    SessionId::parse(raw).unwrap()
}

/// The three events the engine writes for a completed turn, in its shapes.
pub fn turn_events(session: &SessionId, turn: u64, user: &str, reply: &str) -> Vec<NewOutboxEvent> {
    let correlation_id = format!("{session}#{turn}");
    let ts = 1_000_000 + turn as i64;
    let event = |event_type: &str, stream: &str, payload: serde_json::Value| NewOutboxEvent {
        event_type: event_type.to_owned(),
        stream: stream.to_owned(),
        correlation_id: correlation_id.clone(),
        payload,
        ts_ms: now_ms(),
    };
    let ltm = LtmWriteRequested {
        correlation_id: correlation_id.clone(),
        session_id: session.clone(),
        turn: TurnNo(turn),
        payload: LtmPayload {
            text: user.to_owned(),
            reply: reply.to_owned(),
            vectorize: true,
            viewer: None,
        },
        ts,
    };
    let analytics = AnalyticsChatStats {
        correlation_id: correlation_id.clone(),
        session_id: session.clone(),
        turn: TurnNo(turn),
        ttft_ms: Some(10.0 + (turn % 10) as f64),
        first_audio_ms: Some(50.0),
        tokens: 7,
        interrupted: false,
        outcome: "completed".to_owned(),
        ts,
    };
    let finished = TurnFinished {
        correlation_id: correlation_id.clone(),
        session_id: session.clone(),
        turn: TurnNo(turn),
        input: user.to_owned(),
        reply: reply.to_owned(),
        interrupted: false,
        error_code: None,
        filtered: None,
        ts,
    };
    vec![
        event(
            event_type::LTM_WRITE_REQUESTED,
            stream::LTM,
            serde_json::to_value(ltm).unwrap(),
        ),
        event(
            event_type::ANALYTICS_CHAT_STATS,
            stream::ANALYTICS,
            serde_json::to_value(analytics).unwrap(),
        ),
        event(
            event_type::TURN_COMPLETED,
            stream::PLUGINS,
            serde_json::to_value(finished).unwrap(),
        ),
    ]
}

/// Begins and finishes a turn the way the engine does (reply + outbox rows in one transaction).
pub fn complete_turn(
    store: &Store,
    session: &SessionId,
    turn: u64,
    user: &str,
    reply: &str,
) -> Vec<i64> {
    store
        .begin_turn(&NewTurn {
            session: session.clone(),
            turn: TurnNo(turn),
            user_text: user.to_owned(),
            kind: "TEXT".to_owned(),
            meta: None,
            ts_ms: now_ms(),
        })
        .unwrap();
    store
        .finish_turn(&FinishedTurn {
            session: session.clone(),
            turn: TurnNo(turn),
            reply_text: reply.to_owned(),
            interrupted: false,
            reason: None,
            ts_ms: now_ms(),
            events: turn_events(session, turn, user, reply),
        })
        .unwrap()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `condition` until it holds; panics with `what` after `DEADLINE`.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if condition() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A metric's value in a Prometheus text (the first sample line starting with `series`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Every group handled every row of its stream, each effect exactly once.
pub fn assert_exactly_once(fixture: &Fixture, turns: i64) {
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM memories"),
        turns,
        "one memory per committed turn"
    );
    assert_eq!(
        fixture.count("SELECT COUNT(DISTINCT outbox_id) FROM memories"),
        turns,
        "no memory stored twice"
    );
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM analytics_turns"),
        turns,
        "one analytics sample per committed turn"
    );
    assert_eq!(
        fixture.count("SELECT COALESCE(SUM(turns), 0) FROM analytics_sessions"),
        turns,
        "running totals counted every turn once (a duplicate would over-count)"
    );
}

#[cfg(feature = "redis")]
pub fn start_redis() -> koto_events::redis_server::RedisServer {
    koto_events::redis_server::RedisServer::start().unwrap_or_else(|error| {
        panic!(
            "cannot start a private redis-server: {error}. Run scripts/test.sh, which installs it."
        )
    })
}

#[cfg(feature = "redis")]
pub async fn redis_connection(
    server: &koto_events::redis_server::RedisServer,
) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
