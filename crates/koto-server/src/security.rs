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
//!
//! The token kept in `<data_dir>/token` is re-read when the file changes (`kotodama token
//! rotate` replaces it atomically), so a rotation takes effect on the next request without a
//! restart; a token set by `KOTODAMA_TOKEN` is fixed for the process's life. Sockets already
//! open stay open: a rotation refuses new requests, it does not cut old connections.
//!
//! Bodies: a declared `Content-Length` over the route's limit is refused with 413 here, before
//! the handler runs or a byte of the body is read (see [`BodyLimits`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use koto_protocol::ErrorCode;
use rand::Rng;

use crate::config::Secret;
use crate::error::AppError;
use crate::live_asr::LiveAsr;

#[derive(Debug)]
pub struct SecurityPolicy {
    token: TokenSource,
    allowed_origins: Vec<String>,
    /// Host names besides the loopback ones (the bind address when bound beyond loopback).
    extra_hosts: Vec<String>,
    /// Origins that may open the original front end's two sockets without the token.
    legacy_origins: Vec<String>,
    /// The whole request body must arrive within this (`BODY_READ_TIMEOUT`).
    body_timeout: Duration,
    /// The largest body each route takes, checked against `Content-Length` up front.
    body_limits: BodyLimits,
    /// When set, the upload routes' limit follows the running app's saved
    /// `ASR_MAX_UPLOAD_BYTES` instead of `body_limits.uploads`.
    live_uploads: Option<Arc<LiveAsr>>,
}

/// The largest request body a route reads: `MAX_BODY_BYTES` everywhere, the audio upload
/// routes their own (`ASR_MAX_UPLOAD_BYTES` plus a form's overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub default: usize,
    pub uploads: usize,
}

/// The routes that take an audio file as their body.
const UPLOAD_PATHS: &[&str] = &["/chat/audio", "/chat/audio/stream"];

impl BodyLimits {
    /// What `path` may be sent: the handlers' own reads stop at the same number, so a body
    /// without `Content-Length` (chunked) is cut there too.
    pub fn for_path(&self, path: &str) -> usize {
        if UPLOAD_PATHS.contains(&path) {
            self.uploads.max(self.default)
        } else {
            self.default
        }
    }
}

/// Where the expected token comes from.
#[derive(Debug)]
enum TokenSource {
    /// Set by config (`KOTODAMA_TOKEN`) or by a test: never changes.
    Fixed(Secret),
    /// `<data_dir>/token`: re-read when the file's stamp changes.
    File {
        path: PathBuf,
        current: Mutex<(Option<FileStamp>, Secret)>,
    },
}

/// What tells a replaced token file from the one read: a rename gives a new inode, a rewrite
/// a new modification time or length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&metadata),
        })
    }
}

impl TokenSource {
    /// The token requests are checked against now.
    fn current(&self) -> Secret {
        match self {
            TokenSource::Fixed(token) => token.clone(),
            TokenSource::File { path, current } => {
                // Plain data inside; a poisoned lock still holds a whole token.
                let mut current = current
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let stamp = FileStamp::of(path);
                if stamp.is_some() && stamp != current.0 {
                    // A missing, unreadable or too short file keeps the token in use: a broken
                    // rotation must not lock the streamer out, nor let anyone in.
                    match read_token_file(path) {
                        Some(token) => {
                            if token != current.1 {
                                tracing::info!(path = %path.display(), "the token file changed: using the new token");
                            }
                            *current = (stamp, token);
                        }
                        None => {
                            tracing::warn!(path = %path.display(), "the token file is unreadable or too short: keeping the token in use");
                        }
                    }
                }
                current.1.clone()
            }
        }
    }
}

/// The shortest token a file may hold (as `KOTODAMA_TOKEN`'s own check).
const MIN_TOKEN_CHARS: usize = 16;

fn read_token_file(path: &Path) -> Option<Secret> {
    let text = std::fs::read_to_string(path).ok()?;
    let token = text.trim();
    (token.len() >= MIN_TOKEN_CHARS).then(|| Secret::new(token))
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
            token: TokenSource::Fixed(token),
            allowed_origins,
            extra_hosts,
            legacy_origins: Vec::new(),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_limits: BodyLimits {
                default: usize::MAX,
                uploads: usize::MAX,
            },
            live_uploads: None,
        }
    }

    /// Checks requests against the token kept in `path` (read at start as the given token),
    /// re-read whenever the file is replaced (`kotodama token rotate`).
    pub fn with_token_file(mut self, path: &Path) -> Self {
        let started_with = self.token.current();
        self.token = TokenSource::File {
            path: path.to_owned(),
            current: Mutex::new((FileStamp::of(path), started_with)),
        };
        self
    }

    pub fn with_body_limits(mut self, limits: BodyLimits) -> Self {
        self.body_limits = limits;
        self
    }

    /// Upload routes are limited by `asr`'s bounds as they are at each request, so a saved
    /// `ASR_MAX_UPLOAD_BYTES` (higher or lower) is the guard's limit at once, as the handler's.
    pub fn with_live_uploads(mut self, asr: Arc<LiveAsr>) -> Self {
        self.live_uploads = Some(asr);
        self
    }

    /// The largest body `path` takes now.
    fn body_limit(&self, path: &str) -> usize {
        let mut limits = self.body_limits;
        if let Some(asr) = &self.live_uploads {
            limits.uploads = crate::routes::audio::upload_body_limit(asr.limits().max_bytes);
        }
        limits.for_path(path)
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

    /// The token requests are checked against now (after any rotation).
    pub fn token(&self) -> Secret {
        self.token.current()
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
        let token = self.token.current();
        let expected = token.expose().as_bytes();
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
    if let Some(refused) = declared_too_large(headers, policy.body_limit(path)) {
        return with_cors(refused, cors_origin);
    }
    let request = crate::routes::with_read_deadline(request, policy.body_timeout);
    with_cors(next.run(request).await, cors_origin)
}

/// 413 for a `Content-Length` over `limit`: refused before a byte of the body is read, so an
/// oversized upload costs no memory and no wait. (A chunked body has no length; the handlers'
/// reads stop at the same limit.)
fn declared_too_large(headers: &HeaderMap, limit: usize) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if declared <= u64::try_from(limit).unwrap_or(u64::MAX) {
        return None;
    }
    let refused = AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body ({declared} bytes) is larger than this route takes ({limit} bytes; MAX_BODY_BYTES, ASR_MAX_UPLOAD_BYTES for audio)"
        ),
    );
    Some(refused.into_response())
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
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= MIN_TOKEN_CHARS => {
            return Ok(Secret::new(existing.trim()));
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "token file is too short; writing a new token")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    write_new_token(data_dir)
}

/// Where the generated token is kept.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

/// Replaces the token in `<data_dir>/token` with a new random one (atomically, owner-only);
/// a running server that uses that file takes it on its next request. Returns the file.
pub fn rotate_token(data_dir: &Path) -> std::io::Result<PathBuf> {
    write_new_token(data_dir)?;
    Ok(token_path(data_dir))
}

/// 24 random bytes as hex (48 characters), written through a temporary file and a rename, so a
/// reader sees the old token or the new one, never half of one.
fn write_new_token(data_dir: &Path) -> std::io::Result<Secret> {
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 24] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::platform::write_owner_only(&token_path(data_dir), token.as_bytes())?;
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
    fn a_non_loopback_bind_adds_only_its_own_address() {
        let policy = SecurityPolicy::new(
            Secret::new("0123456789abcdef"),
            "192.168.1.20:8000".parse().expect("addr"),
            &[],
        );
        assert!(
            policy.host_allowed("192.168.1.20:8000"),
            "the bound address"
        );
        assert!(
            policy.host_allowed("localhost:8000"),
            "loopback names still"
        );
        assert!(policy.origin_allowed("http://192.168.1.20:8000"));
        for bad in ["192.168.1.21:8000", "evil.example", "0.0.0.0"] {
            assert!(!policy.host_allowed(bad), "{bad} is not the bound address");
        }
        let unspecified = SecurityPolicy::new(
            Secret::new("0123456789abcdef"),
            "0.0.0.0:8000".parse().expect("addr"),
            &[],
        );
        assert!(
            !unspecified.host_allowed("0.0.0.0:8000") && !unspecified.host_allowed("10.0.0.5"),
            "binding everywhere adds no name: only loopback Hosts pass"
        );
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
    fn a_rotated_token_file_replaces_the_token_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_token(None, dir.path()).expect("created");
        let policy =
            SecurityPolicy::new(first.clone(), "127.0.0.1:8000".parse().expect("addr"), &[])
                .with_token_file(&token_path(dir.path()));
        let bearer = |token: &Secret| {
            let mut headers = HeaderMap::new();
            let value = format!("Bearer {}", token.expose());
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            headers
        };
        assert!(
            policy.token_ok(&bearer(&first), None),
            "the token read at start"
        );
        rotate_token(dir.path()).expect("rotated");
        let second = load_or_create_token(None, dir.path()).expect("read back");
        assert_ne!(first, second, "a rotation makes a new token");
        assert!(
            !policy.token_ok(&bearer(&first), None),
            "the old token is refused at once"
        );
        assert!(
            policy.token_ok(&bearer(&second), None),
            "the new one is accepted"
        );
        std::fs::write(token_path(dir.path()), "short").expect("broken file");
        assert!(
            policy.token_ok(&bearer(&second), None),
            "a broken file keeps the token in use"
        );
        assert!(
            !policy.token_ok(&bearer(&Secret::new("short")), None),
            "and lets no one in"
        );
    }

    #[test]
    fn a_fixed_token_ignores_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = policy();
        rotate_token(dir.path()).expect("rotated");
        assert_eq!(
            policy.token().expose(),
            "0123456789abcdef",
            "KOTODAMA_TOKEN wins"
        );
    }

    #[test]
    fn a_declared_length_over_the_route_limit_is_refused_before_reading() {
        let limits = BodyLimits {
            default: 1024,
            uploads: 4096,
        };
        let with_length = |length: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, length.parse().expect("header"));
            headers
        };
        for (path, length, refused) in [
            ("/chat/stream", "1024", false),
            ("/chat/stream", "1025", true),
            ("/settings", "10485760", true),
            ("/chat/audio", "4096", false),
            ("/chat/audio", "4097", true),
            ("/chat/audio/stream", "10485760", true),
            ("/health", "18446744073709551615", true),
        ] {
            let answer = declared_too_large(&with_length(length), limits.for_path(path));
            assert_eq!(
                answer.as_ref().map(Response::status),
                refused.then_some(StatusCode::PAYLOAD_TOO_LARGE),
                "{path} with Content-Length {length}"
            );
        }
        assert!(
            declared_too_large(&HeaderMap::new(), 1).is_none(),
            "no length: the handler's read enforces the limit"
        );
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
