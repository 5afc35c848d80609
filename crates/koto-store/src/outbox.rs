//! The transactional outbox: event rows written with the turn rows, read back by the relay.
//! It does not deliver anything (that is `koto-events`); rows are only ever marked, not deleted.

use rusqlite::{Connection, params};

use crate::error::StoreError;
use crate::store::Store;

/// An event to write in the same transaction as the turn rows it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxEvent {
    /// `type` column, e.g. `LtmWriteRequested`; must not be empty.
    pub event_type: String,
    /// Target stream, e.g. `events.ltm`; must not be empty.
    pub stream: String,
    /// `sessionId#turn`.
    pub correlation_id: String,
    pub payload: serde_json::Value,
    pub ts_ms: i64,
}

/// An undelivered outbox row, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_type: String,
    pub stream: String,
    pub correlation_id: String,
    /// The JSON text as stored (the relay forwards it as the `payload` field verbatim).
    pub payload: String,
    pub created_at: i64,
    /// Failed delivery attempts so far.
    pub attempts: u32,
}

/// Inserts `events` inside the caller's transaction and returns their ids, in order.
pub(crate) fn insert_events(
    conn: &Connection,
    events: &[NewOutboxEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO outbox_events(type, payload, created_at, stream, correlation_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        insert.execute(params![
            event.event_type,
            event.payload.to_string(),
            event.ts_ms,
            event.stream,
            event.correlation_id,
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

/// Served by the `(delivered, id)` index: the poll never walks delivered history.
const PENDING_SQL: &str = "
SELECT id, type, stream, correlation_id, payload, created_at, attempts
FROM outbox_events
WHERE delivered = 0 AND id > ?1
ORDER BY id
LIMIT ?2";

impl Store {
    /// Undelivered rows with `id > after_id`, oldest first, at most `limit`.
    pub fn outbox_pending(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut select = conn.prepare_cached(PENDING_SQL)?;
            let rows = select.query_map(params![after_id, limit], |row| {
                Ok(OutboxRow {
                    id: row.get(0)?,
                    event_type: row.get(1)?,
                    stream: row.get(2)?,
                    correlation_id: row.get(3)?,
                    payload: row.get(4)?,
                    created_at: row.get(5)?,
                    attempts: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Marks `ids` delivered (after the XADD succeeded). Already delivered or unknown ids are
    /// ignored, so a retried call is harmless.
    pub fn mark_delivered(&self, ids: &[i64], ts_ms: i64) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|transaction| {
            let mut update = transaction.prepare_cached(
                "UPDATE outbox_events SET delivered = 1, delivered_at = ?2 WHERE id = ?1 AND delivered = 0",
            )?;
            for id in ids {
                update.execute(params![id, ts_ms])?;
            }
            Ok(())
        })
    }

    /// Records a failed delivery attempt of `ids` (kept undelivered, `attempts` + 1).
    pub fn record_delivery_failure(&self, ids: &[i64], error: &str) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|transaction| {
            let mut update = transaction.prepare_cached(
                "UPDATE outbox_events SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1 AND delivered = 0",
            )?;
            for id in ids {
                update.execute(params![id, error])?;
            }
            Ok(())
        })
    }

    /// The number of undelivered rows and the oldest `created_at` among them (for metrics and
    /// `/health`).
    pub fn outbox_backlog(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT COUNT(*), MIN(created_at) FROM outbox_events WHERE delivered = 0",
            )?
            .query_row([], |row| {
                let count: i64 = row.get(0)?;
                // COUNT(*) is never negative.
                Ok((count.unsigned_abs(), row.get(1)?))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(n: i64) -> NewOutboxEvent {
        NewOutboxEvent {
            event_type: "TurnCompleted".into(),
            stream: "events.plugins".into(),
            correlation_id: format!("s#{n}"),
            payload: serde_json::json!({ "n": n }),
            ts_ms: 1_000 + n,
        }
    }

    fn store_with_events(n: i64) -> (tempfile::TempDir, Store, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let events: Vec<_> = (0..n).map(event).collect();
        let ids = store
            .write(|transaction| insert_events(transaction, &events))
            .unwrap();
        (dir, store, ids)
    }

    #[test]
    fn pending_pages_by_id_and_returns_the_stored_fields() {
        let (_dir, store, ids) = store_with_events(5);
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ids grow in insertion order"
        );

        let first = store.outbox_pending(0, 2).unwrap();
        assert_eq!(
            first.iter().map(|row| row.id).collect::<Vec<_>>(),
            ids[..2],
            "limit caps the page"
        );
        let rest = store.outbox_pending(first[1].id, 10).unwrap();
        assert_eq!(
            rest.iter().map(|row| row.id).collect::<Vec<_>>(),
            ids[2..],
            "after_id continues the page"
        );

        let row = &first[0];
        assert_eq!(row.event_type, "TurnCompleted", "type round-trips");
        assert_eq!(row.stream, "events.plugins", "stream round-trips");
        assert_eq!(row.correlation_id, "s#0", "correlation id round-trips");
        assert_eq!(
            row.created_at, 1_000,
            "created_at is the caller's timestamp"
        );
        assert_eq!(row.attempts, 0, "a new row has not been attempted");
        let payload: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({ "n": 0 }),
            "payload is stored as JSON text"
        );
    }

    #[test]
    fn delivered_rows_leave_the_backlog() {
        let (_dir, store, ids) = store_with_events(4);
        assert_eq!(
            store.outbox_backlog().unwrap(),
            (4, Some(1_000)),
            "all four are pending, oldest at ts 1000"
        );

        store.mark_delivered(&ids[..2], 9_999).unwrap();
        assert_eq!(
            store.outbox_backlog().unwrap(),
            (2, Some(1_002)),
            "two left, the oldest is the third event"
        );
        let pending: Vec<_> = store
            .outbox_pending(0, 10)
            .unwrap()
            .into_iter()
            .map(|row| row.id)
            .collect();
        assert_eq!(pending, ids[2..], "delivered rows are not handed out again");

        store.mark_delivered(&ids[..2], 10_000).unwrap();
        let delivered_at: i64 = store
            .read(|conn| {
                conn.query_row(
                    "SELECT delivered_at FROM outbox_events WHERE id = ?1",
                    [ids[0]],
                    |row| row.get(0),
                )
            })
            .unwrap();
        assert_eq!(
            delivered_at, 9_999,
            "marking twice keeps the first delivery time"
        );

        store.mark_delivered(&ids, 10_001).unwrap();
        assert_eq!(
            store.outbox_backlog().unwrap(),
            (0, None),
            "an empty backlog has no oldest row"
        );
    }

    #[test]
    fn failed_attempts_are_counted_and_the_row_stays_pending() {
        let (_dir, store, ids) = store_with_events(1);
        store
            .record_delivery_failure(&ids, "connection refused")
            .unwrap();
        store
            .record_delivery_failure(&ids, "connection refused")
            .unwrap();
        let rows = store.outbox_pending(0, 10).unwrap();
        assert_eq!(
            rows.len(),
            1,
            "a failed row stays pending for the next attempt"
        );
        assert_eq!(rows[0].attempts, 2, "each failure increments attempts");
    }

    #[test]
    fn pending_query_uses_the_delivered_id_index() {
        let (_dir, store, _ids) = store_with_events(1);
        let plan: Vec<String> = store
            .read(|conn| {
                let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {PENDING_SQL}"))?;
                explain
                    .query_map(params![0, 10], |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("outbox_events_pending")),
            "the relay's poll must not scan delivered history: {plan:?}"
        );
    }
}
