//! Barge-in from the desktop's own controls (tray item, global hotkeys): fire-and-forget STOPs
//! for every recently seen session, and push-to-talk, logged. The panel's buttons,
//! `POST /control/stop` and `POST /voice/ptt` do the same through their own routes; this module
//! adds no STOP or voice semantics of its own.

use tauri::{AppHandle, Manager, Runtime};

use crate::hotkey::HotkeyAction;
use crate::shell::Shell;

/// Every global hotkey's key event (`pressed`: down, else up), from the shortcut plugin's thread.
pub fn on_hotkey<R: Runtime>(app: &AppHandle<R>, action: HotkeyAction, pressed: bool) {
    match action {
        HotkeyAction::Stop if pressed => stop_talking_now(app, "hotkey"),
        HotkeyAction::Stop => {}
        HotkeyAction::PushToTalk => push_to_talk_now(app, pressed),
    }
}

/// Push-to-talk held (`true`) or let go, without waiting; the shell hands it to the mic in order.
pub fn push_to_talk_now<R: Runtime>(app: &AppHandle<R>, pressed: bool) {
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    if let Err(error) = shell.push_to_talk(pressed) {
        tracing::info!(source = "hotkey", pressed, %error, "push-to-talk ignored");
    }
}

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
