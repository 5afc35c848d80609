//! Opening: WAL, migrations on reopen, crash leftovers.

use koto_core::TurnNo;
use koto_store::{LATEST_SCHEMA_VERSION, Store, StoreError};

use crate::{Fixture, complete_turn, new_turn, session};

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
