//! The windows: the control panel (the server's own UI at `http://127.0.0.1:<port>/`, loaded
//! with the token) and, when start-up fails, a local page that says why. No UI lives here.
//!
//! Security: the panel window may only navigate within the server's origin (and the app's own
//! pages), and only that origin gets IPC, limited to the app's two commands (a capability built
//! at start-up for the exact port). A link to anywhere else is refused, never opened in-app.

use koto_server::recovery::{self, StartProblem};
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

/// Why the app could not start, as shown on the failure page (koto-server words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupFailure(pub StartProblem);

/// A button of the failure page: a way back to settings that start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WayBack {
    /// "Start with defaults": the settings file is set aside.
    Defaults,
    /// "Restore the last working settings".
    LastGood,
}

impl StartupFailure {
    /// `failed.html?code=…&message=…&hint=…[&key=…][&file=…][&reset=1][&restore=1]`, relative
    /// to the app's pages.
    pub fn page_path(&self) -> String {
        let problem = &self.0;
        let mut query = Url::parse("tauri://localhost/failed.html").expect("a constant URL parses");
        {
            let mut pairs = query.query_pairs_mut();
            pairs
                .append_pair("code", problem.code)
                .append_pair("message", &problem.message)
                .append_pair("hint", &problem.hint);
            if let Some(key) = &problem.key {
                pairs.append_pair("key", key);
            }
            if let Some(file) = &problem.file {
                pairs.append_pair("file", &file.to_string_lossy());
            }
            if problem.can_reset {
                pairs.append_pair("reset", "1");
            }
            if problem.can_restore {
                pairs.append_pair("restore", "1");
            }
        }
        format!("failed.html?{}", query.query().unwrap_or_default())
    }
}

/// The way back a failure-page link asks for (`failed.html?action=defaults|last-good`), if any.
pub fn way_back(url: &Url) -> Option<WayBack> {
    let own_page = url.scheme() == "tauri" || url.host_str() == Some("tauri.localhost");
    if !own_page || !url.path().ends_with("/failed.html") {
        return None;
    }
    match url
        .query_pairs()
        .find(|(name, _)| name == "action")?
        .1
        .as_ref()
    {
        "defaults" => Some(WayBack::Defaults),
        "last-good" => Some(WayBack::LastGood),
        _ => None,
    }
}

/// Opens the failure page in the main window (same label and title, so a second launch focuses
/// it). Its two buttons are links the window catches: the way back runs (koto-server's
/// `recovery`), then the app relaunches with the same flags; if it cannot, the page says why.
pub fn open_failure<R: Runtime>(
    app: &AppHandle<R>,
    failure: &StartupFailure,
) -> tauri::Result<WebviewWindow<R>> {
    let handle = app.clone();
    let settings_file = failure.0.settings_file.clone();
    WebviewWindowBuilder::new(app, MAIN, WebviewUrl::App(failure.page_path().into()))
        .title(format!("{TITLE}: could not start"))
        .inner_size(760.0, 560.0)
        .on_navigation(move |url| {
            let Some(way) = way_back(url) else {
                return url.scheme() == "tauri" || url.host_str() == Some("tauri.localhost");
            };
            take_way_back(&handle, way, settings_file.as_deref());
            false
        })
        .build()
}

fn take_way_back<R: Runtime>(
    app: &AppHandle<R>,
    way: WayBack,
    settings_file: Option<&std::path::Path>,
) {
    let outcome = match settings_file {
        Some(file) => match way {
            WayBack::Defaults => recovery::reset_to_defaults(file),
            WayBack::LastGood => recovery::restore_last_good(file),
        }
        .map_err(|error| error.to_string()),
        None => Err("Kotodama cannot tell where its settings file is.".to_owned()),
    };
    match outcome {
        Ok(recovered) => {
            tracing::info!(message = %recovered.message, "relaunching");
            let app = app.clone();
            // `restart` releases the single-instance lock first when it runs on the main thread.
            let relaunch = app.clone();
            if let Err(error) = app.run_on_main_thread(move || relaunch.restart()) {
                tracing::error!(%error, "cannot relaunch; start Kotodama again");
            }
        }
        Err(message) => {
            tracing::error!(%message, "the way back failed");
            let failure = StartupFailure(StartProblem {
                code: "recovery_failed",
                message,
                key: None,
                file: settings_file.map(std::path::Path::to_owned),
                hint: "Close this window, fix the file by hand, and start Kotodama again."
                    .to_owned(),
                settings_file: None,
                can_reset: false,
                can_restore: false,
            });
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let page = format!("tauri://localhost/{}", failure.page_path());
                if let (Some(window), Ok(url)) = (app.get_webview_window(MAIN), Url::parse(&page))
                    && let Err(error) = window.navigate(url)
                {
                    tracing::error!(%error, "cannot show why the way back failed");
                }
            });
        }
    }
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

    fn problem(message: &str) -> StartProblem {
        StartProblem {
            code: "port_in_use",
            message: message.to_owned(),
            key: Some("bind".to_owned()),
            file: Some("/data/kotodama.toml".into()),
            hint: "Use --bind".to_owned(),
            settings_file: Some("/data/kotodama.toml".into()),
            can_reset: true,
            can_restore: false,
        }
    }

    #[test]
    fn failure_page_carries_text_safely() {
        let failure = StartupFailure(problem("127.0.0.1:8000 is already in use & <b>busy</b>"));
        let path = failure.page_path();
        assert!(path.starts_with("failed.html?code=port_in_use&"), "{path}");
        assert!(
            !path.contains('<') && !path.contains(" &"),
            "the message is percent-encoded, never raw markup: {path}"
        );
        let parsed = url("tauri://localhost/").join(&path).expect("joins");
        let field = |name: &str| {
            parsed
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        assert_eq!(
            field("message").as_deref(),
            Some(failure.0.message.as_str()),
            "round-trips"
        );
        assert_eq!(field("key").as_deref(), Some("bind"), "the key is named");
        assert_eq!(
            field("file").as_deref(),
            Some("/data/kotodama.toml"),
            "and the file"
        );
        assert_eq!(field("reset").as_deref(), Some("1"), "defaults are offered");
        assert_eq!(
            field("restore"),
            None,
            "no last-good copy: no restore button"
        );
    }

    #[test]
    fn the_failure_pages_links_are_ways_back_and_nothing_else_is() {
        for (link, way) in [
            (
                "tauri://localhost/failed.html?action=defaults",
                Some(WayBack::Defaults),
            ),
            (
                "http://tauri.localhost/failed.html?action=last-good",
                Some(WayBack::LastGood),
            ),
            ("tauri://localhost/failed.html?action=format-disk", None),
            ("tauri://localhost/failed.html?code=x", None),
            ("http://127.0.0.1:8000/failed.html?action=defaults", None),
        ] {
            assert_eq!(way_back(&url(link)), way, "{link}");
        }
    }
}
