//! `POST /control/stop` `{"sessionId":"…"}` → `{"ok":true}`: the push-to-interrupt button over HTTP.
//! `"reason":"vetoed"` is the panel's Veto button (`VETO_WINDOW_MS`): the same STOP, recorded as
//! a vetoed line.

use axum::Json;
use axum::extract::{Request, State};
use koto_core::{SessionId, TurnNo};
use koto_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::AppError;
use crate::routes::read_json;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest {
    session_id: String,
    /// `user_interrupt` (the default) or `vetoed`.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StopAnswer {
    ok: bool,
    /// The turns the STOP cancelled (empty when nothing was running: a harmless STOP).
    stopped: Vec<TurnNo>,
}

pub async fn stop(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<StopAnswer>, AppError> {
    let body: StopRequest = read_json(request.into_body(), state.max_body_bytes).await?;
    let session = SessionId::parse(&body.session_id)
        .map_err(|error| AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string()))?;
    let reason = match body.reason.as_deref() {
        None | Some("user_interrupt") => "user_interrupt",
        Some("vetoed") => "vetoed",
        Some(other) => {
            return Err(AppError::bad_request(
                ErrorCode::InvalidRequest,
                format!("unknown STOP reason {other:?}: use user_interrupt or vetoed"),
            ));
        }
    };
    let outcome = state.engine.interrupt(&session, reason).await?;
    Ok(Json(StopAnswer {
        ok: true,
        stopped: outcome.stopped,
    }))
}
