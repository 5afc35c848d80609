//! Embedded consumption: one task per group reads its stream straight from the outbox in id
//! order, from the group's durable cursor, woken by commits (a poll as the safety net). No Redis.
//! Order is kept per stream: a failing row is retried (with back-off) until it succeeds or is
//! dead-lettered, and nothing after it is handled before that.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::consumer::{Effects, Group, Handled, blocking};

pub(crate) struct EmbeddedConsumer {
    pub effects: Effects,
    pub group: Group,
    /// Notified after every commit with outbox rows (see `Store::subscribe_outbox`).
    pub wake: Arc<Notify>,
    pub poll: Duration,
    pub batch: usize,
    /// Delay before retrying a failed row (grows up to `retry_max`).
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl EmbeddedConsumer {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let group = &self.group;
        let mut backoff = Backoff::new(self.retry_base, self.retry_max);
        let mut after = loop {
            let name = group.name.clone();
            let stream = group.stream;
            match blocking(&self.effects.store, move |store| {
                store.consumer_position(&name, stream)
            })
            .await
            {
                Ok(position) => break position.cursor,
                Err(error) => {
                    tracing::warn!(group = %group.name, %error, "cannot read the consumer cursor; retrying");
                    if !pause(&shutdown, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        };
        backoff.reset();
        tracing::info!(group = %group.name, stream = group.stream, cursor = after, "embedded consumer started");

        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let stream = group.stream;
            let batch = self.batch;
            let rows = match blocking(&self.effects.store, move |store| {
                store.outbox_stream(stream, after, batch)
            })
            .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    self.effects
                        .metrics
                        .consumer_errors
                        .with(&[&group.name, "storage"])
                        .inc();
                    tracing::warn!(group = %group.name, %error, "cannot read the outbox; retrying");
                    if !pause(&shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
                continue;
            }
            for row in rows {
                loop {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    match self.effects.handle(group, &row, true).await {
                        Handled::Done => break,
                        Handled::DeadLetter { error, attempts } => {
                            match self
                                .effects
                                .dead_letter_row(group, &row, &error, attempts)
                                .await
                            {
                                Ok(()) => break,
                                Err(store_error) => {
                                    tracing::warn!(group = %group.name, outbox_id = row.id, %store_error,
                                        "cannot store the dead letter; retrying");
                                }
                            }
                        }
                        Handled::RetryLater => {}
                    }
                    if !pause(&shutdown, backoff.next_delay()).await {
                        return;
                    }
                }
                backoff.reset();
                after = row.id;
            }
        }
    }
}

/// Sleeps `delay` unless shut down first; `false` means stop.
pub(crate) async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
