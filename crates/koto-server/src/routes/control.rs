//! `POST /control/stop` `{"sessionId":"…"}` → `{"ok":true}`: the push-to-interrupt button over HTTP.

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
    let outcome = state.engine.interrupt(&session, "user_interrupt").await?;
    Ok(Json(StopAnswer {
        ok: true,
        stopped: outcome.stopped,
    }))
}
