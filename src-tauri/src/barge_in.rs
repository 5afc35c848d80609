//! Barge-in from the desktop's own controls (tray item, global hotkey): fire-and-forget STOPs for
//! every recently seen session, logged. The panel's button and `POST /control/stop` do the same
//! through their own routes; this module adds no STOP semantics of its own.

use tauri::{AppHandle, Manager, Runtime};

use crate::shell::Shell;

/// Stops the co-host talking in every recent session, without waiting (called from UI and
/// hotkey callbacks, which must not block). `source` is for the log.
pub fn stop_talking_now<R: Runtime>(app: &AppHandle<R>, source: &'static str) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let Some(shell) = app.try_state::<Shell>() else {
            return;
        };
        match shell.stop_talking(None).await {
            Ok(answers) if answers.is_empty() => {
                tracing::info!(source, "stop talking: no session has spoken yet");
            }
            Ok(answers) => {
                for answer in answers {
                    tracing::info!(
                        source,
                        sessionId = %answer.session_id,
                        stopped = ?answer.stopped,
                        "stop talking"
                    );
                }
            }
            Err(error) => tracing::warn!(source, %error, "stop talking refused"),
        }
    });
}
