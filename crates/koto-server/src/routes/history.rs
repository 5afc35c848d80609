//! `GET /sessions` (sessions by recent activity) and `GET /sessions/{sessionId}/history`
//! (a session's stored transcript, newest page first, paged back with `before`): what the
//! control panel draws when it opens or switches session. Both need the token (the guard).
//!
//! It shows what the store committed, nothing of a turn still streaming beyond its input; the
//! live frames on `/ws/live` carry that.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use koto_core::{SessionId, TurnNo};
use koto_protocol::ErrorCode;
use koto_store::{HistoryTurn, SessionSummary};
use serde::Serialize;

use crate::AppState;
use crate::error::AppError;

/// `GET /sessions` without `limit`.
pub const SESSIONS_DEFAULT_LIMIT: usize = 50;
pub const SESSIONS_MAX_LIMIT: usize = 500;
/// `GET /sessions/{id}/history` without `limit`.
pub const HISTORY_DEFAULT_LIMIT: usize = 50;
pub const HISTORY_MAX_LIMIT: usize = 200;

#[derive(Debug, Serialize)]
pub struct SessionsAnswer {
    sessions: Vec<SessionEntry>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    session_id: SessionId,
    last_active_ms: i64,
    created_ms: i64,
    /// Stored turns, whatever their status.
    turns: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryAnswer {
    session_id: SessionId,
    /// Oldest first.
    turns: Vec<HistoryEntry>,
    /// Older turns exist: ask again with `before` = the first turn here.
    more: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    turn: TurnNo,
    user: String,
    /// What was stored: the reply, or what was heard of an interrupted or failed one; `null`
    /// when no reply was stored (abandoned, still open, or failed before anything was heard).
    assistant: Option<String>,
    /// `completed`, `interrupted`, `failed`, `abandoned` or `open`.
    status: &'static str,
    /// Why the turn did not simply complete (`user_interrupt`, `client_disconnected`,
    /// `shutdown`, `tts_failed`, `speech_crashed`, or an error code such as `llm_timeout`);
    /// `null` for a clean completion and for turns stored before reasons were kept. A
    /// `completed` turn can have one: `tts_failed` means not all of the text was spoken.
    reason: Option<String>,
    /// `TEXT`, `ASR_FINAL` or `COMMAND`.
    kind: Option<String>,
    started_ms: i64,
    ended_ms: Option<i64>,
}

impl From<SessionSummary> for SessionEntry {
    fn from(summary: SessionSummary) -> Self {
        SessionEntry {
            session_id: summary.session,
            last_active_ms: summary.last_active_ms,
            created_ms: summary.created_ms,
            turns: summary.turns,
        }
    }
}

impl From<HistoryTurn> for HistoryEntry {
    fn from(turn: HistoryTurn) -> Self {
        HistoryEntry {
            turn: turn.turn,
            user: turn.user_text,
            assistant: turn.reply_text,
            status: turn.status.as_str(),
            reason: turn.reason,
            kind: turn.kind,
            started_ms: turn.started_ms,
            ended_ms: turn.ended_ms,
        }
    }
}

/// The query string as text: numbers are parsed here so a bad one gets our error body (axum's
/// typed extractor answers in plain text). Unknown keys (`token`) are ignored.
type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

pub async fn sessions(
    State(state): State<AppState>,
    query: RawQuery,
) -> Result<Json<SessionsAnswer>, AppError> {
    let query = query_params(query)?;
    let limit = limit_param(&query, SESSIONS_DEFAULT_LIMIT, SESSIONS_MAX_LIMIT)?;
    let sessions = state.engine.sessions(limit).await?;
    Ok(Json(SessionsAnswer {
        sessions: sessions.into_iter().map(SessionEntry::from).collect(),
    }))
}

pub async fn history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> Result<Json<HistoryAnswer>, AppError> {
    let Path(raw) = path.map_err(|rejection| {
        AppError::bad_request(ErrorCode::InvalidSessionId, rejection.body_text())
    })?;
    let session = SessionId::parse(&raw)
        .map_err(|error| AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string()))?;
    let query = query_params(query)?;
    let limit = limit_param(&query, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?;
    let before = before_param(&query)?;
    // One turn more than asked: if it comes back, there are older turns.
    let mut turns = state.engine.history(&session, before, limit + 1).await?;
    let more = turns.len() > limit;
    if more {
        // Oldest first: the extra turn is the first one.
        turns.remove(0);
    }
    Ok(Json(HistoryAnswer {
        session_id: session,
        turns: turns.into_iter().map(HistoryEntry::from).collect(),
        more,
    }))
}

fn query_params(query: RawQuery) -> Result<HashMap<String, String>, AppError> {
    query.map(|Query(params)| params).map_err(|rejection| {
        AppError::bad_request(ErrorCode::InvalidRequest, rejection.body_text())
    })
}

/// `limit`: absent → `default`, else an integer from 1 to `max`.
fn limit_param(
    query: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, AppError> {
    let Some(raw) = query.get("limit") else {
        return Ok(default);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| {
            AppError::bad_request(
                ErrorCode::InvalidRequest,
                format!("limit must be an integer from 1 to {max}, got {raw:?}"),
            )
        })
}

/// `before`: absent → the newest turns, else a turn number (an integer ≥ 0); only turns
/// numbered below it are returned.
fn before_param(query: &HashMap<String, String>) -> Result<Option<TurnNo>, AppError> {
    let Some(raw) = query.get("before") else {
        return Ok(None);
    };
    raw.parse::<u64>()
        .map(|turn| Some(TurnNo(turn)))
        .map_err(|_| {
            AppError::bad_request(
                ErrorCode::InvalidRequest,
                format!("before must be a turn number (an integer >= 0), got {raw:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(
            limit_param(&query(&[]), 50, 200).unwrap(),
            50,
            "absent → default"
        );
        assert_eq!(limit_param(&query(&[("limit", "1")]), 50, 200).unwrap(), 1);
        assert_eq!(
            limit_param(&query(&[("limit", "200")]), 50, 200).unwrap(),
            200,
            "max is allowed"
        );
        for bad in ["0", "201", "-1", "ten", "", "1.5"] {
            let error = limit_param(&query(&[("limit", bad)]), 50, 200).unwrap_err();
            assert_eq!(
                error.error.code,
                ErrorCode::InvalidRequest,
                "limit={bad:?} is refused"
            );
            assert!(
                error.error.message.contains("1 to 200"),
                "the message names the range"
            );
        }
    }

    #[test]
    fn before_is_a_turn_number() {
        assert_eq!(before_param(&query(&[])).unwrap(), None, "absent → newest");
        assert_eq!(
            before_param(&query(&[("before", "0")])).unwrap(),
            Some(TurnNo(0))
        );
        for bad in ["-1", "x", "", "1e3"] {
            let error = before_param(&query(&[("before", bad)])).unwrap_err();
            assert_eq!(
                error.error.code,
                ErrorCode::InvalidRequest,
                "before={bad:?} is refused"
            );
        }
    }
}
