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
use koto_providers::tts::voice::build_voice;
use koto_relay::{Relay, RelayConfig};
use koto_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secret};
use crate::live_settings::{DesktopSettings, LiveTargets};
use crate::providers::{ProviderSetupError, build_llm};
use crate::rate_limit::RateLimiter;
use crate::security::{SecurityPolicy, load_or_create_token};
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
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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
    let voice = if config.sync_tts_streaming {
        let voice = build_voice(&config.tts)
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
    let shutdown = CancellationToken::new();
    let (live_chat, _chat_driver) = crate::live_chat::LiveChat::start(
        config.chat.clone(),
        engine.clone(),
        Some(&registry),
        shutdown.clone(),
    );
    let state = AppState {
        engine: engine.clone(),
        security: Arc::new(
            SecurityPolicy::new(token.clone(), addr, &config.allowed_origins)
                .with_legacy_origins(&config.legacy_origins)
                .with_body_timeout(config.body_read_timeout),
        ),
        limiter: Arc::new(RateLimiter::new(
            config.input_rate_per_sec,
            config.input_burst,
        )),
        max_body_bytes: config.max_body_bytes,
        legacy: config.legacy.clone(),
        started: Instant::now(),
        events: events.clone(),
        live_chat,
        settings: Arc::new(
            crate::routes::settings::Settings::new(&config.data_dir, config.raw.clone()).with_live(
                LiveTargets {
                    engine: engine.clone(),
                    desktop,
                },
            ),
        ),
    };
    let router = app(state);
    let serve_shutdown = shutdown.clone();
    let serve_engine = engine.clone();
    let serve_events = events.clone();
    let task = tokio::spawn(async move {
        // Without TCP_NODELAY the first SSE event after the headers waits for the client's
        // delayed ACK (~40 ms): Nagle's algorithm, measured by `kotodama bench` with D = 0.
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                serve_shutdown.cancelled().await;
                tracing::info!("shutting down: cancelling turns");
                serve_engine.shutdown(SHUTDOWN_GRACE).await;
            })
            .await;
        // Turns have recorded their endings; now the relay and workers finish what is in hand.
        events_shutdown.cancel();
        serve_events.wait().await;
        served
    });
    Ok(RunningServer {
        addr,
        token,
        engine,
        data_dir: config.data_dir.clone(),
        shutdown,
        task,
    })
}

pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        system_prompt: config.system_prompt.clone(),
        first_clause_wait: config.first_clause_wait,
        segmenter: Default::default(),
        context_turns: config.stm_context_turns,
        max_content_chars: config.max_content_chars,
        recall_top_k: config.events.ltm_top_k,
        recall_budget: config.events.ltm_inline_budget,
        default_lang: config.default_lang.clone(),
        flags: Flags {
            sync_core: config.enable_sync_core,
            tts_streaming: config.sync_tts_streaming,
            barge_in: config.sync_tts_barge_in,
            async_ext: config.enable_async_ext,
            ltm_inline: config.enable_ltm_inline,
        },
    }
}
