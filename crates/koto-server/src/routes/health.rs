//! `GET /health` (providers, flags, database) and `GET /ready` (accepting turns).
//!
//! `/health` needs no token (monitoring), so without one it names no file: the database's path
//! is left out and any absolute path inside a message (an error naming a folder, a model file)
//! becomes `<path>`. With the token the whole report is shown. It never holds a key or the token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use crate::AppState;

/// What the status bar says when replies are the mock's tone, not a voice.
pub const NO_LOCAL_VOICE: &str = "No voice: replies are a test tone. Install espeak-ng (Windows: the eSpeak NG installer; macOS: brew install espeak-ng) and restart, set ESPEAK_BINARY to it, or choose a voice in Setup.";

/// What stands in for an absolute path in the report seen without the token.
pub const HIDDEN_PATH: &str = "<path>";

pub async fn health(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> (StatusCode, Json<Value>) {
    let mut body = report(&state).await;
    if !state.security.token_ok(&headers, uri.query()) {
        hide_paths(&mut body, &known_folders(&state));
    }
    let status = if body["db"]["ok"] == json!(true) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Folders hidden whole without the token: the database's and the home folder.
fn known_folders(state: &AppState) -> Vec<String> {
    let mut folders = Vec::new();
    if let Some(data_dir) = state.engine.store().path().parent() {
        folders.push(data_dir.to_string_lossy().into_owned());
    }
    if let Some(home) = dirs::home_dir() {
        folders.push(home.to_string_lossy().into_owned());
    }
    folders
}

/// The full report, as the token's holder sees it (`/diagnostics` copies it).
pub async fn report(state: &AppState) -> Value {
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
    json!({
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
    })
}

/// The report for anyone on the machine: the database's path out, every absolute path in a
/// string replaced by `<path>` (where the data, logs and models live is no one else's
/// business, and a path names the user). `known` are folders to hide whole wherever they occur
/// (the database's and the home folder: their names may hold spaces, which the pattern stops at).
pub fn hide_paths(report: &mut Value, known: &[String]) {
    if let Some(db) = report.get_mut("db").and_then(Value::as_object_mut) {
        db.remove("path");
    }
    scrub(report, known);
}

fn scrub(value: &mut Value, known: &[String]) {
    match value {
        Value::String(text) => {
            let mut hidden = text.clone();
            for folder in known.iter().filter(|folder| folder.len() > 1) {
                hidden = hidden.replace(folder.as_str(), HIDDEN_PATH);
            }
            *text = without_paths(&hidden);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| scrub(item, known)),
        Value::Object(fields) => fields.values_mut().for_each(|field| scrub(field, known)),
        _ => {}
    }
}

/// `text` with each absolute path (`/…`, `~/…`, `C:\…`, `\\server\…`, `file:…`) replaced by
/// `<path>`. A path starts at the start of the text or after a space, quote, bracket,
/// `=` or `:`, and runs to the next whitespace, quote or bracket, or a `:` / `,` before a space.
fn without_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, ch)) = chars.next() {
        let boundary = previous.is_none_or(|before| {
            before.is_whitespace() || matches!(before, '"' | '\'' | '`' | '(' | '[' | '=' | ':')
        });
        if boundary && starts_path(&text[at..]) {
            out.push_str(HIDDEN_PATH);
            let tail = &text[at..];
            let length = path_len(tail);
            // Skip the path's characters; the one that ended it is kept.
            while chars
                .peek()
                .is_some_and(|(next_at, _)| *next_at < at + length)
            {
                chars.next();
            }
            previous = text[..at + length].chars().next_back();
            continue;
        }
        out.push(ch);
        previous = Some(ch);
    }
    out
}

fn starts_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    let unix = bytes.first() == Some(&b'/')
        && bytes
            .get(1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~'));
    let drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'\\' | b'/');
    // A known folder already replaced: the rest of its path goes with it.
    let hidden = text.starts_with(HIDDEN_PATH);
    hidden
        || unix
        || drive
        || text.starts_with("~/")
        || text.starts_with("\\\\")
        || text.starts_with("file:")
}

/// The length in bytes of the path at the start of `text`.
fn path_len(text: &str) -> usize {
    let mut chars = text.char_indices().peekable();
    while let Some((at, ch)) = chars.next() {
        let before_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        let ends = ch.is_whitespace()
            || matches!(ch, '"' | '\'' | '`' | ')' | ']')
            || (matches!(ch, ':' | ',' | ';') && before_space && at > 2);
        if ends {
            return at;
        }
    }
    text.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_hidden_and_the_rest_kept() {
        for (text, hidden) in [
            ("/home/ann/.local/share/kotodama/kotodama.sqlite3", "<path>"),
            (
                "cannot open /home/ann/x.db: permission denied",
                "cannot open <path>: permission denied",
            ),
            (
                r"model C:\Users\Ann\piper\en.onnx, missing",
                "model <path>, missing",
            ),
            (r"at \\server\share\voice.onnx", "at <path>"),
            ("see ~/notes and file:///tmp/a", "see <path> and <path>"),
            ("path=\"/srv/data\" ok", "path=\"<path>\" ok"),
            ("openai 3/5 ok, 1/2 s", "openai 3/5 ok, 1/2 s"),
            ("http://127.0.0.1:8001/v1", "http://127.0.0.1:8001/v1"),
            ("ok", "ok"),
        ] {
            assert_eq!(without_paths(text), hidden, "{text}");
        }
    }

    #[test]
    fn known_folders_are_hidden_whole_even_with_spaces() {
        let mut report = json!({
            "db": { "ok": true, "path": "/x/kotodama.sqlite3" },
            "tts": { "warning": r"no model in C:\Users\Ann Lee\AppData\voices" },
            "list": [r"C:\Users\Ann Lee"],
        });
        hide_paths(&mut report, &[r"C:\Users\Ann Lee".to_owned()]);
        assert_eq!(
            report["db"],
            json!({ "ok": true }),
            "the database's path is left out"
        );
        assert_eq!(report["tts"]["warning"], "no model in <path>");
        assert_eq!(report["list"][0], "<path>");
    }
}
