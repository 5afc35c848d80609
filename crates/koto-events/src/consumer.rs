//! What each consumer group does with one outbox row, and how a failure is judged: the one code
//! path behind embedded consumption, Redis entries and outbox repairs, so every mode has the same
//! effects and the same idempotency (by outbox id, in the effect's own SQLite transaction).
//! It neither reads streams nor acknowledges anything; callers do.

use std::sync::Arc;

use koto_protocol::events::{AnalyticsChatStats, LtmWriteRequested, event_type};
use koto_store::{
    Consumption, DeadLetter, NewMemory, OutboxRow, Store, StoreError, TurnStatsRecord,
};

use crate::config::GroupKind;
use crate::error::EventsError;
use crate::metrics::EventsMetrics;
use crate::plugin::{Plugin, PluginParse, parse_plugin_event};

/// One consumer group of this runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub kind: GroupKind,
    pub name: String,
    pub stream: &'static str,
}

/// What became of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Applied, a duplicate, or a type this group ignores: the row is done for this group.
    Done,
    /// Failing for good (bad payload) or too often: the caller dead-letters it.
    DeadLetter { error: String, attempts: u32 },
    /// A transient failure below the limit: leave it and try again later.
    RetryLater,
}

#[derive(Debug)]
enum Outcome {
    Applied,
    Duplicate,
    Ignored,
}

#[derive(Debug)]
enum EffectError {
    /// Retrying cannot help (the payload does not parse).
    Permanent { kind: &'static str, message: String },
    /// SQLite busy, disk, a plugin's own failure: worth another try.
    Transient { kind: &'static str, message: String },
}

/// Runs `work` on the blocking pool: every store call is synchronous SQLite.
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, EventsError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(result) => result.map_err(EventsError::from),
        Err(join_error) => Err(EventsError::Task(join_error.to_string())),
    }
}

/// Wall clock in ms, the time base of `outbox_events.created_at`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The effects of every group, shared by all tasks of a runtime.
#[derive(Clone)]
pub(crate) struct Effects {
    pub store: Store,
    pub plugins: Arc<[Arc<dyn Plugin>]>,
    pub metrics: EventsMetrics,
    pub dlq_after_attempts: u32,
}

impl Effects {
    /// Applies `row` for `group` and judges the result; counts it in metrics and logs failures.
    /// `observe_latency`: record commit → effect in the delivery histogram (embedded mode and
    /// outbox repairs; in Redis mode the histogram measures commit → XADD instead).
    pub(crate) async fn handle(
        &self,
        group: &Group,
        row: &OutboxRow,
        observe_latency: bool,
    ) -> Handled {
        match self.apply(group, row).await {
            Ok(outcome) => {
                let result = match outcome {
                    Outcome::Applied => "applied",
                    Outcome::Duplicate => "duplicate",
                    Outcome::Ignored => "ignored",
                };
                self.metrics.consumed.with(&[&group.name, result]).inc();
                if matches!(outcome, Outcome::Applied) && observe_latency {
                    let seconds = (now_ms() - row.created_at).max(0) as f64 / 1000.0;
                    self.metrics
                        .delivery_latency
                        .with(&["embedded"])
                        .observe(seconds);
                }
                if matches!(outcome, Outcome::Ignored) {
                    tracing::debug!(group = %group.name, outbox_id = row.id, event_type = %row.event_type,
                        "event type not handled by this group; marked handled");
                }
                Handled::Done
            }
            Err(EffectError::Permanent { kind, message }) => {
                self.metrics
                    .consumer_errors
                    .with(&[&group.name, kind])
                    .inc();
                tracing::warn!(group = %group.name, outbox_id = row.id, correlationId = %row.correlation_id,
                    event_type = %row.event_type, error = %message, "event cannot be processed; dead-lettering it");
                let previous = blocking(&self.store, {
                    let name = group.name.clone();
                    let id = row.id;
                    move |store| store.consumer_failures(&name, id)
                })
                .await
                .unwrap_or(0);
                Handled::DeadLetter {
                    error: message,
                    attempts: previous + 1,
                }
            }
            Err(EffectError::Transient { kind, message }) => {
                self.metrics
                    .consumer_errors
                    .with(&[&group.name, kind])
                    .inc();
                let recorded = blocking(&self.store, {
                    let name = group.name.clone();
                    let id = row.id;
                    let message = message.clone();
                    move |store| store.record_consumer_failure(&name, id, &message, now_ms())
                })
                .await;
                match recorded {
                    Ok(attempts) if attempts >= self.dlq_after_attempts => {
                        tracing::warn!(group = %group.name, outbox_id = row.id, correlationId = %row.correlation_id,
                            attempts, error = %message, "event failed too often; dead-lettering it");
                        Handled::DeadLetter {
                            error: message,
                            attempts,
                        }
                    }
                    Ok(attempts) => {
                        tracing::warn!(group = %group.name, outbox_id = row.id, correlationId = %row.correlation_id,
                            attempts, limit = self.dlq_after_attempts, error = %message, "event failed; will retry");
                        Handled::RetryLater
                    }
                    Err(record_error) => {
                        tracing::warn!(group = %group.name, outbox_id = row.id, correlationId = %row.correlation_id,
                            error = %message, %record_error, "event failed and the failure could not be recorded; will retry");
                        Handled::RetryLater
                    }
                }
            }
        }
    }

    /// Stores a dead letter for `row` (which also marks it handled by the group).
    pub(crate) async fn dead_letter_row(
        &self,
        group: &Group,
        row: &OutboxRow,
        error: &str,
        attempts: u32,
    ) -> Result<(), EventsError> {
        let letter = DeadLetter {
            consumer: group.name.clone(),
            stream: group.stream.to_owned(),
            outbox_id: Some(row.id),
            event_type: Some(row.event_type.clone()),
            payload: Some(row.payload.clone()),
            correlation_id: Some(row.correlation_id.clone()),
            error: error.to_owned(),
            attempts,
            ts_ms: now_ms(),
        };
        self.store_dead_letter(group, letter).await
    }

    pub(crate) async fn store_dead_letter(
        &self,
        group: &Group,
        letter: DeadLetter,
    ) -> Result<(), EventsError> {
        let stored = blocking(&self.store, move |store| store.dead_letter(&letter)).await?;
        if stored == Consumption::Applied {
            self.metrics.dead_lettered.with(&[&group.name]).inc();
        }
        Ok(())
    }

    async fn apply(&self, group: &Group, row: &OutboxRow) -> Result<Outcome, EffectError> {
        match group.kind {
            GroupKind::Ltm if row.event_type == event_type::LTM_WRITE_REQUESTED => {
                let event: LtmWriteRequested = parse(&row.payload)?;
                let memory = NewMemory {
                    session: event.session_id,
                    turn: event.turn,
                    user_text: event.payload.text,
                    reply_text: event.payload.reply,
                    ts_ms: event.ts,
                    viewer: event.payload.viewer.map(|viewer| koto_store::ViewerRef {
                        platform: viewer.platform,
                        user_id: viewer.id,
                        name: viewer.name,
                    }),
                };
                self.consume(group, row, move |store, name, stream, id| {
                    store.remember(name, stream, id, &memory)
                })
                .await
            }
            GroupKind::Analytics if row.event_type == event_type::ANALYTICS_CHAT_STATS => {
                let event: AnalyticsChatStats = parse(&row.payload)?;
                let record = TurnStatsRecord {
                    session: event.session_id,
                    turn: event.turn,
                    outcome: event.outcome,
                    interrupted: event.interrupted,
                    tokens: event.tokens,
                    ttft_ms: event.ttft_ms,
                    first_audio_ms: event.first_audio_ms,
                    ts_ms: event.ts,
                };
                self.consume(group, row, move |store, name, stream, id| {
                    store.record_turn_stats(name, stream, id, &record)
                })
                .await
            }
            GroupKind::Plugins => self.apply_plugins(group, row).await,
            GroupKind::Ltm | GroupKind::Analytics => self.mark(group, row, true).await,
        }
    }

    async fn apply_plugins(&self, group: &Group, row: &OutboxRow) -> Result<Outcome, EffectError> {
        let event =
            match parse_plugin_event(row.id, &row.event_type, &row.correlation_id, &row.payload) {
                Ok(event) => event,
                Err(PluginParse::OtherType) => return self.mark(group, row, true).await,
                Err(PluginParse::Invalid(message)) => {
                    return Err(EffectError::Permanent {
                        kind: "payload",
                        message: format!("payload does not parse: {message}"),
                    });
                }
            };
        // A redelivery must not call the plugins again.
        let already = blocking(&self.store, {
            let name = group.name.clone();
            let stream = group.stream;
            let id = row.id;
            move |store| store.is_consumed(&name, stream, id)
        })
        .await
        .map_err(store_failure)?;
        if already {
            return Ok(Outcome::Duplicate);
        }
        for plugin in self.plugins.iter() {
            plugin
                .handle(event.clone())
                .await
                .map_err(|error| EffectError::Transient {
                    kind: "plugin",
                    message: format!("plugin {} failed: {error}", plugin.name()),
                })?;
        }
        self.mark(group, row, false).await
    }

    /// Marks `row` handled with no effect of its own.
    async fn mark(
        &self,
        group: &Group,
        row: &OutboxRow,
        ignored: bool,
    ) -> Result<Outcome, EffectError> {
        let outcome = self
            .consume(group, row, |store, name, stream, id| {
                store.mark_consumed(name, stream, id, now_ms())
            })
            .await?;
        Ok(match outcome {
            Outcome::Applied if ignored => Outcome::Ignored,
            other => other,
        })
    }

    async fn consume(
        &self,
        group: &Group,
        row: &OutboxRow,
        work: impl FnOnce(&Store, &str, &str, i64) -> Result<Consumption, StoreError> + Send + 'static,
    ) -> Result<Outcome, EffectError> {
        let name = group.name.clone();
        let stream = group.stream;
        let id = row.id;
        let consumed = blocking(&self.store, move |store| work(store, &name, stream, id))
            .await
            .map_err(store_failure)?;
        Ok(match consumed {
            Consumption::Applied => Outcome::Applied,
            Consumption::Duplicate => Outcome::Duplicate,
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(payload: &str) -> Result<T, EffectError> {
    serde_json::from_str(payload).map_err(|error| EffectError::Permanent {
        kind: "payload",
        message: format!("payload does not parse: {error}"),
    })
}

fn store_failure(error: EventsError) -> EffectError {
    match error {
        EventsError::Store(StoreError::Busy) => EffectError::Transient {
            kind: "busy",
            message: "SQLite stayed locked past the busy timeout".to_owned(),
        },
        EventsError::Store(StoreError::TurnOutOfRange { turn }) => EffectError::Permanent {
            kind: "payload",
            message: format!("turn number {turn} cannot be stored"),
        },
        other => EffectError::Transient {
            kind: "storage",
            message: other.to_string(),
        },
    }
}
