//! The application process killed with SIGKILL at random points, over and over: afterwards every
//! committed turn's events reach the consumers, each effect exactly once. The "application" is
//! this test binary re-executed with `KOTO_CRASH_DB` set (the ignored `crash_child` test): it runs
//! the event runtime and commits turns until it is killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use koto_events::EventsRuntime;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::{Fixture, assert_exactly_once, complete_turn, session, test_config, wait_for};

const ITERATIONS: usize = 6;

#[test]
#[ignore = "child process of the SIGKILL tests; does nothing unless KOTO_CRASH_DB is set"]
fn crash_child() {
    let Ok(db) = std::env::var("KOTO_CRASH_DB") else {
        return;
    };
    let redis_url = std::env::var("KOTO_CRASH_REDIS").ok();
    let session_name = std::env::var("KOTO_CRASH_SESSION").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = koto_store::Store::open(std::path::Path::new(&db)).unwrap();
        let handle = EventsRuntime::new(store.clone(), test_config(redis_url))
            .start(CancellationToken::new())
            .await
            .unwrap();
        println!("ready {}", handle.mode().as_str());
        let live = session(&session_name);
        for turn in 0.. {
            let store = store.clone();
            let live = live.clone();
            tokio::task::spawn_blocking(move || {
                complete_turn(
                    &store,
                    &live,
                    turn,
                    &format!("q{turn}"),
                    &format!("a{turn}"),
                )
            })
            .await
            .unwrap();
            println!("committed {turn}");
            // Let the relay and workers interleave with the writer, as under real turns.
            tokio::task::yield_now().await;
        }
    });
}

/// Runs the child `ITERATIONS` times, killing each after a random number of committed turns
/// (zero included: killed while catching up the previous run's backlog).
fn kill_loop(fixture: &Fixture, redis_url: Option<&str>, expected_mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    for iteration in 0..ITERATIONS {
        let mut command = Command::new(&exe);
        command
            .args([
                "--exact",
                "crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KOTO_CRASH_DB", fixture.path())
            .env("KOTO_CRASH_SESSION", format!("crash-{iteration}"))
            .env_remove("KOTO_CRASH_REDIS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = redis_url {
            command.env("KOTO_CRASH_REDIS", url);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let target: usize = rng.random_range(0..40);
        let mut committed = 0;
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest prints "test crash::crash_child ... " without a line break before the
            // child's first line, so look for the marker anywhere in the line.
            if let Some(at) = line.find("ready ") {
                assert_eq!(
                    &line[at + "ready ".len()..],
                    expected_mode,
                    "the child runs in the mode under test"
                );
                ready = true;
                if target == 0 {
                    break;
                }
            } else if line.starts_with("committed ") {
                committed += 1;
                if committed >= target {
                    break;
                }
            }
        }
        assert!(ready, "the child started its runtime before being killed");
        // std's kill is SIGKILL on Unix: no destructor, no flush, as in a crash.
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

async fn assert_every_committed_turn_reaches_consumers(
    fixture: &Fixture,
    redis_url: Option<String>,
) {
    let committed = fixture.count("SELECT COUNT(*) FROM turns WHERE role = 'assistant'");
    assert!(
        committed > 0,
        "the children committed turns before being killed"
    );
    let shutdown = CancellationToken::new();
    let handle = EventsRuntime::new(fixture.store.clone(), test_config(redis_url))
        .start(shutdown.clone())
        .await
        .unwrap();
    wait_for("every committed turn handled after the crashes", || {
        fixture.count("SELECT COUNT(*) FROM memories") >= committed
            && fixture.count("SELECT COALESCE(SUM(turns), 0) FROM analytics_sessions") >= committed
    })
    .await;
    assert_exactly_once(fixture, committed);
    assert_eq!(
        fixture.count(
            "SELECT COUNT(*) FROM turns AS a WHERE a.role = 'assistant' AND NOT EXISTS (
               SELECT 1 FROM memories AS m WHERE m.sessionId = a.sessionId AND m.turn = a.turn)"
        ),
        0,
        "each committed turn has its memory (not just the right count)"
    );
    assert_eq!(
        fixture.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "crashes are not failures"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_embedded() {
    let fixture = Fixture::fresh();
    let path = fixture.path();
    let fixture = tokio::task::spawn_blocking(move || {
        kill_loop(&fixture, None, "embedded");
        fixture
    })
    .await
    .unwrap();
    assert_eq!(fixture.path(), path, "same database throughout");
    assert_every_committed_turn_reaches_consumers(&fixture, None).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_redis() {
    let server = crate::start_redis();
    let url = server.url();
    let fixture = Fixture::fresh();
    let fixture = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            kill_loop(&fixture, Some(&url), "redis");
            fixture
        }
    })
    .await
    .unwrap();
    assert_every_committed_turn_reaches_consumers(&fixture, Some(url)).await;
    let backlog = fixture.store.outbox_backlog().unwrap().0;
    assert_eq!(backlog, 0, "every committed row reached Redis");
}
