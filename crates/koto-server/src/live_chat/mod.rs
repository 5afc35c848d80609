//! Live chat in the app: one intake (an `mpsc::Sender<ChatEvent>`) that the local chat API and
//! the platform adapters (`koto-chat`) both feed, moderation events in the same stream; the
//! scored queue (`koto_core::chat_queue`); and the driver task that turns its picks into `TEXT`
//! turns on the chat session, publishes every decision as a `CHAT_DECISION` frame, and stops an
//! answer through `Engine::interrupt` (reason `retracted`) when a moderator takes it back.
//!
//! It does not talk to any platform (that is `koto-chat`) and never decides by itself what a
//! message is worth (that is the queue): it only moves events, decisions and turns.

mod driver;
pub mod intake;
mod metrics;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use koto_core::SessionId;
use koto_core::chat::ChatEvent;
use koto_core::chat_queue::{ChatQueue, Hold, QueueConfig, WaitingView, kind_name};
use koto_core::metrics::Registry;
use koto_engine::Engine;
use koto_protocol::live_chat::{ChatDecisionFrame, ChatQueueStats, ChatQueueView, WaitingMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use metrics::ChatMetrics;

/// Events waiting for the driver; past it senders wait (adapters and the API feel the
/// backpressure instead of memory growing).
const INTAKE_BOUND: usize = 4096;
/// Decisions kept for the panel's first draw (`GET /chat/queue`).
const RECENT_DECISIONS: usize = 100;

/// The `chat_*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    pub session: SessionId,
    /// False: queue, score and show, never answer.
    pub answer: bool,
    pub queue: QueueConfig,
    /// Messages per API batch.
    pub batch_max: usize,
    /// Per-viewer memories older than this are forgotten (`chat_viewer_retention_days`).
    pub viewer_retention: std::time::Duration,
}

/// What the panel's buttons ask of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Pin(String, oneshot::Sender<bool>),
    Skip(String, oneshot::Sender<bool>),
    AnswerNow(String, oneshot::Sender<bool>),
    Forget {
        platform: String,
        user_id: String,
        done: oneshot::Sender<usize>,
    },
}

/// The handle the routes and the adapters' supervisor hold. Cheap to clone.
#[derive(Clone)]
pub struct LiveChat {
    shared: Arc<Shared>,
}

struct Shared {
    settings: ChatSettings,
    /// Held here so the driver's receiver never closes while the app runs; every producer
    /// (routes, adapters) clones it.
    intake: mpsc::Sender<ChatEvent>,
    commands: mpsc::Sender<Command>,
    /// The driver writes it; `GET /chat/queue` reads it. Never held across an `.await`.
    queue: Mutex<ChatQueue>,
    recent: Mutex<VecDeque<ChatDecisionFrame>>,
    metrics: ChatMetrics,
}

impl LiveChat {
    /// Starts the driver; it runs until `shutdown` is cancelled.
    pub fn start(
        settings: ChatSettings,
        engine: Engine,
        registry: Option<&Registry>,
        shutdown: CancellationToken,
    ) -> (LiveChat, JoinHandle<()>) {
        let (intake, events) = mpsc::channel(INTAKE_BOUND);
        let (commands, command_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            queue: Mutex::new(ChatQueue::new(settings.queue.clone())),
            settings,
            intake,
            commands,
            recent: Mutex::new(VecDeque::new()),
            metrics: ChatMetrics::new(registry),
        });
        let chat = LiveChat { shared };
        let task = tokio::spawn(driver::run(
            chat.clone(),
            engine,
            events,
            command_rx,
            shutdown,
        ));
        (chat, task)
    }

    /// Where chat events go: the local API, and each platform adapter (wired at start-up).
    pub fn intake(&self) -> mpsc::Sender<ChatEvent> {
        self.shared.intake.clone()
    }

    pub fn settings(&self) -> &ChatSettings {
        &self.shared.settings
    }

    pub fn metrics(&self) -> &ChatMetrics {
        &self.shared.metrics
    }

    /// The queue as the panel shows it.
    pub fn view(&self) -> ChatQueueView {
        let now = now_ms();
        let queue = self.queue();
        let waiting = queue
            .waiting(now)
            .into_iter()
            .map(waiting_message)
            .collect();
        let answering = queue.answering().map(|pick| {
            waiting_message(WaitingView {
                event: pick.event.clone(),
                kind: pick.kind,
                score: 0.0,
                waited_ms: 0,
                count: pick.count,
                pinned: false,
            })
        });
        let hold = queue.hold(now, false).map(|hold| {
            match hold {
                Hold::Empty => "empty",
                Hold::Answering => "answering",
                Hold::StreamerTalking => "streamer_talking",
                Hold::Cadence { .. } => "cadence",
            }
            .to_owned()
        });
        let stats = queue.stats();
        let capacity = queue.config().capacity;
        drop(queue);
        ChatQueueView {
            session_id: self.shared.settings.session.clone(),
            waiting,
            answering,
            hold,
            decisions: lock(&self.shared.recent).iter().cloned().collect(),
            stats: ChatQueueStats {
                received: stats.received,
                picked: stats.picked,
                dropped: stats.dropped,
                retracted: stats.retracted,
                moderation: stats.moderation,
            },
            capacity,
        }
    }

    /// Pin, skip or answer now: false when the message is not waiting.
    pub async fn pin(&self, message_id: &str) -> bool {
        self.ask(|reply| Command::Pin(message_id.to_owned(), reply))
            .await
            .unwrap_or(false)
    }

    pub async fn skip(&self, message_id: &str) -> bool {
        self.ask(|reply| Command::Skip(message_id.to_owned(), reply))
            .await
            .unwrap_or(false)
    }

    pub async fn answer_now(&self, message_id: &str) -> bool {
        self.ask(|reply| Command::AnswerNow(message_id.to_owned(), reply))
            .await
            .unwrap_or(false)
    }

    /// Drops a viewer's waiting messages and their fairness history; returns how many went.
    pub async fn forget(&self, platform: &str, user_id: &str) -> usize {
        self.ask(|done| Command::Forget {
            platform: platform.to_owned(),
            user_id: user_id.to_owned(),
            done,
        })
        .await
        .unwrap_or(0)
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.shared.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    fn queue(&self) -> MutexGuard<'_, ChatQueue> {
        lock(&self.shared.queue)
    }

    fn remember(&self, frame: ChatDecisionFrame) {
        let mut recent = lock(&self.shared.recent);
        if recent.len() >= RECENT_DECISIONS {
            recent.pop_front();
        }
        recent.push_back(frame);
    }
}

fn waiting_message(view: WaitingView) -> WaitingMessage {
    WaitingMessage {
        message_id: view.event.message_id,
        platform: view.event.platform,
        user_id: view.event.user.id,
        user_name: view.event.user.name,
        kind: kind_name(view.kind).to_owned(),
        text: view.event.text,
        score: (view.score * 10.0).round() / 10.0,
        waited_ms: view.waited_ms,
        count: view.count,
        pinned: view.pinned,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue's state stays consistent between calls (each call finishes its own edit).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wall-clock ms: the queue's clock (ages, cadence) and the frames' `ts`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Forgets a viewer's per-viewer memory (`viewers`, `viewer_memories`); how many exchanges
/// went. The exchanges stay in the session's own history (that is the stream's record).
pub(crate) async fn forget_memories(
    state: &crate::AppState,
    platform: &str,
    user_id: &str,
) -> Result<u64, crate::error::AppError> {
    let store = state.engine.store().clone();
    let (platform, user_id) = (platform.to_owned(), user_id.to_owned());
    match tokio::task::spawn_blocking(move || store.forget_viewer(&platform, &user_id)).await {
        Ok(Ok(removed)) => Ok(removed),
        Ok(Err(error)) => Err(koto_engine::EngineError::Storage(error).into()),
        Err(join_error) => Err(crate::error::AppError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            koto_protocol::ErrorCode::Internal,
            format!("forgetting the viewer failed: {join_error}"),
        )),
    }
}
