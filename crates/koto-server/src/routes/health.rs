//! `GET /health` (providers, flags, database) and `GET /ready` (accepting turns).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// What the status bar says when replies are the mock's tone, not a voice.
pub const NO_LOCAL_VOICE: &str = "No voice: replies are a test tone. Install espeak-ng (Windows: the eSpeak NG installer; macOS: brew install espeak-ng) and restart, set ESPEAK_BINARY to it, or choose a voice in Setup.";

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let engine = &state.engine;
    let store = engine.store().clone();
    let db = match tokio::task::spawn_blocking(move || store.health()).await {
        Ok(Ok(health)) => {
            json!({ "ok": true, "path": health.path, "journalMode": health.journal_mode, "schemaVersion": health.schema_version })
        }
        Ok(Err(error)) => json!({ "ok": false, "error": error.to_string() }),
        Err(error) => json!({ "ok": false, "error": error.to_string() }),
    };
    let flags = engine.flags();
    let healthy = db["ok"] == json!(true);
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSecs": state.started.elapsed().as_secs(),
        "llm": { "provider": engine.llm().name(), "model": engine.llm().model(), "chain": engine.llm().chain() },
        "events": { "mode": state.events.mode().as_str(), "reason": state.events.mode_reason() },
        "asr": { "provider": state.asr.name(), "maxUploadBytes": state.asr.limits().max_bytes, "maxDurationMs": state.asr.limits().max_duration_ms },
        "tts": engine.voice().map(|voice| json!({
            "provider": voice.name(),
            "sampleRate": voice.sample_rate(),
            "warning": (voice.name() == "mock").then_some(NO_LOCAL_VOICE),
            "chain": voice.chain(),
        })),
        "relay": engine.relay().map(|relay| {
            let metrics = relay.metrics();
            json!({
                "clientsConnected": metrics.clients_connected,
                "overlaysConnected": metrics.overlays_connected,
                "producers": metrics.producers,
                "chunksReleased": metrics.chunks_released,
                "droppedFenced": metrics.dropped_fenced,
                "stops": metrics.stops,
            })
        }),
        "flags": {
            "ENABLE_SYNC_CORE": flags.sync_core,
            "SYNC_TTS_STREAMING": flags.tts_streaming,
            "SYNC_TTS_BARGE_IN": flags.barge_in,
            "ENABLE_ASYNC_EXT": flags.async_ext,
            "ENABLE_LTM_INLINE": flags.ltm_inline,
        },
        "db": db,
        "chat": { "adapters": state.chat_sources.statuses() },
        "mic": state.voice.status(),
        "vts": state.vts.as_ref().map(crate::vts::VtsLink::status),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.engine.is_shutting_down() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "shutting down" })),
        )
    } else {
        (StatusCode::OK, Json(json!({ "ready": true })))
    }
}
