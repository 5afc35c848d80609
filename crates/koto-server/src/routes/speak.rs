//! `POST /tts/speak {"sessionId","text"}`: speak text verbatim, no LLM, on the same path as a
//! turn (it is `COMMAND say <text>`); answers with the turn's SSE stream.

use axum::extract::{Request, State};
use axum::response::Response;
use koto_core::SessionId;
use koto_core::turn::InputKind;
use koto_engine::{Submission, TurnRequest};
use koto_protocol::ErrorCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::AppState;
use crate::error::AppError;
use crate::routes::chat::turn_response;
use crate::routes::read_json;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpeakRequest {
    session_id: String,
    text: String,
}

pub async fn speak(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let received_at = Instant::now();
    let body: SpeakRequest = read_json(request.into_body(), state.max_body_bytes).await?;
    let session = SessionId::parse(&body.session_id)
        .map_err(|error| AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string()))?;
    if body.text.trim().is_empty() {
        return Err(AppError::bad_request(
            ErrorCode::EmptyContent,
            "text must not be blank",
        ));
    }
    state.check_rate(&session)?;
    let submission = state
        .engine
        .submit(TurnRequest {
            session,
            turn: None,
            kind: InputKind::Command,
            content: format!("say {}", body.text.trim()),
            lang: None,
            meta: koto_core::turn::InputMeta::typed(),
            received_at,
        })
        .await?;
    match submission {
        Submission::Turn(handle) => Ok(turn_response(handle)),
        // `say <text>` always starts a turn.
        _ => Err(AppError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "say did not start a turn",
        )),
    }
}
