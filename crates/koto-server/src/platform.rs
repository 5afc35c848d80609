//! What differs by platform, in one place: where data and logs live, which signals ask for a
//! shutdown, and how a file that holds a secret is kept from other users.
//!
//! | | data | logs |
//! |---|---|---|
//! | Windows | `%APPDATA%\Kotodama` | `%LOCALAPPDATA%\Kotodama\logs` |
//! | macOS | `~/Library/Application Support/Kotodama` | `~/Library/Logs/Kotodama` |
//! | Linux | `$XDG_DATA_HOME/kotodama` (`~/.local/share/kotodama`) | `$XDG_STATE_HOME/kotodama/logs` (`~/.local/state/kotodama/logs`) |
//!
//! **Who can read the token and the settings.** On Unix they are created `0600`. On Windows
//! Kotodama sets no ACL of its own: a file under `%APPDATA%` inherits the user profile's ACL,
//! which grants the user, SYSTEM and the Administrators group, not other users. A `data_dir`
//! outside the profile gets that folder's ACL, so choose one only you can read.

use std::path::{Path, PathBuf};

/// The app's folder name: lower case where the platform's folders are (XDG), else as written.
const APP_DIR: &str = if cfg!(any(windows, target_os = "macos")) {
    "Kotodama"
} else {
    "kotodama"
};

/// Where the database, the token and the settings live by default; `None` when the platform
/// names no home for them (no `HOME`, no profile), so the caller can say what to set instead.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join(APP_DIR))
}

/// Where the log files go by default (see the module's table).
pub fn default_log_dir() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        return dirs::home_dir().map(|home| home.join("Library/Logs").join(APP_DIR));
    }
    if cfg!(windows) {
        return dirs::data_local_dir().map(|dir| dir.join(APP_DIR).join("logs"));
    }
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/state")))
        .map(|dir| dir.join(APP_DIR).join("logs"))
}

/// Replaces `path` atomically with `contents`, readable by its owner only on Unix (it may hold
/// keys; on Windows see the module's note).
pub fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    // A leftover temporary file from a crash may have other permissions; `mode` only applies
    // to files it creates.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// The signals that ask the process to stop, registered at once (not on first poll): SIGINT
/// and SIGTERM on Unix; Ctrl+C, Ctrl+Break, closing the console window, log-off and shutdown on
/// Windows.
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    windows: WindowsConsoleEvents,
}

#[cfg(windows)]
struct WindowsConsoleEvents {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    logoff: tokio::signal::windows::CtrlLogoff,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

impl ShutdownSignals {
    /// Must run inside a tokio runtime.
    pub fn register() -> std::io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            Ok(ShutdownSignals {
                windows: WindowsConsoleEvents {
                    ctrl_c: windows::ctrl_c()?,
                    ctrl_break: windows::ctrl_break()?,
                    close: windows::ctrl_close()?,
                    logoff: windows::ctrl_logoff()?,
                    shutdown: windows::ctrl_shutdown()?,
                },
            })
        }
        #[cfg(not(any(unix, windows)))]
        Ok(ShutdownSignals {})
    }

    /// Returns at the first of the signals.
    pub async fn wait(self) {
        #[cfg(unix)]
        {
            let mut signals = self;
            tokio::select! {
                _ = signals.interrupt.recv() => {}
                _ = signals.terminate.recv() => {}
            }
        }
        #[cfg(windows)]
        {
            // Windows ends the process soon after a close/log-off/shutdown event's handler
            // returns (about 5 s), which is enough for the bounded shutdown that follows.
            let mut events = self.windows;
            tokio::select! {
                _ = events.ctrl_c.recv() => {}
                _ = events.ctrl_break.recv() => {}
                _ = events.close.recv() => {}
                _ = events.logoff.recv() => {}
                _ = events.shutdown.recv() => {}
            }
        }
        #[cfg(not(any(unix, windows)))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_folders_are_absolute_and_named_for_the_app() {
        // This machine has a home; a platform without one gets `None` (and the config says
        // what to set), never a folder relative to wherever the app was started.
        let data = default_data_dir().expect("a data folder on this machine");
        let logs = default_log_dir().expect("a log folder on this machine");
        for dir in [&data, &logs] {
            assert!(dir.is_absolute(), "{}", dir.display());
            assert!(
                dir.components().any(|part| part.as_os_str() == APP_DIR),
                "{}",
                dir.display()
            );
        }
        assert_ne!(data, logs);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_replaced_whole_and_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        // A leftover temporary file with wide permissions is not trusted.
        std::fs::write(dir.path().join("token.tmp"), "old").expect("write");
        std::fs::set_permissions(
            dir.path().join("token.tmp"),
            std::fs::Permissions::from_mode(0o666),
        )
        .expect("chmod");
        write_owner_only(&path, b"secret").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("token.tmp").exists());
    }
}
