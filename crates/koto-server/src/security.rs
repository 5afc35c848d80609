//! Localhost hardening (CONTRACTS §3, ADR §9): access token, `Origin` allow-list (no
//! cross-site WebSocket hijacking) and `Host` check (no DNS rebinding), as one middleware —
//! which also answers CORS for the allowed origins and puts a read deadline on request bodies.
//!
//! `/health` and `/ready` need no token (monitoring), nor do the UI's static pages (see
//! [`is_public`]); they still pass the Host/Origin checks.
//!
//! CORS: a listed origin's preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//! answered 204 without the token (a browser never sends credentials on a preflight), and every
//! response to a listed origin carries `Access-Control-Allow-Origin: <origin>` and
//! `Vary: Origin`. Any other origin gets no CORS header and stays refused (403).
//!
//! The original front end (CONTRACTS §4) cannot send the token: a request to `/ws/input` or
//! `/ws/output/{id}` whose `Origin` is in the legacy list needs none (see
//! [`SecurityPolicy::legacy_exempt`]). Only those two paths, only with that header.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
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
    /// Origins that may open the original front end's two sockets without the token.
    legacy_origins: Vec<String>,
    /// The whole request body must arrive within this (`BODY_READ_TIMEOUT`).
    body_timeout: Duration,
}

/// What a preflight may ask for: the methods and headers the API uses.
const CORS_METHODS: &str = "GET, HEAD, POST, PUT, OPTIONS";
const CORS_HEADERS: &str = "authorization, content-type";
/// Response headers a page may read besides the CORS-safelisted ones.
const CORS_EXPOSE: &str = "retry-after";
/// How long a browser may cache a preflight answer, in seconds.
const CORS_MAX_AGE: &str = "600";

/// Default for `BODY_READ_TIMEOUT`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

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
            legacy_origins: Vec::new(),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Origins that may use `/ws/input` and `/ws/output/{id}` without the token.
    pub fn with_legacy_origins(mut self, origins: &[String]) -> Self {
        self.legacy_origins = origins
            .iter()
            .map(|origin| origin.trim_end_matches('/').to_owned())
            .collect();
        self
    }

    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Whether this request may skip the token as the original front end: a GET of one of its
    /// two sockets from an origin in the legacy list. A request without `Origin` (not a
    /// browser) never qualifies.
    pub fn legacy_exempt(&self, method: &Method, path: &str, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        *method == Method::GET
            && is_legacy_socket(path)
            && self
                .legacy_origins
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(origin))
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

/// `/ws/input` or `/ws/output/<one segment>` (the route checks that the segment is a UUID).
fn is_legacy_socket(path: &str) -> bool {
    path == "/ws/input"
        || path.strip_prefix("/ws/output/").is_some_and(|id| {
            !id.is_empty() && !id.contains('/') && !id.contains('%') && !id.contains("..")
        })
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
    let path = request.uri().path();
    let origin = match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(origin)) => Some(origin),
        Some(Err(_)) => return forbidden_origin(),
    };
    // `cors_origin`: a listed origin, echoed in Access-Control-Allow-Origin.
    let cors_origin = origin
        .filter(|origin| policy.origin_allowed(origin))
        .and_then(|origin| HeaderValue::from_str(origin).ok());
    let legacy = policy.legacy_exempt(request.method(), path, origin);
    if origin.is_some() && cors_origin.is_none() && !legacy {
        return forbidden_origin();
    }
    if let Some(allowed) = &cors_origin
        && request.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(allowed.clone());
    }
    let public = is_public(request.method(), path);
    if !public && !legacy && !policy.token_ok(headers, request.uri().query()) {
        let refused = AppError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong access token (Authorization: Bearer <token> or ?token=<token>)",
        )
        .into_response();
        return with_cors(refused, cors_origin);
    }
    let request = crate::routes::with_read_deadline(request, policy.body_timeout);
    with_cors(next.run(request).await, cors_origin)
}

fn forbidden_origin() -> Response {
    AppError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::ForbiddenOrigin,
        "this Origin may not call Kotodama (add it to KOTODAMA_ALLOWED_ORIGINS to allow it)",
    )
    .into_response()
}

/// 204 to a listed origin's preflight: no token is needed to learn what may be asked.
fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE),
    );
    with_cors(response, Some(origin))
}

/// Adds `Access-Control-Allow-Origin` for a listed origin; `Vary: Origin` either way for one.
fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSE),
        );
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
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
    crate::platform::write_owner_only(&path, token.as_bytes())?;
    Ok(Secret::new(token))
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
    fn legacy_origins_skip_the_token_on_the_two_legacy_sockets_only() {
        let policy = policy().with_legacy_origins(&["http://localhost:3000/".to_owned()]);
        let origin = Some("http://localhost:3000");
        let task = "/ws/output/3f0e4b1c-93a4-4f59-9d1e-2c1f9f0f5b6e";
        assert!(policy.legacy_exempt(&Method::GET, "/ws/input", origin));
        assert!(policy.legacy_exempt(&Method::GET, task, origin));
        assert!(
            policy.legacy_exempt(&Method::GET, "/ws/input", Some("HTTP://LOCALHOST:3000")),
            "origins compare case-insensitively"
        );
        for (method, path, origin) in [
            (Method::GET, "/ws/input", None),
            (Method::GET, "/ws/input", Some("http://localhost:3001")),
            (Method::GET, "/ws/input", Some("http://evil.example")),
            (Method::POST, "/ws/input", origin),
            (Method::GET, "/ws/live", origin),
            (Method::GET, "/ws/ingest", origin),
            (Method::GET, "/ws/output/", origin),
            (Method::GET, "/ws/output/a/b", origin),
            (Method::GET, "/ws/output/..%2f..%2fsettings", origin),
            (Method::GET, "/settings", origin),
            (Method::POST, "/chat/stream", origin),
        ] {
            assert!(
                !policy.legacy_exempt(&method, path, origin),
                "{method} {path} from {origin:?} needs the token"
            );
        }
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
            (Method::GET, "/diagnostics"),
            (Method::POST, "/diagnostics/open-logs"),
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
