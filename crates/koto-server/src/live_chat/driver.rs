//! The chat driver: the one task that owns the queue's changes. It takes events from the
//! intake, the panel's commands and the answers' endings; on each it asks the queue for a pick
//! (the queue applies the cadence), turns a pick into a `TEXT` turn on the chat session, and
//! publishes every decision. A retraction stops the answer through `Engine::interrupt` — the
//! same STOP as the button — with the reason `retracted`, which the turn stores as its
//! `end_reason`.

use std::time::Duration;

use koto_core::chat::{ChatEvent, ChatKind};
use koto_core::chat_queue::{Decision, Outcome, Pick, amount_text};
use koto_core::turn::{InputKind, InputMeta, InputUser};
use koto_engine::{Engine, Submission, TurnRequest};
use koto_protocol::ingest::RelayFrame;
use koto_protocol::live_chat::ChatDecisionFrame;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Command, LiveChat, now_ms};

/// How often waiting messages are checked for expiry and the cadence for a pick.
const TICK: Duration = Duration::from_millis(250);
/// How often per-viewer memories past their retention are pruned (also once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The STOP reason of an answer a moderator took back (stored in `turns.end_reason`).
pub const RETRACTED: &str = "retracted";

pub(super) async fn run(
    chat: LiveChat,
    engine: Engine,
    mut events: mpsc::Receiver<ChatEvent>,
    mut commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
) {
    // Answer tasks report here when their turn has ended (spoken, stopped or failed).
    let (done_tx, mut done_rx) = mpsc::channel::<String>(16);
    let answers = TaskTracker::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let driver = Driver {
        chat,
        engine,
        done_tx,
        answers: answers.clone(),
    };
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(message_id) = done_rx.recv() => driver.chat.queue().finished(&message_id),
            Some(command) = commands.recv() => driver.command(command).await,
            Some(event) = events.recv() => driver.take(event).await,
            _ = tick.tick() => {
                let expired = driver.chat.queue().expire(now_ms());
                driver.publish_all(expired).await;
            }
            _ = prune.tick() => driver.prune_viewers(),
        }
        driver.try_pick().await;
    }
    // Answer tasks hold turn handles: closing lets them end with the engine's shutdown.
    answers.close();
}

struct Driver {
    chat: LiveChat,
    engine: Engine,
    done_tx: mpsc::Sender<String>,
    answers: TaskTracker,
}

impl Driver {
    /// Retention of per-viewer memory, off the driver's task (a large delete must not hold up
    /// chat).
    fn prune_viewers(&self) {
        let retention = self.chat.settings().viewer_retention;
        let before =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let store = self.engine.store().clone();
        tokio::task::spawn_blocking(move || match store.prune_viewers(before) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "viewer memories past their retention pruned"),
            Err(error) => tracing::warn!(%error, "viewer memories could not be pruned"),
        });
    }

    async fn take(&self, event: ChatEvent) {
        let metrics = self.chat.metrics();
        if event.kind.is_moderation() {
            metrics.moderation.inc();
        } else {
            metrics.messages.inc();
        }
        let decisions = self.chat.queue().push(event, now_ms());
        let retract = decisions
            .iter()
            .any(|decision| decision.outcome == Outcome::Retracted);
        self.publish_all(decisions).await;
        if retract {
            self.retract().await;
        }
    }

    async fn command(&self, command: Command) {
        match command {
            Command::Pin(id, reply) => {
                let _ = reply.send(self.chat.queue().pin(&id));
            }
            Command::Skip(id, reply) => {
                let decision = self.chat.queue().skip(&id);
                let found = decision.is_some();
                self.publish_all(decision.into_iter().collect()).await;
                let _ = reply.send(found);
            }
            Command::AnswerNow(id, reply) => {
                let pick = self.chat.queue().answer_now(&id, now_ms());
                let found = pick.is_some();
                if let Some(pick) = pick {
                    self.answer(pick).await;
                }
                let _ = reply.send(found);
            }
            Command::Forget {
                platform,
                user_id,
                done,
            } => {
                let gone = self.chat.queue().forget_user(&platform, &user_id);
                let count = gone.len();
                self.publish_all(gone).await;
                let _ = done.send(count);
            }
        }
    }

    async fn try_pick(&self) {
        let settings = self.chat.settings();
        if !settings.answer {
            return;
        }
        // Our own answer is never running here (the queue holds while one is), so any turn in
        // flight is the streamer's.
        let streamer_busy = !self.engine.turns_in_flight().is_empty();
        let pick = self.chat.queue().pick(now_ms(), streamer_busy);
        if let Some(pick) = pick {
            self.answer(pick).await;
        }
    }

    /// Publishes the pick and starts its turn; the queue hears when the turn has ended.
    async fn answer(&self, pick: Pick) {
        let waited_ms = match &pick.decision.reason {
            koto_core::chat_queue::Reason::Best { waited_ms, .. }
            | koto_core::chat_queue::Reason::Pinned { waited_ms }
            | koto_core::chat_queue::Reason::AnswerNow { waited_ms } => *waited_ms,
            _ => 0,
        };
        self.chat
            .metrics()
            .pick_wait
            .observe(waited_ms.max(0) as f64 / 1000.0);
        self.publish(pick.decision.clone(), Some(&pick.event)).await;
        let message_id = pick.event.message_id.clone();
        let request = TurnRequest {
            session: self.chat.settings().session.clone(),
            turn: None,
            kind: InputKind::Text,
            content: prompt_text(&pick),
            lang: None,
            meta: InputMeta {
                user: Some(InputUser {
                    id: pick.event.user.id.clone(),
                    name: pick.event.user.name.clone(),
                }),
                message_id: Some(message_id.clone()),
                ..InputMeta::from_source(&pick.event.platform)
            },
            received_at: tokio::time::Instant::now(),
        };
        match self.engine.submit(request).await {
            Ok(Submission::Turn(handle)) => {
                let done = self.done_tx.clone();
                self.answers.spawn(async move {
                    // The whole handle moves in (not just its events, which a disjoint capture
                    // would take): dropping it would cancel the turn. Read it to the end.
                    let mut handle = handle;
                    while handle.events.recv().await.is_some() {}
                    let _ = done.send(message_id).await;
                });
            }
            Ok(_) => self.chat.queue().finished(&message_id),
            Err(error) => {
                tracing::warn!(%error, message_id, "a picked chat message could not start a turn");
                self.chat.queue().finished(&message_id);
            }
        }
    }

    /// The message being answered was deleted or its viewer banned: the one STOP path.
    async fn retract(&self) {
        let session = &self.chat.settings().session;
        match self.engine.interrupt(session, RETRACTED).await {
            Ok(outcome) => {
                tracing::info!(sessionId = %session, stopped = ?outcome.stopped, "chat answer retracted")
            }
            Err(error) => {
                tracing::warn!(%error, "a retracted chat answer could not be stopped")
            }
        }
    }

    async fn publish_all(&self, decisions: Vec<Decision>) {
        for decision in decisions {
            self.publish(decision, None).await;
        }
    }

    async fn publish(&self, decision: Decision, event: Option<&ChatEvent>) {
        self.chat.metrics().decided(&decision);
        self.chat
            .metrics()
            .waiting
            .set(self.chat.queue().len() as f64);
        let frame = ChatDecisionFrame {
            session_id: self.chat.settings().session.clone(),
            message_id: decision.message_id,
            platform: decision.platform,
            user_id: decision.user_id,
            decision: decision.outcome.as_str().to_owned(),
            reason: decision.reason.to_string(),
            reason_code: decision.reason.code().to_owned(),
            user_name: event.map(|event| event.user.name.clone()),
            text: event.map(ChatEvent::text_without_emotes),
            ts: now_ms(),
        };
        tracing::debug!(
            messageId = frame.message_id,
            decision = frame.decision,
            reason = frame.reason,
            "chat decision"
        );
        self.chat.remember(frame.clone());
        self.engine.publish(RelayFrame::ChatDecision(frame)).await;
    }
}

/// What the co-host is asked: the viewer's words (the prompt names the viewer from the turn's
/// meta), with what a paid or event message was, and how many said the same.
pub(crate) fn prompt_text(pick: &Pick) -> String {
    let text = pick.event.text_without_emotes();
    let text = text.trim();
    let amount = pick.event.amount.as_ref().map(amount_text);
    let what = match (pick.kind, amount) {
        (ChatKind::Superchat, Some(amount)) => Some(format!("super chat {amount}")),
        (ChatKind::Superchat, None) => Some("super chat".to_owned()),
        (ChatKind::Gift, Some(amount)) => Some(format!("gift {amount}")),
        (ChatKind::Gift, None) => Some("sent a gift".to_owned()),
        (ChatKind::Sub, _) => Some("subscribed".to_owned()),
        (ChatKind::Raid, _) => Some("raided the channel".to_owned()),
        (ChatKind::Redemption, _) => Some("redeemed a channel reward".to_owned()),
        _ => None,
    };
    let mut line = match (what, text.is_empty()) {
        (Some(what), true) => format!("({what})"),
        (Some(what), false) => format!("({what}) {text}"),
        (None, _) => text.to_owned(),
    };
    if pick.count > 1 {
        line.push_str(&format!(" ({} viewers said this)", pick.count));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use koto_core::chat::{ChatAmount, ChatUser};
    use koto_core::chat_queue::Reason;

    fn pick(kind: ChatKind, text: &str, amount: Option<ChatAmount>, count: u32) -> Pick {
        let event = ChatEvent {
            platform: "youtube".into(),
            channel: String::new(),
            message_id: "m".into(),
            user: ChatUser::default(),
            kind,
            text: text.into(),
            emotes: Vec::new(),
            amount,
            target_id: None,
            platform_time_ms: None,
            received_ms: 0,
        };
        Pick {
            decision: Decision {
                platform: "youtube".into(),
                message_id: "m".into(),
                user_id: String::new(),
                outcome: Outcome::Picked,
                reason: Reason::Skipped,
            },
            event,
            kind,
            count,
        }
    }

    #[test]
    fn the_prompt_says_what_a_paid_or_event_message_was() {
        let yen = Some(ChatAmount {
            minor_units: 3000,
            currency: "CNY".into(),
        });
        assert_eq!(
            prompt_text(&pick(ChatKind::Superchat, "love it", yen, 1)),
            "(super chat ¥30) love it"
        );
        assert_eq!(
            prompt_text(&pick(ChatKind::Sub, "", None, 1)),
            "(subscribed)"
        );
        assert_eq!(
            prompt_text(&pick(ChatKind::Question, "what game?", None, 3)),
            "what game? (3 viewers said this)"
        );
    }
}
