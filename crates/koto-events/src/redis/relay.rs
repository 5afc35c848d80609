//! The relay: undelivered outbox rows → one pipelined batch of `XADD <stream> MAXLEN ~ N
//! <epoch>-<outboxId> type … payload … outboxId … correlationId …`, then `delivered = 1` for each
//! entry Redis acknowledged. Woken by commits, polling only as a safety net; Redis down means
//! back-off with jitter and reconnect while the backlog waits in SQLite. It never blocks a chat
//! turn (commits only notify it) and never drops a row: a row leaves the backlog only when Redis
//! has it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use koto_store::OutboxRow;
use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult, Value};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    connect, entry_id, error_kind, field, field_text, is_id_not_increasing, parse_entry_id,
};
use crate::backoff::Backoff;
use crate::consumer::{blocking, now_ms};
use crate::embedded::pause;
use crate::metrics::EventsMetrics;

pub(crate) struct Relay {
    pub store: koto_store::Store,
    pub metrics: EventsMetrics,
    pub url: String,
    pub epoch_ms: i64,
    pub wake: Arc<Notify>,
    pub poll: Duration,
    pub batch: usize,
    pub stream_maxlen: usize,
    pub connect_timeout: Duration,
}

/// A stream that answered an error: its rows wait until `until` so the others keep flowing.
struct StreamBackoff {
    backoff: Backoff,
    until: Instant,
}

/// What became of one row of a batch.
enum Sent {
    Delivered,
    /// Redis answered an error for this entry (OOM, WRONGTYPE, …): kept, retried later.
    Failed(RedisError),
}

#[derive(Default)]
struct RelayState {
    connection: Option<MultiplexedConnection>,
    /// After a batch Redis fully accepted, the next read starts above it while that batch is
    /// still being marked delivered (SQLite work overlaps Redis work). 0 = read from the start,
    /// which every irregular case (failures, back-off changes, a failed mark) goes back to.
    read_after: i64,
    /// The previous batch's `mark_delivered`, at most one in flight; `false` if it failed.
    marking: Option<tokio::task::JoinHandle<bool>>,
    /// The streams skipped by the last read; a change means rows below `read_after` matter.
    last_skip: Vec<String>,
    streams_in_backoff: HashMap<String, StreamBackoff>,
    /// Streams whose ids moved past our explicit ids (another writer, an older database):
    /// entries go with `*` for the rest of this run; consumers still dedupe by `outboxId`.
    auto_id_streams: HashSet<String>,
}

impl Relay {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut state = RelayState::default();
        let mut reconnect = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut store_retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        tracing::info!(epoch_ms = self.epoch_ms, "outbox relay to Redis started");
        self.relay(&shutdown, &mut state, &mut reconnect, &mut store_retry)
            .await;
        // Leave no mark half done behind a shutdown.
        self.finish_marking(&mut state).await;
    }

    async fn relay(
        &self,
        shutdown: &CancellationToken,
        state: &mut RelayState,
        reconnect: &mut Backoff,
        store_retry: &mut Backoff,
    ) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let now = Instant::now();
            let skip: Vec<String> = state
                .streams_in_backoff
                .iter()
                .filter(|(_, waiting)| waiting.until > now)
                .map(|(stream, _)| stream.clone())
                .collect();
            if skip != state.last_skip {
                state.read_after = 0;
                state.last_skip = skip.clone();
            }
            let batch = self.batch;
            let after = state.read_after;
            let pending = {
                let skip = skip.clone();
                blocking(&self.store, move |store| {
                    store.outbox_pending_except(after, batch, &skip)
                })
                .await
            };
            let rows = match pending {
                Ok(rows) => {
                    store_retry.reset();
                    rows
                }
                Err(error) => {
                    self.metrics.relay_errors.with(&["store"]).inc();
                    tracing::warn!(%error, "relay cannot read the outbox; retrying");
                    if !pause(shutdown, store_retry.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            if rows.is_empty() && (state.read_after != 0 || state.marking.is_some()) {
                // Caught up past the last batch: settle its mark and look again from the start.
                self.finish_marking(state).await;
                state.read_after = 0;
                continue;
            }
            if rows.is_empty() {
                let next_unblock = state
                    .streams_in_backoff
                    .values()
                    .map(|waiting| waiting.until)
                    .filter(|until| *until > now)
                    .min();
                let wait = next_unblock.map_or(self.poll, |until| (until - now).min(self.poll));
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }

            if !self.ensure_connected(state, reconnect).await {
                if !pause(shutdown, reconnect.next_delay()).await {
                    return;
                }
                continue;
            }
            let RelayState {
                connection: Some(connection),
                auto_id_streams,
                ..
            } = &mut *state
            else {
                continue;
            };
            let outcomes = match self.send(connection, &rows, auto_id_streams).await {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    // Redis went away mid-batch: some entries may be in, none is marked; the
                    // re-send is rejected per entry as a duplicate (explicit ids).
                    self.connection_lost(state, &error);
                    self.finish_marking(state).await;
                    state.read_after = 0;
                    if !pause(shutdown, reconnect.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            reconnect.reset();
            let previous_marked = self.finish_marking(state).await;
            if outcomes.iter().all(Result::is_ok) {
                // The common case: mark in the background, read on above this batch.
                for row in &rows {
                    state.streams_in_backoff.remove(&row.stream);
                }
                // A failed earlier mark left rows below: read from the start to re-check them.
                state.read_after = if previous_marked {
                    rows.last().map_or(0, |row| row.id)
                } else {
                    0
                };
                state.marking = Some(tokio::spawn(mark_rows(
                    self.store.clone(),
                    self.metrics.clone(),
                    rows.iter().map(|row| (row.id, row.created_at)).collect(),
                )));
            } else {
                state.read_after = 0;
                self.settle(state, &rows, outcomes).await;
            }
        }
    }

    /// Waits for the background mark; a failed one sends the next read back to the start.
    /// `false` if it failed.
    async fn finish_marking(&self, state: &mut RelayState) -> bool {
        let marked = match state.marking.take() {
            Some(marking) => marking.await.unwrap_or(false),
            None => true,
        };
        if !marked {
            state.read_after = 0;
        }
        marked
    }

    /// Connects if needed; `false` when Redis cannot be reached now.
    async fn ensure_connected(&self, state: &mut RelayState, reconnect: &mut Backoff) -> bool {
        if state.connection.is_none() {
            match connect(&self.url, self.connect_timeout, Duration::from_secs(10)).await {
                Ok(connection) => {
                    if reconnect.failures() > 0 {
                        self.metrics.redis_reconnects.inc();
                        tracing::info!("relay reconnected to Redis");
                    }
                    self.metrics.redis_connected.set(1.0);
                    state.connection = Some(connection);
                }
                Err(error) => {
                    self.metrics.redis_connected.set(0.0);
                    self.metrics.relay_errors.with(&["connection"]).inc();
                    tracing::warn!(%error, failures = reconnect.failures() + 1,
                        "relay cannot connect to Redis; events wait in the outbox");
                    return false;
                }
            }
        }
        true
    }

    fn connection_lost(&self, state: &mut RelayState, error: &RedisError) {
        state.connection = None;
        self.metrics.redis_connected.set(0.0);
        self.metrics.relay_errors.with(&["connection"]).inc();
        tracing::warn!(%error, "relay lost its Redis connection; events wait in the outbox");
    }

    /// One pipeline for the whole batch; a reply per entry (errors included).
    async fn send(
        &self,
        connection: &mut MultiplexedConnection,
        rows: &[OutboxRow],
        auto_id_streams: &HashSet<String>,
    ) -> Result<Vec<RedisResult<String>>, RedisError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for row in rows {
            let id = if auto_id_streams.contains(&row.stream) {
                "*".to_owned()
            } else {
                entry_id(self.epoch_ms, row.id)
            };
            let mut command = redis::cmd("XADD");
            self.xadd(&mut command, row, &id);
            pipe.add_command(command);
        }
        let replies: Vec<RedisResult<String>> = pipe.query_async(connection).await?;
        if replies.len() != rows.len() {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "pipeline answered a different number of replies",
            )));
        }
        Ok(replies)
    }

    fn xadd(&self, command: &mut redis::Cmd, row: &OutboxRow, id: &str) {
        command
            .arg(&row.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.stream_maxlen)
            .arg(id)
            .arg(field::TYPE)
            .arg(&row.event_type)
            .arg(field::PAYLOAD)
            .arg(&row.payload)
            .arg(field::OUTBOX_ID)
            .arg(row.id)
            .arg(field::CORRELATION_ID)
            .arg(&row.correlation_id);
    }

    /// Marks what Redis has, records what it refused, and backs off refusing streams.
    async fn settle(
        &self,
        state: &mut RelayState,
        rows: &[OutboxRow],
        replies: Vec<RedisResult<String>>,
    ) {
        let mut delivered: Vec<&OutboxRow> = Vec::with_capacity(rows.len());
        let mut failed: Vec<(&OutboxRow, RedisError)> = Vec::new();
        for (row, reply) in rows.iter().zip(replies) {
            let sent = match reply {
                Ok(_) => Sent::Delivered,
                Err(error) if is_id_not_increasing(&error) => {
                    self.resolve_rejected(state, row).await
                }
                Err(error) => Sent::Failed(error),
            };
            match sent {
                Sent::Delivered => delivered.push(row),
                Sent::Failed(error) => failed.push((row, error)),
            }
        }

        if !delivered.is_empty() {
            let marked = delivered
                .iter()
                .map(|row| (row.id, row.created_at))
                .collect();
            mark_rows(self.store.clone(), self.metrics.clone(), marked).await;
            for row in &delivered {
                state.streams_in_backoff.remove(&row.stream);
            }
        }

        let mut failed_streams: HashMap<&str, (Vec<i64>, String)> = HashMap::new();
        for (row, error) in failed {
            let kind = error_kind(&error);
            self.metrics.relay_errors.with(&[kind]).inc();
            let entry = failed_streams
                .entry(row.stream.as_str())
                .or_insert_with(|| (Vec::new(), error.to_string()));
            entry.0.push(row.id);
        }
        for (stream, (ids, error)) in failed_streams {
            let waiting = state
                .streams_in_backoff
                .entry(stream.to_owned())
                .or_insert_with(|| StreamBackoff {
                    backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
                    until: Instant::now(),
                });
            let delay = waiting.backoff.next_delay();
            waiting.until = Instant::now() + delay;
            tracing::warn!(stream, rows = ids.len(), %error, retry_in_ms = delay.as_millis() as u64,
                "Redis refused entries; they stay in the outbox and are retried");
            let error_for_store = error.clone();
            if let Err(store_error) = blocking(&self.store, move |store| {
                store.record_delivery_failure(&ids, &error_for_store)
            })
            .await
            {
                tracing::warn!(%store_error, "could not record the delivery failure");
            }
        }
    }

    /// An explicit id Redis refused as not increasing. Delivered if the entry is there (a replay
    /// after a crash between XADD and marking) or was provably ours and trimmed away since;
    /// otherwise the stream's ids are ahead of ours and the entry goes with an automatic id.
    async fn resolve_rejected(&self, state: &mut RelayState, row: &OutboxRow) -> Sent {
        let Some(connection) = state.connection.as_mut() else {
            return Sent::Failed(RedisError::from((redis::ErrorKind::Io, "connection lost")));
        };
        let id = entry_id(self.epoch_ms, row.id);
        match self.already_in(connection, row, &id).await {
            Ok(true) => return Sent::Delivered,
            Ok(false) => {}
            Err(error) => return Sent::Failed(error),
        }
        tracing::warn!(stream = %row.stream, outbox_id = row.id, correlationId = %row.correlation_id,
            "stream ids are ahead of the outbox (another writer or an older database); sending with an automatic id");
        self.metrics.relay_id_fallbacks.with(&[&row.stream]).inc();
        state.auto_id_streams.insert(row.stream.clone());
        let mut command = redis::cmd("XADD");
        self.xadd(&mut command, row, "*");
        match command.query_async::<String>(connection).await {
            Ok(_) => Sent::Delivered,
            Err(error) => Sent::Failed(error),
        }
    }

    async fn already_in(
        &self,
        connection: &mut MultiplexedConnection,
        row: &OutboxRow,
        id: &str,
    ) -> Result<bool, RedisError> {
        let found: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&row.stream)
            .arg(id)
            .arg(id)
            .query_async(connection)
            .await?;
        if let Some(entry) = found.ids.first() {
            let outbox_id = entry.map.get(field::OUTBOX_ID).and_then(field_text);
            return Ok(outbox_id.as_deref() == Some(row.id.to_string().as_str()));
        }
        // Not there: trimmed (MAXLEN) or deleted after an earlier delivery, if it lies below the
        // first entry and the stream's last id is in our id space at or past it.
        let info: Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&row.stream)
            .query_async(connection)
            .await?;
        let fields = key_values(info);
        let last = fields
            .iter()
            .find(|(key, _)| key == "last-generated-id")
            .and_then(|(_, value)| field_text(value))
            .and_then(|text| parse_entry_id(&text));
        let first = fields
            .iter()
            .find(|(key, _)| key == "first-entry")
            .and_then(|(_, value)| match value {
                Value::Array(parts) => parts.first().and_then(field_text),
                _ => None,
            })
            .and_then(|text| parse_entry_id(&text));
        let ours = parse_entry_id(id);
        let epoch = u64::try_from(self.epoch_ms).ok();
        let below_first = match (ours, first) {
            (Some(ours), Some(first)) => ours < first,
            (_, None) => true,
            (None, _) => false,
        };
        let last_is_ours_and_past = match (last, ours) {
            (Some(last), Some(ours)) => Some(last.0) == epoch && last >= ours,
            _ => false,
        };
        Ok(below_first && last_is_ours_and_past)
    }
}

/// Marks `(id, created_at)` rows delivered and observes commit → XADD latency; `false` if the
/// store refused (Redis has the entries: the next send is rejected as a duplicate and marks
/// them then).
async fn mark_rows(
    store: koto_store::Store,
    metrics: EventsMetrics,
    rows: Vec<(i64, i64)>,
) -> bool {
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    match blocking(&store, move |store| store.mark_delivered(&ids, now_ms())).await {
        Ok(()) => {
            let now = now_ms();
            let latency = metrics.delivery_latency.with(&["redis"]);
            for (_, created_at) in &rows {
                latency.observe((now - created_at).max(0) as f64 / 1000.0);
            }
            metrics.relay_delivered.inc_by(rows.len() as u64);
            true
        }
        Err(error) => {
            metrics.relay_errors.with(&["store"]).inc();
            tracing::warn!(%error, rows = rows.len(), "entries are in Redis but could not be marked delivered; will re-check");
            false
        }
    }
}

/// `XINFO`-style replies as key/value pairs (RESP2 flat arrays and RESP3 maps alike).
fn key_values(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(key, value)| field_text(&key).map(|key| (key, value)))
            .collect(),
        Value::Array(items) => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                if let Some(key) = field_text(&key) {
                    pairs.push((key, value));
                }
            }
            pairs
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_map_replies_read_the_same() {
        let flat = Value::Array(vec![
            Value::BulkString(b"length".to_vec()),
            Value::Int(3),
            Value::SimpleString("last-generated-id".into()),
            Value::BulkString(b"5-7".to_vec()),
        ]);
        let keys: Vec<String> = key_values(flat).into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            vec!["length", "last-generated-id"],
            "RESP2 pairs are read in order"
        );
        let map = Value::Map(vec![(Value::BulkString(b"groups".to_vec()), Value::Int(1))]);
        assert_eq!(key_values(map).len(), 1, "RESP3 maps read as pairs too");
    }
}
