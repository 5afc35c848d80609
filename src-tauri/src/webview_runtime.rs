//! The webview runtime every window needs. On Windows that is the Microsoft Edge WebView2
//! Runtime, installed separately (Windows 11 and an up-to-date Windows 10 have it). Without it
//! Tauri builds the app but no window: it shows its own error box, then the app would run on
//! with a tray and no window. So `run` checks first and, when it is missing, says what to
//! install (a message box, stderr, the log) and exits with [`EXIT_NO_WEBVIEW`], having started
//! nothing. Elsewhere the webview (WebKitGTK) is a library the binary links: nothing to check.

/// Exit code when the webview runtime is missing (nothing was started).
pub const EXIT_NO_WEBVIEW: i32 = 3;

/// Where Microsoft distributes the Evergreen WebView2 Runtime.
pub const WEBVIEW2_URL: &str = "https://developer.microsoft.com/microsoft-edge/webview2/";

/// What the user reads when the runtime is missing.
pub fn missing_message() -> String {
    format!(
        "Kotodama needs the Microsoft Edge WebView2 Runtime (Evergreen) to show its window, \
         and it is not installed for this user.\n\nInstall the Evergreen WebView2 Runtime from \
         {WEBVIEW2_URL} (the Evergreen Bootstrapper or Standalone Installer), then start \
         Kotodama again."
    )
}

/// `Err(why)` when the webview runtime is missing.
pub fn check() -> Result<(), String> {
    #[cfg(windows)]
    {
        tauri::webview_version()
            .map(|version| tracing::debug!(%version, "WebView2 runtime"))
            .map_err(|error| error.to_string())
    }
    #[cfg(not(windows))]
    {
        Ok(())
    }
}

/// Says the runtime is missing: the log, stderr (one line), then a message box on Windows
/// (it waits for OK).
pub fn report_missing(error: &str) {
    let message = missing_message();
    tracing::error!(%error, "no WebView2 runtime: nothing started");
    eprintln!("kotodama-desktop: {}", message.replace("\n\n", " "));
    #[cfg(windows)]
    message_box::error("Kotodama", &message);
}

#[cfg(windows)]
#[allow(
    unsafe_code,
    reason = "Windows only: user32's MessageBoxW, before any window exists; no safe wrapper is \
              in the dependency tree (Tauri's own box is private)"
)]
mod message_box {
    use std::ffi::{OsStr, c_void};
    use std::os::windows::ffi::OsStrExt;

    const MB_OK: u32 = 0x0000_0000;
    const MB_ICONERROR: u32 = 0x0000_0010;
    const MB_SETFOREGROUND: u32 = 0x0001_0000;

    #[link(name = "user32")]
    unsafe extern "system" {
        fn MessageBoxW(hwnd: *mut c_void, text: *const u16, caption: *const u16, kind: u32) -> i32;
    }

    fn wide(text: &str) -> Vec<u16> {
        OsStr::new(text).encode_wide().chain([0]).collect()
    }

    /// A modal error box with OK, owned by no window (there is none yet).
    pub fn error(caption: &str, text: &str) {
        let text = wide(text);
        let caption = wide(caption);
        // SAFETY: both pointers are to NUL-terminated UTF-16 buffers that outlive the call; a
        // null owner window is allowed; MessageBoxW keeps no pointer after it returns.
        unsafe {
            MessageBoxW(
                std::ptr::null_mut(),
                text.as_ptr(),
                caption.as_ptr(),
                MB_OK | MB_ICONERROR | MB_SETFOREGROUND,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_evergreen_runtime_and_where_to_get_it() {
        let message = missing_message();
        assert!(message.contains("WebView2 Runtime (Evergreen)"));
        assert!(message.contains(WEBVIEW2_URL));
    }

    #[test]
    fn elsewhere_there_is_nothing_to_check() {
        if !cfg!(windows) {
            assert_eq!(check(), Ok(()));
        }
    }
}
