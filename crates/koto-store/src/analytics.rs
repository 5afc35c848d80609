//! Turn analytics: per-turn samples and per-session totals written by the analytics worker, and
//! the report `GET /stats` serves. It keeps no time series and computes percentiles exactly
//! (nearest rank) over a bounded number of the newest samples.

use koto_core::{SessionId, TurnNo};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::consumer::{Consumption, consume_in};
use crate::error::StoreError;
use crate::session::turn_to_sql;
use crate::store::Store;

/// One turn's numbers, from an `AnalyticsChatStats` event.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnStatsRecord {
    pub session: SessionId,
    pub turn: TurnNo,
    /// `completed`, `interrupted` or `failed`.
    pub outcome: String,
    pub interrupted: bool,
    pub tokens: u64,
    pub ttft_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub ts_ms: i64,
}

/// Nearest-rank percentiles of one latency, in milliseconds; `None` without samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    /// Samples the percentiles were computed from (the newest ones, bounded).
    pub samples: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Totals and latency percentiles of a set of turns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnAggregate {
    pub turns: u64,
    pub completed: u64,
    pub interrupted: u64,
    pub failed: u64,
    pub tokens: u64,
    pub ttft_ms: LatencySummary,
    pub first_audio_ms: LatencySummary,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAnalytics {
    pub session_id: String,
    #[serde(flatten)]
    pub aggregate: TurnAggregate,
}

/// What `GET /stats` serves: everything, then the most recently active sessions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsReport {
    pub global: TurnAggregate,
    pub sessions: Vec<SessionAnalytics>,
}

impl Store {
    /// Adds `record` as `consumer`'s effect of `outbox_id`, exactly once.
    pub fn record_turn_stats(
        &self,
        consumer: &str,
        stream: &str,
        outbox_id: i64,
        record: &TurnStatsRecord,
    ) -> Result<Consumption, StoreError> {
        let turn = turn_to_sql(record.turn)?;
        let tokens = i64::try_from(record.tokens).unwrap_or(i64::MAX);
        let interrupted = record.interrupted || record.outcome == "interrupted";
        let completed = record.outcome == "completed" && !interrupted;
        let failed = record.outcome == "failed";
        self.write(|transaction| {
            let consumed = consume_in(transaction, consumer, stream, outbox_id, record.ts_ms)?;
            if consumed == Consumption::Duplicate {
                return Ok(consumed);
            }
            transaction
                .prepare_cached(
                    "INSERT INTO analytics_turns(outbox_id, sessionId, turn, outcome, interrupted,
                                                 tokens, ttft_ms, first_audio_ms, ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    outbox_id,
                    record.session.as_str(),
                    turn,
                    record.outcome,
                    interrupted,
                    tokens,
                    record.ttft_ms,
                    record.first_audio_ms,
                    record.ts_ms
                ])?;
            transaction
                .prepare_cached(
                    "INSERT INTO analytics_sessions(sessionId, turns, completed, interrupted, failed,
                                                    tokens, first_ts, last_ts)
                     VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT(sessionId) DO UPDATE SET
                       turns = turns + 1,
                       completed = completed + excluded.completed,
                       interrupted = interrupted + excluded.interrupted,
                       failed = failed + excluded.failed,
                       tokens = tokens + excluded.tokens,
                       first_ts = MIN(first_ts, excluded.first_ts),
                       last_ts = MAX(last_ts, excluded.last_ts)",
                )?
                .execute(params![
                    record.session.as_str(),
                    completed,
                    interrupted,
                    failed,
                    tokens,
                    record.ts_ms
                ])?;
            Ok(Consumption::Applied)
        })
    }

    /// Global totals, plus the `max_sessions` most recently active sessions; percentiles over the
    /// newest `max_samples` turns of each scope. One read snapshot.
    pub fn analytics_report(
        &self,
        max_sessions: usize,
        max_samples: usize,
    ) -> Result<AnalyticsReport, StoreError> {
        self.read(|conn| {
            let global = aggregate(conn, None, max_samples)?;
            let session_ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT sessionId FROM analytics_sessions ORDER BY last_ts DESC, sessionId LIMIT ?1",
                )?
                .query_map([sql_count(max_sessions)], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut sessions = Vec::with_capacity(session_ids.len());
            for session_id in session_ids {
                let aggregate = aggregate(conn, Some(&session_id), max_samples)?;
                sessions.push(SessionAnalytics {
                    session_id,
                    aggregate,
                });
            }
            Ok(AnalyticsReport { global, sessions })
        })
    }

    /// One session's totals and percentiles; `None` for a session with no recorded turn.
    pub fn session_analytics(
        &self,
        session: &SessionId,
        max_samples: usize,
    ) -> Result<Option<SessionAnalytics>, StoreError> {
        self.read(|conn| {
            let aggregate = aggregate(conn, Some(session.as_str()), max_samples)?;
            Ok((aggregate.turns > 0).then(|| SessionAnalytics {
                session_id: session.as_str().to_owned(),
                aggregate,
            }))
        })
    }
}

fn sql_count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn aggregate(
    conn: &Connection,
    session: Option<&str>,
    max_samples: usize,
) -> rusqlite::Result<TurnAggregate> {
    // Totals come from the small per-session table (one row per session), never from the samples.
    let totals = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(turns), 0), COALESCE(SUM(completed), 0), COALESCE(SUM(interrupted), 0),
                    COALESCE(SUM(failed), 0), COALESCE(SUM(tokens), 0), MIN(first_ts), MAX(last_ts)
             FROM analytics_sessions WHERE ?1 IS NULL OR sessionId = ?1",
        )?
        .query_row([session], |row| {
            let count = |index: usize| row.get::<_, i64>(index).map(i64::unsigned_abs);
            Ok((
                count(0)?,
                count(1)?,
                count(2)?,
                count(3)?,
                count(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, Option<i64>>(6)?,
            ))
        })
        .optional()?
        .unwrap_or((0, 0, 0, 0, 0, None, None));
    let (turns, completed, interrupted, failed, tokens, first_ts, last_ts) = totals;
    Ok(TurnAggregate {
        turns,
        completed,
        interrupted,
        failed,
        tokens,
        ttft_ms: latency(conn, session, "ttft_ms", max_samples)?,
        first_audio_ms: latency(conn, session, "first_audio_ms", max_samples)?,
        first_ts,
        last_ts,
    })
}

fn latency(
    conn: &Connection,
    session: Option<&str>,
    column: &str,
    max_samples: usize,
) -> rusqlite::Result<LatencySummary> {
    // The column name is one of two constants, never user input.
    let sql = match session {
        Some(_) => format!(
            "SELECT {column} FROM analytics_turns WHERE sessionId = ?1 AND {column} IS NOT NULL
             ORDER BY outbox_id DESC LIMIT ?2"
        ),
        None => format!(
            "SELECT {column} FROM analytics_turns WHERE ?1 IS NULL AND {column} IS NOT NULL
             ORDER BY outbox_id DESC LIMIT ?2"
        ),
    };
    let mut values: Vec<f64> = conn
        .prepare_cached(&sql)?
        .query_map(params![session, sql_count(max_samples)], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    values.sort_by(f64::total_cmp);
    Ok(LatencySummary {
        samples: values.len() as u64,
        p50: nearest_rank(&values, 0.50),
        p95: nearest_rank(&values, 0.95),
        p99: nearest_rank(&values, 0.99),
    })
}

/// The smallest sample with at least `quantile` of the samples at or below it.
pub(crate) fn nearest_rank(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nearest_rank_matches_the_textbook_definition() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            nearest_rank(&values, 0.50),
            Some(50.0),
            "p50 of 1..=100 is 50"
        );
        assert_eq!(
            nearest_rank(&values, 0.95),
            Some(95.0),
            "p95 of 1..=100 is 95"
        );
        assert_eq!(
            nearest_rank(&values, 0.99),
            Some(99.0),
            "p99 of 1..=100 is 99"
        );
        assert_eq!(
            nearest_rank(&[7.0], 0.99),
            Some(7.0),
            "one sample is every percentile"
        );
        assert_eq!(nearest_rank(&[], 0.5), None, "no samples, no percentile");
    }

    fn record(outcome: &str, ttft: f64, interrupted: bool) -> TurnStatsRecord {
        TurnStatsRecord {
            session: SessionId::parse("live-1").unwrap(),
            turn: TurnNo(0),
            outcome: outcome.into(),
            interrupted,
            tokens: 10,
            ttft_ms: Some(ttft),
            first_audio_ms: None,
            ts_ms: 5,
        }
    }

    #[test]
    fn totals_count_each_outbox_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("koto.sqlite3")).unwrap();
        let records = [
            record("completed", 10.0, false),
            record("interrupted", 20.0, true),
            record("failed", 30.0, false),
        ];
        for (index, record) in records.iter().enumerate() {
            store
                .record_turn_stats("a", "events.analytics", index as i64 + 1, record)
                .unwrap();
        }
        assert_eq!(
            store
                .record_turn_stats("a", "events.analytics", 1, &records[0])
                .unwrap(),
            Consumption::Duplicate,
            "a redelivered id is not counted twice"
        );
        let report = store.analytics_report(10, 1000).unwrap();
        let global = &report.global;
        assert_eq!(
            (
                global.turns,
                global.completed,
                global.interrupted,
                global.failed
            ),
            (3, 1, 1, 1),
            "one of each outcome"
        );
        assert_eq!(global.tokens, 30, "tokens add up");
        assert_eq!(global.ttft_ms.p50, Some(20.0), "median TTFT of 10/20/30");
        assert_eq!(
            global.first_audio_ms.samples, 0,
            "no audio samples, no percentiles"
        );
        assert_eq!(report.sessions.len(), 1, "one session");
        assert_eq!(
            report.sessions[0].aggregate, report.global,
            "the only session is everything"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["sessions"][0]["sessionId"], "live-1",
            "camelCase JSON with the session flattened in"
        );
        assert_eq!(
            json["global"]["ttftMs"]["p95"], 30.0,
            "nested summaries serialise"
        );
    }
}
