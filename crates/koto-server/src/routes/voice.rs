//! `GET /voice` (the mic's state), `POST /voice/ptt` (push-to-talk press/release from the
//! panel's button), `POST /voice/mode` (off / ptt / vad while running), `GET /voice/devices`
//! (input devices for the settings page). Adapters over `crate::voice::VoiceIn`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use koto_core::SessionId;
use koto_protocol::ErrorCode;
use koto_protocol::voice::{MicModeRequest, PttRequest};
use koto_voice::MicMode;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::routes::read_json;
use crate::voice::{VoiceError, VoiceIn};

pub async fn status(State(state): State<AppState>) -> Json<Value> {
    Json(state.voice.status())
}

pub async fn devices() -> Json<Value> {
    let devices = tokio::task::spawn_blocking(VoiceIn::devices)
        .await
        .unwrap_or_default();
    Json(json!({ "devices": devices }))
}

pub async fn ptt(State(state): State<AppState>, request: Request) -> Result<Json<Value>, AppError> {
    let body: PttRequest = read_json(request.into_body(), state.max_body_bytes).await?;
    let session = parse_session(body.session_id.as_deref())?;
    state
        .voice
        .ptt(body.pressed, session)
        .await
        .map_err(voice_error)?;
    Ok(Json(state.voice.status()))
}

pub async fn mode(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, AppError> {
    let body: MicModeRequest = read_json(request.into_body(), state.max_body_bytes).await?;
    let mode: MicMode = body.mode.parse().map_err(|reason: String| {
        AppError::bad_request(ErrorCode::InvalidRequest, format!("mode: {reason}"))
    })?;
    let session = parse_session(body.session_id.as_deref())?;
    state
        .voice
        .set_mode(mode, session)
        .await
        .map_err(voice_error)?;
    Ok(Json(state.voice.status()))
}

fn parse_session(raw: Option<&str>) -> Result<Option<SessionId>, AppError> {
    raw.filter(|raw| !raw.is_empty())
        .map(|raw| {
            SessionId::parse(raw).map_err(|error| {
                AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string())
            })
        })
        .transpose()
}

fn voice_error(error: VoiceError) -> AppError {
    let status = match error {
        VoiceError::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
        VoiceError::NotPtt => StatusCode::CONFLICT,
    };
    AppError::new(status, ErrorCode::NotAvailable, error.to_string())
}
