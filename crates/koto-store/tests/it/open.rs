//! Opening: WAL, migrations on reopen, crash leftovers.

use koto_core::TurnNo;
use koto_store::{LATEST_SCHEMA_VERSION, Store, StoreError};

use crate::{Fixture, complete_turn, event, finished, new_turn, session};

#[test]
fn wal_is_on() {
    let fixture = Fixture::fresh();
    let health = fixture.store.health().unwrap();
    assert_eq!(
        health.journal_mode, "wal",
        "readers must never block the writer"
    );
    complete_turn(&fixture.store, &session("s"), 0, "q", "a");
    let wal = fixture.dir.path().join("koto.sqlite3-wal");
    assert!(
        wal.exists(),
        "a committed write in WAL mode lives in the -wal file until checkpointed"
    );
}

#[test]
fn reopening_keeps_data_and_does_not_rerun_migrations() {
    let fixture = Fixture::fresh();
    let live = session("live-001");
    complete_turn(&fixture.store, &live, 0, "hello", "hi there");
    let path = fixture.path();
    drop(fixture.store);

    for _ in 0..3 {
        let store = Store::open(&path).unwrap();
        let health = store.health().unwrap();
        assert_eq!(
            health.schema_version, LATEST_SCHEMA_VERSION,
            "reopening leaves the schema at the latest version"
        );
        let context = store.context(&live, 10).unwrap();
        assert_eq!(
            context.len(),
            1,
            "a rerun migration would have failed or wiped the turn"
        );
        assert_eq!(
            context[0].reply_text, "hi there",
            "stored text survives reopening"
        );
    }
}

#[test]
fn health_reports_schema_and_mode() {
    let fixture = Fixture::fresh();
    let health = fixture.store.health().unwrap();
    assert_eq!(
        health.path,
        fixture.path(),
        "health names the database file"
    );
    assert_eq!(
        health.schema_version, health.latest_schema_version,
        "a fresh store is fully migrated"
    );
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(
        json["journalMode"], "wal",
        "health serialises with camelCase keys for GET /health"
    );
}

#[test]
fn a_crashed_turn_is_abandoned_and_never_context() {
    let fixture = Fixture::fresh();
    let path = fixture.path();
    let live = session("live-001");
    complete_turn(&fixture.store, &live, 0, "first", "first reply");
    fixture
        .store
        .begin_turn(&new_turn(&live, 1, "half-written"))
        .unwrap();
    // The process "dies" mid-turn: the open user row is on disk, the reply never comes.
    drop(fixture.store);

    let store = Store::open(&path).unwrap();
    let context = store.context(&live, 10).unwrap();
    assert_eq!(
        context.iter().map(|turn| turn.turn).collect::<Vec<_>>(),
        [TurnNo(0)],
        "the abandoned turn 1 is not context"
    );
    assert!(
        store.turn_exists(&live, TurnNo(1)).unwrap(),
        "the abandoned turn stays in history"
    );
    assert_eq!(
        store.session_state(&live).unwrap().next_turn,
        TurnNo(2),
        "its number is not reused"
    );
    let late_finish = crate::finished(&live, 1, "too late", vec![]);
    assert!(
        matches!(
            store.finish_turn(&late_finish),
            Err(StoreError::TurnNotOpen { .. })
        ),
        "an abandoned turn cannot be finished afterwards"
    );
    assert!(
        matches!(
            store.begin_turn(&new_turn(&live, 1, "again")),
            Err(StoreError::TurnExists { .. })
        ),
        "an abandoned turn's number cannot be begun again"
    );

    complete_turn(&store, &live, 2, "after restart", "welcome back");
    let turns: Vec<_> = store
        .context(&live, 10)
        .unwrap()
        .into_iter()
        .map(|turn| turn.turn)
        .collect();
    assert_eq!(
        turns,
        [TurnNo(0), TurnNo(2)],
        "context skips over the abandoned turn"
    );
}

#[test]
fn dropping_the_store_checkpoints_and_removes_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kotodama.sqlite3");
    {
        let store = koto_store::Store::open(&path).expect("open");
        let session = koto_core::SessionId::parse("s").expect("id");
        store
            .context(&session, 5)
            .expect("a read opens a reader connection");
        store
            .reset_session(&session)
            .expect("a write fills the WAL");
    }
    let wal = dir.path().join("kotodama.sqlite3-wal");
    assert!(!wal.exists(), "a clean close leaves no -wal file behind");
}

/// A full disk (SQLite's `SQLITE_FULL`, through a page cap on the real file): the write that does
/// not fit is `DiskFull` and leaves nothing half-stored (every reply row has its outbox event),
/// every turn committed before it is intact, the file passes `integrity_check`, and writing works
/// again once there is room.
#[test]
fn a_full_disk_is_disk_full_and_loses_nothing_already_stored() {
    let fixture = Fixture::fresh();
    let live = session("full-disk");
    complete_turn(
        &fixture.store,
        &live,
        0,
        "before",
        "stored before the disk filled",
    );
    fixture.store.fill_disk_for_tests(true).unwrap();
    let big = "x".repeat(16 * 1024);
    let mut refused = None;
    for turn in 1..400 {
        let begun = fixture.store.begin_turn(&new_turn(&live, turn, "q"));
        let finished_turn = begun.and_then(|_| {
            let events = vec![event(&live, turn, "TurnCompleted", "events.plugins")];
            fixture
                .store
                .finish_turn(&finished(&live, turn, &big, events))
        });
        if let Err(error) = finished_turn {
            refused = Some(error);
            break;
        }
    }
    let error = refused.expect("a capped file fills up");
    assert!(
        matches!(error, StoreError::DiskFull),
        "a full disk is DiskFull: {error:?}"
    );
    let context = fixture.store.context(&live, 1000).unwrap();
    assert_eq!(context[0].reply_text, "stored before the disk filled");
    fixture.store.fill_disk_for_tests(false).unwrap();
    let next = fixture.store.session_state(&live).unwrap().next_turn;
    complete_turn(
        &fixture.store,
        &live,
        next.0,
        "after",
        "stored after room was made",
    );
    let path = fixture.path();
    drop(fixture.store);

    let conn = rusqlite::Connection::open(path).unwrap();
    let replies: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM turns WHERE role = 'assistant'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let events: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox_events WHERE type = 'TurnCompleted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        replies, events,
        "no reply without its event, no event without its reply"
    );
    assert!(
        replies >= 2,
        "the turns before and after the full disk are stored"
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
