//! The tray icon and its menu: Show, Stop talking, the hotkey's status, Quit. Each item calls
//! the same function as its other entry points (window, hotkey, lifecycle); nothing is decided
//! here. A desktop without a tray (no StatusNotifier host) only loses this menu.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

use crate::hotkey::HotkeyStatus;
use crate::{barge_in, lifecycle, window};

const SHOW: &str = "show";
const HOTKEY: &str = "hotkey";
const STOP: &str = "stop";
const QUIT: &str = "quit";

/// Installs the tray. `running`: whether the server is up (Stop talking is disabled otherwise).
pub fn install<R: Runtime>(
    app: &AppHandle<R>,
    hotkey: &HotkeyStatus,
    running: bool,
) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, SHOW, "Show Kotodama", true, None::<&str>)?;
    let stop_item = MenuItem::with_id(app, STOP, "Stop talking", running, None::<&str>)?;
    // Informational: a disabled item is how a tray menu shows a status.
    let hotkey_item = MenuItem::with_id(app, HOTKEY, hotkey.menu_label(), false, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&show, &stop_item, &hotkey_item, &separator, &quit])?;
    let mut tray = TrayIconBuilder::with_id("main")
        .tooltip("Kotodama")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            SHOW => window::show_main(app),
            STOP => barge_in::stop_talking_now(app, "tray"),
            QUIT => lifecycle::request_quit(app),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    app.manage(HotkeyLabel(hotkey_item));
    Ok(())
}

/// The tray's hotkey line, kept to show a hotkey changed in the settings.
struct HotkeyLabel<R: Runtime>(MenuItem<R>);

/// Shows `hotkey` in the tray menu (no-op without a tray).
pub fn show_hotkey<R: Runtime>(app: &AppHandle<R>, hotkey: &HotkeyStatus) {
    if let Some(label) = app.try_state::<HotkeyLabel<R>>()
        && let Err(error) = label.0.set_text(hotkey.menu_label())
    {
        tracing::warn!(%error, "cannot update the tray's hotkey line");
    }
}
