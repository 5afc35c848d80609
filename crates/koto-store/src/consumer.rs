//! Consumer-group bookkeeping for the event workers: per-(group, stream) cursors, handled ids,
//! failed attempts and dead letters. It applies no effect itself (`memory` and `analytics` do,
//! inside the same transaction) and knows nothing of Redis.
//!
//! Invariant: for a group and a stream, every outbox row with `id <= consumer_cursors.last_id` has
//! been handled, and `consumer_processed` holds exactly the handled ids above it. So "was this
//! outbox id handled?" has one answer whether the row came from Redis (any order) or straight from
//! the outbox (id order), which is what lets a run switch between the two without gaps.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::store::Store;

/// What consuming an outbox id did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumption {
    /// First time: the effect was applied in the same transaction.
    Applied,
    /// Already handled by this group (a redelivery or a replay); nothing was changed.
    Duplicate,
}

/// A message a consumer group gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub consumer: String,
    pub stream: String,
    /// `None` for a Redis entry that carried no usable `outboxId`.
    pub outbox_id: Option<i64>,
    pub event_type: Option<String>,
    pub payload: Option<String>,
    pub correlation_id: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub ts_ms: i64,
}

/// One outbox row's handling state in one group, for the repair pass and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerPosition {
    /// Every row of the stream with an id up to this one is handled.
    pub cursor: i64,
    /// Rows of the stream above the cursor not handled yet.
    pub lag: u64,
}

/// Marks `outbox_id` handled by `consumer` on `stream` inside the caller's transaction and moves
/// the cursor over every handled id it now touches. `Duplicate` means the caller must not apply
/// its effect (and should let the transaction commit or roll back, both are harmless).
pub(crate) fn consume_in(
    conn: &Connection,
    consumer: &str,
    stream: &str,
    outbox_id: i64,
    ts_ms: i64,
) -> Result<Consumption, StoreError> {
    conn.prepare_cached(
        "INSERT INTO consumer_cursors(consumer, stream, last_id, updated_at) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT(consumer, stream) DO NOTHING",
    )?
    .execute(params![consumer, stream, ts_ms])?;
    let cursor: i64 = conn
        .prepare_cached("SELECT last_id FROM consumer_cursors WHERE consumer = ?1 AND stream = ?2")?
        .query_row(params![consumer, stream], |row| row.get(0))?;
    if outbox_id <= cursor {
        return Ok(Consumption::Duplicate);
    }
    let inserted = conn
        .prepare_cached(
            "INSERT INTO consumer_processed(consumer, stream, outbox_id, processed_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(consumer, stream, outbox_id) DO NOTHING",
        )?
        .execute(params![consumer, stream, outbox_id, ts_ms])?;
    if inserted == 0 {
        return Ok(Consumption::Duplicate);
    }

    // The first row above the cursor that is not handled yet; everything below it is. Walks the
    // (stream, id) index from the cursor and stops at the first hole, so in-order consumption
    // looks at one or two rows.
    let first_unhandled: Option<i64> = conn
        .prepare_cached(
            "SELECT o.id FROM outbox_events AS o
             WHERE o.stream = ?1 AND o.id > ?2
               AND NOT EXISTS (SELECT 1 FROM consumer_processed AS p
                               WHERE p.consumer = ?3 AND p.stream = ?1 AND p.outbox_id = o.id)
             ORDER BY o.id LIMIT 1",
        )?
        .query_row(params![stream, cursor, consumer], |row| row.get(0))
        .optional()?;
    let new_cursor = match first_unhandled {
        Some(hole) => hole - 1,
        // No hole: the writer lock is ours, so no row below the stream's max can still appear.
        None => conn
            .prepare_cached(
                "SELECT MAX(?2, COALESCE((SELECT MAX(id) FROM outbox_events WHERE stream = ?1), 0))",
            )?
            .query_row(params![stream, cursor], |row| row.get(0))?,
    };
    if new_cursor > cursor {
        conn.prepare_cached(
            "UPDATE consumer_cursors SET last_id = ?3, updated_at = ?4
             WHERE consumer = ?1 AND stream = ?2",
        )?
        .execute(params![consumer, stream, new_cursor, ts_ms])?;
        conn.prepare_cached(
            "DELETE FROM consumer_processed WHERE consumer = ?1 AND stream = ?2 AND outbox_id <= ?3",
        )?
        .execute(params![consumer, stream, new_cursor])?;
        conn.prepare_cached(
            "DELETE FROM consumer_failures WHERE consumer = ?1 AND outbox_id > ?2 AND outbox_id <= ?3",
        )?
        .execute(params![consumer, cursor, new_cursor])?;
    }
    conn.prepare_cached("DELETE FROM consumer_failures WHERE consumer = ?1 AND outbox_id = ?2")?
        .execute(params![consumer, outbox_id])?;
    Ok(Consumption::Applied)
}

impl Store {
    /// Marks `outbox_id` handled with no effect of its own (a plugin call that already happened,
    /// an event type this group ignores).
    pub fn mark_consumed(
        &self,
        consumer: &str,
        stream: &str,
        outbox_id: i64,
        ts_ms: i64,
    ) -> Result<Consumption, StoreError> {
        self.write(|transaction| consume_in(transaction, consumer, stream, outbox_id, ts_ms))
    }

    /// Whether `consumer` already handled `outbox_id` of `stream` (read only, for skipping work).
    pub fn is_consumed(
        &self,
        consumer: &str,
        stream: &str,
        outbox_id: i64,
    ) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT COALESCE((SELECT last_id FROM consumer_cursors WHERE consumer = ?1 AND stream = ?2), 0) >= ?3
                     OR EXISTS(SELECT 1 FROM consumer_processed
                               WHERE consumer = ?1 AND stream = ?2 AND outbox_id = ?3)",
            )?
            .query_row(params![consumer, stream, outbox_id], |row| row.get(0))
        })
    }

    /// The group's cursor on `stream` (0 when it never consumed anything) and its lag.
    pub fn consumer_position(
        &self,
        consumer: &str,
        stream: &str,
    ) -> Result<ConsumerPosition, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "WITH c AS (SELECT COALESCE((SELECT last_id FROM consumer_cursors
                                             WHERE consumer = ?1 AND stream = ?2), 0) AS last_id)
                 SELECT c.last_id,
                        (SELECT COUNT(*) FROM outbox_events AS o
                         WHERE o.stream = ?2 AND o.id > c.last_id
                           AND NOT EXISTS (SELECT 1 FROM consumer_processed AS p
                                           WHERE p.consumer = ?1 AND p.stream = ?2 AND p.outbox_id = o.id))
                 FROM c",
            )?
            .query_row(params![consumer, stream], |row| {
                let lag: i64 = row.get(1)?;
                Ok(ConsumerPosition {
                    cursor: row.get(0)?,
                    lag: lag.unsigned_abs(),
                })
            })
        })
    }

    /// Counts a failed attempt of `consumer` on `outbox_id` and returns the attempts so far.
    pub fn record_consumer_failure(
        &self,
        consumer: &str,
        outbox_id: i64,
        error: &str,
        ts_ms: i64,
    ) -> Result<u32, StoreError> {
        self.write(|transaction| {
            let attempts: i64 = transaction
                .prepare_cached(
                    "INSERT INTO consumer_failures(consumer, outbox_id, attempts, last_error, failed_at)
                     VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT(consumer, outbox_id) DO UPDATE SET
                       attempts = attempts + 1, last_error = excluded.last_error,
                       failed_at = excluded.failed_at
                     RETURNING attempts",
                )?
                .query_row(params![consumer, outbox_id, error, ts_ms], |row| row.get(0))?;
            Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
        })
    }

    /// Failed attempts so far of `consumer` on `outbox_id`.
    pub fn consumer_failures(&self, consumer: &str, outbox_id: i64) -> Result<u32, StoreError> {
        self.read(|conn| {
            let attempts: Option<i64> = conn
                .prepare_cached(
                    "SELECT attempts FROM consumer_failures WHERE consumer = ?1 AND outbox_id = ?2",
                )?
                .query_row(params![consumer, outbox_id], |row| row.get(0))
                .optional()?;
            Ok(attempts.map_or(0, |attempts| u32::try_from(attempts).unwrap_or(u32::MAX)))
        })
    }

    /// Stores `letter` and, when it has an outbox id, marks that id handled by the group in the
    /// same transaction (a dead letter is a decision, not a pending item). `Duplicate` means the
    /// id was already handled and no letter was stored.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Result<Consumption, StoreError> {
        self.write(|transaction| {
            if let Some(outbox_id) = letter.outbox_id {
                let consumed = consume_in(
                    transaction,
                    &letter.consumer,
                    &letter.stream,
                    outbox_id,
                    letter.ts_ms,
                )?;
                if consumed == Consumption::Duplicate {
                    return Ok(Consumption::Duplicate);
                }
            }
            transaction
                .prepare_cached(
                    "INSERT INTO dead_letters(consumer, stream, outbox_id, type, payload, correlation_id,
                                              error, attempts, ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    letter.consumer,
                    letter.stream,
                    letter.outbox_id,
                    letter.event_type,
                    letter.payload,
                    letter.correlation_id,
                    letter.error,
                    letter.attempts,
                    letter.ts_ms
                ])?;
            Ok(Consumption::Applied)
        })
    }

    /// Dead letters stored so far.
    pub fn dead_letter_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM dead_letters")?
                .query_row([], |row| row.get::<_, i64>(0))
                .map(i64::unsigned_abs)
        })
    }

    /// The newest `limit` dead letters, newest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut select = conn.prepare_cached(
                "SELECT consumer, stream, outbox_id, type, payload, correlation_id, error, attempts, ts
                 FROM dead_letters ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = select.query_map([limit], |row| {
                Ok(DeadLetter {
                    consumer: row.get(0)?,
                    stream: row.get(1)?,
                    outbox_id: row.get(2)?,
                    event_type: row.get(3)?,
                    payload: row.get(4)?,
                    correlation_id: row.get(5)?,
                    error: row.get(6)?,
                    attempts: row.get(7)?,
                    ts_ms: row.get(8)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::test_support::{event, temp_store as store};

    #[test]
    fn in_order_consumption_moves_the_cursor_and_keeps_no_ids() {
        let (_dir, store) = store();
        let ids = store
            .append_events(&(0..3).map(|n| event("events.ltm", n)).collect::<Vec<_>>())
            .unwrap();
        for id in &ids {
            assert_eq!(
                store.mark_consumed("g", "events.ltm", *id, 1).unwrap(),
                Consumption::Applied,
                "first handling applies"
            );
        }
        let position = store.consumer_position("g", "events.ltm").unwrap();
        assert_eq!(
            position.cursor, ids[2],
            "the cursor follows in-order handling"
        );
        assert_eq!(position.lag, 0, "nothing is left");
        let kept: i64 = store
            .read(|conn| {
                conn.query_row("SELECT COUNT(*) FROM consumer_processed", [], |row| {
                    row.get(0)
                })
            })
            .unwrap();
        assert_eq!(
            kept, 0,
            "ids at or below the cursor are implied by it, not stored"
        );
        assert_eq!(
            store.mark_consumed("g", "events.ltm", ids[1], 2).unwrap(),
            Consumption::Duplicate,
            "a replay below the cursor is a duplicate"
        );
    }

    #[test]
    fn out_of_order_handling_waits_at_the_hole() {
        let (_dir, store) = store();
        // Rows of another stream interleave: they must neither block nor move this cursor.
        let ids = store
            .append_events(&[
                event("events.ltm", 0),
                event("events.analytics", 1),
                event("events.ltm", 2),
                event("events.ltm", 3),
            ])
            .unwrap();
        store.mark_consumed("g", "events.ltm", ids[3], 1).unwrap();
        store.mark_consumed("g", "events.ltm", ids[2], 1).unwrap();
        let position = store.consumer_position("g", "events.ltm").unwrap();
        assert_eq!(position.cursor, 0, "the first ltm row is still a hole");
        assert_eq!(position.lag, 1, "only the hole is left");
        assert!(
            store.is_consumed("g", "events.ltm", ids[2]).unwrap(),
            "handled ids above the hole are remembered"
        );
        assert_eq!(
            store.mark_consumed("g", "events.ltm", ids[3], 1).unwrap(),
            Consumption::Duplicate,
            "a redelivery above the cursor is a duplicate too"
        );
        store.mark_consumed("g", "events.ltm", ids[0], 1).unwrap();
        let position = store.consumer_position("g", "events.ltm").unwrap();
        assert_eq!(
            position.cursor, ids[3],
            "filling the hole releases the whole run"
        );
        assert_eq!(
            store.consumer_position("other", "events.ltm").unwrap().lag,
            3,
            "groups are independent"
        );
    }

    #[test]
    fn failures_count_up_and_a_dead_letter_is_handled_once() {
        let (_dir, store) = store();
        let ids = store.append_events(&[event("events.ltm", 0)]).unwrap();
        assert_eq!(
            store
                .record_consumer_failure("g", ids[0], "busy", 1)
                .unwrap(),
            1,
            "first failure"
        );
        assert_eq!(
            store
                .record_consumer_failure("g", ids[0], "busy", 2)
                .unwrap(),
            2,
            "second failure"
        );
        assert_eq!(
            store.consumer_failures("g", ids[0]).unwrap(),
            2,
            "attempts are readable"
        );
        let letter = DeadLetter {
            consumer: "g".into(),
            stream: "events.ltm".into(),
            outbox_id: Some(ids[0]),
            event_type: Some("TurnCompleted".into()),
            payload: Some("{}".into()),
            correlation_id: Some("s#0".into()),
            error: "busy".into(),
            attempts: 2,
            ts_ms: 3,
        };
        assert_eq!(
            store.dead_letter(&letter).unwrap(),
            Consumption::Applied,
            "first letter is stored"
        );
        assert_eq!(
            store.dead_letter(&letter).unwrap(),
            Consumption::Duplicate,
            "a second one is not"
        );
        assert_eq!(store.dead_letter_count().unwrap(), 1, "one letter");
        assert_eq!(
            store.consumer_failures("g", ids[0]).unwrap(),
            0,
            "a handled id keeps no failures"
        );
        assert_eq!(
            store.consumer_position("g", "events.ltm").unwrap().lag,
            0,
            "dead-lettered counts as handled"
        );
        assert_eq!(
            store.dead_letters(10).unwrap(),
            vec![letter],
            "the letter round-trips"
        );
    }
}
