//! Quitting: the one path every exit takes — the tray's Quit, closing the window, SIGTERM or
//! SIGINT. It shuts the shell down (server, turns, events, database) *before* the event loop is
//! allowed to end, because Tauri may end the process without running destructors.
//!
//! It does not decide what "closing the window" means elsewhere: here it means quit, so the
//! OBS overlay never silently outlives a window the user thinks is the app.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tauri::{AppHandle, Manager, RunEvent, Runtime};
use tokio_util::sync::CancellationToken;

use crate::shell::Shell;

/// Exit code when the server could not start (the failure page was shown).
pub const EXIT_START_FAILED: i32 = 2;

/// Managed state: whether quitting began, and the exit code once the event loop may end.
#[derive(Debug, Default)]
pub struct Lifecycle {
    quitting: AtomicBool,
    /// `Some` once shutdown finished: the next exit request goes through.
    exit_code: Mutex<Option<i32>>,
    /// Set when start-up failed: quitting then exits with [`EXIT_START_FAILED`].
    start_failed: AtomicBool,
    /// Cancelled when quitting begins: tasks outside the shell (the signal watcher) end on it.
    quitting_token: CancellationToken,
}

impl Lifecycle {
    pub fn mark_start_failed(&self) {
        self.start_failed.store(true, Ordering::SeqCst);
    }

    pub fn quitting_token(&self) -> CancellationToken {
        self.quitting_token.clone()
    }

    fn exit_allowed(&self) -> bool {
        self.exit_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn allow_exit(&self, code: i32) {
        *self
            .exit_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(code);
    }
}

/// Starts quitting (once; later calls do nothing): shut the shell down, then end the event loop.
pub fn request_quit<R: Runtime>(app: &AppHandle<R>) {
    let lifecycle = app.state::<Lifecycle>();
    if lifecycle.quitting.swap(true, Ordering::SeqCst) {
        return;
    }
    lifecycle.quitting_token.cancel();
    tracing::info!("quitting: stopping the server and every task");
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(shell) = app.try_state::<Shell>() {
            shell.shutdown().await;
        }
        let lifecycle = app.state::<Lifecycle>();
        let code = if lifecycle.start_failed.load(Ordering::SeqCst) {
            EXIT_START_FAILED
        } else {
            0
        };
        lifecycle.allow_exit(code);
        app.exit(code);
    });
}

/// The event-loop callback: an exit request (last window closed, `app.exit`) before shutdown
/// finished is held back and turned into [`request_quit`].
pub fn on_run_event<R: Runtime>(app: &AppHandle<R>, event: RunEvent) {
    match event {
        RunEvent::ExitRequested { api, .. } => {
            if app.state::<Lifecycle>().exit_allowed() {
                return;
            }
            api.prevent_exit();
            request_quit(app);
        }
        RunEvent::Exit => tracing::info!("stopped cleanly"),
        _ => {}
    }
}
