//! The push-to-interrupt global shortcut: parse it, register it, and say plainly when it cannot
//! work. It never fails the app: global shortcuts do not exist under Wayland, so STOP also lives
//! on the tray, the panel's button and `POST /control/stop`.
//!
//! Why the display check comes first: on Linux the shortcut plugin grabs keys through X11, and
//! without an X server its registration "succeeds" while nothing will ever fire. Under Wayland
//! with XWayland the grab works only while an X11 window has the focus.

use std::str::FromStr;

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Shortcut, ShortcutState};

/// Whether the stop hotkey works, for the tray, the log and `app_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HotkeyStatus {
    /// The shortcut as configured; `None` when disabled.
    pub accelerator: Option<String>,
    pub state: HotkeyState,
    /// One sentence for a person: what works, or why not and what to use instead.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HotkeyState {
    /// Registered and expected to fire.
    Registered,
    /// Registered, but only fires while an X11 app has the focus (Wayland with XWayland).
    Limited,
    /// Disabled by configuration.
    Off,
    /// Not possible in this session (no X server).
    Unavailable,
    /// The accelerator is invalid or another app holds it.
    Failed,
}

impl HotkeyStatus {
    pub fn off() -> Self {
        HotkeyStatus {
            accelerator: None,
            state: HotkeyState::Off,
            message:
                "Stop hotkey is off (set one in Settings, KOTODAMA_STOP_HOTKEY or --stop-hotkey)."
                    .to_owned(),
        }
    }

    fn new(accelerator: &str, state: HotkeyState, message: String) -> Self {
        HotkeyStatus {
            accelerator: Some(accelerator.to_owned()),
            state,
            message,
        }
    }

    /// For the tray menu: short, no trailing advice.
    pub fn menu_label(&self) -> String {
        match (self.state, &self.accelerator) {
            (HotkeyState::Registered, Some(accelerator)) => format!("Stop hotkey: {accelerator}"),
            (HotkeyState::Limited, Some(accelerator)) => {
                format!("Stop hotkey: {accelerator} (X11 apps only)")
            }
            (HotkeyState::Off, _) => "Stop hotkey: off".to_owned(),
            _ => "Stop hotkey unavailable (use Stop talking)".to_owned(),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, HotkeyState::Registered | HotkeyState::Limited)
    }
}

/// The kind of display session, from the environment (Linux; other systems are `Native`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplaySession {
    /// An X11 session, or macOS/Windows: global shortcuts work.
    Native,
    /// Wayland with XWayland (`DISPLAY` set too).
    WaylandWithX,
    /// Wayland without an X server.
    WaylandOnly,
    /// No display at all (headless).
    Headless,
}

impl DisplaySession {
    pub fn detect(env: impl Fn(&str) -> Option<String>) -> DisplaySession {
        if !cfg!(target_os = "linux") {
            return DisplaySession::Native;
        }
        let set = |name: &str| env(name).is_some_and(|value| !value.is_empty());
        let wayland = set("WAYLAND_DISPLAY")
            || env("XDG_SESSION_TYPE").is_some_and(|kind| kind.eq_ignore_ascii_case("wayland"));
        match (wayland, set("DISPLAY")) {
            (false, true) => DisplaySession::Native,
            (true, true) => DisplaySession::WaylandWithX,
            (true, false) => DisplaySession::WaylandOnly,
            (false, false) => DisplaySession::Headless,
        }
    }
}

/// Why `accelerator` is not a shortcut, in words for the settings page.
pub fn parse(accelerator: &str) -> Result<Shortcut, String> {
    Shortcut::from_str(accelerator).map_err(|error| {
        format!(
            "{accelerator:?} is not a valid shortcut ({error}); use e.g. Ctrl+Shift+Space or Alt+F9"
        )
    })
}

/// The shortcut this app registered last, so a change releases exactly that one.
#[derive(Default)]
struct Registered(std::sync::Mutex<Option<Shortcut>>);

impl Registered {
    fn take<R: Runtime>(app: &AppHandle<R>) -> Option<Shortcut> {
        let registered = app.try_state::<Registered>()?;
        let mut slot = registered
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take()
    }

    fn set<R: Runtime>(app: &AppHandle<R>, shortcut: Shortcut) {
        if app.try_state::<Registered>().is_none() {
            app.manage(Registered::default());
        }
        if let Some(registered) = app.try_state::<Registered>() {
            *registered
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(shortcut);
        }
    }
}

/// Registers `accelerator` so that pressing it calls `on_press`, replacing the shortcut
/// registered before (a settings change; `None` only unregisters). `on_press` is taken the first
/// time the shortcut plugin starts. Every failure becomes a status; nothing here can stop the app.
pub fn install<R: Runtime>(
    app: &AppHandle<R>,
    accelerator: Option<&str>,
    session: DisplaySession,
    on_press: impl Fn(&AppHandle<R>) + Send + Sync + 'static,
) -> HotkeyStatus {
    let plugin_running = app
        .try_state::<tauri_plugin_global_shortcut::GlobalShortcut<R>>()
        .is_some();
    // Not `unregister_all`: in tauri-plugin-global-shortcut 2.4 it holds the plugin's lock while
    // the X11 thread works, and that thread takes the same lock to deliver a key press, so a
    // press during the change deadlocks the app (seen in the smoke test). `unregister` does not.
    if plugin_running
        && let Some(previous) = Registered::take(app)
        && let Err(error) = app.global_shortcut().unregister(previous)
    {
        tracing::warn!(%error, "cannot release the previous stop hotkey");
    }
    let Some(accelerator) = accelerator else {
        return HotkeyStatus::off();
    };
    let shortcut = match parse(accelerator) {
        Ok(shortcut) => shortcut,
        Err(message) => {
            return HotkeyStatus::new(
                accelerator,
                HotkeyState::Failed,
                format!("Stop hotkey {message}."),
            );
        }
    };
    let state = match session {
        DisplaySession::Native => HotkeyState::Registered,
        DisplaySession::WaylandWithX => HotkeyState::Limited,
        DisplaySession::WaylandOnly | DisplaySession::Headless => {
            let why = if session == DisplaySession::WaylandOnly {
                "Wayland has no global shortcuts and no X server runs"
            } else {
                "there is no display"
            };
            return HotkeyStatus::new(
                accelerator,
                HotkeyState::Unavailable,
                format!(
                    "Stop hotkey {accelerator} is unavailable: {why}. Use the tray's Stop talking or the panel's STOP button."
                ),
            );
        }
    };
    if !plugin_running {
        let plugin = tauri_plugin_global_shortcut::Builder::new()
            .with_handler(move |app, _shortcut, event| {
                if event.state == ShortcutState::Pressed {
                    on_press(app);
                }
            })
            .build();
        if let Err(error) = app.plugin(plugin) {
            return HotkeyStatus::new(
                accelerator,
                HotkeyState::Failed,
                format!(
                    "Global shortcuts cannot start here ({error}); use the tray's Stop talking."
                ),
            );
        }
    }
    if let Err(error) = app.global_shortcut().register(shortcut) {
        return HotkeyStatus::new(
            accelerator,
            HotkeyState::Failed,
            format!(
                "Stop hotkey {accelerator} could not be registered ({error}); another app may hold it. Choose another in Settings."
            ),
        );
    }
    Registered::set(app, shortcut);
    let message = match state {
        HotkeyState::Limited => format!(
            "Stop hotkey {accelerator} is registered through XWayland: under Wayland it fires only while an X11 app has the focus."
        ),
        _ => format!("Press {accelerator} anywhere to stop the co-host talking."),
    };
    HotkeyStatus::new(accelerator, state, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn display_session_from_environment() {
        let cases: &[(&[(&str, &str)], DisplaySession)] = &[
            (&[("DISPLAY", ":0")], DisplaySession::Native),
            (
                &[("DISPLAY", ":0"), ("WAYLAND_DISPLAY", "wayland-0")],
                DisplaySession::WaylandWithX,
            ),
            (
                &[("WAYLAND_DISPLAY", "wayland-0")],
                DisplaySession::WaylandOnly,
            ),
            (
                &[("XDG_SESSION_TYPE", "wayland"), ("DISPLAY", "")],
                DisplaySession::WaylandOnly,
            ),
            (&[], DisplaySession::Headless),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                DisplaySession::detect(env(pairs)),
                *expected,
                "{pairs:?}: decides whether an X11 key grab can fire"
            );
        }
    }

    #[test]
    fn the_documented_default_parses() {
        assert!(
            Shortcut::from_str(crate::launch::DEFAULT_STOP_HOTKEY).is_ok(),
            "the default must never be a failure"
        );
    }

    #[test]
    fn menu_labels_say_what_works() {
        let registered =
            HotkeyStatus::new("Ctrl+Shift+Space", HotkeyState::Registered, String::new());
        assert_eq!(registered.menu_label(), "Stop hotkey: Ctrl+Shift+Space");
        let unavailable =
            HotkeyStatus::new("Ctrl+Shift+Space", HotkeyState::Unavailable, String::new());
        assert!(
            unavailable.menu_label().contains("unavailable"),
            "the tray shows that the hotkey will not fire"
        );
        assert!(!unavailable.is_active() && registered.is_active());
    }
}
