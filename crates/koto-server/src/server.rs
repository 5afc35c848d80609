//! Start-up and shutdown of the whole app: data dir, token, store, providers, engine, listener.
//!
//! Shutdown order: stop accepting → cancel every turn (each records how it ended) → let open
//! responses finish → close the store. `RunningServer::shutdown` waits for all of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use koto_core::metrics::Registry;
use koto_engine::{Engine, EngineConfig, EngineParts, Flags};
use koto_events::{EventsError, EventsRuntime};
use koto_relay::{Relay, RelayConfig};
use koto_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secret};
use crate::live_settings::{DesktopSettings, LiveTargets};
use crate::providers::{ProviderSetupError, build_asr, build_llm};
use crate::rate_limit::RateLimiter;
use crate::security::{SecurityPolicy, load_or_create_token};
use crate::socket_limit::SocketLimit;
use crate::{AppState, app};

/// How long shutdown waits for turns to record their ending.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderSetupError),
    #[error("cannot start event delivery: {0}")]
    Events(#[from] EventsError),
    #[error("cannot register the metrics: {0}")]
    Metrics(#[from] koto_core::metrics::MetricsError),
    #[error(
        "{addr} is already in use: is another Kotodama running? Choose another with --bind or KOTODAMA_BIND"
    )]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub token: Secret,
    pub engine: Engine,
    pub data_dir: PathBuf,
    /// The ASR voice input uses (`ASR_PROVIDER`), for the desktop's microphone; `None` when off.
    pub asr: crate::routes::audio::Asr,
    /// Started by the chat intake with its sender (`ChatSources::start`).
    pub chat_sources: crate::chat_sources::ChatSources,
    /// The microphone (its `mic_sender` takes synthetic frames with `MicSource::Frames`).
    pub voice: Arc<crate::voice::VoiceIn>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The control panel with its token: what the ready line prints and the desktop window opens.
    pub fn panel_url(&self) -> String {
        format!(
            "{}/?token={}",
            self.base_url(),
            query_escape(self.token.expose())
        )
    }

    /// The one line `kotodama serve` and the desktop app print when they are ready (the README
    /// shows it; scripts wait for it): the clickable panel URL, the LLM and where audio plays.
    pub fn ready_line(&self, program: &str, audio: &str) -> String {
        format!(
            "{program} ready: {url}  (LLM: {llm}, audio: {audio})",
            url = self.panel_url(),
            llm = self.engine.llm().name(),
        )
    }

    /// A token that, once cancelled, shuts the server down (signal handlers, the tray's Quit).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until shut down (via [`Self::shutdown_token`]), then waits for the shutdown to finish.
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => Err(std::io::Error::other(join_error)),
        }
    }

    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts everything `kotodama serve` runs.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    start_with(config, None).await
}

/// As [`start`], for the desktop shell: `desktop` applies its saved settings (output device,
/// volume, stop hotkey) and lists the choices the settings page offers.
pub async fn start_with(
    config: Config,
    desktop: Option<Arc<dyn DesktopSettings>>,
) -> Result<RunningServer, StartError> {
    let mic = crate::voice::MicSource::Device(config.voice.device.clone());
    start_with_voice(config, desktop, None, mic).await
}

/// As [`start_with`], with the microphone's audio source given and, optionally, its own ASR
/// provider (tests feed a fake ASR and synthetic frames through [`RunningServer::voice`]);
/// `None` hears with the configured `ASR_PROVIDER`, as uploads do (off → the mic says so).
pub async fn start_with_voice(
    config: Config,
    desktop: Option<Arc<dyn DesktopSettings>>,
    mic_asr: Option<Arc<dyn koto_core::asr::AsrProvider>>,
    mic: crate::voice::MicSource,
) -> Result<RunningServer, StartError> {
    // The port first: a second instance on the same data dir must fail here, before opening the
    // store would mark the running instance's live turns abandoned.
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => StartError::PortInUse { addr: config.bind },
            _ => StartError::Bind {
                addr: config.bind,
                source,
            },
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind,
        source,
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback: anyone who can reach this address and has the token can use Kotodama");
    }

    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // After the port: a second instance that cannot start leaves the first one's file alone.
    match crate::logging::open_file(&config.log_dir) {
        Ok(path) => tracing::info!(path = %path.display(), "logging to a file"),
        Err(error) => tracing::warn!(
            dir = %config.log_dir.display(),
            %error,
            "cannot write the log file there: logs go to the console only (set KOTODAMA_LOG_DIR)"
        ),
    }
    let token = load_or_create_token(config.token.as_ref(), &data_dir).map_err(|source| {
        StartError::DataDir {
            path: data_dir.clone(),
            source,
        }
    })?;
    let db_path = data_dir.join("kotodama.sqlite3");
    let store = tokio::task::spawn_blocking(move || Store::open(&db_path))
        .await
        .map_err(|join_error| StartError::DataDir {
            path: data_dir.clone(),
            source: std::io::Error::other(join_error),
        })??;
    let llm = build_llm(&config)?;
    let asr = crate::routes::audio::Asr::new(build_asr(&config.asr)?, config.asr.limits);
    let voice = if config.sync_tts_streaming {
        let voice = crate::providers::build_speech(&config)
            .await
            .map_err(|error| ProviderSetupError::Tts {
                message: error.to_string(),
            })?;
        tracing::info!(
            provider = voice.name(),
            rate = voice.sample_rate(),
            "speech ready"
        );
        Some(voice)
    } else {
        None
    };
    let relay = Relay::new(RelayConfig {
        audio_lead: config.audio_lead,
        client_stops: config.sync_tts_barge_in,
        ..RelayConfig::default()
    });

    let registry = Registry::new();
    let scraped_metrics = Arc::new(crate::scraped_metrics::ScrapedMetrics::register(&registry)?);
    let events_shutdown = CancellationToken::new();
    let events = EventsRuntime::new(store.clone(), config.events.clone())
        .with_registry(registry.clone())
        .start(events_shutdown.clone())
        .await?;
    tracing::info!(
        mode = events.mode().as_str(),
        reason = events.mode_reason(),
        "events ready"
    );
    let events = Arc::new(events);
    let parts = EngineParts {
        llm,
        store,
        voice,
        relay: Some(relay),
        recall: Some(events.recall()),
        metrics: Some(registry.clone()),
    };
    let engine = Engine::new(engine_config(&config), parts);
    let chat_sources = crate::chat_sources::ChatSources::new(config.chat_sources.clone());
    let shutdown = CancellationToken::new();
    // The mic hears with the app's switch, so a saved ASR setting reaches it too (a test's own
    // fake ASR stays fixed).
    let mic_asr = mic_asr.unwrap_or_else(|| asr.live());
    let voice = crate::voice::VoiceIn::start(
        &config.voice,
        mic,
        engine.clone(),
        mic_asr,
        shutdown.child_token(),
    );
    let (live_chat, _chat_driver) = crate::live_chat::LiveChat::start(
        config.chat.clone(),
        engine.clone(),
        Some(&registry),
        shutdown.clone(),
    );
    // The platforms feed the same intake as the local chat API (`POST /chat/messages`).
    let adapters = chat_sources.start(live_chat.intake(), shutdown.child_token());
    if adapters > 0 {
        tracing::info!(adapters, "live chat adapters started");
    }
    let vts = crate::vts::VtsLink::start(
        &config.vts_url,
        &config.data_dir,
        engine.relay(),
        shutdown.child_token(),
    )
    .map_err(|message| ProviderSetupError::Vts { message })?;
    let state = AppState {
        vts,
        engine: engine.clone(),
        security: Arc::new(security_policy(&config, &token, addr).with_live_uploads(asr.live())),
        limiter: Arc::new(
            RateLimiter::new(config.input_rate_per_sec, config.input_burst).with_global(
                config.input_global_rate_per_sec,
                config.input_global_burst,
                Instant::now(),
            ),
        ),
        max_sessions: config.max_sessions,
        live_clients: SocketLimit::new(config.max_live_clients, "MAX_LIVE_CLIENTS"),
        sockets: SocketLimit::new(config.max_sockets, "MAX_SOCKETS"),
        max_body_bytes: config.max_body_bytes,
        legacy: config.legacy.clone(),
        asr: asr.clone(),
        chat_sources: chat_sources.clone(),
        started: Instant::now(),
        events: events.clone(),
        scraped_metrics,
        live_chat,
        settings: Arc::new(
            crate::routes::settings::Settings::new(&config.data_dir, config.raw.clone())
                .with_bound(addr)
                .with_live(LiveTargets {
                    engine: engine.clone(),
                    desktop,
                    asr: asr.live(),
                    voice: Arc::clone(&voice),
                }),
        ),
        voice: Arc::clone(&voice),
    };
    let router = app(state);
    let serve_shutdown = shutdown.clone();
    let serve_engine = engine.clone();
    let serve_events = events.clone();
    let serve_chat = chat_sources.clone();
    let header_timeout = config.body_read_timeout;
    let task = tokio::spawn(async move {
        // Without TCP_NODELAY the first SSE event after the headers waits for the client's
        // delayed ACK (~40 ms): Nagle's algorithm, measured by `kotodama bench` with D = 0.
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY");
            }
        });
        // Slow-loris on the headers: hyper has no timer here, so the listener keeps the time.
        let listener = crate::header_deadline::HeadersWithin::new(listener, header_timeout);
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                serve_shutdown.cancelled().await;
                // No new chat while the turns end.
                serve_chat.shutdown().await;
                tracing::info!("shutting down: cancelling turns");
                serve_engine.shutdown(SHUTDOWN_GRACE).await;
            })
            .await;
        // Turns have recorded their endings; now the relay and workers finish what is in hand.
        events_shutdown.cancel();
        serve_events.wait().await;
        served
    });
    // Everything started: what the settings file holds is the last working configuration (the
    // failure page's "restore"). Never fails the start: a read-only data dir only loses that.
    let settings_file = config.data_dir.join(crate::config::SETTINGS_FILE);
    match tokio::task::spawn_blocking(move || crate::recovery::record_last_good(&settings_file))
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the last working settings were not kept"),
        Err(error) => tracing::warn!(%error, "the last working settings were not kept"),
    }
    Ok(RunningServer {
        addr,
        token,
        engine,
        data_dir: config.data_dir.clone(),
        asr,
        chat_sources,
        voice,
        shutdown,
        task,
    })
}

/// The guard's policy: origins, the token (re-read from its file after a rotation unless
/// `KOTODAMA_TOKEN` fixes it) and each route's body limit.
fn security_policy(config: &Config, token: &Secret, addr: SocketAddr) -> SecurityPolicy {
    let policy = SecurityPolicy::new(token.clone(), addr, &config.allowed_origins)
        .with_legacy_origins(&config.legacy_origins)
        .with_body_timeout(config.body_read_timeout)
        .with_body_limits(crate::security::BodyLimits {
            default: config.max_body_bytes,
            uploads: crate::routes::audio::upload_body_limit(config.asr.limits.max_bytes),
        });
    if config.token.is_some() {
        policy
    } else {
        policy.with_token_file(&crate::security::token_path(&config.data_dir))
    }
}

/// `text` as a URL query value: unreserved characters as they are, everything else %XX (a
/// token set by hand may hold any character).
fn query_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        system_prompt: config.system_prompt.clone(),
        first_clause_wait: config.first_clause_wait,
        segmenter: koto_core::segmenter::SegmenterConfig {
            first_clause_min_chars: config.first_clause_min_chars,
            ..Default::default()
        },
        context_turns: config.stm_context_turns,
        max_content_chars: config.max_content_chars,
        recall_top_k: config.events.ltm_top_k,
        recall_budget: config.events.ltm_inline_budget,
        default_lang: config.default_lang.clone(),
        max_reply_spoken: config.max_reply_spoken,
        quick_ack_after: config.quick_ack_after,
        output_filter: config.output_filter.clone(),
        veto_window: config.veto_window,
        show_reasoning: config.show_reasoning,
        flags: Flags {
            sync_core: config.enable_sync_core,
            tts_streaming: config.sync_tts_streaming,
            barge_in: config.sync_tts_barge_in,
            async_ext: config.enable_async_ext,
            ltm_inline: config.enable_ltm_inline,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::query_escape;

    #[test]
    fn a_hand_set_token_stays_one_query_value() {
        assert_eq!(
            query_escape("3f9c-._~"),
            "3f9c-._~",
            "hex and unreserved as they are"
        );
        assert_eq!(
            query_escape("a b&c=d#e/é"),
            "a%20b%26c%3Dd%23e%2F%C3%A9",
            "nothing in a token can end the value or the URL"
        );
    }
}
