//! The supervisor: runs each [`ChatSource`] as its own task, maps how a connection ended to an
//! [`AdapterHealth`], and reconnects with exponential backoff and jitter.
//!
//! It never lets an adapter's panic or error escape (a panic is caught and becomes `failed`); it
//! does not parse any platform's data — that is the sources' job.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::FutureExt;
use koto_core::chat::{AdapterHealth, ChatEvent};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{ChatSource, SourceContext, SourceError, now_ms};

/// One adapter's state as the panel and `/health` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    pub platform: String,
    pub channel: String,
    pub health: AdapterHealth,
    /// When `health` last changed (ms since the epoch).
    pub since_ms: i64,
    /// When the last chat event was handed to the queue (ms since the epoch).
    pub last_message_ms: Option<i64>,
}

/// Timings of the supervisor; the defaults suit the real platforms, tests shorten them.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// First reconnect delay (jitter adds up to as much again).
    pub min_delay: Duration,
    /// Reconnect delays stop growing here.
    pub max_delay: Duration,
    /// After the platform refused the credentials: retrying sooner only gets the account flagged.
    pub auth_retry: Duration,
    /// On shutdown, how long a source may take to say goodbye (Bilibili's `/v2/app/end`).
    pub shutdown_grace: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(120),
            auth_retry: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

impl SupervisorOptions {
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// The shared state of one adapter: written by its source (through [`SourceContext`]) and its
/// supervisor, read by [`ChatAdapters::statuses`]. Never held across an `.await`.
#[derive(Debug)]
pub(crate) struct Slot {
    status: AdapterStatus,
    /// Last frame of any kind, for the stale watchdog (tokio time, so tests can pause it).
    last_heard: Instant,
    /// Whether the current connection got as far as reading (live or degraded): only such a
    /// connection resets backoff, so a server that accepts and drops at once is not hammered.
    live_this_run: bool,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A poisoned slot only means a panic while writing plain data; the data is still usable.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns whether the state changed.
pub(crate) fn set_health(slot: &Mutex<Slot>, health: AdapterHealth) -> bool {
    let mut slot = lock(slot);
    if matches!(health, AdapterHealth::Live | AdapterHealth::Degraded(_)) {
        slot.live_this_run = true;
    }
    if slot.status.health == health {
        return false;
    }
    slot.status.health = health;
    slot.status.since_ms = now_ms();
    true
}

pub(crate) fn heard(slot: &Mutex<Slot>, message: bool) {
    let mut slot = lock(slot);
    slot.last_heard = Instant::now();
    if message {
        slot.status.last_message_ms = Some(now_ms());
    }
}

/// The running adapters. Dropping it does not stop them; cancel the token given to
/// [`ChatAdapters::start_sources`] or call [`ChatAdapters::shutdown`].
#[derive(Debug)]
pub struct ChatAdapters {
    slots: Vec<Arc<Mutex<Slot>>>,
    tasks: TaskTracker,
    changes: watch::Receiver<u64>,
    cancel: CancellationToken,
}

impl ChatAdapters {
    /// Start one supervised task per source. Events go to `out`; `cancel` stops them all.
    pub fn start_sources(
        sources: Vec<Box<dyn ChatSource>>,
        out: mpsc::Sender<ChatEvent>,
        cancel: CancellationToken,
        options: SupervisorOptions,
    ) -> ChatAdapters {
        let (changes_tx, changes) = watch::channel(0u64);
        let tasks = TaskTracker::new();
        let mut slots = Vec::new();
        for source in sources {
            let slot = Arc::new(Mutex::new(Slot {
                status: AdapterStatus {
                    platform: source.platform().to_owned(),
                    channel: source.channel(),
                    health: AdapterHealth::Connecting,
                    since_ms: now_ms(),
                    last_message_ms: None,
                },
                last_heard: Instant::now(),
                live_this_run: false,
            }));
            slots.push(slot.clone());
            let ctx = SourceContext {
                out: out.clone(),
                cancel: cancel.child_token(),
                status: slot,
                changes: changes_tx.clone(),
            };
            tasks.spawn(supervise(source, ctx, options.clone()));
        }
        tasks.close();
        ChatAdapters {
            slots,
            tasks,
            changes,
            cancel,
        }
    }

    pub fn statuses(&self) -> Vec<AdapterStatus> {
        self.slots
            .iter()
            .map(|slot| lock(slot).status.clone())
            .collect()
    }

    /// Bumped on every health change (the panel can push instead of polling).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Cancel every adapter and wait for their tasks (each has its shutdown grace).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

/// How one `run_once` ended, as the supervisor saw it.
enum Ended {
    Returned(Result<(), SourceError>),
    Panicked(String),
    Watchdog(Duration),
    Cancelled,
}

async fn supervise(
    mut source: Box<dyn ChatSource>,
    ctx: SourceContext,
    options: SupervisorOptions,
) {
    let platform = source.platform();
    let channel = source.channel();
    let mut backoff = options.backoff();
    loop {
        if ctx.cancel.is_cancelled() || ctx.out.is_closed() {
            break;
        }
        ctx.set_health(AdapterHealth::Connecting);
        {
            let mut slot = lock(&ctx.status);
            slot.last_heard = Instant::now();
            slot.live_this_run = false;
        }
        let stale_after = source.stale_after();
        let ended = run_watched(source.as_mut(), &ctx, stale_after, options.shutdown_grace).await;
        if lock(&ctx.status).live_this_run {
            // This connection worked: the next failure starts from the shortest delay again.
            backoff = options.backoff();
        }
        let delay = match ended {
            Ended::Cancelled => break,
            Ended::Returned(Ok(())) => {
                let delay = backoff.next().unwrap_or(options.max_delay);
                tracing::info!(platform, %channel, ?delay, "chat connection closed by the platform; reconnecting");
                delay
            }
            Ended::Returned(Err(SourceError::Config(reason))) => {
                tracing::error!(platform, %channel, %reason, "chat adapter misconfigured; not retrying");
                ctx.set_health(AdapterHealth::Failed(reason));
                return;
            }
            Ended::Returned(Err(SourceError::Auth(reason))) => {
                let delay = options.auth_retry;
                tracing::warn!(platform, %channel, %reason, ?delay, "chat credentials refused; fix them in the settings");
                ctx.set_health(AdapterHealth::AuthNeeded(reason));
                delay
            }
            Ended::Returned(Err(SourceError::Stale(secs))) => {
                let delay = backoff.next().unwrap_or(options.max_delay);
                tracing::warn!(platform, %channel, secs, ?delay, "chat connection stale; reconnecting");
                ctx.set_health(AdapterHealth::Stale);
                delay
            }
            Ended::Watchdog(after) => {
                let delay = backoff.next().unwrap_or(options.max_delay);
                tracing::warn!(platform, %channel, secs = after.as_secs(), ?delay, "nothing heard from the chat platform; reconnecting");
                ctx.set_health(AdapterHealth::Stale);
                delay
            }
            Ended::Returned(Err(error)) => {
                let delay = backoff.next().unwrap_or(options.max_delay);
                let reason = format!("{error}; reconnecting in {} s", delay.as_secs_f32().ceil());
                tracing::warn!(platform, %channel, %reason, "chat connection failed");
                ctx.set_health(AdapterHealth::Failed(reason));
                delay
            }
            Ended::Panicked(what) => {
                let delay = backoff.next().unwrap_or(options.max_delay);
                let reason = format!("adapter crashed ({what}); reconnecting");
                tracing::error!(platform, %channel, %reason, "chat adapter panicked");
                ctx.set_health(AdapterHealth::Failed(reason));
                delay
            }
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => break,
            _ = ctx.out.closed() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    ctx.set_health(AdapterHealth::Failed("stopped".into()));
}

/// Run one connection under the stale watchdog; on cancel, give it `grace` to finish.
async fn run_watched(
    source: &mut dyn ChatSource,
    ctx: &SourceContext,
    stale_after: Duration,
    grace: Duration,
) -> Ended {
    let run = AssertUnwindSafe(source.run_once(ctx)).catch_unwind();
    tokio::pin!(run);
    let mut grace_deadline: Option<Instant> = None;
    loop {
        let stale_at = later(lock(&ctx.status).last_heard, stale_after);
        tokio::select! {
            biased;
            result = &mut run => {
                if grace_deadline.is_some() {
                    return Ended::Cancelled;
                }
                return match result {
                    Ok(result) => Ended::Returned(result),
                    Err(panic) => Ended::Panicked(panic_text(panic.as_ref())),
                };
            }
            _ = ctx.cancel.cancelled(), if grace_deadline.is_none() => {
                grace_deadline = Some(later(Instant::now(), grace));
            }
            _ = ctx.out.closed(), if grace_deadline.is_none() => {
                // Nobody reads chat any more: same as a shutdown.
                ctx.cancel.cancel();
                grace_deadline = Some(later(Instant::now(), grace));
            }
            _ = tokio::time::sleep_until(grace_deadline.unwrap_or(stale_at)) => {
                if grace_deadline.is_some() {
                    return Ended::Cancelled;
                }
                if later(lock(&ctx.status).last_heard, stale_after) <= Instant::now() {
                    return Ended::Watchdog(stale_after);
                }
            }
        }
    }
}

/// `at + after`, saturating at a year ahead (a source may ask for "never stale").
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic".into()
    }
}
