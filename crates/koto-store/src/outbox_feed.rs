//! The outbox as the event runtime reads it: per-stream feeds for embedded consumers, lookups by
//! id for Redis consumers, the relay's pending page that skips streams in back-off, the entry-id
//! epoch, and retention. It does not deliver anything and never deletes an unhandled row.

use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use crate::error::StoreError;
use crate::outbox::{NewOutboxEvent, OutboxRow, insert_events};
use crate::store::Store;

const ROW_COLUMNS: &str = "id, type, stream, correlation_id, payload, created_at, attempts";

fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.get(0)?,
        event_type: row.get(1)?,
        stream: row.get(2)?,
        correlation_id: row.get(3)?,
        payload: row.get(4)?,
        created_at: row.get(5)?,
        attempts: row.get(6)?,
    })
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Which rows retention may delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRetention {
    /// Rows created (or, when `require_delivered`, delivered) before this are old enough.
    pub cutoff_ms: i64,
    /// Redis mode: only rows the relay delivered. Embedded mode: rows no Redis will ever take.
    pub require_delivered: bool,
    /// `(group, stream)` of every consumer group this runtime feeds: a row is kept until each
    /// group on its stream has handled it, so a later switch of mode can still find it.
    pub groups: Vec<(String, String)>,
    /// Rows deleted per transaction, so the writer is never held for long.
    pub batch: usize,
}

impl Store {
    /// Inserts `events` in one transaction of their own (events that describe no turn, tests,
    /// benchmarks) and wakes the outbox listeners. Returns the ids in order.
    pub fn append_events(&self, events: &[NewOutboxEvent]) -> Result<Vec<i64>, StoreError> {
        let ids = self.write(|transaction| insert_events(transaction, events))?;
        self.outbox_committed(&ids);
        Ok(ids)
    }

    /// Rows of `stream` with `id > after_id`, delivered or not, oldest first: what an embedded
    /// consumer reads.
    pub fn outbox_stream(
        &self,
        stream: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM outbox_events
                 WHERE stream = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = select.query_map(params![stream, after_id, sql_limit(limit)], outbox_row)?;
            rows.collect()
        })
    }

    /// One row by id, delivered or not (`None` when it never existed or was pruned).
    pub fn outbox_event(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM outbox_events WHERE id = ?1"
            ))?
            .query_row([id], outbox_row)
            .optional()
        })
    }

    /// The highest id ever handed out (pruned rows included), 0 for an empty outbox.
    pub fn outbox_high_water(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox_events'), 0),
                            COALESCE((SELECT MAX(id) FROM outbox_events), 0))",
            )?
            .query_row([], |row| row.get(0))
        })
    }

    /// Undelivered rows with `id > after_id`, oldest first, leaving out `skip_streams` (streams
    /// the relay is backing off from, so one broken stream does not starve the others).
    pub fn outbox_pending_except(
        &self,
        after_id: i64,
        limit: usize,
        skip_streams: &[String],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        if skip_streams.is_empty() {
            return self.outbox_pending(after_id, limit);
        }
        let placeholders = (0..skip_streams.len())
            .map(|index| format!("?{}", index + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM outbox_events
             WHERE delivered = 0 AND id > ?1 AND stream NOT IN ({placeholders})
             ORDER BY id LIMIT ?2"
        );
        let after = rusqlite::types::Value::Integer(after_id);
        let limit = rusqlite::types::Value::Integer(sql_limit(limit));
        let values = [after, limit].into_iter().chain(
            skip_streams
                .iter()
                .map(|stream| rusqlite::types::Value::Text(stream.clone())),
        );
        self.read(|conn| {
            let mut select = conn.prepare(&sql)?;
            let rows = select.query_map(params_from_iter(values), outbox_row)?;
            rows.collect()
        })
    }

    /// Delivered rows of `stream` that `consumer` has not handled, delivered (and, if they failed
    /// before, last failed) at or before `before_ms`: entries Redis lost (a restart without
    /// persistence, a deleted stream, trimming past an idle group) that the outbox still holds.
    pub fn outbox_unhandled_delivered(
        &self,
        consumer: &str,
        stream: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM outbox_events AS o
                 WHERE o.stream = ?2
                   AND o.id > COALESCE((SELECT last_id FROM consumer_cursors
                                        WHERE consumer = ?1 AND stream = ?2), 0)
                   AND o.delivered = 1 AND o.delivered_at <= ?3
                   AND NOT EXISTS (SELECT 1 FROM consumer_processed AS p
                                   WHERE p.consumer = ?1 AND p.stream = ?2 AND p.outbox_id = o.id)
                   AND NOT EXISTS (SELECT 1 FROM consumer_failures AS f
                                   WHERE f.consumer = ?1 AND f.outbox_id = o.id AND f.failed_at > ?3)
                 ORDER BY o.id LIMIT ?4"
            ))?;
            let rows = select.query_map(
                params![consumer, stream, before_ms, sql_limit(limit)],
                outbox_row,
            )?;
            rows.collect()
        })
    }

    /// The millisecond part of this database's Redis entry ids (fixed at creation, see schema M2).
    pub fn stream_epoch_ms(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM event_meta WHERE key = 'stream_epoch_ms'")?
                .query_row([], |row| row.get(0))
        })
    }

    /// Deletes rows that retention allows (see `OutboxRetention`), in batches; returns how many.
    pub fn prune_outbox(&self, retention: &OutboxRetention) -> Result<usize, StoreError> {
        let batch = sql_limit(retention.batch.max(1));
        let time_column = if retention.require_delivered {
            "delivered = 1 AND delivered_at"
        } else {
            "created_at"
        };
        // Per stream, the lowest cursor of the groups that read it (rows of streams no group
        // reads are bounded by nothing but age).
        let mut handled_bound = String::from("CASE stream");
        let mut values: Vec<rusqlite::types::Value> = vec![
            rusqlite::types::Value::Integer(retention.cutoff_ms),
            rusqlite::types::Value::Integer(batch),
        ];
        let mut streams: Vec<&str> = retention
            .groups
            .iter()
            .map(|(_, stream)| stream.as_str())
            .collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in &streams {
            values.push(rusqlite::types::Value::Text((*stream).to_owned()));
            let stream_param = values.len();
            let mut lowest = String::from("MIN(9223372036854775807");
            for (group, _) in retention.groups.iter().filter(|(_, s)| s == stream) {
                values.push(rusqlite::types::Value::Text(group.clone()));
                let group_param = values.len();
                lowest.push_str(&format!(
                    ", COALESCE((SELECT last_id FROM consumer_cursors
                                 WHERE consumer = ?{group_param} AND stream = ?{stream_param}), 0)"
                ));
            }
            lowest.push(')');
            handled_bound.push_str(&format!(" WHEN ?{stream_param} THEN {lowest}"));
        }
        handled_bound.push_str(" ELSE 9223372036854775807 END");
        let sql = format!(
            "DELETE FROM outbox_events WHERE id IN (
               SELECT id FROM outbox_events
               WHERE {time_column} < ?1 AND id <= {handled_bound}
               ORDER BY id LIMIT ?2)"
        );
        let mut total = 0;
        loop {
            let deleted = self.write(|transaction| {
                Ok(transaction.execute(&sql, params_from_iter(values.iter()))?)
            })?;
            total += deleted;
            if deleted < retention.batch.max(1) {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::test_support::{event, temp_store as store};

    #[test]
    fn stream_feed_ignores_other_streams_and_the_delivered_flag() {
        let (_dir, store) = store();
        let ids = store
            .append_events(&[
                event("events.ltm", 0),
                event("events.analytics", 1),
                event("events.ltm", 2),
            ])
            .unwrap();
        store.mark_delivered(&ids[..1], 5).unwrap();
        let feed: Vec<i64> = store
            .outbox_stream("events.ltm", 0, 10)
            .unwrap()
            .iter()
            .map(|row| row.id)
            .collect();
        assert_eq!(
            feed,
            vec![ids[0], ids[2]],
            "embedded consumers read their stream whatever Redis got"
        );
        assert_eq!(
            store.outbox_event(ids[1]).unwrap().map(|row| row.stream),
            Some("events.analytics".to_owned()),
            "lookup by id finds any row"
        );
        assert_eq!(
            store.outbox_event(999).unwrap(),
            None,
            "an unknown id is None"
        );
        assert_eq!(
            store.outbox_high_water().unwrap(),
            ids[2],
            "high water is the last id"
        );
    }

    #[test]
    fn pending_except_skips_streams_in_back_off() {
        let (_dir, store) = store();
        let ids = store
            .append_events(&[event("events.ltm", 0), event("events.analytics", 1)])
            .unwrap();
        let pending: Vec<i64> = store
            .outbox_pending_except(0, 10, &["events.ltm".to_owned()])
            .unwrap()
            .iter()
            .map(|row| row.id)
            .collect();
        assert_eq!(
            pending,
            vec![ids[1]],
            "the skipped stream's rows are left for later"
        );
    }

    #[test]
    fn epoch_is_fixed_per_database() {
        let (dir, store) = store();
        let epoch = store.stream_epoch_ms().unwrap();
        assert!(
            epoch > 1_600_000_000_000,
            "the epoch is a wall-clock time in ms: {epoch}"
        );
        drop(store);
        let reopened = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        assert_eq!(
            reopened.stream_epoch_ms().unwrap(),
            epoch,
            "reopening keeps the epoch"
        );
    }

    #[test]
    fn retention_keeps_unhandled_and_undelivered_rows() {
        let (_dir, store) = store();
        let ids = store
            .append_events(&[
                event("events.ltm", 0),
                event("events.ltm", 1),
                event("events.plugins", 2),
                event("events.ltm", 3),
            ])
            .unwrap();
        store.mark_delivered(&ids[..3], 100).unwrap();
        store
            .mark_consumed("ltm-workers", "events.ltm", ids[0], 100)
            .unwrap();
        let retention = OutboxRetention {
            cutoff_ms: 1_000_000,
            require_delivered: true,
            groups: vec![("ltm-workers".into(), "events.ltm".into())],
            batch: 1,
        };
        assert_eq!(
            store.prune_outbox(&retention).unwrap(),
            2,
            "handled+delivered ltm row and the plugins row go"
        );
        let left: Vec<i64> = store
            .outbox_pending(0, 10)
            .unwrap()
            .iter()
            .map(|row| row.id)
            .collect();
        assert_eq!(left, vec![ids[3]], "the undelivered row stays");
        assert!(
            store.outbox_event(ids[1]).unwrap().is_some(),
            "a delivered row the group has not handled stays"
        );
        assert_eq!(
            store.outbox_high_water().unwrap(),
            ids[3],
            "ids are never reused after pruning"
        );
    }
}
