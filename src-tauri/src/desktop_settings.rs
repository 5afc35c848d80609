//! The desktop's side of `PUT /settings`: output device, volume and the two hotkeys (stop,
//! push-to-talk) are checked against this computer (does the device exist, is it a shortcut,
//! do the hotkeys differ) and applied at once to the player and the global shortcuts. The
//! settings route decides when; this only knows how.

use std::fmt;

use koto_audio::{DeviceInfo, Player, output_devices};
use koto_server::config::DesktopConfig;
use koto_server::live_settings::{Choice, DesktopSettings};
use tauri::{AppHandle, Manager, Runtime};

use crate::hotkey::{self, DisplaySession, HotkeyAction};
use crate::shell::Shell;
use crate::{barge_in, tray};

/// What the settings reach in the running desktop app.
pub struct DesktopHooks<R: Runtime> {
    app: AppHandle<R>,
    /// `None`: local playback is off (`playback = off`); device and volume are saved for later.
    player: Option<Player>,
    session: DisplaySession,
    /// Lists the output devices (cpal's, in the app; a fixed list in tests).
    devices: fn() -> Vec<DeviceInfo>,
}

impl<R: Runtime> fmt::Debug for DesktopHooks<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesktopHooks")
            .field("player", &self.player)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> DesktopHooks<R> {
    pub fn new(app: AppHandle<R>, player: Option<Player>, session: DisplaySession) -> Self {
        DesktopHooks {
            app,
            player,
            session,
            devices: output_devices,
        }
    }

    /// As `new`, with the device list given (tests: this machine has no sound card).
    pub fn with_devices(mut self, devices: fn() -> Vec<DeviceInfo>) -> Self {
        self.devices = devices;
        self
    }
}

/// Why `wanted` is not one of `devices`, naming what there is.
fn device_problem(wanted: &str, devices: &[DeviceInfo]) -> Option<String> {
    if devices.iter().any(|device| device.matches(wanted)) {
        return None;
    }
    if devices.is_empty() {
        return Some(format!(
            "no output device {wanted:?}: this computer lists no sound outputs (leave it empty for the system default)"
        ));
    }
    let names: Vec<&str> = devices.iter().map(|device| device.name.as_str()).collect();
    Some(format!(
        "no output device {wanted:?}; available: {}",
        names.join(", ")
    ))
}

impl<R: Runtime> DesktopSettings for DesktopHooks<R> {
    fn check(&self, key: &str, config: &DesktopConfig) -> Result<(), String> {
        match key {
            "output_device" => match &config.output_device {
                Some(wanted) => match device_problem(wanted, &(self.devices)()) {
                    Some(problem) => Err(problem),
                    None => Ok(()),
                },
                None => Ok(()),
            },
            "stop_hotkey" | "ptt_hotkey" => {
                let (own, other) = hotkeys_of(key, config);
                match own {
                    Some(accelerator) => {
                        let shortcut = hotkey::parse(accelerator)?;
                        // Checked before anything is applied: a save that gives both hotkeys
                        // the same keys changes neither.
                        match other.map(hotkey::parse) {
                            Some(Ok(other)) if other.id() == shortcut.id() => Err(format!(
                                "{accelerator} is already the {}",
                                if key == "stop_hotkey" {
                                    "push-to-talk hotkey"
                                } else {
                                    "stop hotkey"
                                }
                            )),
                            _ => Ok(()),
                        }
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn apply(&self, key: &str, config: &DesktopConfig) -> Result<Option<String>, String> {
        match key {
            "output_device" | "output_volume" => {
                let Some(player) = &self.player else {
                    return Ok(Some(
                        "saved; local playback is off (playback = off), so nothing plays here"
                            .to_owned(),
                    ));
                };
                if key == "output_volume" {
                    player.set_volume(config.output_volume);
                } else {
                    // Asynchronous: a missing device falls back (logged, shown in the status).
                    player.set_device(config.output_device.clone());
                }
                Ok(None)
            }
            "stop_hotkey" | "ptt_hotkey" => {
                // Both are registered again, released first: a save that swaps the two keys
                // must not find the new keys still held by the other hotkey.
                for action in [HotkeyAction::Stop, HotkeyAction::PushToTalk] {
                    hotkey::install(&self.app, action, None, self.session, barge_in::on_hotkey);
                }
                let mut own = None;
                for (action, accelerator) in [
                    (HotkeyAction::Stop, config.stop_hotkey.as_deref()),
                    (HotkeyAction::PushToTalk, config.ptt_hotkey.as_deref()),
                ] {
                    let status = hotkey::install(
                        &self.app,
                        action,
                        accelerator,
                        self.session,
                        barge_in::on_hotkey,
                    );
                    tracing::info!(?action, state = ?status.state, message = %status.message, "hotkey set");
                    if let Some(shell) = self.app.try_state::<Shell>() {
                        shell.set_hotkey_status(status.clone());
                    }
                    if action == HotkeyAction::Stop {
                        tray::show_hotkey(&self.app, &status);
                    }
                    let this_key = (action == HotkeyAction::Stop) == (key == "stop_hotkey");
                    if this_key {
                        own = Some((status, accelerator.is_none()));
                    }
                }
                match own {
                    Some((status, off)) if !status.is_active() && !off => Err(status.message),
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    fn status(&self) -> serde_json::Value {
        let playback = self.player.as_ref().map(|player| {
            serde_json::json!({
                "status": player.status(),
                "volume": player.volume(),
            })
        });
        let shell = self.app.try_state::<Shell>();
        let hotkey = shell.as_ref().map(|shell| shell.hotkey_status());
        let ptt_hotkey = shell.as_ref().map(|shell| shell.ptt_hotkey_status());
        serde_json::json!({ "playback": playback, "hotkey": hotkey, "pttHotkey": ptt_hotkey })
    }

    fn choices(&self, key: &str) -> Option<Vec<Choice>> {
        if key != "output_device" {
            return None;
        }
        let system_default = Choice {
            value: String::new(),
            label: "System default".to_owned(),
        };
        let devices = (self.devices)().into_iter().map(|device| Choice {
            label: if device.is_default {
                format!("{} (default)", device.name)
            } else {
                device.name
            },
            value: device.id,
        });
        Some(std::iter::once(system_default).chain(devices).collect())
    }
}

/// A hotkey key's value and the other hotkey's (they must differ).
fn hotkeys_of<'a>(key: &str, config: &'a DesktopConfig) -> (Option<&'a str>, Option<&'a str>) {
    let (stop, ptt) = (config.stop_hotkey.as_deref(), config.ptt_hotkey.as_deref());
    if key == "stop_hotkey" {
        (stop, ptt)
    } else {
        (ptt, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str) -> DeviceInfo {
        DeviceInfo {
            id: id.to_owned(),
            name: name.to_owned(),
            is_default: false,
        }
    }

    #[test]
    fn a_device_is_found_by_id_or_name_and_a_missing_one_names_the_others() {
        let devices = [
            device("alsa:cable", "Virtual Cable"),
            device("alsa:hw0", "Speakers"),
        ];
        assert_eq!(device_problem("alsa:cable", &devices), None, "by id");
        assert_eq!(device_problem("Speakers", &devices), None, "by name");
        let problem = device_problem("Headset", &devices).unwrap_or_default();
        assert!(
            problem.contains("Headset") && problem.contains("Virtual Cable, Speakers"),
            "says what is missing and what exists: {problem}"
        );
        let none = device_problem("Headset", &[]).unwrap_or_default();
        assert!(
            none.contains("no sound outputs"),
            "a machine without sound devices says so: {none}"
        );
    }
}
