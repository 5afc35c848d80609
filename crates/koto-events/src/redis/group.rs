//! A consumer-group worker: `XREADGROUP` on its own connection (blocking reads stall every other
//! command on a shared one), the effect in SQLite, `XACK` only after it committed. Pending
//! entries idle past `RECLAIM_IDLE_MS` are taken over with `XAUTOCLAIM`; entries that fail too
//! often or cannot be processed go to `events.dlq`. Events Redis lost (a restart without
//! persistence, a deleted stream, trimming) are handled straight from the outbox, which the
//! worker reads anyway: an entry is only a pointer (`outboxId`) to its outbox row.

use std::time::Duration;

use koto_protocol::events::stream;
use koto_store::{DeadLetter, OutboxRow};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{connect, error_kind, field, field_text, is_server_reply, outbox_id_of};
use crate::backoff::Backoff;
use crate::consumer::{Effects, Group, Handled, blocking, now_ms};
use crate::embedded::pause;

/// Rounds of `XAUTOCLAIM` per reclaim tick: bounds one tick's work; the rest waits for the next.
const RECLAIM_ROUNDS: usize = 8;
/// Every process start adds a consumer name to the group; names idle this long with nothing
/// pending are removed so the list does not grow forever.
const FORGET_CONSUMERS_IDLE: Duration = Duration::from_secs(3600);
const FORGET_CONSUMERS_EVERY: Duration = Duration::from_secs(600);

pub(crate) struct GroupWorker {
    pub effects: Effects,
    pub group: Group,
    pub url: String,
    pub consumer: String,
    pub epoch_ms: i64,
    pub batch: usize,
    pub block: Duration,
    pub reclaim_idle: Duration,
    pub repair_after: Duration,
    pub connect_timeout: Duration,
    pub stream_maxlen: usize,
}

/// What to do with a Redis entry after handling it.
enum EntryOutcome {
    Ack,
    /// Leave it pending: a transient failure, retried when reclaimed.
    Leave,
}

/// The connection broke: reconnect.
struct Disconnected(RedisError);

impl GroupWorker {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let group = &self.group;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let connections = async {
                // The reader's response timeout must outlast its BLOCK.
                let reader = connect(
                    &self.url,
                    self.connect_timeout,
                    self.block + Duration::from_secs(5),
                )
                .await?;
                let commands =
                    connect(&self.url, self.connect_timeout, Duration::from_secs(10)).await?;
                Ok::<_, RedisError>((reader, commands))
            };
            let (mut reader, mut commands) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                connected = connections => match connected {
                    Ok(connections) => connections,
                    Err(error) => {
                        self.effects.metrics.consumer_errors.with(&[&group.name, "redis"]).inc();
                        tracing::warn!(group = %group.name, %error, "worker cannot connect to Redis; retrying");
                        if !pause(&shutdown, reconnect.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if reconnect.failures() > 0 {
                tracing::info!(group = %group.name, "worker reconnected to Redis");
            }
            match self
                .serve(&shutdown, &mut reader, &mut commands, &mut reconnect)
                .await
            {
                Ok(()) => return,
                Err(Disconnected(error)) => {
                    self.effects
                        .metrics
                        .consumer_errors
                        .with(&[&group.name, "redis"])
                        .inc();
                    tracing::warn!(group = %group.name, %error, "worker lost its Redis connection; reconnecting");
                    if !pause(&shutdown, reconnect.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Runs on live connections until shutdown (`Ok`) or a broken connection.
    async fn serve(
        &self,
        shutdown: &CancellationToken,
        reader: &mut MultiplexedConnection,
        commands: &mut MultiplexedConnection,
        reconnect: &mut Backoff,
    ) -> Result<(), Disconnected> {
        let group = &self.group;
        let mut server_errors = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        self.ensure_group(commands).await?;
        let reclaim_every =
            (self.reclaim_idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let repair_every =
            (self.repair_after / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut next_reclaim = Instant::now();
        let mut next_repair = Instant::now() + repair_every;
        let mut next_forget = Instant::now();
        tracing::info!(group = %group.name, stream = group.stream, consumer = %self.consumer, "Redis worker started");
        loop {
            if Instant::now() >= next_reclaim {
                self.reclaim(commands).await?;
                next_reclaim = Instant::now() + reclaim_every;
            }
            if Instant::now() >= next_forget {
                self.forget_idle_consumers(commands).await?;
                next_forget = Instant::now() + FORGET_CONSUMERS_EVERY;
            }
            if Instant::now() >= next_repair {
                let before =
                    now_ms() - i64::try_from(self.repair_after.as_millis()).unwrap_or(i64::MAX);
                self.repair(commands, before).await?;
                next_repair = Instant::now() + repair_every;
            }
            let read = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                read = self.read_new(reader) => read,
            };
            match read {
                Ok(entries) => {
                    reconnect.reset();
                    server_errors.reset();
                    self.process_entries(commands, entries).await?;
                }
                Err(error) if error.code() == Some("NOGROUP") => {
                    // The stream (and its groups) vanished: deleted, or Redis restarted empty.
                    tracing::warn!(group = %group.name, stream = group.stream,
                        "consumer group is gone (stream deleted or Redis restarted); recreating it");
                    self.effects
                        .metrics
                        .consumer_errors
                        .with(&[&group.name, "nogroup"])
                        .inc();
                    self.ensure_group(commands).await?;
                }
                Err(error) if is_server_reply(&error) => {
                    // E.g. WRONGTYPE: the stream's key holds something else. Nothing to read
                    // until an operator fixes it; the outbox keeps every event meanwhile.
                    self.effects
                        .metrics
                        .consumer_errors
                        .with(&[&group.name, error_kind(&error)])
                        .inc();
                    let delay = server_errors.next_delay();
                    tracing::warn!(group = %group.name, stream = group.stream, %error, retry_in_ms = delay.as_millis() as u64,
                        "Redis refused XREADGROUP; retrying");
                    if !pause(shutdown, delay).await {
                        return Ok(());
                    }
                }
                Err(error) => return Err(Disconnected(error)),
            }
        }
    }

    async fn read_new(
        &self,
        reader: &mut MultiplexedConnection,
    ) -> Result<Vec<StreamId>, RedisError> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group.name)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.batch)
            .arg("BLOCK")
            .arg(u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(self.group.stream)
            .arg(">")
            .query_async(reader)
            .await?;
        Ok(reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// `XGROUP CREATE … 0 MKSTREAM` (from the start, so no earlier event is skipped). A group
    /// that had to be created may have missed entries Redis lost: catch up from the outbox.
    async fn ensure_group(&self, commands: &mut MultiplexedConnection) -> Result<(), Disconnected> {
        let created: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.group.stream)
            .arg(&self.group.name)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(commands)
            .await;
        match created {
            Ok(_) => {
                tracing::info!(group = %self.group.name, stream = self.group.stream, "consumer group created");
                self.repair(commands, now_ms()).await
            }
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) if is_server_reply(&error) => {
                // WRONGTYPE and the like: reading will fail too and be reported there.
                self.effects
                    .metrics
                    .consumer_errors
                    .with(&[&self.group.name, error_kind(&error)])
                    .inc();
                tracing::warn!(group = %self.group.name, %error, "cannot create the consumer group");
                Ok(())
            }
            Err(error) => Err(Disconnected(error)),
        }
    }

    /// Takes over entries pending longer than `reclaim_idle` (a dead worker's, or our own
    /// failures due for a retry); entries Redis deleted meanwhile come from the outbox.
    async fn reclaim(&self, commands: &mut MultiplexedConnection) -> Result<(), Disconnected> {
        let mut start = "0-0".to_owned();
        for _ in 0..RECLAIM_ROUNDS {
            let claimed: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(self.group.stream)
                .arg(&self.group.name)
                .arg(&self.consumer)
                .arg(u64::try_from(self.reclaim_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&start)
                .arg("COUNT")
                .arg(self.batch)
                .query_async(commands)
                .await;
            let reply = match claimed {
                Ok(reply) => reply,
                Err(error) if is_server_reply(&error) => {
                    // NOGROUP/WRONGTYPE: the read loop notices and recovers.
                    tracing::debug!(group = %self.group.name, %error, "XAUTOCLAIM refused");
                    return Ok(());
                }
                Err(error) => return Err(Disconnected(error)),
            };
            if !reply.claimed.is_empty() {
                self.effects
                    .metrics
                    .reclaimed
                    .with(&[&self.group.name])
                    .inc_by(reply.claimed.len() as u64);
                tracing::info!(group = %self.group.name, entries = reply.claimed.len(), "reclaimed idle pending entries");
                self.process_entries(commands, reply.claimed).await?;
            }
            for deleted in &reply.deleted_ids {
                match outbox_id_of(self.epoch_ms, deleted) {
                    Some(outbox_id) => self.handle_from_outbox(commands, outbox_id).await?,
                    None => tracing::warn!(group = %self.group.name, entry = %deleted,
                        "a pending entry was deleted from the stream and names no outbox row of this database"),
                }
            }
            if reply.next_stream_id == "0-0" {
                break;
            }
            start = reply.next_stream_id;
        }
        Ok(())
    }

    /// Removes other consumers of the group that have nothing pending and have been idle for
    /// `FORGET_CONSUMERS_IDLE` (earlier runs of this and other processes).
    async fn forget_idle_consumers(
        &self,
        commands: &mut MultiplexedConnection,
    ) -> Result<(), Disconnected> {
        let consumers: Result<redis::streams::StreamInfoConsumersReply, RedisError> =
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(self.group.stream)
                .arg(&self.group.name)
                .query_async(commands)
                .await;
        let consumers = match consumers {
            Ok(reply) => reply.consumers,
            Err(error) if is_server_reply(&error) => return Ok(()),
            Err(error) => return Err(Disconnected(error)),
        };
        let idle_limit = usize::try_from(FORGET_CONSUMERS_IDLE.as_millis()).unwrap_or(usize::MAX);
        for consumer in consumers {
            if consumer.name == self.consumer || consumer.pending > 0 || consumer.idle < idle_limit
            {
                continue;
            }
            let removed: Result<i64, RedisError> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(self.group.stream)
                .arg(&self.group.name)
                .arg(&consumer.name)
                .query_async(commands)
                .await;
            match removed {
                Ok(_) => {
                    tracing::info!(group = %self.group.name, consumer = %consumer.name, "forgot an idle consumer with nothing pending")
                }
                Err(error) if is_server_reply(&error) => {}
                Err(error) => return Err(Disconnected(error)),
            }
        }
        Ok(())
    }

    /// Handles delivered outbox rows this group has not handled, delivered before `before_ms`.
    async fn repair(
        &self,
        commands: &mut MultiplexedConnection,
        before_ms: i64,
    ) -> Result<(), Disconnected> {
        loop {
            let name = self.group.name.clone();
            let stream = self.group.stream;
            let limit = self.batch;
            let rows = match blocking(&self.effects.store, move |store| {
                store.outbox_unhandled_delivered(&name, stream, before_ms, limit)
            })
            .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(group = %self.group.name, %error, "cannot look for events Redis lost; will retry");
                    return Ok(());
                }
            };
            if rows.is_empty() {
                return Ok(());
            }
            let full_page = rows.len() == limit;
            let mut progressed = false;
            for row in rows {
                self.effects
                    .metrics
                    .repaired
                    .with(&[&self.group.name])
                    .inc();
                if let EntryOutcome::Ack = self.handle_row(commands, &row, None, true).await? {
                    progressed = true;
                }
            }
            // A page of failures would come back unchanged: stop and let the next tick retry.
            if !full_page || !progressed {
                return Ok(());
            }
        }
    }

    async fn handle_from_outbox(
        &self,
        commands: &mut MultiplexedConnection,
        outbox_id: i64,
    ) -> Result<(), Disconnected> {
        let row = blocking(&self.effects.store, move |store| {
            store.outbox_event(outbox_id)
        })
        .await;
        match row {
            Ok(Some(row)) if row.stream == self.group.stream => {
                self.effects
                    .metrics
                    .repaired
                    .with(&[&self.group.name])
                    .inc();
                self.handle_row(commands, &row, None, true).await?;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(group = %self.group.name, outbox_id, %error,
                "cannot read the outbox row of a deleted entry; the repair pass will find it"),
        }
        Ok(())
    }

    async fn process_entries(
        &self,
        commands: &mut MultiplexedConnection,
        entries: Vec<StreamId>,
    ) -> Result<(), Disconnected> {
        let mut acks: Vec<String> = Vec::with_capacity(entries.len());
        for entry in &entries {
            if let EntryOutcome::Ack = self.handle_entry(commands, entry).await? {
                acks.push(entry.id.clone());
            }
        }
        if acks.is_empty() {
            return Ok(());
        }
        let acked: Result<i64, RedisError> = redis::cmd("XACK")
            .arg(self.group.stream)
            .arg(&self.group.name)
            .arg(&acks)
            .query_async(commands)
            .await;
        match acked {
            Ok(_) => Ok(()),
            // Unacknowledged entries are redelivered by reclaim and absorbed as duplicates.
            Err(error) if is_server_reply(&error) => {
                tracing::warn!(group = %self.group.name, %error, "XACK refused; entries will be redelivered as duplicates");
                Ok(())
            }
            Err(error) => Err(Disconnected(error)),
        }
    }

    /// One entry: find its outbox row and handle that; anything that does not point at a row of
    /// this stream is dead-lettered (never silently dropped).
    async fn handle_entry(
        &self,
        commands: &mut MultiplexedConnection,
        entry: &StreamId,
    ) -> Result<EntryOutcome, Disconnected> {
        let text = |name: &str| entry.map.get(name).and_then(field_text);
        let Some(outbox_id) = text(field::OUTBOX_ID).and_then(|raw| raw.trim().parse::<i64>().ok())
        else {
            return self
                .reject_entry(commands, entry, None, "entry has no usable outboxId field")
                .await;
        };
        let looked_up = blocking(&self.effects.store, move |store| {
            let row = store.outbox_event(outbox_id)?;
            let high_water = store.outbox_high_water()?;
            Ok((row, high_water))
        })
        .await;
        let (row, high_water) = match looked_up {
            Ok(found) => found,
            Err(error) => {
                self.effects
                    .metrics
                    .consumer_errors
                    .with(&[&self.group.name, "storage"])
                    .inc();
                tracing::warn!(group = %self.group.name, outbox_id, %error, "cannot read the outbox; entry left pending");
                return Ok(EntryOutcome::Leave);
            }
        };
        match row {
            Some(row)
                if row.stream == self.group.stream
                    && text(field::TYPE).as_deref() == Some(row.event_type.as_str())
                    && text(field::CORRELATION_ID).as_deref() == Some(row.correlation_id.as_str()) =>
            {
                self.handle_row(commands, &row, Some(&entry.id), false).await
            }
            Some(_) => {
                self.reject_entry(commands, entry, Some(outbox_id),
                    "entry does not match the outbox row with its outboxId (another database's stream?)").await
            }
            None => {
                let name = self.group.name.clone();
                let stream = self.group.stream;
                let handled = blocking(&self.effects.store, move |store| store.is_consumed(&name, stream, outbox_id)).await;
                match handled {
                    Ok(true) => {
                        self.effects.metrics.consumed.with(&[&self.group.name, "duplicate"]).inc();
                        Ok(EntryOutcome::Ack)
                    }
                    Ok(false) if outbox_id > high_water => {
                        self.reject_entry(commands, entry, Some(outbox_id), "outboxId is unknown to this database").await
                    }
                    Ok(false) => {
                        self.reject_entry(commands, entry, Some(outbox_id), "the outbox row of this entry no longer exists").await
                    }
                    Err(error) => {
                        tracing::warn!(group = %self.group.name, outbox_id, %error, "cannot read the consumer state; entry left pending");
                        Ok(EntryOutcome::Leave)
                    }
                }
            }
        }
    }

    /// Handles an outbox row (from an entry or from the outbox itself) and dead-letters it when
    /// the effect gives up.
    async fn handle_row(
        &self,
        commands: &mut MultiplexedConnection,
        row: &OutboxRow,
        source_id: Option<&str>,
        from_outbox: bool,
    ) -> Result<EntryOutcome, Disconnected> {
        match self.effects.handle(&self.group, row, from_outbox).await {
            Handled::Done => Ok(EntryOutcome::Ack),
            Handled::RetryLater => Ok(EntryOutcome::Leave),
            Handled::DeadLetter { error, attempts } => {
                let letter = DeadLetter {
                    consumer: self.group.name.clone(),
                    stream: self.group.stream.to_owned(),
                    outbox_id: Some(row.id),
                    event_type: Some(row.event_type.clone()),
                    payload: Some(row.payload.clone()),
                    correlation_id: Some(row.correlation_id.clone()),
                    error,
                    attempts,
                    ts_ms: now_ms(),
                };
                self.dead_letter(commands, letter, source_id).await
            }
        }
    }

    /// Dead-letters an entry that names no usable outbox row. Its SQLite letter carries no
    /// outbox id, so the real row with that id (if any) is not marked handled by mistake.
    async fn reject_entry(
        &self,
        commands: &mut MultiplexedConnection,
        entry: &StreamId,
        claimed_outbox_id: Option<i64>,
        reason: &str,
    ) -> Result<EntryOutcome, Disconnected> {
        self.effects
            .metrics
            .consumer_errors
            .with(&[&self.group.name, "entry"])
            .inc();
        tracing::warn!(group = %self.group.name, entry = %entry.id, ?claimed_outbox_id, reason,
            "unusable stream entry; dead-lettering it");
        let text = |name: &str| entry.map.get(name).and_then(field_text);
        let letter = DeadLetter {
            consumer: self.group.name.clone(),
            stream: self.group.stream.to_owned(),
            outbox_id: None,
            event_type: text(field::TYPE),
            payload: text(field::PAYLOAD),
            correlation_id: text(field::CORRELATION_ID),
            error: match claimed_outbox_id {
                Some(id) => format!("{reason} (outboxId {id})"),
                None => reason.to_owned(),
            },
            attempts: 1,
            ts_ms: now_ms(),
        };
        self.dead_letter(commands, letter, Some(&entry.id)).await
    }

    /// `events.dlq` first, then the SQLite letter (which marks the row handled), then the caller
    /// acknowledges. A failure anywhere leaves the entry pending for another try.
    async fn dead_letter(
        &self,
        commands: &mut MultiplexedConnection,
        letter: DeadLetter,
        source_id: Option<&str>,
    ) -> Result<EntryOutcome, Disconnected> {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(stream::DLQ)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.stream_maxlen)
            .arg("*");
        let optional = [
            (field::TYPE, letter.event_type.as_deref()),
            (field::PAYLOAD, letter.payload.as_deref()),
            (field::CORRELATION_ID, letter.correlation_id.as_deref()),
            ("sourceId", source_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                xadd.arg(name).arg(value);
            }
        }
        if let Some(outbox_id) = letter.outbox_id {
            xadd.arg(field::OUTBOX_ID).arg(outbox_id);
        }
        xadd.arg("error")
            .arg(&letter.error)
            .arg("group")
            .arg(&self.group.name)
            .arg("sourceStream")
            .arg(self.group.stream)
            .arg("attempts")
            .arg(letter.attempts)
            .arg("failedAt")
            .arg(letter.ts_ms);
        match xadd.query_async::<String>(commands).await {
            Ok(_) => {}
            Err(error) if is_server_reply(&error) => {
                self.effects
                    .metrics
                    .consumer_errors
                    .with(&[&self.group.name, error_kind(&error)])
                    .inc();
                tracing::warn!(group = %self.group.name, %error, "cannot write to events.dlq; entry left pending");
                return Ok(EntryOutcome::Leave);
            }
            Err(error) => return Err(Disconnected(error)),
        }
        match self.effects.store_dead_letter(&self.group, letter).await {
            Ok(()) => Ok(EntryOutcome::Ack),
            Err(error) => {
                tracing::warn!(group = %self.group.name, %error, "cannot store the dead letter; entry left pending");
                Ok(EntryOutcome::Leave)
            }
        }
    }
}
