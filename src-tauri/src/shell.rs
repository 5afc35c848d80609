//! The running desktop app's state: the in-process server (the same `koto_server::start` as
//! `kotodama serve`), the sessions seen on its relay, the tasks the shell owns, and their
//! shutdown. Plain Rust over the engine's API; it draws nothing and knows no window.
//!
//! Ownership: the `RunningServer` sits in `server` until shutdown takes it, so after
//! [`Shell::shutdown`] no engine (and so no database connection) is held by the shell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use koto_audio::{PlaybackStatus, Player, play_relay};
use koto_core::{SessionId, TurnNo};
use koto_engine::{Engine, EngineError};
use koto_protocol::{ErrorCode, WireError};
use koto_relay::ClientFilter;
use koto_server::RunningServer;
use serde::Serialize;
use tauri::Url;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hotkey::{HotkeyAction, HotkeyStatus};
use crate::sessions::{RecentSessions, follow_relay};

/// The reason every STOP from the desktop carries (CONTRACTS §2).
pub const STOP_REASON: &str = "user_interrupt";

/// Upper bound on the server's shutdown (its own turn grace is 5 s): Quit must end the app even
/// if a connection will not close.
const SERVER_SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// How long the shell's own tasks get after their token is cancelled.
const TASKS_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("Kotodama is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    InvalidSession(#[from] koto_core::InvalidSessionId),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<ShellError> for WireError {
    fn from(error: ShellError) -> WireError {
        match error {
            ShellError::ShuttingDown => WireError::new(ErrorCode::ShuttingDown, error.to_string()),
            ShellError::InvalidSession(inner) => {
                WireError::new(ErrorCode::InvalidSessionId, inner.to_string())
            }
            // The HTTP routes' mapping, so the UI sees the same code and message either way
            // (storage details are logged there, not sent).
            ShellError::Engine(inner) => koto_server::error::AppError::from(inner).error,
        }
    }
}

/// What the panel needs to know about this app (`app_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// The control panel, token included (what the window loads).
    pub url: String,
    pub token: String,
    /// The OBS browser source, token included.
    pub overlay_url: String,
    pub version: String,
    pub hotkey: HotkeyStatus,
    pub ptt_hotkey: HotkeyStatus,
    /// Where this computer plays the co-host's voice; `None` when local playback is off.
    pub playback: Option<PlaybackStatus>,
}

/// One session's answer to a STOP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStopped {
    pub session_id: SessionId,
    /// The turns the STOP cancelled (empty when the session was idle).
    pub stopped: Vec<TurnNo>,
}

/// Where the window reaches the server: its address, except that a wildcard bind (`0.0.0.0`,
/// `[::]`) is reached on loopback (the server refuses a wildcard `Host`).
fn panel_origin(bound: SocketAddr) -> Url {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, bound.port());
    // Invariant: `http://<SocketAddr>/` is always a valid URL.
    Url::parse(&format!("http://{addr}/")).expect("http://<SocketAddr>/ parses")
}

#[derive(Debug)]
pub struct Shell {
    /// Taken (once) by shutdown.
    server: Mutex<Option<RunningServer>>,
    base_url: Url,
    token: String,
    recent: RecentSessions,
    /// Local playback of every session's audio, fed by `play_relay`; `None` when off.
    player: Option<Player>,
    /// Set once the hotkeys are registered (after the shell exists).
    hotkey: Mutex<HotkeyStatus>,
    ptt_hotkey: Mutex<HotkeyStatus>,
    /// Push-to-talk presses and releases, to one task that hands them to the mic in order (a
    /// release overtaking its press would leave the mic held open).
    ptt: mpsc::UnboundedSender<bool>,
    /// The shell's own tasks (session watcher, playback); the server owns its own.
    tasks: TaskTracker,
    tasks_shutdown: CancellationToken,
}

impl Shell {
    /// Takes over a started server, starts watching its relay and, with a `player`, playing
    /// its audio here. Tasks go to `tauri::async_runtime`, so any thread may call this.
    pub fn new(server: RunningServer, player: Option<Player>) -> Shell {
        let base_url = panel_origin(server.addr);
        let (ptt, presses) = mpsc::unbounded_channel();
        let shell = Shell {
            token: server.token.expose().to_owned(),
            base_url,
            recent: RecentSessions::default(),
            player,
            hotkey: Mutex::new(HotkeyStatus::off(HotkeyAction::Stop)),
            ptt_hotkey: Mutex::new(HotkeyStatus::off(HotkeyAction::PushToTalk)),
            ptt,
            tasks: TaskTracker::new(),
            tasks_shutdown: CancellationToken::new(),
            server: Mutex::new(None),
        };
        shell.spawn(forward_ptt(
            server.voice.clone(),
            presses,
            shell.tasks_shutdown.clone(),
        ));
        if let Some(relay) = server.engine.relay() {
            shell.spawn(follow_relay(
                relay.clone(),
                shell.recent.clone(),
                shell.tasks_shutdown.clone(),
            ));
            if let Some(player) = &shell.player {
                // Every session: the desktop plays whatever the co-host says, like the overlay.
                let everything = ClientFilter {
                    session: None,
                    audio: true,
                    binary_audio: false,
                    ..ClientFilter::default()
                };
                shell.spawn(play_relay(
                    relay.clone(),
                    player.clone(),
                    everything,
                    shell.tasks_shutdown.clone(),
                ));
            }
        }
        *shell.lock_server() = Some(server);
        shell
    }

    /// The local player, if playback is on (tests and status).
    pub fn player(&self) -> Option<&Player> {
        self.player.as_ref()
    }

    /// Runs `task` on the app's runtime as one of the shell's tasks (awaited by shutdown).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tauri::async_runtime::spawn(self.tasks.track_future(task));
    }

    /// Cancelled when the shell shuts down: long-running shell tasks stop on it.
    pub fn tasks_shutdown(&self) -> CancellationToken {
        self.tasks_shutdown.clone()
    }

    /// The server's origin, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> &Url {
        &self.base_url
    }

    /// `<base>/<path>?token=<token>`.
    fn url_with_token(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("token", &self.token);
        url
    }

    pub fn panel_url(&self) -> Url {
        self.url_with_token("/")
    }

    pub fn info(&self) -> AppInfo {
        AppInfo {
            url: self.panel_url().to_string(),
            token: self.token.clone(),
            overlay_url: self.url_with_token("/overlay").to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hotkey: self.hotkey_status(),
            ptt_hotkey: self.ptt_hotkey_status(),
            playback: self.player.as_ref().map(Player::status),
        }
    }

    /// Keeps `status` as its action's (stop or push-to-talk).
    pub fn set_hotkey_status(&self, status: HotkeyStatus) {
        let slot = match status.action {
            HotkeyAction::Stop => &self.hotkey,
            HotkeyAction::PushToTalk => &self.ptt_hotkey,
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// The stop hotkey's status.
    pub fn hotkey_status(&self) -> HotkeyStatus {
        self.hotkey
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn ptt_hotkey_status(&self) -> HotkeyStatus {
        self.ptt_hotkey
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Push-to-talk held (`true`) or let go, as `POST /voice/ptt` does it; never waits (the
    /// hotkey's thread calls it). In order with every earlier press.
    pub fn push_to_talk(&self, pressed: bool) -> Result<(), ShellError> {
        self.ptt.send(pressed).map_err(|_| ShellError::ShuttingDown)
    }

    /// The engine behind every route; refused once shutdown began.
    pub fn engine(&self) -> Result<Engine, ShellError> {
        self.lock_server()
            .as_ref()
            .map(|server| server.engine.clone())
            .ok_or(ShellError::ShuttingDown)
    }

    /// The sessions "Stop talking" would stop, most recent first.
    pub fn recent_sessions(&self) -> Vec<SessionId> {
        self.recent.snapshot()
    }

    /// Barge-in, as `POST /control/stop` does it: `session`, or every recently seen session
    /// when `None` (tray, hotkey). Sessions are stopped concurrently; answers keep their order.
    pub async fn stop_talking(
        &self,
        session: Option<SessionId>,
    ) -> Result<Vec<SessionStopped>, ShellError> {
        let engine = self.engine()?;
        let sessions = match session {
            Some(session) => vec![session],
            None => self.recent.snapshot(),
        };
        let mut stops = JoinSet::new();
        for (index, session) in sessions.into_iter().enumerate() {
            let engine = engine.clone();
            stops.spawn(async move {
                let outcome = engine.interrupt(&session, STOP_REASON).await;
                (index, session, outcome)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = stops.join_next().await {
            let (index, session_id, outcome) = match joined {
                Ok(answer) => answer,
                Err(join_error) => {
                    tracing::error!(%join_error, "a stop task failed");
                    continue;
                }
            };
            answers.push((
                index,
                SessionStopped {
                    session_id,
                    stopped: outcome?.stopped,
                },
            ));
        }
        answers.sort_by_key(|(index, _)| *index);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }

    /// Cancel every task: the shell's (session watcher, playback) and the server's (turns record
    /// how they ended, events drain, the listener closes). After it returns the database is
    /// closed unless a command still holds an engine for a moment. Idempotent.
    pub async fn shutdown(&self) {
        self.tasks_shutdown.cancel();
        let server = self.lock_server().take();
        if let Some(server) = server {
            match tokio::time::timeout(SERVER_SHUTDOWN_LIMIT, server.shutdown()).await {
                Ok(Ok(())) => tracing::info!("server stopped cleanly"),
                Ok(Err(error)) => tracing::warn!(%error, "server stopped with an error"),
                Err(_) => tracing::warn!(
                    limit = ?SERVER_SHUTDOWN_LIMIT,
                    "server still shutting down; quitting anyway"
                ),
            }
        }
        self.tasks.close();
        if tokio::time::timeout(TASKS_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?TASKS_GRACE, "shell tasks still running at quit");
        }
    }

    fn lock_server(&self) -> std::sync::MutexGuard<'_, Option<RunningServer>> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands push-to-talk key events to the mic one at a time, in the order they happened. A
/// refused one (the mic is not in push-to-talk mode) is logged: the hotkey never switches the
/// mic on by itself.
async fn forward_ptt(
    voice: std::sync::Arc<koto_server::voice::VoiceIn>,
    mut presses: mpsc::UnboundedReceiver<bool>,
    shutdown: CancellationToken,
) {
    loop {
        let pressed = tokio::select! {
            () = shutdown.cancelled() => return,
            next = presses.recv() => match next {
                Some(pressed) => pressed,
                None => return,
            },
        };
        match voice.ptt(pressed, None).await {
            Ok(()) => tracing::info!(source = "hotkey", pressed, "push-to-talk"),
            Err(error) => {
                tracing::info!(source = "hotkey", pressed, %error, "push-to-talk ignored")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_origin_is_always_a_host_the_server_accepts() {
        let origin = |bound: &str| panel_origin(bound.parse().expect("addr")).to_string();
        assert_eq!(origin("127.0.0.1:8000"), "http://127.0.0.1:8000/");
        assert_eq!(origin("[::1]:8000"), "http://[::1]:8000/");
        assert_eq!(
            origin("0.0.0.0:8000"),
            "http://127.0.0.1:8000/",
            "a wildcard bind is reached on loopback: its Host would be refused"
        );
        assert_eq!(origin("[::]:8000"), "http://[::1]:8000/");
    }
}
