//! The supervisor with scripted sources: every way a connection can end maps to its health, and
//! reconnects (or does not) accordingly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use koto_chat::{
    ChatAdapters, ChatSource, SourceContext, SourceError, SourceFuture, SupervisorOptions,
};
use koto_core::chat::{AdapterHealth, ChatEvent, ChatKind, ChatUser};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::util::{next_event, until_health};

#[derive(Clone, Copy)]
enum Step {
    /// Fail at once, before going live (a server that accepts and drops).
    Refused,
    /// Go live, emit one event, then end with this error.
    Fail(fn() -> SourceError),
    /// Go live, emit one event, then fall silent forever.
    Silent,
    Panic,
    /// Go live, emit one event, then wait for cancel and return cleanly.
    LiveUntilCancel,
}

struct Scripted {
    steps: Vec<Step>,
    attempts: Arc<AtomicUsize>,
}

impl ChatSource for Scripted {
    fn platform(&self) -> &'static str {
        "test"
    }
    fn channel(&self) -> String {
        "#scripted".into()
    }
    fn stale_after(&self) -> Duration {
        Duration::from_secs(30)
    }
    fn run_once<'a>(&'a mut self, ctx: &'a SourceContext) -> SourceFuture<'a> {
        Box::pin(async move {
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
            let step = self
                .steps
                .get(attempt)
                .copied()
                .unwrap_or(Step::LiveUntilCancel);
            if matches!(step, Step::Panic) {
                panic!("scripted panic");
            }
            if matches!(step, Step::Refused) {
                ctx.heard();
                return Err(SourceError::Transport("connection reset by peer".into()));
            }
            ctx.set_health(AdapterHealth::Live);
            ctx.emit(event(attempt)).await;
            match step {
                Step::Fail(error) => Err(error()),
                Step::Silent => std::future::pending().await,
                Step::Panic | Step::Refused | Step::LiveUntilCancel => {
                    ctx.cancel.cancelled().await;
                    Ok(())
                }
            }
        })
    }
}

fn event(attempt: usize) -> ChatEvent {
    ChatEvent {
        platform: "test".into(),
        channel: "#scripted".into(),
        message_id: format!("m{attempt}"),
        user: ChatUser::default(),
        kind: ChatKind::Message,
        text: format!("attempt {attempt}"),
        emotes: vec![],
        amount: None,
        target_id: None,
        platform_time_ms: None,
        received_ms: 0,
    }
}

fn start(
    steps: Vec<Step>,
) -> (
    ChatAdapters,
    mpsc::Receiver<ChatEvent>,
    Arc<AtomicUsize>,
    CancellationToken,
) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let source = Scripted {
        steps,
        attempts: attempts.clone(),
    };
    let adapters = ChatAdapters::start_sources(
        vec![Box::new(source)],
        tx,
        cancel.clone(),
        SupervisorOptions::default(),
    );
    (adapters, rx, attempts, cancel)
}

#[tokio::test(start_paused = true)]
async fn a_transport_error_shows_failed_with_the_retry_then_reconnects() {
    let (adapters, mut rx, attempts, _cancel) = start(vec![Step::Fail(|| {
        SourceError::Transport("connection reset".into())
    })]);
    assert_eq!(next_event(&mut rx).await.message_id, "m0");
    let failed = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = &failed.health else {
        unreachable!("until_health matched Failed")
    };
    assert!(
        reason.contains("connection reset") && reason.contains("reconnecting"),
        "the reason names the error and the retry: {reason}"
    );
    // The second connection runs: a failure is not the end.
    assert_eq!(next_event(&mut rx).await.message_id, "m1");
    until_health(&adapters, 0, |h| *h == AdapterHealth::Live).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(
        adapters.statuses()[0].last_message_ms.is_some(),
        "an emitted event is recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_config_error_fails_for_good() {
    let (adapters, mut rx, attempts, _cancel) = start(vec![Step::Fail(|| {
        SourceError::Config("TWITCH_CHANNEL is empty".into())
    })]);
    next_event(&mut rx).await;
    let failed = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    assert_eq!(
        failed.health,
        AdapterHealth::Failed("TWITCH_CHANNEL is empty".into())
    );
    // Far past any backoff: still one attempt, the task has ended (the channel closes).
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no retry after a config error"
    );
    drop(adapters);
    assert!(
        rx.recv().await.is_none(),
        "the supervisor ended and dropped its sender"
    );
}

#[tokio::test(start_paused = true)]
async fn refused_credentials_show_auth_needed_and_wait_long_before_retrying() {
    let (adapters, mut rx, attempts, _cancel) = start(vec![Step::Fail(|| {
        SourceError::Auth("Login authentication failed".into())
    })]);
    next_event(&mut rx).await;
    let status = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::AuthNeeded(_))).await;
    assert_eq!(
        status.health,
        AdapterHealth::AuthNeeded("Login authentication failed".into())
    );
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "no retry within the auth retry interval"
    );
    assert_eq!(
        next_event(&mut rx).await.message_id,
        "m1",
        "retried after the long interval"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_goes_stale_and_is_replaced() {
    let (adapters, mut rx, attempts, _cancel) = start(vec![Step::Silent]);
    next_event(&mut rx).await;
    until_health(&adapters, 0, |h| *h == AdapterHealth::Stale).await;
    assert_eq!(
        next_event(&mut rx).await.message_id,
        "m1",
        "a new connection replaced the silent one"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_adapter_is_caught_and_restarted() {
    let (adapters, mut rx, _attempts, _cancel) = start(vec![Step::Panic]);
    let status = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    let AdapterHealth::Failed(reason) = status.health else {
        unreachable!("until_health matched Failed")
    };
    assert!(
        reason.contains("scripted panic"),
        "the reason names the panic: {reason}"
    );
    assert_eq!(
        next_event(&mut rx).await.message_id,
        "m1",
        "restarted after the panic"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_adapter() {
    let (adapters, mut rx, _attempts, _cancel) = start(vec![]);
    next_event(&mut rx).await;
    let statuses = adapters.statuses();
    adapters.shutdown().await;
    assert!(rx.recv().await.is_none(), "every supervisor ended");
    let json = serde_json::to_value(&statuses[0]).ok();
    let json = json.unwrap_or_default();
    assert_eq!(json["platform"], "test");
    assert_eq!(json["health"]["state"], "live");
    assert!(
        json["sinceMs"].is_i64() && json["lastMessageMs"].is_i64(),
        "camelCase timestamps: {json}"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_that_never_go_live_back_off_exponentially() {
    let (adapters, _rx, attempts, _cancel) = start(vec![Step::Refused; 100]);
    // Delays from 1 s doubling (jitter adds up to as much again): 1+2+4+8+16+32 > 60, so at
    // most 7 attempts fit in a minute; without growth there would be 30 or more.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let made = attempts.load(Ordering::SeqCst);
    assert!((3..=7).contains(&made), "{made} attempts in 60 s");
    let status = until_health(&adapters, 0, |h| matches!(h, AdapterHealth::Failed(_))).await;
    assert!(
        matches!(status.health, AdapterHealth::Failed(reason) if reason.contains("connection reset"))
    );
}
