//! Kotodama's desktop shell: a Tauri window, tray and stop hotkey over the engine and server
//! `kotodama serve` runs, started in process by the same `koto_server::start`.
//!
//! Architecture invariants:
//! - **Thin.** No dialog, audio-routing or HTTP logic lives here: the window shows the server's
//!   own UI, commands are a few lines over `Shell`/`Engine`, STOP is `Engine::interrupt`.
//! - **One runtime.** The server, the shell's tasks and async commands all run on
//!   `tauri::async_runtime` (the binary hands it its own tokio runtime).
//! - **Second launch opens nothing.** The single-instance check runs while the app is built,
//!   before start-up opens the database or binds the port.
//! - **Quit waits.** Every exit goes through `lifecycle::request_quit`, which shuts the server
//!   down (turns record their endings, the database closes) before the event loop may end.

pub mod barge_in;
pub mod commands;
pub mod desktop_settings;
pub mod hotkey;
pub mod launch;
pub mod lifecycle;
pub mod sessions;
pub mod shell;
pub mod tray;
pub mod webview_runtime;
pub mod window;

use koto_server::recovery::StartProblem;
use tauri::{App, AppHandle, Manager, Runtime};

use std::sync::Arc;

use crate::desktop_settings::DesktopHooks;
use crate::hotkey::{DisplaySession, HotkeyAction, HotkeyState, HotkeyStatus};
use crate::launch::Launch;
use crate::lifecycle::Lifecycle;
use crate::shell::Shell;
use crate::window::StartupFailure;

/// The app's embedded configuration, pages, icons and ACL (generic so tests can use the mock
/// runtime with the real capabilities).
pub fn context<R: Runtime>() -> tauri::Context<R> {
    tauri::generate_context!()
}

/// The app without its context: plugins, commands and start-up. `launch` is consumed by setup.
pub fn builder<R: Runtime>(launch: Launch) -> tauri::Builder<R> {
    tauri::Builder::<R>::new()
        // First: a second launch must find the first before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            tracing::info!("second launch: showing this window instead");
            window::show_main(app);
        }))
        .manage(Lifecycle::default())
        .invoke_handler(commands::handler())
        .setup(move |app| {
            start(app, launch);
            Ok(())
        })
}

/// Builds and runs the app until it quits; returns the process exit code.
pub fn run(launch: Launch) -> i32 {
    // Before anything starts: without a webview runtime (Windows' WebView2) no window can open.
    if let Err(error) = webview_runtime::check() {
        webview_runtime::report_missing(&error);
        return webview_runtime::EXIT_NO_WEBVIEW;
    }
    let app = match builder::<tauri::Wry>(launch).build(context()) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("kotodama-desktop: cannot start the window system: {error}");
            return 1;
        }
    };
    app.run_return(lifecycle::on_run_event)
}

/// Start-up inside Tauri's setup: start the server, then the panel, tray and hotkey; on failure
/// the failure page and a tray with Quit. Never fails the app: every error is shown.
fn start<R: Runtime>(app: &mut App<R>, launch: Launch) {
    let handle = app.handle().clone();
    spawn_signal_watcher(&handle);
    let session = DisplaySession::detect(|name| std::env::var(name).ok());
    let mut player = None;
    let mut stop_hotkey = None;
    let mut ptt_hotkey = None;
    let started = match launch.config {
        Ok(config) => {
            let desktop = &config.desktop;
            stop_hotkey.clone_from(&desktop.stop_hotkey);
            ptt_hotkey.clone_from(&desktop.ptt_hotkey);
            // Never fails: without a sound card it plays into a real-time null sink (logged).
            player = desktop.playback.then(|| {
                koto_audio::Player::start(koto_audio::PlayerConfig {
                    device: desktop.output_device.clone(),
                    volume: desktop.output_volume,
                    ..koto_audio::PlayerConfig::default()
                })
            });
            let hooks = DesktopHooks::new(handle.clone(), player.clone(), session);
            let started = koto_server::start_with(config.clone(), Some(Arc::new(hooks)));
            tauri::async_runtime::block_on(started)
                .map_err(|error| StartupFailure(StartProblem::from_start(&error, &config)))
        }
        Err(error) => Err(StartupFailure(StartProblem::from_config(
            &error,
            launch.settings_file.as_deref(),
        ))),
    };
    let server = match started {
        Ok(server) => server,
        Err(failure) => {
            let problem = &failure.0;
            tracing::error!(code = problem.code, message = %problem.message, "cannot start");
            println!("kotodama-desktop failed: {}", problem.message);
            app.state::<Lifecycle>().mark_start_failed();
            if let Err(error) = window::open_failure(&handle, &failure) {
                tracing::error!(%error, "cannot open the failure window");
                lifecycle::request_quit(&handle);
            }
            install_tray(&handle, &HotkeyStatus::off(HotkeyAction::Stop), false);
            return;
        }
    };
    let ready = server.ready_line("kotodama-desktop", &audio_in_use(player.as_ref()));
    app.manage(Shell::new(server, player));
    let shell = app.state::<Shell>();
    if let Err(error) = window::open_panel(&handle, shell.panel_url(), shell.origin()) {
        tracing::error!(%error, "cannot open the panel window");
    }
    let hotkey = hotkey::install(
        &handle,
        HotkeyAction::Stop,
        stop_hotkey.as_deref(),
        session,
        barge_in::on_hotkey,
    );
    let ptt = hotkey::install(
        &handle,
        HotkeyAction::PushToTalk,
        ptt_hotkey.as_deref(),
        session,
        barge_in::on_hotkey,
    );
    for status in [&hotkey, &ptt] {
        if status.is_active() || status.state == HotkeyState::Off {
            tracing::info!(action = ?status.action, message = %status.message, "hotkey");
        } else {
            tracing::warn!(action = ?status.action, message = %status.message, "hotkey");
        }
        shell.set_hotkey_status(status.clone());
    }
    install_tray(&handle, &hotkey, true);
    // One line for people and scripts (the smoke test waits for it), like `kotodama serve`'s.
    println!(
        "{ready}  hotkey: {state:?} {accelerator}  push-to-talk: {ptt_state:?} {ptt_accelerator}",
        state = hotkey.state,
        accelerator = hotkey.accelerator.as_deref().unwrap_or("-"),
        ptt_state = ptt.state,
        ptt_accelerator = ptt.accelerator.as_deref().unwrap_or("-"),
    );
}

/// Where the voice plays, in the ready line's words.
fn audio_in_use(player: Option<&koto_audio::Player>) -> String {
    match player.map(koto_audio::Player::status) {
        None => "off".to_owned(),
        Some(status) if status.null_sink => "none (no sound device: silent)".to_owned(),
        Some(status) => status.device,
    }
}

fn install_tray<R: Runtime>(app: &AppHandle<R>, hotkey: &HotkeyStatus, running: bool) {
    if let Err(error) = tray::install(app, hotkey, running) {
        // No tray host (some desktops): the window's close button still quits cleanly.
        tracing::warn!(%error, "no tray icon");
    }
}

/// SIGTERM / SIGINT quit like the tray's Quit (clean database, turns recorded).
fn spawn_signal_watcher<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    let quitting = app.state::<Lifecycle>().quitting_token();
    tauri::async_runtime::spawn(async move {
        tokio::select! {
            () = quitting.cancelled() => {}
            () = wait_for_signal() => {
                tracing::info!("signal received");
                lifecycle::request_quit(&app);
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
