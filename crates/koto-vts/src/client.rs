//! The client the rest of Kotodama holds: its config, its status, the mouth input, and the one
//! supervising task that connects, reconnects with backoff and jitter, and waits for the user
//! after a refusal.
//!
//! It never speaks the protocol itself (that is `session`), and it never makes the caller wait:
//! every method here is a channel write or a read of the last status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::VtsError;
use crate::session::{self, Stop};

/// Where VTube Studio listens unless the user changed the port in its settings.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8001";

/// How to reach VTube Studio and how the mouth moves. [`VtsConfig::new`] has the defaults that
/// suit the real app; tests shorten the delays.
#[derive(Debug, Clone)]
pub struct VtsConfig {
    /// `ws://host:port` of the plugin API (VTube Studio's default is [`DEFAULT_URL`]).
    pub url: String,
    /// Shown in VTube Studio's popup; 3–32 characters. Tokens are bound to name and developer,
    /// so changing either asks the user again.
    pub plugin_name: String,
    pub plugin_developer: String,
    /// Base64 PNG/JPG, exactly 128×128, for the popup (optional).
    pub plugin_icon: Option<String>,
    /// Where the token is kept (owner-only, replaced atomically).
    pub token_file: PathBuf,
    /// The tracking parameter we drive (VTube Studio's input `MouthOpen`, 0..1).
    pub parameter: String,
    /// At most this many values per second while the mouth moves.
    pub send_hz: u32,
    /// Re-send the current value at least this often: VTube Studio takes a parameter back
    /// after about a second without data.
    pub keepalive: Duration,
    /// Time constants of the mouth: opening, closing.
    pub attack: Duration,
    pub release: Duration,
    /// A level from [`VtsClient::mouth`] counts this long; after it the mouth closes (playback
    /// ended without a STOP, or the caller fell silent).
    pub mouth_hold: Duration,
    /// Reconnect delays: first (jitter adds up to as much again), and where they stop growing.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// After the user denied access: when to ask again. `None`: only on [`VtsClient::retry`]
    /// (another popup every few minutes would be nagging someone who said no).
    pub refused_retry: Option<Duration>,
    /// Bounds on the WebSocket handshake and on the authentication answer (the token popup has
    /// no bound: it waits for the user).
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
}

impl VtsConfig {
    pub fn new(token_file: impl Into<PathBuf>) -> VtsConfig {
        VtsConfig {
            url: DEFAULT_URL.to_owned(),
            plugin_name: "Kotodama".to_owned(),
            plugin_developer: "Kotodama contributors".to_owned(),
            plugin_icon: None,
            token_file: token_file.into(),
            parameter: "MouthOpen".to_owned(),
            send_hz: 30,
            keepalive: Duration::from_millis(500),
            attack: Duration::from_millis(40),
            release: Duration::from_millis(150),
            mouth_hold: Duration::from_millis(300),
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            refused_retry: None,
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
        }
    }

    /// What VTube Studio and our own loop require of the settings.
    pub fn validate(&self) -> Result<(), VtsError> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(VtsError::Config(format!(
                "the VTube Studio URL must start with ws:// (default {DEFAULT_URL}), got {:?}",
                self.url
            )));
        }
        for (what, name) in [
            ("plugin name", &self.plugin_name),
            ("plugin developer", &self.plugin_developer),
        ] {
            let length = name.chars().count();
            if !(3..=32).contains(&length) {
                return Err(VtsError::Config(format!(
                    "VTube Studio needs a {what} of 3 to 32 characters, got {name:?}"
                )));
            }
        }
        if !(1..=120).contains(&self.send_hz) {
            return Err(VtsError::Config(format!(
                "send_hz must be 1 to 120, got {}",
                self.send_hz
            )));
        }
        if self.keepalive.is_zero() || self.keepalive >= Duration::from_secs(1) {
            return Err(VtsError::Config(
                "the keep-alive must be under a second (VTube Studio drops the parameter after one)"
                    .to_owned(),
            ));
        }
        if self.parameter.is_empty() {
            return Err(VtsError::Config("no parameter to drive".to_owned()));
        }
        Ok(())
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Where the client is, for the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VtsState {
    /// Not connected; a reconnect is scheduled (see the message), or the client stopped.
    Disconnected,
    /// Opening the WebSocket.
    Connecting,
    /// Presenting the stored token.
    Authenticating,
    /// VTube Studio shows its "allow this plugin?" popup; the user has to click.
    WaitingForUser,
    /// Authenticated; mouth values flow.
    Connected,
    /// The user denied access; nothing happens until [`VtsClient::retry`] (or `refused_retry`).
    Refused,
    /// Something else went wrong (see the message); retried with backoff unless misconfigured.
    Failed,
}

/// One snapshot of the client's state, as `/health` and the panel show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VtsStatus {
    pub state: VtsState,
    /// For the user: what is going on and, when stuck, what to do.
    pub message: String,
    /// When `state` last changed (ms since the epoch).
    pub since_ms: i64,
}

/// What the caller last said about the mouth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MouthInput {
    /// A level (0..1) from a chunk that started playing at `at`.
    Level { level: f32, at: Instant },
    /// STOP: shut at once, and stay shut until a level above 0 arrives.
    Closed,
}

/// What the client's handle and its task share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Written by [`VtsClient::mouth`] / [`VtsClient::close_mouth`], read by the session.
    pub(crate) mouth: watch::Sender<MouthInput>,
    /// Written by the task only; read by [`VtsClient::status`] and [`VtsClient::changes`].
    status: watch::Sender<VtsStatus>,
    /// Wakes the task out of a refusal or a backoff wait.
    retry: Notify,
}

impl Shared {
    /// Publish a state; `since_ms` moves only when the state itself changes.
    pub(crate) fn set_state(&self, state: VtsState, message: impl Into<String>) {
        let message = message.into();
        self.status.send_if_modified(|status| {
            if status.state == state && status.message == message {
                return false;
            }
            if status.state != state {
                status.since_ms = now_ms();
                tracing::debug!(?state, %message, "VTube Studio state");
            }
            status.state = state;
            status.message = message;
            true
        });
    }

    fn state(&self) -> VtsState {
        self.status.borrow().state
    }
}

/// The running client. Cheap to clone; every clone drives the same connection. Dropping the
/// handles does not stop it: cancel the token given to [`VtsClient::start`] or call
/// [`VtsClient::shutdown`].
#[derive(Debug, Clone)]
pub struct VtsClient {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl VtsClient {
    /// Spawn the connection task (needs a tokio runtime). A config that fails
    /// [`VtsConfig::validate`] gives a client in state `failed` that never connects.
    pub fn start(config: VtsConfig, cancel: CancellationToken) -> VtsClient {
        let (mouth, _) = watch::channel(MouthInput::Closed);
        let (status, _) = watch::channel(VtsStatus {
            state: VtsState::Connecting,
            message: format!("connecting to VTube Studio at {}", config.url),
            since_ms: now_ms(),
        });
        let shared = Arc::new(Shared {
            mouth,
            status,
            retry: Notify::new(),
        });
        let tasks = TaskTracker::new();
        tasks.spawn(supervise(config, shared.clone(), cancel.clone()));
        tasks.close();
        VtsClient {
            shared,
            cancel,
            tasks,
        }
    }

    /// The level (0..1) of the chunk that is playing now; call it per chunk. Out-of-range and
    /// NaN values are clamped. The client smooths, so raw levels are what it wants.
    pub fn mouth(&self, open: f32) {
        let level = crate::mouth::clamp_level(open);
        self.shared.mouth.send_if_modified(|input| {
            if *input == MouthInput::Closed && level == 0.0 {
                // Still shut after a STOP: silence does not reopen anything.
                return false;
            }
            *input = MouthInput::Level {
                level,
                at: Instant::now(),
            };
            true
        });
    }

    /// STOP: the mouth goes to 0 now (no release), and stays there until [`VtsClient::mouth`]
    /// brings a level above 0.
    pub fn close_mouth(&self) {
        self.shared.mouth.send_if_modified(|input| {
            let changed = *input != MouthInput::Closed;
            *input = MouthInput::Closed;
            changed
        });
    }

    pub fn status(&self) -> VtsStatus {
        self.shared.status.borrow().clone()
    }

    /// Marked changed on every status change (the panel can push instead of polling).
    pub fn changes(&self) -> watch::Receiver<VtsStatus> {
        self.shared.status.subscribe()
    }

    /// Try again now: after a refusal (shows VTube Studio's popup again), a failure or while
    /// waiting to reconnect. Does nothing while connecting or connected.
    pub fn retry(&self) {
        if matches!(
            self.shared.state(),
            VtsState::Refused | VtsState::Failed | VtsState::Disconnected
        ) {
            self.shared.retry.notify_one();
        }
    }

    /// Cancel the client and wait for its task (it closes the socket politely first).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

/// Connect, run one session, and decide how long to wait before the next; until cancelled.
async fn supervise(config: VtsConfig, shared: Arc<Shared>, cancel: CancellationToken) {
    if let Err(error) = config.validate() {
        tracing::error!(%error, "VTube Studio client misconfigured; not connecting");
        shared.set_state(VtsState::Failed, error.to_string());
        cancel.cancelled().await;
        return;
    }
    let mut backoff = config.backoff();
    // "Not reachable" is the normal state while VTube Studio is closed: logged once, not on every
    // retry.
    let mut unreachable_logged = false;
    loop {
        shared.set_state(
            VtsState::Connecting,
            format!("connecting to VTube Studio at {}", config.url),
        );
        let mut reached = false;
        let error = match session::run(&config, &shared, &cancel, &mut reached).await {
            Stop::Cancelled => break,
            Stop::Failed(error) => error,
        };
        if reached {
            // This connection worked: the next failure starts from the shortest delay again.
            backoff = config.backoff();
            unreachable_logged = false;
        }
        let wait = match &error {
            VtsError::Denied(_) => {
                tracing::warn!(%error, "VTube Studio access denied by the user");
                let when = match config.refused_retry {
                    Some(after) => format!("asking again in {} min", after.as_secs().div_ceil(60)),
                    None => "press Retry to ask again".to_owned(),
                };
                shared.set_state(
                    VtsState::Refused,
                    format!(
                        "{error}. {when}, then click \"Allow\" for \"{}\" in VTube Studio",
                        config.plugin_name
                    ),
                );
                config.refused_retry
            }
            VtsError::Config(_) => {
                tracing::error!(%error, "VTube Studio client misconfigured");
                shared.set_state(VtsState::Failed, error.to_string());
                None
            }
            VtsError::Unreachable { .. } | VtsError::Disconnected(_) => {
                let delay = backoff.next().unwrap_or(config.max_delay);
                if !unreachable_logged || matches!(error, VtsError::Disconnected(_)) {
                    tracing::info!(%error, ?delay, "VTube Studio not connected; retrying");
                    unreachable_logged = true;
                }
                shared.set_state(
                    VtsState::Disconnected,
                    format!("{error}; retrying in {}", seconds(delay)),
                );
                Some(delay)
            }
            _ => {
                let delay = backoff.next().unwrap_or(config.max_delay);
                tracing::warn!(%error, ?delay, "VTube Studio connection failed; retrying");
                shared.set_state(
                    VtsState::Failed,
                    format!("{error}; retrying in {}", seconds(delay)),
                );
                Some(delay)
            }
        };
        let sleep = async {
            match wait {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = shared.retry.notified() => {
                tracing::info!("VTube Studio: retrying now");
                backoff = config.backoff();
            }
            _ = sleep => {}
        }
    }
    shared.set_state(VtsState::Disconnected, "stopped");
}

fn seconds(delay: Duration) -> String {
    format!("{:.0} s", delay.as_secs_f32().ceil())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_is_camel_case_for_health() {
        let status = VtsStatus {
            state: VtsState::WaitingForUser,
            message: "click Allow".into(),
            since_ms: 42,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"state": "waitingForUser", "message": "click Allow", "sinceMs": 42})
        );
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        let config = VtsConfig::new("vts-token");
        assert_eq!(config.validate(), Ok(()));
        let mut http = config.clone();
        http.url = "http://127.0.0.1:8001".into();
        assert!(matches!(http.validate(), Err(VtsError::Config(m)) if m.contains("ws://")));
        let mut short = config.clone();
        short.plugin_name = "K".into();
        assert!(matches!(short.validate(), Err(VtsError::Config(m)) if m.contains("3 to 32")));
        let mut slow = config;
        slow.keepalive = Duration::from_secs(2);
        assert!(
            slow.validate().is_err(),
            "VTube Studio would drop the mouth between sends"
        );
    }

    #[tokio::test]
    async fn a_misconfigured_client_fails_without_connecting() {
        let mut config = VtsConfig::new("vts-token");
        config.url = "http://nowhere".into();
        let cancel = CancellationToken::new();
        let client = VtsClient::start(config, cancel.clone());
        let mut changes = client.changes();
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            changes.wait_for(|status| status.state == VtsState::Failed),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(status.message.contains("ws://"), "{status:?}");
        client.shutdown().await;
    }

    #[tokio::test]
    async fn mouth_after_stop_needs_a_level_above_zero() {
        let config = VtsConfig::new("vts-token");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let client = VtsClient::start(config, cancel);
        let mouth = client.shared.mouth.subscribe();
        client.mouth(0.0);
        assert_eq!(
            *mouth.borrow(),
            MouthInput::Closed,
            "closed at start, silence keeps it"
        );
        client.mouth(0.5);
        assert!(matches!(*mouth.borrow(), MouthInput::Level { level, .. } if level == 0.5));
        client.close_mouth();
        assert_eq!(*mouth.borrow(), MouthInput::Closed);
        client.mouth(f32::NAN);
        assert_eq!(*mouth.borrow(), MouthInput::Closed, "NaN counts as silence");
        client.mouth(7.0);
        assert!(matches!(*mouth.borrow(), MouthInput::Level { level, .. } if level == 1.0));
        client.shutdown().await;
    }
}
