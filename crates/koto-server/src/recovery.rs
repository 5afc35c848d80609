//! The way back to a configuration that starts: the last working settings (kept after every
//! successful start), the two ways out of a failed start ("start with defaults", "restore the
//! last working settings"), and what a failed start tells the person — a sentence, the file
//! and the setting to fix, and which way out would help.
//!
//! It starts nothing and shows nothing: `kotodama serve` prints a [`StartProblem`], the
//! desktop shell puts it on its failure page and calls [`reset_to_defaults`] or
//! [`restore_last_good`] from its buttons, then relaunches.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ConfigError, RawConfig, Source, io_reason};
use crate::server::StartError;

/// Beside `kotodama.toml`: the settings the last successful start ran with.
pub const LAST_GOOD_SUFFIX: &str = ".last-good";
/// Beside `kotodama.toml`: a settings file set aside by a way out of a failed start (kept, not
/// deleted, so nothing typed is lost).
pub const SET_ASIDE_SUFFIX: &str = ".bad";

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(
        "There are no last working settings to restore yet ({} does not exist): start with the defaults instead.",
        path.display()
    )]
    NoLastGood { path: PathBuf },
    #[error(
        "Kotodama cannot change {}: {reason}. Check that the folder is writable (not read-only, not full).",
        path.display()
    )]
    Io { path: PathBuf, reason: String },
}

/// `<settings file>.last-good`.
pub fn last_good_path(settings_file: &Path) -> PathBuf {
    sibling(settings_file, LAST_GOOD_SUFFIX)
}

/// `<settings file>.bad`.
pub fn set_aside_path(settings_file: &Path) -> PathBuf {
    sibling(settings_file, SET_ASIDE_SUFFIX)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// After a successful start: keeps what the settings file holds now as the last working
/// settings (an empty file when there is none: the defaults worked). A file that would not
/// start on its own (a broken value hidden by an env var or flag) is not kept: the previous
/// last-good stays. Returns whether it was written.
pub fn record_last_good(settings_file: &Path) -> Result<bool, RecoveryError> {
    let text = match std::fs::read_to_string(settings_file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(io_error(settings_file, &error)),
    };
    let mut alone = RawConfig::default();
    let builds_alone = alone
        .merge_toml_str(&text, settings_file)
        .and_then(|()| alone.build().map(drop));
    if let Err(error) = builds_alone {
        tracing::warn!(%error, "the settings file does not start on its own; the last working settings stay as they were");
        return Ok(false);
    }
    let last_good = last_good_path(settings_file);
    crate::platform::write_owner_only(&last_good, text.as_bytes())
        .map_err(|error| io_error(&last_good, &error))?;
    Ok(true)
}

/// What a way out did, in a sentence for the page or the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub message: String,
    /// Where the settings file that did not start was put.
    pub set_aside: Option<PathBuf>,
}

/// "Start with defaults": the settings file is set aside (renamed to `….bad`), so the next start
/// uses the defaults (and whatever env vars or flags say).
pub fn reset_to_defaults(settings_file: &Path) -> Result<Recovered, RecoveryError> {
    let set_aside = set_aside(settings_file)?;
    let message = match &set_aside {
        Some(path) => format!(
            "Kotodama starts with the default settings; yours are kept in {}.",
            path.display()
        ),
        None => "Kotodama starts with the default settings.".to_owned(),
    };
    Ok(Recovered { message, set_aside })
}

/// "Restore the last working settings": the settings file is set aside and the last-good copy
/// takes its place.
pub fn restore_last_good(settings_file: &Path) -> Result<Recovered, RecoveryError> {
    let last_good = last_good_path(settings_file);
    let text = match std::fs::read(&last_good) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(RecoveryError::NoLastGood { path: last_good });
        }
        Err(error) => return Err(io_error(&last_good, &error)),
    };
    let set_aside = set_aside(settings_file)?;
    crate::platform::write_owner_only(settings_file, &text)
        .map_err(|error| io_error(settings_file, &error))?;
    let kept = set_aside
        .as_ref()
        .map(|path| {
            format!(
                "; the ones that did not start are kept in {}",
                path.display()
            )
        })
        .unwrap_or_default();
    Ok(Recovered {
        message: format!("Kotodama starts with the settings that last worked{kept}."),
        set_aside,
    })
}

fn set_aside(settings_file: &Path) -> Result<Option<PathBuf>, RecoveryError> {
    let target = set_aside_path(settings_file);
    match std::fs::rename(settings_file, &target) {
        Ok(()) => Ok(Some(target)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(settings_file, &error)),
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> RecoveryError {
    RecoveryError::Io {
        path: path.to_owned(),
        reason: io_reason(error),
    }
}

/// Why the app did not start, for a person: shown on the desktop's failure page and printed
/// by `kotodama serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartProblem {
    /// `config_invalid`, `port_in_use`, `address_unavailable`, `data_dir`, `start_failed`.
    pub code: &'static str,
    /// A sentence naming the setting and where its value came from.
    pub message: String,
    /// The setting to fix, when one is to blame.
    pub key: Option<String>,
    /// The file to fix, when the value came from one.
    pub file: Option<PathBuf>,
    /// What to do, in a sentence.
    pub hint: String,
    /// The settings file the two ways out act on.
    pub settings_file: Option<PathBuf>,
    /// "Start with defaults" would change something (the settings file exists and may be to
    /// blame).
    pub can_reset: bool,
    /// "Restore the last working settings" is possible (a last-good copy exists).
    pub can_restore: bool,
}

impl StartProblem {
    /// A configuration that does not load. `settings_file`: from
    /// [`Config::settings_file_for`].
    pub fn from_config(error: &ConfigError, settings_file: Option<&Path>) -> StartProblem {
        let file = error.file().map(Path::to_owned);
        let in_settings = file.is_some() && file.as_deref() == settings_file;
        let hint = if in_settings {
            "Fix it in that file, or take one of the ways back below.".to_owned()
        } else {
            match error {
                ConfigError::Invalid {
                    origin: Source::Env,
                    env,
                    ..
                } => format!(
                    "Fix or unset the environment variable {env}, then start Kotodama again."
                ),
                ConfigError::Invalid {
                    origin: Source::Set,
                    ..
                } => {
                    "Fix the value on the command line (or in the menu entry that starts Kotodama)."
                        .to_owned()
                }
                _ => "Fix the value in that file, then start Kotodama again.".to_owned(),
            }
        };
        StartProblem::new(
            "config_invalid",
            error.to_string(),
            error.key().map(str::to_owned),
            file,
            hint,
            settings_file,
            in_settings,
        )
    }

    /// A configuration that loads but does not start. `config` is the one that failed.
    pub fn from_start(error: &StartError, config: &Config) -> StartProblem {
        let settings_file = config.data_dir.join(crate::config::SETTINGS_FILE);
        let origin = |key: &str| config.raw.source(key);
        let from = |key: &str| match origin(key) {
            Source::Default => "the default".to_owned(),
            Source::File(path) => format!("set in {}", path.display()),
            Source::Env => format!("set by the environment variable {}", env_of(key)),
            Source::Set => "set on the command line".to_owned(),
        };
        let (code, key, message, hint) = match error {
            StartError::PortInUse { addr } => (
                "port_in_use",
                Some("bind"),
                format!(
                    "Port {port} on {ip} is already in use by another program, so Kotodama cannot listen there (bind = {addr}, {from}).",
                    port = addr.port(),
                    ip = addr.ip(),
                    from = from("bind"),
                ),
                "Quit the program on that port (another Kotodama, or kotodama serve), or choose another port for bind.".to_owned(),
            ),
            StartError::Bind { addr, source }
                if source.kind() == std::io::ErrorKind::AddrNotAvailable =>
            (
                "address_unavailable",
                Some("bind"),
                format!(
                    "{ip} is not an address of this computer, so Kotodama cannot listen on {addr} (bind, {from}).",
                    ip = addr.ip(),
                    from = from("bind"),
                ),
                "Use 127.0.0.1 (this computer only) or an address this computer has.".to_owned(),
            ),
            StartError::Bind { addr, source } => (
                "address_unavailable",
                Some("bind"),
                format!(
                    "Kotodama cannot listen on {addr} (bind, {from}): {reason}.",
                    from = from("bind"),
                    reason = io_reason(source),
                ),
                "Choose a port from 1024 to 65535 on 127.0.0.1.".to_owned(),
            ),
            StartError::DataDir { path, source } => (
                "data_dir",
                None,
                format!(
                    "Kotodama cannot use its data folder {}: {}.",
                    path.display(),
                    io_reason(source)
                ),
                "Make the folder writable, or choose another with --data-dir or KOTODAMA_DATA_DIR.".to_owned(),
            ),
            StartError::Store(error) => (
                "data_dir",
                None,
                format!(
                    "Kotodama cannot open its database {}: {error}.",
                    config.data_dir.join("kotodama.sqlite3").display()
                ),
                "Make the data folder writable (not read-only, not full), or choose another with --data-dir or KOTODAMA_DATA_DIR.".to_owned(),
            ),
            other => (
                "start_failed",
                None,
                format!("Kotodama did not start: {other}."),
                "See the log (RUST_LOG=debug for more) and the README's configuration table."
                    .to_owned(),
            ),
        };
        // A way out helps when the settings file may be to blame: it set the failing key, or
        // the failure names no key and the file exists.
        let in_settings = match key {
            Some(key) => origin(key) == Source::File(settings_file.clone()),
            None => code == "start_failed" && settings_file.is_file(),
        };
        let file = in_settings.then(|| settings_file.clone());
        StartProblem::new(
            code,
            message,
            key.map(str::to_owned),
            file,
            hint,
            Some(&settings_file),
            in_settings,
        )
    }

    fn new(
        code: &'static str,
        message: String,
        key: Option<String>,
        file: Option<PathBuf>,
        hint: String,
        settings_file: Option<&Path>,
        in_settings: bool,
    ) -> StartProblem {
        let can_restore =
            in_settings && settings_file.is_some_and(|path| last_good_path(path).is_file());
        StartProblem {
            code,
            message,
            key,
            file,
            hint,
            settings_file: settings_file.map(Path::to_owned),
            can_reset: in_settings,
            can_restore,
        }
    }
}

fn env_of(key: &str) -> &'static str {
    crate::config::KEYS
        .iter()
        .find(|spec| spec.key == key)
        .map_or("", |spec| spec.env)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_last_good_copy_is_only_a_file_that_starts_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("kotodama.toml");
        assert!(
            record_last_good(&settings).unwrap(),
            "no file: the defaults worked"
        );
        assert_eq!(
            std::fs::read_to_string(last_good_path(&settings)).unwrap(),
            ""
        );
        std::fs::write(&settings, "llm_model = \"good\"\n").unwrap();
        assert!(record_last_good(&settings).unwrap());
        std::fs::write(&settings, "bind = \"127.0.0.1:99999\"\n").unwrap();
        assert!(
            !record_last_good(&settings).unwrap(),
            "a file that would not start is never kept as working"
        );
        assert_eq!(
            std::fs::read_to_string(last_good_path(&settings)).unwrap(),
            "llm_model = \"good\"\n",
            "the previous working copy stays"
        );
    }
}
