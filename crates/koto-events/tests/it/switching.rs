//! Runs that stop and start, and (with the `redis` feature) switch between Redis and embedded
//! mode: every event is handled exactly once whichever mode each run had.

use koto_events::{EventsConfig, EventsHandle, EventsRuntime};
use tokio_util::sync::CancellationToken;

use crate::{Fixture, assert_exactly_once, complete_turn, session, test_config, wait_for};

async fn run(fixture: &Fixture, config: EventsConfig) -> (EventsHandle, CancellationToken) {
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), config)
        .start(shutdown.clone())
        .await
        .unwrap();
    (handle, shutdown)
}

async fn stop(handle: EventsHandle, shutdown: CancellationToken) {
    shutdown.cancel();
    handle.wait().await;
}

fn write_turns(fixture: &Fixture, range: std::ops::Range<u64>) {
    let live = session("switch");
    for turn in range {
        complete_turn(
            &fixture.store,
            &live,
            turn,
            &format!("q{turn}"),
            &format!("a{turn}"),
        );
    }
}

async fn wait_handled(fixture: &Fixture, turns: i64) {
    wait_for(&format!("{turns} turns handled"), || {
        fixture.count("SELECT COUNT(*) FROM memories") >= turns
            && fixture.count("SELECT COALESCE(SUM(turns), 0) FROM analytics_sessions") >= turns
    })
    .await;
    assert_exactly_once(fixture, turns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cursors_survive_restarts() {
    let fixture = Fixture::fresh();
    let (handle, shutdown) = run(&fixture, test_config(None)).await;
    write_turns(&fixture, 0..20);
    wait_handled(&fixture, 20).await;
    stop(handle, shutdown).await;

    // Committed while nothing consumes: picked up from the durable cursor next run.
    write_turns(&fixture, 20..30);
    let (handle, shutdown) = run(&fixture, test_config(None)).await;
    wait_handled(&fixture, 30).await;
    stop(handle, shutdown).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_modes_between_runs_loses_and_repeats_nothing() {
    let server = crate::start_redis();
    let fixture = Fixture::fresh();
    let redis_config = || test_config(Some(server.url()));

    // Run 1, embedded: handled from the outbox, never sent to Redis.
    let (handle, shutdown) = run(&fixture, test_config(None)).await;
    write_turns(&fixture, 0..20);
    wait_handled(&fixture, 20).await;
    stop(handle, shutdown).await;

    // Run 2, Redis, relay only (standalone workers that are not running): everything reaches
    // Redis, including run 1's rows; nothing new is handled.
    write_turns(&fixture, 20..30);
    let (handle, shutdown) = run(
        &fixture,
        EventsConfig {
            in_process_workers: false,
            ..redis_config()
        },
    )
    .await;
    assert_eq!(
        handle.mode(),
        koto_events::Mode::Redis,
        "REDIS_URL reachable → Redis mode"
    );
    wait_for("every row delivered to Redis", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;
    stop(handle, shutdown).await;
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM memories"),
        20,
        "no worker ran in run 2"
    );

    // Run 3, embedded again: resumes at its cursor, i.e. the rows Redis got but no one handled.
    let (handle, shutdown) = run(&fixture, test_config(None)).await;
    wait_handled(&fixture, 30).await;
    stop(handle, shutdown).await;

    // Run 4, Redis with workers: the groups read all 90 entries; every one is a duplicate
    // except the new turns'.
    write_turns(&fixture, 30..35);
    let (handle, shutdown) = run(&fixture, redis_config()).await;
    wait_handled(&fixture, 35).await;
    let mut redis = crate::redis_connection(&server).await;
    wait_for("the groups acknowledged everything", || {
        let pending: i64 = futures_block(
            redis::cmd("XPENDING")
                .arg("events.ltm")
                .arg("ltm-workers")
                .query_async::<redis::Value>(&mut redis),
        )
        .map(|value| match value {
            redis::Value::Array(items) => items
                .first()
                .and_then(|count| redis::from_redis_value_ref::<i64>(count).ok())
                .unwrap_or(-1),
            _ => -1,
        })
        .unwrap_or(-1);
        pending == 0
    })
    .await;
    stop(handle, shutdown).await;
    assert_exactly_once(&fixture, 35);
}

/// Runs a future to completion from inside a sync closure on the multi-threaded runtime.
#[cfg(feature = "redis")]
fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn pruning(config: EventsConfig) -> EventsConfig {
    EventsConfig {
        outbox_retention: std::time::Duration::ZERO,
        outbox_prune_interval: std::time::Duration::from_millis(100),
        ..config
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_handled_rows_only() {
    let fixture = Fixture::fresh();
    let (handle, shutdown) = run(&fixture, pruning(test_config(None))).await;
    write_turns(&fixture, 0..10);
    wait_handled(&fixture, 10).await;
    wait_for("every handled row pruned", || {
        fixture.count("SELECT COUNT(*) FROM outbox_events") == 0
    })
    .await;
    let text = handle.metrics_text().await;
    assert_eq!(
        crate::metric(&text, "koto_outbox_pruned_total"),
        Some(30.0),
        "pruned rows are counted:\n{text}"
    );
    assert_eq!(
        fixture.store.outbox_high_water().unwrap(),
        30,
        "ids keep growing past pruned rows"
    );
    stop(handle, shutdown).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_delivered_rows_no_group_has_handled() {
    let server = crate::start_redis();
    let fixture = Fixture::fresh();
    let relay_only = EventsConfig {
        in_process_workers: false,
        ..pruning(test_config(Some(server.url())))
    };
    let (handle, shutdown) = run(&fixture, relay_only).await;
    write_turns(&fixture, 0..10);
    wait_for("delivered", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;
    // Plugins rows (no group in this runtime) go; ltm and analytics rows wait for their groups.
    wait_for("the plugins rows pruned", || {
        fixture.count("SELECT COUNT(*) FROM outbox_events WHERE stream = 'events.plugins'") == 0
    })
    .await;
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM outbox_events"),
        20,
        "rows no group has handled are kept"
    );
    stop(handle, shutdown).await;

    let (handle, shutdown) = run(&fixture, pruning(test_config(Some(server.url())))).await;
    wait_handled(&fixture, 10).await;
    wait_for("handled rows pruned", || {
        fixture.count("SELECT COUNT(*) FROM outbox_events") == 0
    })
    .await;
    stop(handle, shutdown).await;
}
