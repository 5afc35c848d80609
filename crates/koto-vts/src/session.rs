//! One connection to VTube Studio: connect, authenticate (asking for a token when there is none
//! or it was rejected), then feed the mouth until the connection ends or we are cancelled.
//!
//! It publishes the states it passes through but never decides about retrying; that is the
//! client's supervisor. Frames it does not understand are logged and skipped, never fatal.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Reply, Request, error_id};
use crate::client::{MouthInput, Shared, VtsConfig, VtsState};
use crate::mouth::MouthEnvelope;
use crate::{VtsError, token};

/// VTube Studio's replies are small; anything bigger is not for us.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A change smaller than this is not worth a frame (the keep-alive carries it later).
const MIN_CHANGE: f32 = 0.005;

/// How a session ended. Cancellation is a normal outcome, not an error.
#[derive(Debug)]
pub(crate) enum Stop {
    Cancelled,
    Failed(VtsError),
}

impl From<VtsError> for Stop {
    fn from(error: VtsError) -> Stop {
        Stop::Failed(error)
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Run one connection. `reached` becomes true once authenticated (the supervisor then resets its
/// backoff). Only returns when the connection ends or `cancel` fires.
pub(crate) async fn run(
    config: &VtsConfig,
    shared: &Shared,
    cancel: &CancellationToken,
    reached: &mut bool,
) -> Stop {
    let mut connection = match connect(config, cancel).await {
        Ok(connection) => connection,
        Err(stop) => return stop,
    };
    let ended = match connection.authenticate(config, shared, cancel).await {
        Ok(()) => {
            *reached = true;
            shared.set_state(
                VtsState::Connected,
                format!("connected to VTube Studio at {}", config.url),
            );
            tracing::info!(url = %config.url, "VTube Studio connected");
            connection.feed_mouth(config, shared, cancel).await
        }
        Err(stop) => stop,
    };
    if matches!(ended, Stop::Cancelled) {
        // Say goodbye so VTube Studio hands the parameter back now, not a second later.
        let _ = tokio::time::timeout(Duration::from_secs(1), connection.socket.close(None)).await;
    }
    ended
}

async fn connect(config: &VtsConfig, cancel: &CancellationToken) -> Result<Connection, Stop> {
    let websocket = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let handshake =
        tokio_tungstenite::connect_async_with_config(&config.url, Some(websocket), true);
    let unreachable = |reason: String| VtsError::Unreachable {
        url: config.url.clone(),
        reason,
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        connected = tokio::time::timeout(config.connect_timeout, handshake) => match connected {
            Ok(Ok((socket, _))) => Ok(Connection { socket, n_requests: 0 }),
            Ok(Err(error)) => Err(unreachable(error.to_string()).into()),
            Err(_) => Err(unreachable("no WebSocket handshake in time".to_owned()).into()),
        },
    }
}

struct Connection {
    socket: Socket,
    /// For `requestID`s (`koto-1`, `koto-2`, …): unique per connection, which is all VTube
    /// Studio needs to pair replies.
    n_requests: u64,
}

impl Connection {
    async fn send(&mut self, request: Request<'_>) -> Result<String, VtsError> {
        self.n_requests += 1;
        let request_id = format!("koto-{}", self.n_requests);
        let text = request
            .to_json(&request_id)
            .map_err(|error| VtsError::Protocol(format!("encoding a request: {error}")))?;
        self.socket
            .send(Message::text(text))
            .await
            .map_err(closed)?;
        Ok(request_id)
    }

    /// The next message we can read as VTube Studio's; garbage is logged and skipped.
    async fn next_reply(&mut self) -> Result<(Option<String>, Reply), VtsError> {
        loop {
            let message = match self.socket.next().await {
                None => return Err(VtsError::Disconnected("end of stream".to_owned())),
                Some(Err(error)) => return Err(closed(error)),
                Some(Ok(message)) => message,
            };
            let parsed = match &message {
                Message::Text(text) => api::parse(text.as_str()),
                // VTube Studio answers in text, but accepts and may send UTF-8 binary frames.
                Message::Binary(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => api::parse(text),
                    Err(_) => Err("a binary frame that is not UTF-8".to_owned()),
                },
                Message::Close(frame) => {
                    let reason = frame
                        .as_ref()
                        .map(|frame| format!("close frame ({} {})", frame.code, frame.reason))
                        .unwrap_or_else(|| "close frame".to_owned());
                    return Err(VtsError::Disconnected(reason));
                }
                // Pings are answered by tungstenite on the next read or write.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            match parsed {
                Ok(reply) => return Ok(reply),
                Err(reason) => tracing::debug!(%reason, "ignored a frame from VTube Studio"),
            }
        }
    }

    /// Send `request` and wait for its reply (other messages are skipped). `timeout: None`
    /// waits as long as it takes (the token popup).
    async fn call(
        &mut self,
        request: Request<'_>,
        cancel: &CancellationToken,
        timeout: Option<Duration>,
    ) -> Result<Reply, Stop> {
        let what = request.message_type();
        let request_id = self.send(request).await?;
        let reply = async {
            loop {
                let (reply_to, reply) = self.next_reply().await?;
                let ours = reply_to.as_deref().is_none_or(|id| id == request_id);
                if ours && !matches!(reply, Reply::Other(_) | Reply::Injected) {
                    return Ok::<Reply, VtsError>(reply);
                }
            }
        };
        let bounded = async {
            match timeout {
                Some(timeout) => tokio::time::timeout(timeout, reply)
                    .await
                    .unwrap_or(Err(VtsError::Timeout(what))),
                None => reply.await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Stop::Cancelled),
            reply = bounded => Ok(reply?),
        }
    }

    /// The stored token if VTube Studio still takes it; otherwise the popup, a new token (stored
    /// at once, so a crash does not cost another popup) and that.
    async fn authenticate(
        &mut self,
        config: &VtsConfig,
        shared: &Shared,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        shared.set_state(VtsState::Authenticating, "authenticating with VTube Studio");
        let stored = match token::read(&config.token_file).await {
            Ok(stored) => stored,
            Err(error) => {
                // Unreadable counts as missing: the user is asked once more, and storing the new
                // token tells us whether the file is usable at all.
                tracing::warn!(path = %config.token_file.display(), %error, "VTube Studio token unreadable");
                None
            }
        };
        if let Some(token) = stored {
            match self.present(config, &token, cancel).await? {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    tracing::info!(%reason, "VTube Studio rejected the stored token; asking for a new one");
                }
            }
        }
        shared.set_state(
            VtsState::WaitingForUser,
            format!(
                "click \"Allow\" for \"{}\" in VTube Studio's popup",
                config.plugin_name
            ),
        );
        let request = Request::AuthenticationToken {
            plugin_name: &config.plugin_name,
            plugin_developer: &config.plugin_developer,
            plugin_icon: config.plugin_icon.as_deref(),
        };
        let token = match self.call(request, cancel, None).await? {
            Reply::TokenIssued(token) => token,
            Reply::ApiError { id, message } if id == error_id::TOKEN_REQUEST_DENIED => {
                return Err(VtsError::Denied(message).into());
            }
            other => return Err(unexpected(other).into()),
        };
        token::store(&config.token_file, &token)
            .await
            .map_err(|error| VtsError::TokenFile {
                path: config.token_file.display().to_string(),
                reason: error.to_string(),
            })?;
        tracing::info!(path = %config.token_file.display(), "VTube Studio token stored");
        shared.set_state(VtsState::Authenticating, "authenticating with VTube Studio");
        match self.present(config, &token, cancel).await? {
            Ok(()) => Ok(()),
            Err(reason) => Err(VtsError::Protocol(format!(
                "VTube Studio rejected the token it just issued: {reason}"
            ))
            .into()),
        }
    }

    /// One `AuthenticationRequest`. The inner `Err` is VTube Studio's reason for saying no.
    async fn present(
        &mut self,
        config: &VtsConfig,
        token: &str,
        cancel: &CancellationToken,
    ) -> Result<Result<(), String>, Stop> {
        let request = Request::Authentication {
            plugin_name: &config.plugin_name,
            plugin_developer: &config.plugin_developer,
            token,
        };
        match self
            .call(request, cancel, Some(config.reply_timeout))
            .await?
        {
            Reply::Authenticated {
                authenticated: true,
                ..
            } => Ok(Ok(())),
            Reply::Authenticated { reason, .. } => Ok(Err(reason)),
            // Access revoked since the token was issued: same as a rejected token.
            Reply::ApiError { id, message } if id == error_id::TOKEN_REQUEST_DENIED => {
                Ok(Err(message))
            }
            other => Err(unexpected(other).into()),
        }
    }

    /// Send the mouth at most `send_hz` times a second while it moves and every `keepalive`
    /// while it does not; a STOP goes out at once. Replies are read (and mostly ignored) so
    /// VTube Studio's send buffer never fills.
    async fn feed_mouth(
        &mut self,
        config: &VtsConfig,
        shared: &Shared,
        cancel: &CancellationToken,
    ) -> Stop {
        let mut mouth_rx = shared.mouth.subscribe();
        let mut envelope = MouthEnvelope::new(config.attack, config.release);
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.send_hz);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_tick = Instant::now();
        let mut last_sent: Option<(f32, Instant)> = None;
        // Each kind of APIError is logged once per connection (at 30 Hz it would flood the log).
        let mut errors_logged = HashSet::new();
        loop {
            let value = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Stop::Cancelled,
                changed = mouth_rx.changed() => {
                    if changed.is_err() {
                        // The sender lives in `Shared`, which this task holds: cannot happen.
                        return Stop::Cancelled;
                    }
                    let input = *mouth_rx.borrow_and_update();
                    if input != MouthInput::Closed {
                        continue;
                    }
                    envelope.reset(0.0);
                    0.0
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    let elapsed = now.saturating_duration_since(last_tick);
                    last_tick = now;
                    let target = match *mouth_rx.borrow() {
                        MouthInput::Level { level, at }
                            if now.saturating_duration_since(at) <= config.mouth_hold => level,
                        _ => 0.0,
                    };
                    let value = envelope.step(target, elapsed);
                    let due = match last_sent {
                        None => true,
                        Some((sent, at)) => {
                            (value - sent).abs() >= MIN_CHANGE
                                || (value == 0.0 && sent != 0.0)
                                || now.saturating_duration_since(at) >= config.keepalive
                        }
                    };
                    if !due {
                        continue;
                    }
                    value
                }
                reply = self.next_reply() => {
                    match reply {
                        Ok((_, Reply::ApiError { id, message })) => {
                            if id == error_id::REQUIRES_AUTHENTICATION
                                || id == error_id::TOKEN_REQUEST_DENIED
                            {
                                return Stop::Failed(VtsError::Unauthenticated(message));
                            }
                            if errors_logged.insert(id) {
                                tracing::warn!(id, %message, "VTube Studio refused the mouth value");
                            }
                            shared.set_state(
                                VtsState::Connected,
                                format!("connected, but VTube Studio says: {message} (error {id})"),
                            );
                        }
                        Ok(_) => {}
                        Err(error) => return Stop::Failed(error),
                    }
                    continue;
                }
            };
            let request = Request::InjectParameter {
                parameter: &config.parameter,
                value,
            };
            if let Err(error) = self.send(request).await {
                return Stop::Failed(error);
            }
            last_sent = Some((value, Instant::now()));
        }
    }
}

/// A read or write error on an open connection: VTube Studio went away (it does not reset
/// connections for any other reason).
fn closed(error: tungstenite::Error) -> VtsError {
    VtsError::Disconnected(error.to_string())
}

fn unexpected(reply: Reply) -> VtsError {
    match reply {
        Reply::ApiError { id, message } => VtsError::Api { id, message },
        other => VtsError::Protocol(format!("{other:?}")),
    }
}
