//! What the desktop app starts with: the configuration `kotodama serve` reads (defaults ← saved
//! settings ← TOML file ← environment ← flags, via `koto_server::config`), whose desktop keys
//! (`stop_hotkey`, `playback`, `output_device`, `output_volume`) are the shell's. It starts
//! nothing and shows nothing; a bad configuration is kept as an error for the failure page,
//! because an app launched from a menu has no terminal to print it to.

use std::path::PathBuf;

use clap::Parser;
use koto_server::config::{Config, ConfigError, DesktopConfig};

/// The push-to-interrupt shortcut when none is configured (the `stop_hotkey` key's default).
pub const DEFAULT_STOP_HOTKEY: &str = "Ctrl+Shift+Space";

/// The push-to-talk shortcut when none is configured (the `ptt_hotkey` key's default).
pub const DEFAULT_PTT_HOTKEY: &str = "Ctrl+Shift+M";

/// Environment variable that sets the stop hotkey (`off` disables it).
pub const STOP_HOTKEY_ENV: &str = "KOTODAMA_STOP_HOTKEY";

/// Environment variable that turns local playback off (`off`).
pub const PLAYBACK_ENV: &str = "KOTODAMA_PLAYBACK";

#[derive(Debug, Parser)]
#[command(
    name = "kotodama-desktop",
    version,
    about = "Kotodama's desktop app: the control panel window, a tray and a stop hotkey over the same engine as `kotodama serve`."
)]
pub struct DesktopArgs {
    /// Address to listen on (KOTODAMA_BIND); loopback unless you mean it.
    #[arg(long)]
    pub bind: Option<String>,
    /// Where the database and token live (KOTODAMA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML config file, the same as `kotodama serve --config`; environment variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Global shortcut that stops the co-host talking, e.g. `Ctrl+Shift+Space`, `Alt+F9`
    /// (KOTODAMA_STOP_HOTKEY; default Ctrl+Shift+Space); `off` disables it.
    #[arg(long)]
    pub stop_hotkey: Option<String>,
    /// Do not play the co-host's voice on this computer (KOTODAMA_PLAYBACK=off), e.g. when OBS
    /// plays it from the overlay.
    #[arg(long)]
    pub no_playback: bool,
}

/// Everything the shell needs to start.
#[derive(Debug)]
pub struct Launch {
    /// The server's configuration, or why it is unusable (shown in the window).
    pub config: Result<Config, ConfigError>,
    /// The saved settings file these layers read (what the failure page's ways back act on).
    pub settings_file: Option<PathBuf>,
}

impl Launch {
    /// The desktop keys of the configuration; `None` when it is unusable (nothing starts).
    pub fn desktop(&self) -> Option<&DesktopConfig> {
        self.config.as_ref().ok().map(|config| &config.desktop)
    }
}

impl Launch {
    /// Reads flags, the config file and the process environment.
    pub fn from_args(args: DesktopArgs) -> Launch {
        let env = |name: &str| std::env::var(name).ok();
        Launch::resolve(args, env)
    }

    /// As [`Launch::from_args`], with the environment given (tests).
    pub fn resolve(args: DesktopArgs, env: impl Fn(&str) -> Option<String>) -> Launch {
        let mut flags = Vec::new();
        if let Some(bind) = &args.bind {
            flags.push(("bind", bind.clone()));
        }
        if let Some(dir) = &args.data_dir {
            flags.push(("data_dir", dir.to_string_lossy().into_owned()));
        }
        if let Some(hotkey) = &args.stop_hotkey {
            flags.push(("stop_hotkey", hotkey.clone()));
        }
        if args.no_playback {
            flags.push(("playback", "off".to_owned()));
        }
        // Exactly `kotodama serve`'s layering: defaults ← <data_dir>/kotodama.toml (the saved
        // settings) ← --config ← environment ← flags.
        let config =
            Config::load_with(args.config.as_deref(), &flags, &env).map(|(config, _)| config);
        let settings_file = Config::settings_file_for(args.config.as_deref(), &flags, &env);
        Launch {
            config,
            settings_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use koto_server::config::KEYS;

    /// The flags, with a data dir that holds no settings file unless the test names one: the
    /// real `~/.local/share/kotodama/kotodama.toml` must not decide a test.
    fn args(flags: &[&str]) -> DesktopArgs {
        let isolated: &[&str] = if flags.contains(&"--data-dir") {
            &[]
        } else {
            &["--data-dir", "/nonexistent/kotodama-launch-test"]
        };
        let argv = std::iter::once("kotodama-desktop")
            .chain(flags.iter().copied())
            .chain(isolated.iter().copied());
        DesktopArgs::try_parse_from(argv).expect("flags parse")
    }

    fn hotkey(launch: &Launch) -> Option<&str> {
        launch
            .desktop()
            .and_then(|desktop| desktop.stop_hotkey.as_deref())
    }

    fn playback(launch: &Launch) -> bool {
        launch.desktop().is_some_and(|desktop| desktop.playback)
    }

    #[test]
    fn the_documented_default_is_the_config_key_default() {
        let spec = KEYS.iter().find(|spec| spec.key == "stop_hotkey");
        assert_eq!(spec.map(|spec| spec.env), Some(STOP_HOTKEY_ENV));
        assert_eq!(spec.map(|spec| spec.default), Some(DEFAULT_STOP_HOTKEY));
        let spec = KEYS.iter().find(|spec| spec.key == "ptt_hotkey");
        assert_eq!(spec.map(|spec| spec.default), Some(DEFAULT_PTT_HOTKEY));
        let spec = KEYS.iter().find(|spec| spec.key == "playback");
        assert_eq!(spec.map(|spec| spec.env), Some(PLAYBACK_ENV));
    }

    #[test]
    fn hotkey_flag_beats_env_which_beats_default() {
        let none = |_: &str| None;
        let env = |name: &str| (name == STOP_HOTKEY_ENV).then(|| "Alt+F9".to_owned());
        assert_eq!(
            hotkey(&Launch::resolve(args(&[]), none)),
            Some(DEFAULT_STOP_HOTKEY),
            "a documented default, so push-to-interrupt works out of the box"
        );
        assert_eq!(
            hotkey(&Launch::resolve(args(&[]), env)),
            Some("Alt+F9"),
            "the environment overrides the default"
        );
        assert_eq!(
            hotkey(&Launch::resolve(args(&["--stop-hotkey", "Ctrl+F8"]), env)),
            Some("Ctrl+F8"),
            "the flag overrides the environment"
        );
        assert_eq!(
            hotkey(&Launch::resolve(args(&["--stop-hotkey", "off"]), env)),
            None,
            "`off` disables the hotkey"
        );
    }

    #[test]
    fn playback_is_on_unless_turned_off() {
        let none = |_: &str| None;
        let off = |name: &str| (name == PLAYBACK_ENV).then(|| "off".to_owned());
        assert!(
            playback(&Launch::resolve(args(&[]), none)),
            "the desktop app speaks out loud by default"
        );
        assert!(
            !playback(&Launch::resolve(args(&[]), off)),
            "KOTODAMA_PLAYBACK=off"
        );
        assert!(
            !playback(&Launch::resolve(args(&["--no-playback"]), none)),
            "--no-playback"
        );
    }

    #[test]
    fn flags_reach_the_server_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir_flag = dir.path().to_string_lossy().into_owned();
        let launch = Launch::resolve(
            args(&["--bind", "127.0.0.1:0", "--data-dir", &dir_flag]),
            |_| None,
        );
        let config = launch.config.expect("valid flags give a config");
        assert_eq!(config.bind.port(), 0, "--bind is the server's bind");
        assert_eq!(config.data_dir, dir.path(), "--data-dir is the server's");
        let bad = Launch::resolve(args(&["--bind", "localhost"]), |_| None);
        assert!(
            bad.config.is_err(),
            "a bind without a port is a config error, kept for the failure page"
        );
    }
}
