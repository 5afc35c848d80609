//! The plugin token VTube Studio issued after the user clicked "Allow", kept in one file so the
//! popup is shown once, not on every start.
//!
//! The file is owner-only on Unix (0600) and replaced atomically (a temporary file in the same
//! folder, then a rename), so a crash never leaves half a token. It holds the token and nothing
//! else; it does not decide when a token is stale (VTube Studio does, by answering
//! `authenticated: false`). On Windows the file inherits the folder's ACL (the user's profile).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The stored token, `None` when there is none (no file yet, or an empty one).
pub(crate) async fn read(path: &Path) -> io::Result<Option<String>> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => {
            let token = text.trim();
            Ok((!token.is_empty()).then(|| token.to_owned()))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Store `token` in `path` (creating its folder), replacing any older token.
pub(crate) async fn store(path: &Path, token: &str) -> io::Result<()> {
    let path = path.to_owned();
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || store_blocking(&path, &token))
        .await
        .map_err(io::Error::other)?
}

fn store_blocking(path: &Path, token: &str) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&folder)?;
    let temporary = folder.join(temporary_name(path)?);
    let written = write_private(&temporary, token).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        // Best effort: the write already failed, a leftover temporary file is only clutter.
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `.<name>.<pid>-<n>.tmp`: unique per process and per write, so two clients storing at once
/// never write into the same temporary file.
fn temporary_name(path: &Path) -> io::Result<String> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    Ok(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ))
}

fn write_private(path: &Path, token: &str) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created 0600 (before the umask, which can only take bits away), never readable by others
        // even for a moment.
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn missing_or_empty_is_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vts-token");
        assert_eq!(read(&path).await.unwrap(), None, "no file yet");
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(read(&path).await.unwrap(), None, "blank file");
    }

    #[tokio::test]
    async fn store_then_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("vts-token");
        store(&path, "first-token").await.unwrap();
        assert_eq!(read(&path).await.unwrap().as_deref(), Some("first-token"));
        store(&path, "second").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "second",
            "replaced whole, no leftover bytes of the longer first token"
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn stored_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vts-token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        store(&path, "new").await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "a world-readable old file is replaced by an owner-only one"
        );
    }
}
