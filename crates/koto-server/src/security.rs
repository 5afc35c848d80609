//! Localhost hardening (CONTRACTS §3, ADR §9): access token, `Origin` allow-list (no
//! cross-site WebSocket hijacking) and `Host` check (no DNS rebinding), as one middleware.
//!
//! `/health` and `/ready` need no token (monitoring), nor do the UI's static pages (see
//! [`is_public`]); they still pass the Host/Origin checks.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use koto_protocol::ErrorCode;
use rand::Rng;

use crate::config::Secret;
use crate::error::AppError;

#[derive(Debug)]
pub struct SecurityPolicy {
    token: Secret,
    allowed_origins: Vec<String>,
    /// Host names besides the loopback ones (the bind address when bound beyond loopback).
    extra_hosts: Vec<String>,
}

/// Paths anyone on the machine may read without the token.
const PUBLIC_PATHS: &[&str] = &["/health", "/ready"];

/// Whether a request needs no token: `/health`, `/ready`, and GET/HEAD of the UI's static pages
/// and assets (`/`, `/overlay`, `/ui/…`). Those hold no secret; the page reads the token from
/// its own URL for the API and WebSocket calls, which keep requiring it.
pub fn is_public(method: &Method, path: &str) -> bool {
    if PUBLIC_PATHS.contains(&path) {
        return true;
    }
    let static_file = path == "/"
        || path == "/overlay"
        // No dot segments or escapes: the router does not normalise them, so a public prefix
        // must never be able to name another route.
        || (path.starts_with("/ui/") && !path.contains("..") && !path.contains('%'));
    static_file && (*method == Method::GET || *method == Method::HEAD)
}

impl SecurityPolicy {
    pub fn new(token: Secret, bound: SocketAddr, extra_origins: &[String]) -> Self {
        let port = bound.port();
        let mut allowed_origins: Vec<String> = [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
            // The Tauri webview's own origins (Linux/macOS, and Windows).
            "tauri://localhost".to_owned(),
            "http://tauri.localhost".to_owned(),
            "https://tauri.localhost".to_owned(),
        ]
        .into();
        allowed_origins.extend(extra_origins.iter().cloned());
        let mut extra_hosts = Vec::new();
        if !bound.ip().is_loopback() && !bound.ip().is_unspecified() {
            extra_hosts.push(bound.ip().to_string());
            allowed_origins.push(format!("http://{}", bound));
        }
        SecurityPolicy {
            token,
            allowed_origins,
            extra_hosts,
        }
    }

    pub fn token(&self) -> &Secret {
        &self.token
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        matches!(name, "localhost" | "127.0.0.1" | "::1" | "tauri.localhost")
            || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self.extra_hosts.iter().any(|extra| extra == name)
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    /// `Authorization: Bearer <token>` or `?token=<token>` (WebSockets and OBS cannot set headers).
    pub fn token_ok(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let from_query = query.and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(percent_decode_token)
        });
        let expected = self.token.expose().as_bytes();
        from_header.is_some_and(|given| constant_time_eq(given.as_bytes(), expected))
            || from_query.is_some_and(|given| constant_time_eq(given.as_bytes(), expected))
    }
}

/// Strips the port from a `Host` value (`[::1]:8000` → `::1`, `localhost:8000` → `localhost`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Tokens are hex or URL-safe; only `%XX` escapes need undoing.
fn percent_decode_token(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok());
        if bytes[i] == b'%'
            && let Some(Ok(byte)) = escaped.map(|hex| u8::from_str_radix(hex, 16))
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

pub async fn guard(
    State(policy): State<Arc<SecurityPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        });
    match host {
        Some(host) if policy.host_allowed(&host) => {}
        _ => {
            return AppError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenHost,
                "Host must be a loopback name (127.0.0.1, localhost, [::1])",
            )
            .into_response();
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| policy.origin_allowed(origin));
        if !allowed {
            return AppError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenOrigin,
                "this Origin may not call Kotodama (add it to KOTODAMA_ALLOWED_ORIGINS to allow it)",
            )
            .into_response();
        }
    }
    let public = is_public(request.method(), request.uri().path());
    if !public && !policy.token_ok(headers, request.uri().query()) {
        return AppError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong access token (Authorization: Bearer <token> or ?token=<token>)",
        )
        .into_response();
    }
    next.run(request).await
}

/// The configured token, or the one kept in `<data_dir>/token`, created (mode 0600) on first run.
pub fn load_or_create_token(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> std::io::Result<Secret> {
    if let Some(token) = configured {
        return Ok(token.clone());
    }
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 16 => return Ok(Secret::new(existing.trim())),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "token file is too short; writing a new token")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 24] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &token)?;
    Ok(Secret::new(token))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SecurityPolicy {
        SecurityPolicy::new(
            Secret::new("0123456789abcdef"),
            "127.0.0.1:8000".parse().expect("addr"),
            &[],
        )
    }

    #[test]
    fn only_loopback_hosts_pass() {
        let policy = policy();
        for ok in [
            "127.0.0.1:8000",
            "localhost:8000",
            "localhost",
            "[::1]:8000",
            "127.0.0.2",
        ] {
            assert!(policy.host_allowed(ok), "{ok} is loopback");
        }
        for bad in [
            "evil.example:8000",
            "192.168.1.2:8000",
            "localhost.evil.example",
            "",
        ] {
            assert!(!policy.host_allowed(bad), "{bad} would allow DNS rebinding");
        }
    }

    #[test]
    fn only_own_origins_pass() {
        let policy = policy();
        assert!(policy.origin_allowed("http://127.0.0.1:8000"));
        assert!(policy.origin_allowed("http://localhost:8000/"));
        assert!(policy.origin_allowed("tauri://localhost"));
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "http://localhost",
        ] {
            assert!(!policy.origin_allowed(bad), "{bad} is not ours");
        }
    }

    #[test]
    fn token_from_header_or_query() {
        let policy = policy();
        let mut headers = HeaderMap::new();
        assert!(!policy.token_ok(&headers, None), "no token, no entry");
        assert!(policy.token_ok(&headers, Some("a=1&token=0123456789abcdef")));
        assert!(!policy.token_ok(&headers, Some("token=0123456789abcdeX")));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().expect("header"),
        );
        assert!(policy.token_ok(&headers, None));
    }

    #[test]
    fn only_health_and_static_ui_files_skip_the_token() {
        for (method, path) in [
            (Method::GET, "/health"),
            (Method::GET, "/ready"),
            (Method::GET, "/"),
            (Method::HEAD, "/"),
            (Method::GET, "/overlay"),
            (Method::GET, "/ui/js/panel.js"),
        ] {
            assert!(is_public(&method, path), "{method} {path} is public");
        }
        for (method, path) in [
            (Method::POST, "/"),
            (Method::PUT, "/ui/js/panel.js"),
            (Method::GET, "/settings"),
            (Method::PUT, "/settings"),
            (Method::GET, "/ws/live"),
            (Method::GET, "/stats"),
            (Method::GET, "/metrics"),
            (Method::POST, "/chat/stream"),
            (Method::GET, "/overlay/x"),
            (Method::GET, "/uix"),
            (Method::GET, "/ui/../settings"),
            (Method::GET, "/ui/%2e%2e/settings"),
        ] {
            assert!(
                !is_public(&method, path),
                "{method} {path} must need the token"
            );
        }
    }

    #[test]
    fn generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_token(None, dir.path()).expect("created");
        let second = load_or_create_token(None, dir.path()).expect("read back");
        assert_eq!(first, second, "one token per install");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("token"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "token readable by its owner only");
        }
    }
}
