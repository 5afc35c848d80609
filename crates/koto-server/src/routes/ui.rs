//! The web UI: `GET /` (control panel), `GET /overlay` (OBS overlay) and `GET /ui/*` (their
//! scripts and styles), embedded in the binary from the repository's `ui/` directory.
//!
//! These pages hold no secret and load without the token (the security guard lets them
//! through); the page takes the token from its own URL for every API and WebSocket call. No
//! templating: the files are served byte for byte, so what is in `ui/` is what runs.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use koto_protocol::ErrorCode;

use crate::error::AppError;

/// Strict: scripts and styles only from this origin (no inline code), connections only back
/// to this app (HTTP and its WebSockets on loopback), nothing framed or posted elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; media-src 'self' blob:; \
     connect-src 'self' ws://127.0.0.1:* ws://localhost:*; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The overlay may be framed by the app's own pages (a preview in the panel), nothing else.
const OVERLAY_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; media-src 'self' blob:; \
     connect-src 'self' ws://127.0.0.1:* ws://localhost:*; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// One embedded file: its path under `ui/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../../../ui/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of `ui/` (a test checks that none is missing).
static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("overlay.html", HTML),
    asset!("icon.svg", "image/svg+xml"),
    asset!("css/panel.css", CSS),
    asset!("css/overlay.css", CSS),
    asset!("js/api.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/help.js", JS),
    asset!("js/live.js", JS),
    asset!("js/mic.js", JS),
    asset!("js/overlay.js", JS),
    asset!("js/overlay_setup.js", JS),
    asset!("js/panel.js", JS),
    asset!("js/player.js", JS),
    asset!("js/sessions.js", JS),
    asset!("js/settings.js", JS),
    asset!("js/setup.js", JS),
    asset!("js/status.js", JS),
    asset!("js/token.js", JS),
    asset!("js/transcript.js", JS),
    asset!("js/veto.js", JS),
];

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn serve(asset: &Asset, csp: &'static str) -> Response {
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Always revalidate: after an upgrade the embedded files change under the same URLs.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The pages' URLs carry the token: never send them on as a Referer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn page(path: &str, csp: &'static str) -> Response {
    match find(path) {
        Some(asset) => serve(asset, csp),
        None => missing().into_response(),
    }
}

fn missing() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such file")
}

/// `GET /`: the control panel.
pub async fn panel() -> Response {
    page("index.html", CSP)
}

/// `GET /overlay`: the OBS overlay.
pub async fn overlay() -> Response {
    page("overlay.html", OVERLAY_CSP)
}

/// `GET /ui/{*path}`: a script, style or icon.
pub async fn asset(Path(path): Path<String>) -> Response {
    match find(&path) {
        Some(asset) => serve(asset, CSP),
        None => missing().into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every file of `ui/` must be embedded, or the page that loads it breaks only at run time.
    #[test]
    fn every_ui_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(&root).unwrap();
                    files.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        for file in &files {
            assert!(
                find(file).is_some(),
                "ui/{file} is not in ASSETS (routes/ui.rs): add it"
            );
        }
        assert_eq!(files.len(), ASSETS.len(), "no stale entries in ASSETS");
    }

    #[test]
    fn content_types_follow_the_extension() {
        for asset in ASSETS {
            let expected = match asset.path.rsplit('.').next() {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => "image/svg+xml",
                other => panic!("unexpected extension {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    #[test]
    fn pages_load_no_inline_code() {
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".html")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            assert!(
                !text.contains("<script>") && !text.contains("style=") && !text.contains("<style"),
                "{}: the CSP forbids inline scripts and styles",
                asset.path
            );
        }
    }
}
