//! Redis mode against a real `redis-server`: order and contract fields, Redis killed and
//! restarted, replays absorbed by explicit ids, dead workers' entries reclaimed, the standalone
//! worker, and the benchmark helpers.

use koto_events::{EventsConfig, EventsRuntime, Mode, run_standalone_worker};
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use crate::{
    Fixture, assert_exactly_once, complete_turn, metric, redis_connection, session, start_redis,
    test_config, wait_for,
};

fn text(entry: &redis::streams::StreamId, name: &str) -> Option<String> {
    entry.get::<String>(name)
}

async fn xrange(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> StreamRangeReply {
    connection.xrange_all(stream).await.unwrap()
}

async fn xpending_count(
    connection: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
) -> i64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(connection)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => redis::from_redis_value_ref(&items[0]).unwrap(),
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_reach_redis_in_order_with_the_contract_fields() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    assert_eq!(handle.mode(), Mode::Redis, "reachable Redis → Redis mode");
    assert!(
        handle.mode_reason().contains("PING"),
        "the reason says Redis answered: {}",
        handle.mode_reason()
    );

    const TURNS: u64 = 400;
    let store = fixture.store.clone();
    let ids: Vec<Vec<i64>> = tokio::task::spawn_blocking(move || {
        let live = session("live-001");
        (0..TURNS)
            .map(|turn| {
                complete_turn(
                    &store,
                    &live,
                    turn,
                    &format!("q{turn}"),
                    &format!("a{turn}"),
                )
            })
            .collect()
    })
    .await
    .unwrap();
    wait_for("every turn handled", || {
        fixture.count("SELECT COUNT(*) FROM memories") == TURNS as i64
            && fixture.count("SELECT COUNT(*) FROM analytics_turns") == TURNS as i64
    })
    .await;
    assert_exactly_once(&fixture, TURNS as i64);
    assert_eq!(
        fixture.store.outbox_backlog().unwrap().0,
        0,
        "all 1,200 rows marked delivered"
    );

    let epoch = fixture.store.stream_epoch_ms().unwrap();
    let mut redis = redis_connection(&server).await;
    for (index, stream) in ["events.ltm", "events.analytics", "events.plugins"]
        .into_iter()
        .enumerate()
    {
        let entries = xrange(&mut redis, stream).await.ids;
        let expected: Vec<i64> = ids.iter().map(|turn_ids| turn_ids[index]).collect();
        let got: Vec<i64> = entries
            .iter()
            .map(|entry| text(entry, "outboxId").unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            got, expected,
            "{stream} holds each event once, in commit order"
        );
        for (turn, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.id,
                format!("{epoch}-{}", expected[turn]),
                "entry id is <epoch>-<outboxId>"
            );
            assert_eq!(
                text(entry, "correlationId"),
                Some(format!("live-001#{turn}")),
                "correlationId is sessionId#turn"
            );
            let payload: serde_json::Value =
                serde_json::from_str(&text(entry, "payload").unwrap()).unwrap();
            assert_eq!(payload["turn"], turn as u64, "payload is the event JSON");
            assert!(text(entry, "type").is_some(), "every entry has a type");
        }
    }
    let text_metrics = handle.metrics_text().await;
    assert_eq!(
        metric(&text_metrics, "koto_events_relay_delivered_total"),
        Some((3 * TURNS) as f64),
        "delivered count:\n{text_metrics}"
    );
    assert_eq!(
        metric(&text_metrics, "koto_events_redis_connected"),
        Some(1.0),
        "connection state is exported"
    );
    assert_eq!(
        metric(&text_metrics, "koto_outbox_backlog"),
        Some(0.0),
        "no backlog"
    );
    assert_eq!(
        metric(
            &text_metrics,
            "koto_events_stream_length{stream=\"events.ltm\"}"
        ),
        Some(TURNS as f64),
        "XLEN exported"
    );
    assert_eq!(
        metric(
            &text_metrics,
            "koto_events_group_pending{group=\"ltm-workers\",stream=\"events.ltm\"}"
        ),
        Some(0.0),
        "everything acknowledged"
    );
    assert_eq!(
        metric(
            &text_metrics,
            "koto_events_delivery_latency_seconds_count{mode=\"redis\"}"
        ),
        Some((3 * TURNS) as f64),
        "commit → XADD latency observed per row"
    );
    assert_eq!(
        xpending_count(&mut redis, "events.analytics", "analytics-workers").await,
        0,
        "no pending entries"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_and_restarted_loses_nothing() {
    let mut server = start_redis();
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();

    let (progress_tx, mut progress) = tokio::sync::mpsc::channel::<u64>(1024);
    let store = fixture.store.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let live = session("live-001");
        for turn in 0..300 {
            complete_turn(
                &store,
                &live,
                turn,
                &format!("q{turn}"),
                &format!("a{turn}"),
            );
            let _ = progress_tx.blocking_send(turn);
        }
    });
    // Kill while turns are still being committed and relayed.
    while let Some(turn) = progress.recv().await {
        if turn == 100 {
            break;
        }
    }
    server.kill();
    while let Some(turn) = progress.recv().await {
        if turn == 200 {
            break;
        }
    }
    wait_for("the relay noticing Redis is gone", || {
        metric(&handle.registry().encode(), "koto_events_redis_connected") == Some(0.0)
    })
    .await;
    // The chat path did not wait on Redis: turns kept committing while it was down.
    assert!(
        fixture.store.outbox_backlog().unwrap().0 > 0,
        "events wait in the outbox while Redis is down"
    );
    server.restart().unwrap();
    writer.await.unwrap();

    wait_for("all 300 turns handled after the restart", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 300
            && fixture.count("SELECT COALESCE(SUM(turns), 0) FROM analytics_sessions") == 300
    })
    .await;
    assert_exactly_once(&fixture, 300);
    wait_for("backlog drained", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;
    let text = handle.metrics_text().await;
    assert!(
        metric(&text, "koto_events_redis_reconnects_total").unwrap_or(0.0) >= 1.0,
        "the reconnect is counted:\n{text}"
    );
    assert!(
        metric(&text, "koto_events_relay_errors_total{kind=\"connection\"}").unwrap_or(0.0) >= 1.0,
        "the outage is counted"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_is_rejected_by_its_ids_not_stored_twice() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let config = EventsConfig {
        in_process_workers: false,
        ..test_config(Some(server.url()))
    };
    let handle = EventsRuntime::new(fixture.store.clone(), config)
        .start(shutdown.clone())
        .await
        .unwrap();
    for turn in 0..10 {
        complete_turn(&fixture.store, &session("s"), turn, "q", "a");
    }
    wait_for("first delivery", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;

    // A crash between XADD and marking: the rows look undelivered again.
    let writer = rusqlite::Connection::open(fixture.path()).unwrap();
    writer
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    writer
        .execute(
            "UPDATE outbox_events SET delivered = 0, delivered_at = NULL",
            [],
        )
        .unwrap();
    drop(writer);
    complete_turn(&fixture.store, &session("s"), 10, "q", "a");
    wait_for("re-sent batch settled", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;

    let mut redis = redis_connection(&server).await;
    for stream in ["events.ltm", "events.analytics", "events.plugins"] {
        let length: i64 = redis.xlen(stream).await.unwrap();
        assert_eq!(
            length, 11,
            "{stream}: the replayed 10 were rejected as duplicates, only turn 10 was added"
        );
    }
    let text = handle.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "koto_events_relay_id_fallbacks_total{stream=\"events.ltm\"}"
        ),
        None,
        "no fallback to automatic ids"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_pending_entries_are_reclaimed() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let mut redis = redis_connection(&server).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("events.ltm")
        .arg("ltm-workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await
        .unwrap();

    // Phase 1: relay only; a worker reads every entry and dies before acknowledging.
    let shutdown = CancellationToken::new();
    let relay_only = EventsConfig {
        in_process_workers: false,
        ..test_config(Some(server.url()))
    };
    let handle = EventsRuntime::new(fixture.store.clone(), relay_only)
        .start(shutdown.clone())
        .await
        .unwrap();
    for turn in 0..20 {
        complete_turn(
            &fixture.store,
            &session("s"),
            turn,
            &format!("q{turn}"),
            "a",
        );
    }
    wait_for("delivered", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
    })
    .await;
    shutdown.cancel();
    handle.wait().await;
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("ltm-workers")
        .arg("dead-worker")
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg("events.ltm")
        .arg(">")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !matches!(read, redis::Value::Nil),
        "the dead worker took the entries"
    );
    assert_eq!(
        xpending_count(&mut redis, "events.ltm", "ltm-workers").await,
        20,
        "all 20 pending on the dead worker"
    );

    // Phase 2: a live worker takes them over once idle past RECLAIM_IDLE_MS.
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    wait_for("the dead worker's entries handled", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 20
    })
    .await;
    wait_for("and acknowledged", || {
        futures_block(xpending_count(&mut redis, "events.ltm", "ltm-workers")) == 0
    })
    .await;
    let text = handle.metrics_text().await;
    assert!(
        metric(&text, "koto_events_reclaimed_total{group=\"ltm-workers\"}").unwrap_or(0.0) >= 20.0,
        "the takeover is counted:\n{text}"
    );
    assert_exactly_once(&fixture, 20);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_worker_consumes_what_the_server_relays() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let config = EventsConfig {
        in_process_workers: false,
        ..test_config(Some(server.url()))
    };
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), config.clone())
        .start(shutdown.clone())
        .await
        .unwrap();

    // `kotodama worker --group ltm-workers --group analytics-workers` on the same database file.
    let worker_store = koto_store::Store::open_shared(&fixture.path()).unwrap();
    let worker = tokio::spawn(run_standalone_worker(
        worker_store,
        config.clone(),
        vec!["ltm-workers".to_owned(), "analytics-workers".to_owned()],
        shutdown.clone(),
    ));
    for turn in 0..30 {
        complete_turn(
            &fixture.store,
            &session("s"),
            turn,
            &format!("q{turn}"),
            "a",
        );
    }
    wait_for("the standalone worker handled everything", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 30
            && fixture.count("SELECT COUNT(*) FROM analytics_turns") == 30
    })
    .await;
    assert_exactly_once(&fixture, 30);
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    handle.wait().await;

    let refused = run_standalone_worker(
        fixture.store.clone(),
        config.clone(),
        vec!["plugin-workers".to_owned()],
        CancellationToken::new(),
    )
    .await;
    assert!(
        refused.is_err(),
        "plugins live in the server; a standalone plugin group would steal their events"
    );
    let unknown = run_standalone_worker(
        fixture.store.clone(),
        config,
        vec!["nope".to_owned()],
        CancellationToken::new(),
    )
    .await;
    assert!(
        unknown.is_err(),
        "an unknown group name is an error, not a silent no-op"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_helpers_measure_both_rates() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let ours = koto_events::bench::outbox_delivery(&fixture.store, &server.url(), 3_000)
        .await
        .unwrap();
    let theirs = koto_events::bench::redis_benchmark_xadd(server.port(), 20_000, 16, 1)
        .await
        .unwrap();
    eprintln!(
        "outbox delivery: {ours:?}; redis-benchmark XADD -c 1 -P 16: {theirs:.0}/s; ratio {:.2}",
        ours.ratio_to(theirs)
    );
    assert_eq!(
        ours.latency_samples, 300,
        "one sample per sequential commit"
    );
    assert!(
        ours.p50_ms > 0.0 && ours.p50_ms <= ours.p95_ms && ours.p95_ms <= ours.p99_ms,
        "percentiles are ordered: {ours:?}"
    );
    assert_eq!(
        ours.throughput_events, 3_000,
        "every event of the run was read back"
    );
    assert!(
        ours.events_per_sec > 0.0 && theirs > 0.0,
        "both rates were measured"
    );
    let mut redis = redis_connection(&server).await;
    let keys: Vec<String> = redis.keys("bench.*").await.unwrap();
    assert!(
        keys.is_empty(),
        "benchmarks clean up their streams: {keys:?}"
    );
}

fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}
