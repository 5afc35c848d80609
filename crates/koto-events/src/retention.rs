//! Outbox retention: deletes rows old enough that every group of this runtime has handled (and,
//! in Redis mode, that the relay delivered). It never deletes a row a group still needs, so a
//! switch of mode between runs finds every unhandled event in the outbox.

use std::time::Duration;

use koto_store::OutboxRetention;
use tokio_util::sync::CancellationToken;

use crate::consumer::{Effects, Group, blocking, now_ms};

pub(crate) struct Retention {
    pub effects: Effects,
    pub groups: Vec<Group>,
    pub keep: Duration,
    /// Rows only become prunable hours after they were written: minutes between runs is plenty.
    pub interval: Duration,
    pub require_delivered: bool,
}

impl Retention {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            self.prune_once().await;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    pub(crate) async fn prune_once(&self) -> usize {
        let keep_ms = i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX);
        let retention = OutboxRetention {
            cutoff_ms: now_ms().saturating_sub(keep_ms),
            require_delivered: self.require_delivered,
            groups: self
                .groups
                .iter()
                .map(|group| (group.name.clone(), group.stream.to_owned()))
                .collect(),
            batch: 1_000,
        };
        match blocking(&self.effects.store, move |store| {
            store.prune_outbox(&retention)
        })
        .await
        {
            Ok(pruned) => {
                if pruned > 0 {
                    tracing::info!(pruned, "outbox rows past retention deleted");
                }
                self.effects.metrics.retention_pruned.inc_by(pruned as u64);
                pruned
            }
            Err(error) => {
                tracing::warn!(%error, "outbox retention failed; will try again later");
                0
            }
        }
    }
}
