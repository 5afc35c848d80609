//! `GET /desktop`: where the desktop app plays the voice and whether its stop hotkey works, for
//! the panel's status bar. `kotodama serve` answers `{"available": false}`: it plays nothing.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let Some(desktop) = state.settings.desktop().cloned() else {
        return Json(json!({ "available": false }));
    };
    // Device state sits behind the player's lock; keep it off the async workers anyway.
    let status = tokio::task::spawn_blocking(move || desktop.status())
        .await
        .unwrap_or_else(|error| json!({ "error": error.to_string() }));
    Json(json!({ "available": true, "status": status }))
}
