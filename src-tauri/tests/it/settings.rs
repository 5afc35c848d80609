//! The desktop's settings hook on the mock runtime: devices are checked against this computer's
//! list, volume reaches the player at once, a bad or ungrabbable hotkey says why.

use koto_audio::{DeviceInfo, Pace, Player, PlayerConfig, RecordingSink};
use koto_server::config::DesktopConfig;
use koto_server::live_settings::DesktopSettings;
use kotodama_desktop::desktop_settings::DesktopHooks;
use kotodama_desktop::hotkey::DisplaySession;
use tauri::test::{mock_builder, mock_context, noop_assets};

fn devices() -> Vec<DeviceInfo> {
    vec![
        DeviceInfo {
            id: "alsa:hw:CARD=PCH,DEV=0".to_owned(),
            name: "Speakers".to_owned(),
            is_default: true,
        },
        DeviceInfo {
            id: "pulse:cable".to_owned(),
            name: "Virtual Cable".to_owned(),
            is_default: false,
        },
    ]
}

fn desktop(device: Option<&str>, volume: f32, hotkey: Option<&str>) -> DesktopConfig {
    DesktopConfig {
        playback: true,
        output_device: device.map(str::to_owned),
        output_volume: volume,
        stop_hotkey: hotkey.map(str::to_owned),
        ptt_hotkey: Some(kotodama_desktop::launch::DEFAULT_PTT_HOTKEY.to_owned()),
    }
}

#[test]
fn devices_volume_and_hotkey_are_checked_and_applied_here() {
    let app = mock_builder()
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let (sink, _recording) = RecordingSink::new(24_000, Pace::Manual);
    let player = Player::start_with_sink(PlayerConfig::default(), Box::new(sink));
    let hooks = DesktopHooks::new(
        app.handle().clone(),
        Some(player.clone()),
        DisplaySession::Headless,
    )
    .with_devices(devices);

    let choices = hooks.choices("output_device").expect("a list for the form");
    let labels: Vec<&str> = choices.iter().map(|choice| choice.label.as_str()).collect();
    assert_eq!(
        labels,
        ["System default", "Speakers (default)", "Virtual Cable"],
        "the default first, then every device"
    );
    assert_eq!(choices[0].value, "", "the system default is saved as unset");
    assert_eq!(
        choices[2].value, "pulse:cable",
        "the stable id is what is saved"
    );
    assert!(hooks.choices("output_volume").is_none());

    assert!(
        hooks
            .check("output_device", &desktop(Some("Virtual Cable"), 1.0, None))
            .is_ok()
    );
    let missing = hooks
        .check("output_device", &desktop(Some("Headset"), 1.0, None))
        .expect_err("an unknown device is refused before it is saved");
    assert!(
        missing.contains("Headset") && missing.contains("Virtual Cable"),
        "{missing}"
    );

    hooks
        .apply("output_volume", &desktop(None, 0.4, None))
        .expect("volume applies");
    assert!(
        (player.volume() - 0.4).abs() < 1e-6,
        "the player's volume changed at once: {}",
        player.volume()
    );

    let status = hooks.status();
    assert_eq!(
        status["playback"]["status"]["device"], "recording",
        "the status bar names where the voice plays: {status}"
    );
    assert_eq!(status["playback"]["volume"], 0.4f32);

    let bad = hooks
        .check("stop_hotkey", &desktop(None, 1.0, Some("Ctrl+Nope+Z")))
        .expect_err("not a shortcut");
    assert!(bad.contains("Ctrl+Nope+Z"), "{bad}");
    assert!(
        hooks
            .check("stop_hotkey", &desktop(None, 1.0, Some("Alt+F9")))
            .is_ok()
    );
    let unavailable = hooks
        .apply("stop_hotkey", &desktop(None, 1.0, Some("Alt+F9")))
        .expect_err("no display: the hotkey cannot be grabbed, and the answer says so");
    assert!(unavailable.contains("no display"), "{unavailable}");
    assert_eq!(
        hooks.apply("stop_hotkey", &desktop(None, 1.0, None)),
        Ok(None),
        "turning it off always works"
    );

    let clash = hooks
        .check("stop_hotkey", &desktop(None, 1.0, Some("ctrl+shift+m")))
        .expect_err("the stop hotkey cannot be push-to-talk's keys");
    assert!(clash.contains("push-to-talk hotkey"), "{clash}");
    let mut both = desktop(None, 1.0, Some("Alt+F9"));
    both.ptt_hotkey = Some("Alt+F9".to_owned());
    let clash = hooks
        .check("ptt_hotkey", &both)
        .expect_err("push-to-talk cannot be the stop hotkey's keys");
    assert!(clash.contains("stop hotkey"), "{clash}");
    both.ptt_hotkey = Some("Ctrl+Nope".to_owned());
    assert!(hooks.check("ptt_hotkey", &both).is_err(), "not a shortcut");
    let unavailable = hooks
        .apply("ptt_hotkey", &desktop(None, 1.0, None))
        .expect_err("no display: push-to-talk cannot be grabbed either");
    assert!(
        unavailable.contains("Push-to-talk hotkey") && unavailable.contains("talk button"),
        "it names the panel's button instead: {unavailable}"
    );
}

#[test]
fn without_local_playback_device_and_volume_are_only_saved() {
    let app = mock_builder()
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let hooks = DesktopHooks::new(app.handle().clone(), None, DisplaySession::Headless)
        .with_devices(devices);
    let note = hooks
        .apply("output_volume", &desktop(None, 0.5, None))
        .expect("saving is fine");
    assert!(
        note.is_some_and(|note| note.contains("playback is off")),
        "the answer says nothing plays here"
    );
    assert!(
        hooks.status()["playback"].is_null(),
        "the status bar shows playback as off"
    );
}
