//! For bug reports: `GET /diagnostics` (versions, platform, the settings that differ from the
//! defaults with secrets masked, `/health`, the last warnings and errors, where the logs are)
//! and `POST /diagnostics/open-logs` (the log folder in the platform's file manager).

use std::path::Path;
use std::process::{Command, Stdio};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use koto_protocol::ErrorCode;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::config::{KEYS, is_secret};
use crate::error::AppError;

pub async fn diagnostics(State(state): State<AppState>) -> Json<Value> {
    // Behind the token: the full report, paths included.
    let health = crate::routes::health::report(&state).await;
    let mut settings = Map::new();
    for spec in KEYS {
        let value = state.settings.running_value(spec.key).unwrap_or_default();
        if value == spec.default {
            continue;
        }
        settings.insert(spec.key.to_owned(), Value::String(masked(spec.key, &value)));
    }
    let log_file = crate::logging::file_path();
    Json(json!({
        "kotodama": env!("CARGO_PKG_VERSION"),
        "rustVersion": env!("CARGO_PKG_RUST_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "settingsFile": state.settings.path(),
        "changedSettings": settings,
        "logFile": log_file,
        "logFolder": log_file.as_deref().and_then(Path::parent),
        "health": health,
        "recentProblems": crate::logging::recent_problems(),
    }))
}

/// A value fit for a bug report: secrets say only that they are set, and a URL loses the
/// password in its user part (`redis://:pw@host` → `redis://***@host`).
fn masked(key: &str, value: &str) -> String {
    if is_secret(key) {
        return "(set)".to_owned();
    }
    match (value.find("://"), value.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            format!("{}://***{}", &value[..scheme], &value[at..])
        }
        _ => value.to_owned(),
    }
}

pub async fn open_logs(State(_): State<AppState>) -> Result<Json<Value>, AppError> {
    let Some(folder) = crate::logging::file_path()
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
    else {
        return Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotAvailable,
            "no log file is being written (the log folder could not be used; see the console)",
        ));
    };
    match open_folder(&folder) {
        Ok(()) => Ok(Json(json!({ "opened": true, "folder": folder }))),
        Err(error) => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotAvailable,
            format!(
                "cannot open a file manager here ({} {error}); the logs are in {}",
                OPENER,
                folder.display()
            ),
        )),
    }
}

/// The platform's "show this folder" program.
const OPENER: &str = if cfg!(windows) {
    "explorer.exe"
} else if cfg!(target_os = "macos") {
    "open"
} else {
    "xdg-open"
};

fn open_folder(folder: &Path) -> std::io::Result<()> {
    let mut child = Command::new(OPENER)
        .arg(folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Reaped off the request (explorer.exe answers 1 even when it opened the folder, so its
    // status says nothing).
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn secrets_and_url_passwords_are_masked() {
        assert_eq!(masked("openai_api_key", "sk-123"), "(set)");
        assert_eq!(masked("token", "abc"), "(set)");
        assert_eq!(
            masked("redis_url", "redis://:hunter2@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            masked("openai_base_url", "http://127.0.0.1:8080/v1"),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(masked("system_prompt", "mail me@home"), "mail me@home");
    }
}
