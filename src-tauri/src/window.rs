//! The windows: the control panel (the server's own UI at `http://127.0.0.1:<port>/`, loaded
//! with the token) and, when start-up fails, a local page that says why. No UI lives here.
//!
//! Security: the panel window may only navigate within the server's origin (and the app's own
//! pages), and only that origin gets IPC, limited to the app's two commands (a capability built
//! at start-up for the exact port). A link to anywhere else is refused, never opened in-app.

use tauri::ipc::CapabilityBuilder;
use tauri::{AppHandle, Manager, Runtime, Url, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

/// The panel window's label.
pub const MAIN: &str = "main";

/// The title `xdotool search --name Kotodama` finds.
pub const TITLE: &str = "Kotodama";

/// Whether the panel window may go to `url`: the server's origin, or the app's own pages.
pub fn navigation_allowed(url: &Url, server: &Url) -> bool {
    let same_origin = url.scheme() == server.scheme()
        && url.host_str() == server.host_str()
        && url.port_or_known_default() == server.port_or_known_default();
    let own_page = (url.scheme() == "tauri" && url.host_str() == Some("localhost"))
        || (matches!(url.scheme(), "http" | "https") && url.host_str() == Some("tauri.localhost"));
    same_origin || own_page
}

/// IPC for the panel: the app's commands, from the server's origin only, in the main window.
pub fn panel_capability(server: &Url) -> CapabilityBuilder {
    let origin = server.origin().ascii_serialization();
    CapabilityBuilder::new("panel")
        .remote(format!("{origin}/*"))
        .window(MAIN)
        .permission("allow-app-info")
        .permission("allow-stop-talking")
}

/// Opens the control panel at `panel_url` (on the server `server`).
pub fn open_panel<R: Runtime>(
    app: &AppHandle<R>,
    panel_url: Url,
    server: &Url,
) -> tauri::Result<WebviewWindow<R>> {
    app.add_capability(panel_capability(server))?;
    let allowed = server.clone();
    WebviewWindowBuilder::new(app, MAIN, WebviewUrl::External(panel_url))
        .title(TITLE)
        .inner_size(1100.0, 760.0)
        .min_inner_size(480.0, 360.0)
        .on_navigation(move |url| {
            let ok = navigation_allowed(url, &allowed);
            if !ok {
                tracing::warn!(%url, "the panel tried to leave the app; refused");
            }
            ok
        })
        .build()
}

/// Why the app could not start, as shown on the failure page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupFailure {
    /// A stable code (`port_in_use`, `config_invalid`, `start_failed`).
    pub code: &'static str,
    pub message: String,
    pub hint: String,
}

impl StartupFailure {
    /// `failed.html?code=…&message=…&hint=…`, relative to the app's pages.
    pub fn page_path(&self) -> String {
        let mut query = Url::parse("tauri://localhost/failed.html").expect("a constant URL parses");
        query
            .query_pairs_mut()
            .append_pair("code", self.code)
            .append_pair("message", &self.message)
            .append_pair("hint", &self.hint);
        format!("failed.html?{}", query.query().unwrap_or_default())
    }
}

/// Opens the failure page in the main window (same label and title, so a second launch focuses it).
pub fn open_failure<R: Runtime>(
    app: &AppHandle<R>,
    failure: &StartupFailure,
) -> tauri::Result<WebviewWindow<R>> {
    WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App(failure.page_path().into()))
        .title(format!("{TITLE}: could not start"))
        .inner_size(720.0, 480.0)
        .on_navigation(|url| url.scheme() == "tauri" || url.host_str() == Some("tauri.localhost"))
        .build()
}

/// Shows, un-minimises and focuses the main window (tray Show, a second launch).
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    let Some(window) = app.get_webview_window(MAIN) else {
        return;
    };
    let shown = window
        .unminimize()
        .and_then(|()| window.show())
        .and_then(|()| window.set_focus());
    if let Err(error) = shown {
        tracing::warn!(%error, "cannot show the window");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> Url {
        Url::parse(raw).expect("test URL")
    }

    #[test]
    fn panel_stays_on_the_server_origin() {
        let server = url("http://127.0.0.1:8000/");
        for ok in [
            "http://127.0.0.1:8000/?token=abc",
            "http://127.0.0.1:8000/overlay?token=abc",
            "tauri://localhost/failed.html",
            "http://tauri.localhost/failed.html",
        ] {
            assert!(navigation_allowed(&url(ok), &server), "{ok} is ours");
        }
        for bad in [
            "http://127.0.0.1:8001/",
            "http://localhost:8000/",
            "https://127.0.0.1:8000/",
            "https://evil.example/",
            "file:///etc/passwd",
        ] {
            assert!(
                !navigation_allowed(&url(bad), &server),
                "{bad} would give another page the window (and its IPC)"
            );
        }
    }

    #[test]
    fn failure_page_carries_text_safely() {
        let failure = StartupFailure {
            code: "port_in_use",
            message: "127.0.0.1:8000 is already in use & <b>busy</b>".to_owned(),
            hint: "Use --bind".to_owned(),
        };
        let path = failure.page_path();
        assert!(path.starts_with("failed.html?code=port_in_use&"), "{path}");
        assert!(
            !path.contains('<') && !path.contains(" &"),
            "the message is percent-encoded, never raw markup: {path}"
        );
        let parsed = url("tauri://localhost/").join(&path).expect("joins");
        let message = parsed
            .query_pairs()
            .find(|(key, _)| key == "message")
            .map(|(_, value)| value.into_owned());
        assert_eq!(
            message.as_deref(),
            Some(failure.message.as_str()),
            "round-trips"
        );
    }
}
