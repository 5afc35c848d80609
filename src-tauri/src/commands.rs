//! Tauri commands: thin adapters over the same API the HTTP routes use (`Shell` → `Engine`).
//! Errors reach the UI as `{code, message}` with the closed `ErrorCode` set, like HTTP errors.
//! Each command needs a permission (`allow-<name>`, declared in `build.rs`), granted only to the
//! panel's origin (see `window::panel_capability`).

use koto_core::SessionId;
use koto_protocol::WireError;
use serde::Serialize;
use tauri::ipc::Invoke;
use tauri::{Runtime, State};

use crate::shell::{AppInfo, SessionStopped, Shell};

/// `invoke("app_info")` → `{url, token, overlayUrl, version, hotkey}`.
#[tauri::command]
pub fn app_info(shell: State<'_, Shell>) -> AppInfo {
    shell.info()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopAnswer {
    pub ok: bool,
    /// One entry per session stopped, with the turns each STOP cancelled.
    pub sessions: Vec<SessionStopped>,
}

/// `invoke("stop_talking", {sessionId?})`: barge-in for that session, or for every recently
/// seen one when `sessionId` is absent (what the tray and the hotkey do).
#[tauri::command]
pub async fn stop_talking(
    shell: State<'_, Shell>,
    session_id: Option<String>,
) -> Result<StopAnswer, WireError> {
    let session = session_id
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(crate::shell::ShellError::from)?;
    let sessions = shell.stop_talking(session).await?;
    Ok(StopAnswer { ok: true, sessions })
}

/// The invoke handler with every command (the app and the tests register the same set).
pub fn handler<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![app_info, stop_talking]
}

#[cfg(test)]
mod tidy {
    #[test]
    fn build_script_declares_every_command() {
        let build = include_str!("../build.rs");
        for command in ["app_info", "stop_talking"] {
            assert!(
                build.contains(&format!("\"{command}\"")),
                "build.rs must declare {command}, or its permission does not exist"
            );
        }
    }
}
