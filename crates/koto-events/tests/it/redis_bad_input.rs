//! Bad input and a misbehaving Redis: unusable entries, a poison payload, a stream deleted under
//! its consumer, OOM and WRONGTYPE. Each is logged and counted, the event kept or dead-lettered,
//! never silently dropped, and the runtime carries on.

use koto_events::EventsRuntime;
use koto_protocol::events::{event_type, stream};
use koto_store::NewOutboxEvent;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use crate::{
    Fixture, assert_exactly_once, complete_turn, metric, now_ms, redis_connection, session,
    start_redis, test_config, wait_for,
};

fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_entries_and_poison_payloads_go_to_the_dlq() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    let mut redis = redis_connection(&server).await;

    // Entries no relay of ours wrote: no outboxId, a non-numeric one, one this database never
    // handed out (with a payload that would not parse anyway).
    let foreign: [&[(&str, &str)]; 3] = [
        &[("type", "LtmWriteRequested"), ("payload", "{}")],
        &[
            ("type", "LtmWriteRequested"),
            ("payload", "{}"),
            ("outboxId", "abc"),
        ],
        &[
            ("type", "LtmWriteRequested"),
            ("payload", "not json at all"),
            ("outboxId", "999999"),
            ("correlationId", "x#1"),
        ],
    ];
    for fields in foreign {
        let _: String = redis.xadd("events.ltm", "*", fields).await.unwrap();
    }
    // A real outbox row whose payload does not parse: relayed, then dead-lettered by the worker.
    let poison = NewOutboxEvent {
        event_type: event_type::LTM_WRITE_REQUESTED.to_owned(),
        stream: stream::LTM.to_owned(),
        correlation_id: "poison#0".to_owned(),
        payload: serde_json::json!({ "garbage": true }),
        ts_ms: now_ms(),
    };
    let poison_id = fixture.store.append_events(&[poison]).unwrap()[0];
    complete_turn(
        &fixture.store,
        &session("s"),
        0,
        "a good turn after the bad ones",
        "ok",
    );

    wait_for("four dead letters and the good turn handled", || {
        fixture.count("SELECT COUNT(*) FROM dead_letters") == 4
            && fixture.count("SELECT COUNT(*) FROM memories") == 1
    })
    .await;
    let dlq: StreamRangeReply = redis.xrange_all("events.dlq").await.unwrap();
    assert_eq!(
        dlq.ids.len(),
        4,
        "every unusable entry is mirrored to events.dlq"
    );
    let errors: Vec<String> = dlq
        .ids
        .iter()
        .map(|entry| entry.get::<String>("error").unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .filter(|error| error.contains("no usable outboxId"))
            .count()
            == 2,
        "missing and non-numeric ids: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.contains("unknown to this database")),
        "an id we never issued: {errors:?}"
    );
    let poison_letter = dlq
        .ids
        .iter()
        .find(|entry| entry.get::<String>("outboxId") == Some(poison_id.to_string()))
        .expect("the poison row's letter carries its outboxId");
    assert!(
        poison_letter
            .get::<String>("error")
            .unwrap()
            .contains("payload does not parse"),
        "and says why"
    );
    assert_eq!(
        poison_letter.get::<String>("group").as_deref(),
        Some("ltm-workers"),
        "and which group gave up"
    );
    wait_for("everything acknowledged", || {
        let reply: redis::Value = block(redis::cmd("XPENDING").arg("events.ltm").arg("ltm-workers").query_async(&mut redis)).unwrap();
        matches!(reply, redis::Value::Array(ref items) if redis::from_redis_value_ref::<i64>(&items[0]).ok() == Some(0))
    })
    .await;
    let text = handle.metrics_text().await;
    assert!(
        metric(
            &text,
            "koto_events_consumer_errors_total{group=\"ltm-workers\",kind=\"entry\"}"
        )
        .unwrap_or(0.0)
            >= 3.0,
        "unusable entries are counted:\n{text}"
    );
    assert_eq!(
        metric(&text, "koto_events_stream_length{stream=\"events.dlq\"}"),
        Some(4.0),
        "DLQ length is exported"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_its_consumer_is_recreated_and_nothing_is_lost() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    let live = session("s");
    for turn in 0..10 {
        complete_turn(&fixture.store, &live, turn, &format!("q{turn}"), "a");
    }
    wait_for("first turns handled", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 10
    })
    .await;

    let mut redis = redis_connection(&server).await;
    let _: i64 = redis.del("events.ltm").await.unwrap();
    for turn in 10..20 {
        complete_turn(&fixture.store, &live, turn, &format!("q{turn}"), "a");
    }
    wait_for("later turns handled on the recreated stream", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 20
    })
    .await;
    assert_exactly_once(&fixture, 20);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_lost_with_their_stream_are_repaired_from_the_outbox() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    // Relay only: the entries reach Redis but nobody reads them before the stream is deleted.
    let shutdown = CancellationToken::new();
    let relay_only = koto_events::EventsConfig {
        in_process_workers: false,
        ..test_config(Some(server.url()))
    };
    let handle = EventsRuntime::new(fixture.store.clone(), relay_only)
        .start(shutdown.clone())
        .await
        .unwrap();
    for turn in 0..15 {
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
    let mut redis = redis_connection(&server).await;
    let _: i64 = redis
        .del(&["events.ltm", "events.analytics"])
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    wait_for("the lost entries handled from the outbox", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 15
            && fixture.count("SELECT COUNT(*) FROM analytics_turns") == 15
    })
    .await;
    assert_exactly_once(&fixture, 15);
    let text = handle.metrics_text().await;
    assert!(
        metric(&text, "koto_events_repaired_total{group=\"ltm-workers\"}").unwrap_or(0.0) >= 15.0,
        "repairs are counted:\n{text}"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_keeps_events_in_the_outbox_until_redis_has_room() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let mut redis = redis_connection(&server).await;
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut redis)
        .await
        .unwrap();
    for turn in 0..5 {
        complete_turn(
            &fixture.store,
            &session("s"),
            turn,
            &format!("q{turn}"),
            "a",
        );
    }
    // The metric is counted before the failure is written to the rows: wait for both.
    wait_for("OOM reported and recorded on the rows", || {
        metric(
            &handle.registry().encode(),
            "koto_events_relay_errors_total{kind=\"oom\"}",
        )
        .unwrap_or(0.0)
            >= 1.0
            && fixture.count(
                "SELECT COUNT(*) FROM outbox_events WHERE attempts > 0 AND last_error LIKE '%OOM%'",
            ) > 0
    })
    .await;
    assert_eq!(
        fixture.store.outbox_backlog().unwrap().0,
        15,
        "all 15 rows kept in the outbox"
    );

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut redis)
        .await
        .unwrap();
    wait_for("delivered and handled once Redis has room", || {
        fixture.store.outbox_backlog().unwrap().0 == 0
            && fixture.count("SELECT COUNT(*) FROM memories") == 5
    })
    .await;
    assert_exactly_once(&fixture, 5);
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "OOM is not a reason to give up"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongtype_stream_key_blocks_only_its_own_stream() {
    let server = start_redis();
    let fixture = Fixture::fresh();
    let mut redis = redis_connection(&server).await;
    let _: () = redis.set("events.analytics", "not a stream").await.unwrap();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(Some(server.url())))
        .start(shutdown.clone())
        .await
        .unwrap();
    for turn in 0..8 {
        complete_turn(
            &fixture.store,
            &session("s"),
            turn,
            &format!("q{turn}"),
            "a",
        );
    }
    wait_for("the other streams flow and the error is reported", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 8
            && metric(
                &handle.registry().encode(),
                "koto_events_relay_errors_total{kind=\"wrongtype\"}",
            )
            .unwrap_or(0.0)
                >= 1.0
    })
    .await;
    assert_eq!(
        fixture.count(
            "SELECT COUNT(*) FROM outbox_events WHERE stream = 'events.analytics' AND delivered = 0"
        ),
        8,
        "the analytics events wait in the outbox"
    );

    let _: i64 = redis.del("events.analytics").await.unwrap();
    wait_for(
        "analytics delivered and handled once the key is fixed",
        || fixture.count("SELECT COUNT(*) FROM analytics_turns") == 8,
    )
    .await;
    assert_exactly_once(&fixture, 8);
    shutdown.cancel();
    handle.wait().await;
}
