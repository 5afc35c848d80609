//! Embedded mode (no Redis): delivery, order, exactly-once effects, recall, stats, poison
//! events, failing plugins and a locked database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use koto_events::{
    EventsRuntime, Mode, Plugin, PluginBody, PluginError, PluginEvent, PluginFuture,
};
use koto_protocol::events::{event_type, stream};
use koto_store::NewOutboxEvent;
use tokio_util::sync::CancellationToken;

use crate::{
    Fixture, assert_exactly_once, complete_turn, metric, now_ms, session, test_config, wait_for,
};

/// Records every plugin event; fails every call for `fail_turn` (a poison event for plugins).
#[derive(Default)]
pub struct RecordingPlugin {
    pub seen: Mutex<Vec<i64>>,
    pub fail_turn: Option<u64>,
    pub failed_calls: AtomicUsize,
}

impl Plugin for RecordingPlugin {
    fn name(&self) -> &str {
        "recorder"
    }

    fn handle(&self, event: PluginEvent) -> PluginFuture {
        let turn = match &event.body {
            PluginBody::TurnCompleted(finished)
            | PluginBody::TurnInterrupted(finished)
            | PluginBody::TurnFailed(finished) => finished.turn.0,
            PluginBody::UserInput(input) => input.turn.0,
        };
        if Some(turn) == self.fail_turn {
            self.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Box::pin(std::future::ready(Err(PluginError(
                "refusing this turn".into(),
            ))));
        }
        self.seen.lock().unwrap().push(event.outbox_id);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_are_handled_in_order_exactly_once() {
    let fixture = Fixture::fresh();
    let plugin = Arc::new(RecordingPlugin::default());
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(None))
        .with_plugin(plugin.clone())
        .start(shutdown.clone())
        .await
        .unwrap();
    assert_eq!(handle.mode(), Mode::Embedded, "no REDIS_URL means embedded");
    assert!(
        handle.mode_reason().contains("REDIS_URL"),
        "the reason names the missing setting: {}",
        handle.mode_reason()
    );

    // 500 turns × (ltm + analytics + plugins) = 1,500 events, committed while consumers run.
    const TURNS: u64 = 500;
    let store = fixture.store.clone();
    let live = session("live-001");
    let writer = tokio::task::spawn_blocking(move || {
        let mut plugin_ids = Vec::new();
        for turn in 0..TURNS {
            let ids = complete_turn(
                &store,
                &live,
                turn,
                &format!("question {turn}"),
                &format!("answer {turn}"),
            );
            plugin_ids.push(ids[2]);
        }
        plugin_ids
    });
    let plugin_ids = writer.await.unwrap();

    wait_for("every turn handled by all three groups", || {
        fixture.count("SELECT COUNT(*) FROM memories") == TURNS as i64
            && fixture.count("SELECT COUNT(*) FROM analytics_turns") == TURNS as i64
            && plugin.seen.lock().unwrap().len() == TURNS as usize
    })
    .await;
    assert_exactly_once(&fixture, TURNS as i64);
    assert_eq!(
        *plugin.seen.lock().unwrap(),
        plugin_ids,
        "the plugin saw every event once, in commit order"
    );
    let memory_order: Vec<i64> = fixture
        .sql()
        .prepare("SELECT outbox_id FROM memories ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        memory_order.windows(2).all(|pair| pair[0] < pair[1]),
        "memories were written in outbox order"
    );

    let stats = handle.stats().await.unwrap();
    assert_eq!(stats.global.turns, TURNS, "GET /stats counts every turn");
    assert_eq!(stats.global.completed, TURNS, "all of them completed");
    assert_eq!(
        stats.sessions.first().map(|s| s.session_id.as_str()),
        Some("live-001"),
        "the session is listed"
    );
    assert!(
        stats.global.ttft_ms.p95.is_some(),
        "TTFT percentiles exist once samples do"
    );

    let text = handle.metrics_text().await;
    assert_eq!(
        metric(&text, "koto_events_mode{mode=\"embedded\"}"),
        Some(1.0),
        "the mode is exported:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "koto_events_consumed_total{group=\"ltm-workers\",result=\"applied\"}"
        ),
        Some(TURNS as f64),
        "each LTM event applied once"
    );
    assert_eq!(
        metric(
            &text,
            "koto_events_group_lag{group=\"analytics-workers\",stream=\"events.analytics\"}"
        ),
        Some(0.0),
        "nothing left for analytics"
    );
    assert_eq!(
        metric(
            &text,
            "koto_events_delivery_latency_seconds_count{mode=\"embedded\"}"
        ),
        Some((3 * TURNS) as f64),
        "commit → effect latency is observed per applied event"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_are_recalled_across_sessions_in_english_and_chinese() {
    let fixture = Fixture::fresh();
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(None))
        .start(shutdown.clone())
        .await
        .unwrap();
    let old = session("stream-2025-01");
    let store = fixture.store.clone();
    tokio::task::spawn_blocking(move || {
        complete_turn(
            &store,
            &old,
            0,
            "My cat is called Mochi.",
            "Mochi is a lovely name!",
        );
        complete_turn(&store, &old, 1, "我家的猫叫小花。", "小花这个名字真可爱！");
        complete_turn(&store, &old, 2, "The weather is nice.", "Enjoy it.");
    })
    .await
    .unwrap();
    wait_for("three memories", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 3
    })
    .await;

    let recall = handle.recall();
    let new = session("stream-2025-02");
    let english = recall
        .recall(&new, "What's my cat's name again?", 3)
        .await
        .unwrap();
    assert!(
        english.first().is_some_and(|line| line.contains("Mochi")),
        "a new session recalls the old session's fact first: {english:?}"
    );
    assert!(
        english.iter().all(|line| !line.contains("weather")),
        "unrelated memories stay out: {english:?}"
    );
    let chinese = recall
        .recall(&new, "你还记得我的猫叫什么吗？", 3)
        .await
        .unwrap();
    assert!(
        chinese.first().is_some_and(|line| line.contains("小花")),
        "Chinese is matched without spaces between words: {chinese:?}"
    );
    for hostile in [
        "\"",
        "NEAR(",
        "*",
        "-cat",
        "cat\" OR \"",
        "a:b",
        "((",
        "NOT AND",
    ] {
        let result = recall.recall(&new, hostile, 3).await;
        assert!(
            result.is_ok(),
            "{hostile:?} is data, not FTS syntax: {result:?}"
        );
    }
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_payload_is_dead_lettered_and_later_events_still_flow() {
    let fixture = Fixture::fresh();
    let poison = NewOutboxEvent {
        event_type: event_type::LTM_WRITE_REQUESTED.to_owned(),
        stream: stream::LTM.to_owned(),
        correlation_id: "poison#0".to_owned(),
        payload: serde_json::json!({ "not": "an LtmWriteRequested" }),
        ts_ms: now_ms(),
    };
    let poison_id = fixture.store.append_events(&[poison]).unwrap()[0];
    complete_turn(&fixture.store, &session("s"), 0, "after the poison", "fine");

    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(None))
        .start(shutdown.clone())
        .await
        .unwrap();
    wait_for(
        "the poison dead-lettered and the next event handled",
        || {
            fixture.count("SELECT COUNT(*) FROM dead_letters") == 1
                && fixture.count("SELECT COUNT(*) FROM memories") == 1
        },
    )
    .await;
    let letter = &fixture.store.dead_letters(1).unwrap()[0];
    assert_eq!(
        letter.outbox_id,
        Some(poison_id),
        "the letter names the outbox row"
    );
    assert!(
        letter.error.contains("payload does not parse"),
        "the letter says why: {}",
        letter.error
    );
    assert_eq!(
        letter.payload.as_deref(),
        Some(r#"{"not":"an LtmWriteRequested"}"#),
        "the letter keeps the payload"
    );
    let text = handle.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "koto_events_dead_lettered_total{group=\"ltm-workers\"}"
        ),
        Some(1.0),
        "counted:\n{text}"
    );
    assert_eq!(
        metric(&text, "koto_events_dead_letters"),
        Some(1.0),
        "the stored letters are a gauge"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_retried_then_dead_lettered() {
    let fixture = Fixture::fresh();
    let live = session("s");
    complete_turn(&fixture.store, &live, 0, "refused", "x");
    let good = complete_turn(&fixture.store, &live, 1, "accepted", "y");
    let plugin = Arc::new(RecordingPlugin {
        fail_turn: Some(0),
        ..RecordingPlugin::default()
    });
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(None))
        .with_plugin(plugin.clone())
        .start(shutdown.clone())
        .await
        .unwrap();
    wait_for(
        "the refused event dead-lettered and the next one delivered",
        || {
            fixture.count("SELECT COUNT(*) FROM dead_letters WHERE consumer = 'plugin-workers'")
                == 1
                && plugin.seen.lock().unwrap().len() == 1
        },
    )
    .await;
    assert_eq!(
        plugin.failed_calls.load(Ordering::SeqCst),
        3,
        "DLQ_AFTER_ATTEMPTS=3 attempts, then no more"
    );
    assert_eq!(
        *plugin.seen.lock().unwrap(),
        vec![good[2]],
        "the later event was not blocked forever"
    );
    let letter = &fixture.store.dead_letters(1).unwrap()[0];
    assert_eq!(letter.attempts, 3, "the letter records the attempts");
    assert!(
        letter.error.contains("refusing this turn"),
        "and the plugin's error: {}",
        letter.error
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_reported_and_the_event_kept() {
    let fixture = Fixture::fresh();
    complete_turn(&fixture.store, &session("s"), 0, "kept while locked", "ok");

    // Another process holds the write lock: every effect transaction meets SQLITE_BUSY.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let path = fixture.path();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();

    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(None))
        .start(shutdown.clone())
        .await
        .unwrap();
    let busy = "koto_events_consumer_errors_total{group=\"ltm-workers\",kind=\"busy\"}";
    let deadline = std::time::Instant::now() + crate::DEADLINE;
    loop {
        // The busy timeout is 5 s: the failure surfaces after it, as a metric.
        if metric(&handle.registry().encode(), busy).unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the busy database was never reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM memories"),
        0,
        "nothing could be written while locked"
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    wait_for("the kept event handled once the lock is gone", || {
        fixture.count("SELECT COUNT(*) FROM memories") == 1
    })
    .await;
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "a busy database is not a reason to give up"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_falls_back_to_embedded_and_says_why() {
    let fixture = Fixture::fresh();
    let cases = [
        (
            koto_events::EventsConfig {
                async_ext: false,
                ..test_config(Some("redis://127.0.0.1:1/0".into()))
            },
            "ENABLE_ASYNC_EXT",
        ),
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        (
            test_config(Some("redis://127.0.0.1:1/0".into())),
            if cfg!(feature = "redis") {
                "unreachable"
            } else {
                "feature"
            },
        ),
    ];
    for (config, reason) in cases {
        let shutdown = CancellationToken::new();
        let handle = EventsRuntime::new(fixture.store.clone(), config)
            .start(shutdown.clone())
            .await
            .unwrap();
        assert_eq!(handle.mode(), Mode::Embedded, "no usable Redis → embedded");
        assert!(
            handle.mode_reason().contains(reason),
            "the reason names {reason}: {}",
            handle.mode_reason()
        );
        complete_turn(
            &fixture.store,
            &session("fallback"),
            fixture.count("SELECT COUNT(*) FROM memories") as u64,
            "q",
            "a",
        );
        let expected = fixture.count("SELECT COUNT(*) FROM turns WHERE role = 'assistant'");
        wait_for("events still handled in process", || {
            fixture.count("SELECT COUNT(*) FROM memories") == expected
        })
        .await;
        shutdown.cancel();
        handle.wait().await;
    }
}
