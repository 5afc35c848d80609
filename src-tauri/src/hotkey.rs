//! The global shortcuts: STOP (press: the co-host stops talking) and push-to-talk (hold: the mic
//! listens, `MIC_MODE=ptt`). Parse them, register them, and say plainly when one cannot work. It
//! never fails the app: global shortcuts do not exist under Wayland, so STOP also lives on the
//! tray, the panel's button and `POST /control/stop`, and push-to-talk on the panel's button.
//!
//! Why the display check comes first: on Linux the shortcut plugin grabs keys through X11, and
//! without an X server its registration "succeeds" while nothing will ever fire. Under Wayland
//! with XWayland the grab works only while an X11 window has the focus.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Shortcut, ShortcutState};

/// What a global shortcut does. One plugin handler serves both: a key event is dispatched by
/// the shortcut it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HotkeyAction {
    /// Pressed: stop the co-host talking.
    Stop,
    /// Held: the mic listens (pressed and released both count).
    PushToTalk,
}

impl HotkeyAction {
    fn title(self) -> &'static str {
        match self {
            HotkeyAction::Stop => "Stop hotkey",
            HotkeyAction::PushToTalk => "Push-to-talk hotkey",
        }
    }

    fn what_it_does(self) -> &'static str {
        match self {
            HotkeyAction::Stop => "Press {} anywhere to stop the co-host talking.",
            HotkeyAction::PushToTalk => {
                "Hold {} anywhere to talk to the co-host (the mic in push-to-talk mode)."
            }
        }
    }

    fn instead(self) -> &'static str {
        match self {
            HotkeyAction::Stop => "Use the tray's Stop talking or the panel's STOP button.",
            HotkeyAction::PushToTalk => "Hold the panel's talk button instead.",
        }
    }

    fn how_to_set(self) -> &'static str {
        match self {
            HotkeyAction::Stop => "Settings, KOTODAMA_STOP_HOTKEY or --stop-hotkey",
            HotkeyAction::PushToTalk => "Settings or PTT_HOTKEY",
        }
    }
}

/// Whether one hotkey works, for the tray, the log and `app_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HotkeyStatus {
    pub action: HotkeyAction,
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
    /// The accelerator is invalid, the other hotkey already has it, or another app holds it.
    Failed,
}

impl HotkeyStatus {
    pub fn off(action: HotkeyAction) -> Self {
        HotkeyStatus {
            action,
            accelerator: None,
            state: HotkeyState::Off,
            message: format!(
                "{} is off (set one in {}).",
                action.title(),
                action.how_to_set()
            ),
        }
    }

    fn new(action: HotkeyAction, accelerator: &str, state: HotkeyState, message: String) -> Self {
        HotkeyStatus {
            action,
            accelerator: Some(accelerator.to_owned()),
            state,
            message,
        }
    }

    /// For the tray menu: short, no trailing advice.
    pub fn menu_label(&self) -> String {
        let title = self.action.title();
        match (self.state, &self.accelerator) {
            (HotkeyState::Registered, Some(accelerator)) => format!("{title}: {accelerator}"),
            (HotkeyState::Limited, Some(accelerator)) => {
                format!("{title}: {accelerator} (X11 apps only)")
            }
            (HotkeyState::Off, _) => format!("{title}: off"),
            _ => match self.action {
                HotkeyAction::Stop => "Stop hotkey unavailable (use Stop talking)".to_owned(),
                HotkeyAction::PushToTalk => format!("{title} unavailable"),
            },
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

/// The shortcut registered for each action, so a change releases exactly that one and a key
/// event finds its action.
#[derive(Debug, Default)]
struct Registered(Mutex<HashMap<HotkeyAction, Shortcut>>);

impl Registered {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HotkeyAction, Shortcut>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The action `shortcut` was registered for (a key event's dispatch).
    fn action_of(&self, shortcut: &Shortcut) -> Option<HotkeyAction> {
        self.lock()
            .iter()
            .find(|(_, registered)| registered.id() == shortcut.id())
            .map(|(action, _)| *action)
    }

    /// The other action already registered on `shortcut`, if any.
    fn taken_by_other(&self, action: HotkeyAction, shortcut: &Shortcut) -> Option<HotkeyAction> {
        self.action_of(shortcut).filter(|other| *other != action)
    }
}

fn registered<R: Runtime>(app: &AppHandle<R>) -> tauri::State<'_, Registered> {
    if app.try_state::<Registered>().is_none() {
        app.manage(Registered::default());
    }
    app.state::<Registered>()
}

/// A key event of a registered shortcut, as the handler gets it: the action and whether the
/// key went down (`true`) or up.
pub type OnHotkey<R> = fn(&AppHandle<R>, HotkeyAction, bool);

/// Registers `accelerator` for `action`, replacing the shortcut that action had (a settings
/// change; `None` only unregisters). `on_hotkey` is taken the first time the shortcut plugin
/// starts and receives every key event of every action. Every failure becomes a status; nothing
/// here can stop the app.
pub fn install<R: Runtime>(
    app: &AppHandle<R>,
    action: HotkeyAction,
    accelerator: Option<&str>,
    session: DisplaySession,
    on_hotkey: OnHotkey<R>,
) -> HotkeyStatus {
    let plugin_running = app
        .try_state::<tauri_plugin_global_shortcut::GlobalShortcut<R>>()
        .is_some();
    let registry = registered(app);
    // Not `unregister_all`: in tauri-plugin-global-shortcut 2.4 it holds the plugin's lock while
    // the X11 thread works, and that thread takes the same lock to deliver a key press, so a
    // press during the change deadlocks the app (seen in the smoke test). `unregister` does not.
    let previous = registry.lock().remove(&action);
    if plugin_running
        && let Some(previous) = previous
        && let Err(error) = app.global_shortcut().unregister(previous)
    {
        tracing::warn!(%error, ?action, "cannot release the previous hotkey");
    }
    let title = action.title();
    let Some(accelerator) = accelerator else {
        return HotkeyStatus::off(action);
    };
    let failed =
        |message: String| HotkeyStatus::new(action, accelerator, HotkeyState::Failed, message);
    let shortcut = match parse(accelerator) {
        Ok(shortcut) => shortcut,
        Err(message) => return failed(format!("{title} {message}.")),
    };
    if let Some(other) = registry.taken_by_other(action, &shortcut) {
        return failed(format!(
            "{title} {accelerator} is already the {}; choose another in Settings.",
            other.title().to_lowercase()
        ));
    }
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
                action,
                accelerator,
                HotkeyState::Unavailable,
                format!(
                    "{title} {accelerator} is unavailable: {why}. {}",
                    action.instead()
                ),
            );
        }
    };
    if !plugin_running {
        let plugin = tauri_plugin_global_shortcut::Builder::new()
            .with_handler(move |app, shortcut, event| {
                let Some(action) = app
                    .try_state::<Registered>()
                    .and_then(|registry| registry.action_of(shortcut))
                else {
                    return;
                };
                on_hotkey(app, action, event.state == ShortcutState::Pressed);
            })
            .build();
        if let Err(error) = app.plugin(plugin) {
            return failed(format!(
                "Global shortcuts cannot start here ({error}). {}",
                action.instead()
            ));
        }
    }
    if let Err(error) = app.global_shortcut().register(shortcut) {
        return failed(format!(
            "{title} {accelerator} could not be registered ({error}); another app may hold it. Choose another in Settings."
        ));
    }
    registry.lock().insert(action, shortcut);
    let message = match state {
        HotkeyState::Limited => format!(
            "{title} {accelerator} is registered through XWayland: under Wayland it fires only while an X11 app has the focus."
        ),
        _ => action.what_it_does().replace("{}", accelerator),
    };
    HotkeyStatus::new(action, accelerator, state, message)
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
        let stop = HotkeyAction::Stop;
        let registered = HotkeyStatus::new(
            stop,
            "Ctrl+Shift+Space",
            HotkeyState::Registered,
            String::new(),
        );
        assert_eq!(registered.menu_label(), "Stop hotkey: Ctrl+Shift+Space");
        let unavailable = HotkeyStatus::new(
            stop,
            "Ctrl+Shift+Space",
            HotkeyState::Unavailable,
            String::new(),
        );
        assert!(
            unavailable.menu_label().contains("unavailable"),
            "the tray shows that the hotkey will not fire"
        );
        assert!(!unavailable.is_active() && registered.is_active());
    }

    #[test]
    fn a_key_event_finds_the_action_of_its_shortcut() {
        let registry = Registered::default();
        let stop = parse("Ctrl+Shift+Space").expect("a valid shortcut");
        let talk = parse("Ctrl+Shift+M").expect("a valid shortcut");
        registry.lock().insert(HotkeyAction::Stop, stop);
        registry.lock().insert(HotkeyAction::PushToTalk, talk);
        assert_eq!(registry.action_of(&stop), Some(HotkeyAction::Stop));
        assert_eq!(
            registry.action_of(&parse("ctrl+shift+m").expect("a valid shortcut")),
            Some(HotkeyAction::PushToTalk),
            "the same keys however they are spelled"
        );
        assert_eq!(
            registry.action_of(&parse("Alt+F9").expect("a valid shortcut")),
            None
        );
        assert_eq!(
            registry.taken_by_other(HotkeyAction::PushToTalk, &stop),
            Some(HotkeyAction::Stop),
            "one shortcut cannot be both"
        );
        assert_eq!(registry.taken_by_other(HotkeyAction::Stop, &stop), None);
    }

    #[test]
    fn the_default_hotkeys_differ() {
        let stop = parse(crate::launch::DEFAULT_STOP_HOTKEY).expect("a valid shortcut");
        let talk = parse(crate::launch::DEFAULT_PTT_HOTKEY).expect("a valid shortcut");
        assert_ne!(stop.id(), talk.id());
    }

    #[test]
    fn statuses_name_their_hotkey() {
        let off = HotkeyStatus::off(HotkeyAction::PushToTalk);
        assert!(
            off.message.starts_with("Push-to-talk hotkey is off"),
            "{}",
            off.message
        );
        assert_eq!(off.menu_label(), "Push-to-talk hotkey: off");
    }
}
