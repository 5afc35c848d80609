//! The axum app (routes, auth, limits) and its start-up: everything `kotodama serve` and the
//! desktop shell run, on one tokio runtime.
//!
//! Architecture invariant: handlers are thin adapters over `koto_engine::Engine`; every route
//! sits behind `security::guard`, and all but `/health`, `/ready` and the UI's static files
//! (`security::is_public`) need the token.

#[cfg(feature = "bench")]
pub mod bench;
pub mod chains;
pub mod chat_sources;
pub mod config;
pub mod error;
pub mod header_deadline;
pub mod live_asr;
pub mod live_chat;
pub mod live_settings;
pub mod logging;
pub mod persona;
pub mod platform;
pub mod providers;
pub mod rate_limit;
pub mod recovery;
pub mod routes;
pub mod scraped_metrics;
pub mod security;
pub mod server;
pub mod settings_words;
pub mod socket_limit;
pub mod voice;
pub mod vts;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use koto_core::SessionId;
use koto_engine::Engine;
use koto_events::EventsHandle;
use koto_protocol::ErrorCode;

use crate::error::AppError;
use crate::rate_limit::RateLimiter;
use crate::security::SecurityPolicy;

pub use server::{RunningServer, StartError, start, start_with, start_with_voice};

/// What every handler gets. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub security: Arc<SecurityPolicy>,
    pub limiter: Arc<RateLimiter>,
    pub max_body_bytes: usize,
    pub started: Instant,
    pub events: Arc<EventsHandle>,
    /// The relay's and the chains' metrics, mirrored into the one registry at each scrape.
    pub scraped_metrics: Arc<scraped_metrics::ScrapedMetrics>,
    /// The settings file and the raw configuration the app started with (`/settings`).
    pub settings: Arc<routes::settings::Settings>,
    /// Bounds of the original front end's protocol (`legacy_*` keys).
    pub legacy: routes::legacy::LegacyLimits,
    /// Voice input: the ASR provider (if any) and the bounds of an uploaded file.
    pub asr: routes::audio::Asr,
    /// The live chat adapters (their statuses are on `/health`).
    pub chat_sources: chat_sources::ChatSources,
    /// The microphone (`MIC_MODE`, push-to-talk, `/health`'s `mic`).
    pub voice: Arc<voice::VoiceIn>,
    /// Live chat: the intake, the scored queue and its driver (`/chat/*`, `/ws/chat`).
    pub live_chat: live_chat::LiveChat,
    /// VTube Studio's mouth (`VTS_URL`); `None` when off.
    pub vts: Option<vts::VtsLink>,
    /// `MAX_SESSIONS`: sessions with turns in flight at once (checked with the rate).
    pub max_sessions: usize,
    /// `MAX_LIVE_CLIENTS` (`/ws/live`) and `MAX_SOCKETS` (every other WebSocket).
    pub live_clients: socket_limit::SocketLimit,
    pub sockets: socket_limit::SocketLimit,
}

impl AppState {
    /// An input may start a turn: the session's and the app's rate (`rate_limit`), and a new
    /// session only while fewer than `MAX_SESSIONS` have turns in flight. The session count is
    /// read before the turn is submitted, so inputs for new sessions arriving together may pass
    /// it together; the global bucket bounds how many.
    pub(crate) fn check_rate(&self, session: &SessionId) -> Result<(), AppError> {
        let too_many = |message: String, wait_secs: u64| {
            let mut error = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
            );
            error.retry_after_secs = Some(wait_secs.max(1));
            error
        };
        let in_flight = self.engine.turns_in_flight();
        if in_flight.len() >= self.max_sessions && !in_flight.iter().any(|(id, _)| id == session) {
            return Err(too_many(
                format!(
                    "too many sessions are answering at once (MAX_SESSIONS = {}); try again when one ends",
                    self.max_sessions
                ),
                1,
            ));
        }
        self.limiter
            .check(session, Instant::now())
            .map_err(|refused| {
                let message = match refused.scope {
                    rate_limit::Scope::Session => "too many inputs for this session; slow down",
                    rate_limit::Scope::Global => {
                        "too many inputs at once across all sessions (INPUT_GLOBAL_RATE_PER_SEC, INPUT_GLOBAL_BURST); slow down"
                    }
                };
                too_many(message.to_owned(), refused.wait.as_secs())
            })
    }
}

/// The whole HTTP surface, apart from `main` so tests can drive it.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/chat/stream", post(routes::chat::chat_stream))
        .route("/chat/audio", post(routes::audio::chat_audio))
        .route("/chat/audio/stream", post(routes::audio::chat_audio_stream))
        .route("/control/stop", post(routes::control::stop))
        .route("/tts/speak", post(routes::speak::speak))
        .route("/ws/ingest", get(routes::ws::ingest))
        .route("/ws/ingest/tts", get(routes::ws::ingest))
        .route("/ws/live", get(routes::ws::live))
        .merge(routes::legacy::router_with(state.legacy.clone()))
        .route("/desktop", get(routes::desktop::status))
        .route("/settings/test/llm", post(routes::setup::test_llm))
        .route("/voices", get(routes::setup::voices))
        .route("/personas", get(routes::setup::personas))
        .route(
            "/personas/{id}",
            axum::routing::put(routes::setup::save_persona),
        )
        .route("/health", get(routes::health::health))
        .route("/voice", get(routes::voice::status))
        .route("/voice/devices", get(routes::voice::devices))
        .route("/voice/ptt", post(routes::voice::ptt))
        .route("/voice/mode", post(routes::voice::mode))
        .route("/ready", get(routes::health::ready))
        .route("/stats", get(routes::stats::stats))
        .route("/diagnostics", get(routes::diagnostics::diagnostics))
        .route(
            "/diagnostics/open-logs",
            post(routes::diagnostics::open_logs),
        )
        .route("/sessions", get(routes::history::sessions))
        .route(
            "/sessions/{session_id}/history",
            get(routes::history::history),
        )
        .route("/metrics", get(routes::stats::metrics))
        .merge(routes::chat_in::router())
        .route("/", get(routes::ui::panel))
        .route("/overlay", get(routes::ui::overlay))
        .route("/ui/{*path}", get(routes::ui::asset))
        .route(
            "/settings",
            get(routes::settings::get_settings).put(routes::settings::put_settings),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.security.clone(),
            security::guard,
        ))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "method not allowed on this route",
    )
}
