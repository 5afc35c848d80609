//! The original Vue front end's two-socket protocol (CONTRACTS §4): `WS /ws/input` uploads one
//! input per connection and starts a turn whose sessionId is the task id, `WS /ws/output/{task_id}`
//! streams that turn's reply, audio and control frames. A thin adapter over `Engine::submit`
//! and the relay; it deliberately does no speech recognition (voice uploads are refused with a
//! clear error, there is no ASR provider yet) and no image input.
//!
//! # Wire format
//!
//! Both sockets sit behind the security guard like every route. The original Vue client sends
//! no token (and appends the task id after any query string, so `?token=` cannot work for its
//! output socket): a page whose `Origin` is in `KOTODAMA_LEGACY_ORIGINS` (default its dev
//! server, `http://localhost:3000` and `http://127.0.0.1:3000`) may open these two sockets
//! without one. Any other client needs the token (`?token=<token>`), and an origin that is in
//! neither list is refused.
//!
//! `/ws/input` (one upload per connection, as in the original):
//! - on connect: `{"type":"system","action":"task_id_assigned","task_id":"<uuid4>"}`.
//! - `{"type":"text"|"audio","chunk_id":n,"action":"data_chunk"}` announces chunk `n` (counted
//!   from 0 per upload); text may instead be inline (`"content"`, `"text"` or `"prompt"`), with no
//!   binary frame; `"meta":{"lang":"en"}` is passed to the engine. A `chunk_id` other than the
//!   next expected one is answered with the plain text `Chunk ID mismatch: expected X, got Y` and
//!   ignored.
//! - one binary frame per announced chunk, answered with the plain text `File chunk received`
//!   (without an announcement: `Error: No metadata received before binary data`). Text chunks
//!   are joined in order and read as UTF-8.
//! - `{"action":"upload_complete"}` → `{"type":"system","action":"upload_processed",
//!   "status":"queued","task_id":"…"}` once the turn has started, or `"status":"error"` with
//!   `"error"` (a sentence) and `"code"` (CONTRACTS error code); then the server closes the
//!   socket (1000). Audio uploads get `status:error`, code `not_available`: voice input needs an
//!   ASR provider, and none is configured.
//! - malformed frames get a plain-text error (`Invalid JSON format`, `Error: …`) and the socket
//!   stays usable. Bounds: [`LegacyLimits`] (chunks, bytes, idle time, total time); exceeding
//!   one answers `upload_processed` with `status:error` and closes the socket (1008).
//! - a message over 1 MiB answers `upload_processed` with `status:error`, code
//!   `payload_too_large`, then closes with 1009; a text frame that is not UTF-8 the same way
//!   with `invalid_request` and 1007. The task's output socket gets the same error.
//! - a socket that has sent nothing is never timed out (the page opens it before the user
//!   types); the idle and total bounds start with its first frame. Dead peers are found by
//!   WebSocket pings (browsers answer them): nothing heard for `peer_timeout` closes with 1001.
//!
//! `/ws/output/{task_id}` (a task id that is not a UUID: close code 4004; an unknown or expired
//! one: an error frame, then close 4004):
//! - `{"type":"audio_chunk","task_id":"…","chunk_id":n,"total_chunks":null,"sample_rate":24000}`
//!   followed by one binary frame: raw PCM, signed 16-bit little-endian, mono, at `sample_rate`
//!   Hz (`TTS_SAMPLE_RATE`, default 24000), 20–40 ms per chunk. `chunk_id` is the relay's `seq`
//!   (contiguous from 0). Audio streams in real time while the LLM still writes, so chunks may
//!   come before the success frame.
//! - `{"status":"success","task_id":"…","content":"<full reply>","audio_present":true|false}`
//!   once, when the LLM's text is complete (the reply's `eos`), usually while its audio still
//!   plays. `audio_present` says whether the reply is spoken.
//! - `{"type":"control","action":"END","task_id":"…"}` after the last chunk (always after the
//!   success frame), then `{"type":"audio_complete","task_id":"…"}` (the original client's
//!   "done" signal: it leaves "processing" on it).
//! - when the turn was stopped (barge-in: `POST /control/stop {"sessionId":"<task_id>"}`,
//!   `/ws/live`, the panel, the hotkey): `{"type":"control","action":"STOP_ACK","task_id":"…"}`,
//!   then the success frame with the text that was heard (only if it had not gone yet), then
//!   `audio_complete`, then the close — so the page accepts its next message.
//! - `{"status":"error","task_id":"…","error":"…","code":"…"}` when the LLM, TTS or storage
//!   failed, or the upload did.
//! - the server closes the socket (1000) after the task's last frame.
//!
//! Everything a task sends is kept (replayed to any output socket that connects later, so one
//! that connects slightly after `upload_complete` misses nothing) until [`LegacyLimits::retain`]
//! after the task ended; the oldest audio is dropped first past [`LegacyLimits::log_bytes`].
//! The turn belongs to the task, not to a socket: closing `/ws/input` or `/ws/output` does not
//! cancel it (a STOP does).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use koto_core::SessionId;
use koto_core::turn::InputKind;
use koto_engine::{Submission, TurnEvent, TurnHandle, TurnRequest};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_protocol::{ErrorCode, WireError};
use koto_relay::{ClientFilter, LiveClient, LiveFrame};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;

/// Largest WebSocket message accepted (one MediaRecorder blob or one text upload).
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Every legacy upload shares this rate-limit bucket (`INPUT_RATE_PER_SEC`/`INPUT_BURST`): each
/// upload is a new session, so a per-session bucket would never fill.
const RATE_KEY: &str = "legacy:ws-input";

/// Close code for a task id that is not a UUID or not known (the original output handler's).
const CLOSE_NOT_FOUND: u16 = 4004;
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

const FILE_CHUNK_RECEIVED: &str = "File chunk received";
const INVALID_JSON: &str = "Invalid JSON format";
const NO_METADATA: &str = "Error: No metadata received before binary data";
const NO_ASR: &str = "voice input needs an ASR provider, which is not configured in this build; \
                      send text instead";

/// Bounds of the legacy protocol. `Default` gives the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLimits {
    /// Tasks kept at once (uploading, running, or ended and kept for replay). A new
    /// `/ws/input` past this evicts the oldest ended task, or is refused (close 1013).
    pub max_tasks: usize,
    /// How long an ended task's frames stay available to `/ws/output`.
    pub retain: Duration,
    /// Frames kept per task for replay, in bytes; past it the oldest audio is dropped.
    pub log_bytes: usize,
    /// Once an upload has begun, `/ws/input` closes when no frame arrives for this long
    /// before `upload_complete`. A socket that has sent nothing is never timed out.
    pub upload_idle: Duration,
    /// … or when the whole upload, from its first frame, takes longer than this.
    pub upload_deadline: Duration,
    /// `/ws/input` pings every third of this and closes (1001) a peer from which nothing, not
    /// even a pong, arrived for this long. Browsers answer pings, so a live idle page stays.
    pub peer_timeout: Duration,
    /// Binary chunks per upload.
    pub max_chunks: u64,
    /// Binary bytes per upload (audio is counted, then refused: there is no ASR).
    pub max_upload_bytes: usize,
    /// UTF-8 bytes of a text upload, inline or in chunks (the engine checks its char limit too).
    pub max_text_bytes: usize,
    /// After the turn ended, how long the task waits for the relay's next frame (paced audio,
    /// END, STOP_ACK) before it gives up on them.
    pub audio_linger: Duration,
}

impl Default for LegacyLimits {
    fn default() -> Self {
        LegacyLimits {
            max_tasks: 32,
            retain: Duration::from_secs(120),
            // ~43 s of 24 kHz s16le audio: what a late output socket can still replay.
            log_bytes: 4 << 20,
            upload_idle: Duration::from_secs(60),
            upload_deadline: Duration::from_secs(300),
            peer_timeout: Duration::from_secs(60),
            max_chunks: 1024,
            max_upload_bytes: 16 << 20,
            max_text_bytes: 64 << 10,
            // Paced audio arrives every 20–40 ms and a STOP_ACK within the relay's 1 s
            // stop timeout: three seconds of silence means nothing more is coming.
            audio_linger: Duration::from_secs(3),
        }
    }
}

/// The routes, with their own task registry; `app()` merges them (so the guard covers them).
pub fn router() -> Router<AppState> {
    router_with(LegacyLimits::default())
}

pub fn router_with(limits: LegacyLimits) -> Router<AppState> {
    Router::new()
        .route("/ws/input", get(input))
        .route("/ws/output/{task_id}", get(output))
        .layer(Extension(LegacyTasks::new(limits)))
}

pub async fn input(
    State(state): State<AppState>,
    Extension(tasks): Extension<LegacyTasks>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run_input(socket, state, tasks))
}

pub async fn output(
    Extension(tasks): Extension<LegacyTasks>,
    Path(task_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run_output(socket, tasks, task_id))
}

// ---------------------------------------------------------------------------------------------
// The task registry.

/// The legacy tasks of one app: each one's output log, kept for replay for a bounded time.
/// Cheap to clone. Dropping the last clone (the router went away) cancels the tasks' pumps.
#[derive(Clone)]
pub struct LegacyTasks {
    board: Arc<Board>,
}

struct Board {
    limits: LegacyLimits,
    /// Task id (hyphenated lowercase UUID) → its log. Ended tasks are swept lazily, on `open`
    /// and `find`, once `retain` has passed.
    tasks: Mutex<HashMap<String, Arc<TaskLog>>>,
    /// Cancelled when the board is dropped; every pump selects on it.
    shutdown: CancellationToken,
    _cancel_pumps: DropGuard,
}

impl LegacyTasks {
    pub fn new(limits: LegacyLimits) -> Self {
        let shutdown = CancellationToken::new();
        LegacyTasks {
            board: Arc::new(Board {
                limits,
                tasks: Mutex::new(HashMap::new()),
                _cancel_pumps: shutdown.clone().drop_guard(),
                shutdown,
            }),
        }
    }

    fn limits(&self) -> &LegacyLimits {
        &self.board.limits
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<TaskLog>>> {
        // A panic elsewhere while holding the lock cannot leave the map half-updated.
        self.board
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new task with a fresh UUID; `None` when `max_tasks` are open and none has ended.
    fn open(&self, now: Instant) -> Option<Arc<TaskLog>> {
        let limits = self.limits();
        let mut tasks = self.lock();
        tasks.retain(|_, log| !log.expired(now, limits.retain));
        if tasks.len() >= limits.max_tasks {
            let oldest_ended = tasks
                .iter()
                .filter_map(|(id, log)| log.ended_at().map(|at| (at, id.clone())))
                .min();
            let (_, id) = oldest_ended?;
            tasks.remove(&id);
        }
        let id = Uuid::new_v4().hyphenated().to_string();
        let log = Arc::new(TaskLog::new(id.clone(), limits.log_bytes));
        tasks.insert(id, Arc::clone(&log));
        Some(log)
    }

    fn find(&self, id: &str, now: Instant) -> Option<Arc<TaskLog>> {
        let retain = self.limits().retain;
        let mut tasks = self.lock();
        tasks.retain(|_, log| !log.expired(now, retain));
        tasks.get(id).cloned()
    }

    fn spawn_pump(&self, pump: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.board.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {}
                () = pump => {}
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// One task's output log.

/// What one task sends to `/ws/output`, in order, kept for replay. Written by the task's input
/// socket (upload errors) and then its pump; read by any number of output sockets, each with
/// its own cursor.
struct TaskLog {
    id: String,
    max_bytes: usize,
    state: Mutex<LogState>,
    /// Bumped on every push and at the end; output sockets wait on it.
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct LogState {
    entries: VecDeque<LogEntry>,
    next_index: u64,
    bytes: usize,
    ended_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct LogEntry {
    /// Position in the task's output; gaps appear where audio was dropped.
    index: u64,
    item: Outgoing,
}

/// One thing an output socket sends (one or two WebSocket frames).
#[derive(Debug, Clone, PartialEq)]
enum Outgoing {
    Reply {
        content: Arc<str>,
        audio_present: bool,
    },
    Audio {
        chunk_id: u64,
        sample_rate: u32,
        pcm: Bytes,
    },
    Control(ControlAction),
    AudioComplete,
    Error(WireError),
}

impl Outgoing {
    fn bytes(&self) -> usize {
        // Audio dominates; the rest is counted roughly so text cannot grow without bound.
        match self {
            Outgoing::Reply { content, .. } => content.len() + 64,
            Outgoing::Audio { pcm, .. } => pcm.len() + 64,
            Outgoing::Error(error) => error.message.len() + 64,
            Outgoing::Control(_) | Outgoing::AudioComplete => 64,
        }
    }

    fn is_audio(&self) -> bool {
        matches!(self, Outgoing::Audio { .. })
    }

    fn messages(&self, task_id: &str) -> Vec<Message> {
        match self {
            Outgoing::Reply {
                content,
                audio_present,
            } => vec![json_message(&ReplyFrame {
                status: "success",
                task_id,
                content,
                audio_present: *audio_present,
            })],
            Outgoing::Audio {
                chunk_id,
                sample_rate,
                pcm,
            } => vec![
                json_message(&AudioChunkFrame {
                    kind: "audio_chunk",
                    task_id,
                    chunk_id: *chunk_id,
                    total_chunks: None,
                    sample_rate: *sample_rate,
                }),
                Message::Binary(pcm.clone()),
            ],
            Outgoing::Control(action) => vec![json_message(&ControlFrame {
                kind: "control",
                action: Some(match action {
                    ControlAction::End => "END",
                    ControlAction::StopAck => "STOP_ACK",
                    ControlAction::Stop => "STOP",
                }),
                task_id,
            })],
            Outgoing::AudioComplete => vec![json_message(&ControlFrame {
                kind: "audio_complete",
                action: None,
                task_id,
            })],
            Outgoing::Error(error) => vec![json_message(&ErrorFrame {
                status: "error",
                task_id,
                error: &error.message,
                code: error.code,
            })],
        }
    }
}

impl TaskLog {
    fn new(id: String, max_bytes: usize) -> Self {
        TaskLog {
            id,
            max_bytes,
            state: Mutex::new(LogState::default()),
            changed: watch::Sender::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `item`; ignored once the task ended. Past `max_bytes` the oldest audio goes
    /// (replies, controls and errors are small and always kept).
    fn push(&self, item: Outgoing) {
        {
            let mut state = self.lock();
            if state.ended_at.is_some() {
                return;
            }
            state.bytes += item.bytes();
            let index = state.next_index;
            state.next_index += 1;
            state.entries.push_back(LogEntry { index, item });
            while state.bytes > self.max_bytes {
                let Some(position) = state.entries.iter().position(|e| e.item.is_audio()) else {
                    break;
                };
                if let Some(dropped) = state.entries.remove(position) {
                    state.bytes -= dropped.item.bytes();
                }
            }
        }
        self.changed.send_replace(());
    }

    /// No more frames: output sockets close after sending what is kept.
    fn end(&self, now: Instant) {
        {
            let mut state = self.lock();
            if state.ended_at.is_some() {
                return;
            }
            state.ended_at = Some(now);
        }
        self.changed.send_replace(());
    }

    fn fail(&self, error: WireError, now: Instant) {
        self.push(Outgoing::Error(error));
        self.end(now);
    }

    /// Entries from `cursor` on, and whether the task has ended (so these are the last ones).
    fn read_from(&self, cursor: u64) -> (Vec<LogEntry>, bool) {
        let state = self.lock();
        let start = state.entries.partition_point(|entry| entry.index < cursor);
        let entries = state.entries.range(start..).cloned().collect();
        (entries, state.ended_at.is_some())
    }

    fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    fn expired(&self, now: Instant, retain: Duration) -> bool {
        self.ended_at()
            .is_some_and(|ended| now.saturating_duration_since(ended) >= retain)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (CONTRACTS §4).

#[derive(Serialize)]
struct SystemFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    task_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
}

#[derive(Serialize)]
struct ReplyFrame<'a> {
    status: &'static str,
    task_id: &'a str,
    content: &'a str,
    audio_present: bool,
}

#[derive(Serialize)]
struct AudioChunkFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    task_id: &'a str,
    chunk_id: u64,
    /// Always `null`: the reply is streamed, its length is not known in advance.
    total_chunks: Option<u64>,
    sample_rate: u32,
}

#[derive(Serialize)]
struct ControlFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    task_id: &'a str,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    status: &'static str,
    task_id: &'a str,
    error: &'a str,
    code: ErrorCode,
}

fn json_message(frame: &impl Serialize) -> Message {
    // Our own plain structs always serialise; never panic on a socket if one ever did not.
    let text = serde_json::to_string(frame).unwrap_or_else(|error| {
        tracing::error!(%error, "legacy frame did not serialise");
        r#"{"status":"error","error":"internal: frame could not be serialised"}"#.to_owned()
    });
    Message::Text(text.into())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

// ---------------------------------------------------------------------------------------------
// `/ws/input`.

async fn run_input<S>(mut socket: S, state: AppState, tasks: LegacyTasks)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let Some(log) = tasks.open(Instant::now()) else {
        tracing::warn!("legacy input refused: too many open tasks");
        let _ = socket
            .send(Message::Text(
                "Error: too many tasks are open; try again later".into(),
            ))
            .await;
        let _ = socket
            .send(close(CLOSE_TRY_AGAIN_LATER, "too many tasks"))
            .await;
        return;
    };
    let task_id = log.id.as_str();
    let assigned = json_message(&SystemFrame {
        kind: "system",
        action: "task_id_assigned",
        status: None,
        task_id,
        error: None,
        code: None,
    });
    if socket.send(assigned).await.is_err() {
        log.fail(abandoned(), Instant::now());
        return;
    }
    tracing::debug!(task_id, "legacy task opened");

    let limits = tasks.limits().clone();
    let mut upload = Upload::new(&limits);
    // The upload's bounds start with its first frame: the original page opens this socket
    // ahead of the user's message, and an idle page must keep it. Pings find dead peers.
    let mut timer = UploadTimer::default();
    let ping_every = (limits.peer_timeout / 3).max(Duration::from_millis(10));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A bound the client overstepped (time, size) closes with 1008, a message over the socket
    // limit with 1009, a text frame that is not UTF-8 with 1007; everything else with 1000.
    let mut close_code = CLOSE_NORMAL;
    let uploaded = loop {
        let event = tokio::select! {
            () = timer.expired() => InputEvent::OutOfTime,
            _ = heartbeat.tick() => InputEvent::Heartbeat,
            incoming = socket.next() => InputEvent::Incoming(incoming),
        };
        let message = match event {
            InputEvent::OutOfTime => {
                close_code = CLOSE_POLICY;
                break Err(WireError::new(
                    ErrorCode::InvalidRequest,
                    "no upload_complete in time: the upload was idle or took too long",
                ));
            }
            InputEvent::Heartbeat => {
                if last_heard.elapsed() >= limits.peer_timeout {
                    tracing::debug!(task_id, "legacy input peer is gone (no pong)");
                    log.fail(abandoned(), Instant::now());
                    let _ = socket
                        .send(close(CLOSE_GOING_AWAY, "no answer within the peer timeout"))
                        .await;
                    return;
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    log.fail(abandoned(), Instant::now());
                    return;
                }
                continue;
            }
            InputEvent::Incoming(None | Some(Ok(Message::Close(_)))) => {
                log.fail(abandoned(), Instant::now());
                return;
            }
            InputEvent::Incoming(Some(Err(error))) => {
                match unreadable(crate::routes::ws::read_error(error)) {
                    Some((code, error)) => {
                        close_code = code;
                        break Err(error);
                    }
                    None => {
                        log.fail(abandoned(), Instant::now());
                        return;
                    }
                }
            }
            InputEvent::Incoming(Some(Ok(message))) => message,
        };
        last_heard = Instant::now();
        let step = match message {
            Message::Text(text) => {
                timer.frame(&limits);
                upload.on_text(text.as_str())
            }
            Message::Binary(bytes) => {
                timer.frame(&limits);
                upload.on_binary(&bytes)
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        match step {
            Step::Silent => {}
            Step::Reply(reply) => {
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    log.fail(abandoned(), Instant::now());
                    return;
                }
            }
            Step::Complete => break upload.finish(),
            Step::Abort(error) => {
                close_code = CLOSE_POLICY;
                break Err(error);
            }
        }
    };
    let started = match uploaded {
        Ok(text) => start_turn(&state, &tasks, &log, text).await,
        Err(error) => Err(error),
    };
    let answer = match &started {
        Ok(()) => SystemFrame {
            kind: "system",
            action: "upload_processed",
            status: Some("queued"),
            task_id,
            error: None,
            code: None,
        },
        Err(error) => {
            tracing::info!(task_id, code = error.code.as_str(), message = %error.message, "legacy upload refused");
            SystemFrame {
                kind: "system",
                action: "upload_processed",
                status: Some("error"),
                task_id,
                error: Some(&error.message),
                code: Some(error.code),
            }
        }
    };
    let _ = socket.send(json_message(&answer)).await;
    let _ = socket.send(close(close_code, "upload processed")).await;
    if let Err(error) = started {
        log.fail(error, Instant::now());
    }
}

/// What the input loop waits on.
enum InputEvent {
    OutOfTime,
    Heartbeat,
    Incoming(Option<Result<Message, axum::Error>>),
}

/// The upload's idle and total bounds; unarmed until the first data frame.
#[derive(Default)]
struct UploadTimer {
    idle_until: Option<Instant>,
    deadline: Option<Instant>,
}

impl UploadTimer {
    /// A data frame arrived: the upload has begun (or goes on).
    fn frame(&mut self, limits: &LegacyLimits) {
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + limits.upload_deadline);
        self.idle_until = Some((now + limits.upload_idle).min(deadline));
    }

    /// Completes when a bound has passed; never before the first frame.
    async fn expired(&self) {
        match self.idle_until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// A message the socket library refused: the close code and the error the client is told, or
/// `None` when the connection itself failed.
fn unreadable(error: koto_relay::ReadError) -> Option<(u16, WireError)> {
    use koto_relay::ReadError;
    match error {
        ReadError::TooBig(_) => Some((
            koto_relay::close_code::MESSAGE_TOO_BIG,
            too_large(format!(
                "a message is larger than {MAX_MESSAGE_BYTES} bytes (1 MiB); send text or \
                 smaller chunks"
            )),
        )),
        ReadError::NotUtf8(_) => Some((
            koto_relay::close_code::INVALID_PAYLOAD,
            WireError::new(ErrorCode::InvalidRequest, "a text frame is not valid UTF-8"),
        )),
        ReadError::Broken(_) => None,
    }
}

fn abandoned() -> WireError {
    WireError::new(
        ErrorCode::InvalidRequest,
        "the input socket closed before upload_complete",
    )
}

/// Submits the uploaded text as the task's turn and hands the turn to a pump that writes its
/// output into the task's log. The pump, not a socket, owns the turn.
async fn start_turn(
    state: &AppState,
    tasks: &LegacyTasks,
    log: &Arc<TaskLog>,
    text: UploadedText,
) -> Result<(), WireError> {
    let received_at = Instant::now();
    // A hyphenated UUID is 36 characters of [0-9a-f-]: always a valid sessionId.
    let session = SessionId::parse(&log.id)
        .map_err(|error| WireError::new(ErrorCode::Internal, error.to_string()))?;
    if let Ok(bucket) = SessionId::parse(RATE_KEY) {
        state.check_rate(&bucket).map_err(|error| error.error)?;
    }
    // Subscribed before the turn starts, so not one frame of it is missed.
    let live = state.engine.relay().map(|relay| {
        relay.subscribe(ClientFilter {
            session: Some(session.clone()),
            audio: true,
            binary_audio: false,
        })
    });
    let submission = state
        .engine
        .submit(TurnRequest {
            session,
            turn: None,
            kind: InputKind::Text,
            content: text.content,
            lang: text.lang,
            received_at,
        })
        .await
        .map_err(|error| AppError::from(error).error)?;
    let Submission::Turn(handle) = submission else {
        // Only COMMAND inputs end without a turn; uploads are always TEXT.
        return Err(WireError::new(
            ErrorCode::Internal,
            "the input did not start a turn",
        ));
    };
    let span = tracing::info_span!("legacy_task", correlationId = %handle.correlation_id);
    // Known before the first audio: the success frame can come at the LLM's end, ahead of it.
    let speaks = state.engine.flags().tts_streaming && state.engine.voice().is_some();
    let pump = Pump {
        log: Arc::clone(log),
        handle,
        live,
        linger: tasks.limits().audio_linger,
        progress: Progress {
            speaks,
            ..Progress::default()
        },
    };
    tasks.spawn_pump(pump.run().instrument(span));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The upload, as a state machine with no IO.

/// What the input socket does with one client frame.
#[derive(Debug, PartialEq)]
enum Step {
    /// Accepted, nothing to answer (the original did not answer metadata).
    Silent,
    /// Answer with this plain text.
    Reply(String),
    /// `upload_complete`.
    Complete,
    /// A bound was exceeded: answer `upload_processed` with this error and close.
    Abort(WireError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UploadKind {
    Text,
    Audio,
    Image,
    Other(String),
}

impl UploadKind {
    fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => UploadKind::Text,
            "audio" => UploadKind::Audio,
            "image" => UploadKind::Image,
            other => UploadKind::Other(other.to_owned()),
        }
    }

    fn name(&self) -> &str {
        match self {
            UploadKind::Text => "text",
            UploadKind::Audio => "audio",
            UploadKind::Image => "image",
            UploadKind::Other(name) => name,
        }
    }
}

#[derive(Debug, PartialEq)]
struct UploadedText {
    content: String,
    lang: Option<String>,
}

struct Upload {
    max_chunks: u64,
    max_bytes: usize,
    max_text_bytes: usize,
    /// Set by the first accepted metadata; one upload carries one type.
    kind: Option<UploadKind>,
    /// The `chunk_id` the next metadata must carry (= binary chunks received).
    expected_chunk: u64,
    /// Metadata for `expected_chunk` was accepted; its binary frame may come.
    announced: bool,
    inline_text: Option<String>,
    lang: Option<String>,
    text_bytes: Vec<u8>,
    received_bytes: usize,
}

impl Upload {
    fn new(limits: &LegacyLimits) -> Self {
        Upload {
            max_chunks: limits.max_chunks,
            max_bytes: limits.max_upload_bytes,
            max_text_bytes: limits.max_text_bytes,
            kind: None,
            expected_chunk: 0,
            announced: false,
            inline_text: None,
            lang: None,
            text_bytes: Vec::new(),
            received_bytes: 0,
        }
    }

    fn on_text(&mut self, raw: &str) -> Step {
        let Ok(value) = serde_json::from_str::<Value>(raw) else {
            return Step::Reply(INVALID_JSON.to_owned());
        };
        let Some(object) = value.as_object() else {
            return Step::Reply("Error: expected a JSON object".to_owned());
        };
        match object.get("action").and_then(Value::as_str) {
            Some("upload_complete") => Step::Complete,
            Some("data_chunk") => self.on_metadata(object),
            Some(other) => Step::Reply(format!(
                "Error: unknown action {other:?}; expected data_chunk or upload_complete"
            )),
            None => Step::Reply(
                "Error: missing action; expected data_chunk or upload_complete".to_owned(),
            ),
        }
    }

    fn on_metadata(&mut self, object: &serde_json::Map<String, Value>) -> Step {
        let Some(chunk_id) = object.get("chunk_id").and_then(Value::as_u64) else {
            return Step::Reply("Error: chunk_id must be an integer >= 0".to_owned());
        };
        let Some(kind) = object
            .get("type")
            .and_then(Value::as_str)
            .map(UploadKind::parse)
        else {
            return Step::Reply("Error: type must be \"text\" or \"audio\"".to_owned());
        };
        if chunk_id != self.expected_chunk {
            self.announced = false;
            return Step::Reply(format!(
                "Chunk ID mismatch: expected {}, got {chunk_id}",
                self.expected_chunk
            ));
        }
        if let Some(earlier) = &self.kind
            && *earlier != kind
        {
            return Step::Reply(format!(
                "Error: this upload is {}; one upload carries one type",
                earlier.name()
            ));
        }
        let inline = ["content", "text", "prompt"]
            .iter()
            .filter_map(|key| object.get(*key).and_then(Value::as_str))
            .map(str::trim)
            .find(|text| !text.is_empty());
        if let Some(text) = inline {
            if text.len() > self.max_text_bytes {
                return Step::Abort(too_large(format!(
                    "the text is larger than {} bytes",
                    self.max_text_bytes
                )));
            }
            self.inline_text = Some(text.to_owned());
        }
        if let Some(lang) = object
            .get("meta")
            .and_then(|meta| meta.get("lang"))
            .and_then(Value::as_str)
        {
            self.lang = Some(lang.to_owned());
        }
        self.kind = Some(kind);
        self.announced = true;
        Step::Silent
    }

    fn on_binary(&mut self, bytes: &[u8]) -> Step {
        if !self.announced {
            return Step::Reply(NO_METADATA.to_owned());
        }
        if self.expected_chunk >= self.max_chunks {
            return Step::Abort(too_large(format!(
                "an upload has at most {} chunks",
                self.max_chunks
            )));
        }
        self.received_bytes = self.received_bytes.saturating_add(bytes.len());
        if self.received_bytes > self.max_bytes {
            return Step::Abort(too_large(format!(
                "an upload has at most {} bytes",
                self.max_bytes
            )));
        }
        if self.kind == Some(UploadKind::Text) {
            if self.text_bytes.len() + bytes.len() > self.max_text_bytes {
                return Step::Abort(too_large(format!(
                    "the text is larger than {} bytes",
                    self.max_text_bytes
                )));
            }
            self.text_bytes.extend_from_slice(bytes);
        }
        // Audio is only counted: without an ASR provider it cannot be used.
        self.expected_chunk += 1;
        self.announced = false;
        Step::Reply(FILE_CHUNK_RECEIVED.to_owned())
    }

    fn finish(self) -> Result<UploadedText, WireError> {
        match self.kind {
            None => Err(WireError::new(
                ErrorCode::InvalidRequest,
                "nothing was uploaded: send a data_chunk before upload_complete",
            )),
            Some(UploadKind::Text) => {
                let content = if self.text_bytes.is_empty() {
                    self.inline_text.unwrap_or_default()
                } else {
                    String::from_utf8(self.text_bytes)
                        .map_err(|_| {
                            WireError::new(ErrorCode::InvalidRequest, "the text is not UTF-8")
                        })?
                        .trim()
                        .to_owned()
                };
                if content.is_empty() {
                    return Err(WireError::new(ErrorCode::EmptyContent, "the text is empty"));
                }
                Ok(UploadedText {
                    content,
                    lang: self.lang,
                })
            }
            Some(UploadKind::Audio) => Err(WireError::new(ErrorCode::NotAvailable, NO_ASR)),
            Some(UploadKind::Image) => Err(WireError::new(
                ErrorCode::UnsupportedMediaType,
                "image input is not supported; send text instead",
            )),
            Some(UploadKind::Other(name)) => Err(WireError::new(
                ErrorCode::InvalidType,
                format!("unsupported upload type {name:?}; send text"),
            )),
        }
    }
}

fn too_large(message: String) -> WireError {
    WireError::new(ErrorCode::PayloadTooLarge, message)
}

// ---------------------------------------------------------------------------------------------
// The pump: one task's turn events and relay frames → the task's log.

struct Pump {
    log: Arc<TaskLog>,
    /// Owning it keeps the turn alive; it is dropped only after `Done`.
    handle: TurnHandle,
    /// This session's frames from the relay (audio, END, STOP_ACK); `None` without a relay or
    /// once the relay dropped the subscription.
    live: Option<LiveClient>,
    linger: Duration,
    progress: Progress,
}

#[derive(Default)]
struct Progress {
    /// The engine speaks replies (speech on, a voice ready) when the turn started.
    speaks: bool,
    /// The text delivered so far.
    reply: String,
    /// On `STOPPED`: what the listener heard (the engine's account, after the fence).
    heard: Option<String>,
    /// The success frame was logged.
    replied: bool,
    /// An error frame was logged.
    failed: bool,
    /// `HINT_TTS_START`: the reply is being spoken.
    speaking: bool,
    audio_seen: bool,
    /// END arrived before the success frame; logged right after it.
    end_held: bool,
    /// END was logged.
    ended: bool,
    /// END or STOP_ACK seen: no more audio of this turn.
    audio_over: bool,
    interrupted: bool,
}

impl Progress {
    fn audio_present(&self) -> bool {
        self.speaks || self.speaking || self.audio_seen
    }
}

impl Pump {
    async fn run(mut self) {
        let turn = self.handle.turn;
        loop {
            let next = tokio::select! {
                frame = next_live(&mut self.live) => Next::Frame(frame),
                event = self.handle.events.recv() => Next::Event(event),
            };
            match next {
                Next::Frame(Some(frame)) => self.on_frame(&frame, turn),
                Next::Frame(None) => self.live = None,
                Next::Event(Some(TurnEvent::Done(stats))) => {
                    self.progress.interrupted |= stats.interrupted;
                    break;
                }
                Next::Event(Some(event)) => self.on_event(event),
                Next::Event(None) => break,
            }
        }
        // The relay paces audio in real time, so its last chunks and END (or a STOP_ACK) can
        // come well after the turn's `Done`.
        let progress = &self.progress;
        let more_audio = progress.audio_present() || progress.interrupted;
        if more_audio && !progress.audio_over {
            while let Some(live) = self.live.as_mut() {
                match tokio::time::timeout(self.linger, live.recv()).await {
                    Ok(Some(frame)) => {
                        self.on_frame(&frame, turn);
                        if self.progress.audio_over {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.finish();
    }

    fn on_event(&mut self, event: TurnEvent) {
        let progress = &mut self.progress;
        match event {
            TurnEvent::TextDelta { content, eos } => {
                progress.reply.push_str(&content);
                if eos {
                    self.log.push(Outgoing::Reply {
                        content: Arc::from(progress.reply.as_str()),
                        audio_present: progress.audio_present(),
                    });
                    progress.replied = true;
                    if progress.end_held {
                        progress.end_held = false;
                        progress.ended = true;
                        self.log.push(Outgoing::Control(ControlAction::End));
                    }
                }
            }
            TurnEvent::Control(control) => match control.action.as_str() {
                "HINT_TTS_START" => progress.speaking = true,
                "STOPPED" => {
                    progress.interrupted = true;
                    progress.heard = control.heard;
                }
                _ => {}
            },
            TurnEvent::Error(error) => {
                progress.failed = true;
                self.log.push(Outgoing::Error(error));
            }
            TurnEvent::Done(stats) => progress.interrupted |= stats.interrupted,
        }
    }

    fn on_frame(&mut self, frame: &LiveFrame, turn: koto_core::TurnNo) {
        let progress = &mut self.progress;
        if progress.audio_over {
            return;
        }
        match frame.frame() {
            RelayFrame::SpeechChunk(chunk) if chunk.turn == turn => {
                let pcm = match frame.pcm() {
                    Some(pcm) => Bytes::copy_from_slice(pcm),
                    None => match chunk.decode_pcm() {
                        Ok(samples) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
                        Err(error) => {
                            tracing::warn!(%error, "dropping a chunk with bad pcm");
                            return;
                        }
                    },
                };
                progress.audio_seen = true;
                self.log.push(Outgoing::Audio {
                    chunk_id: chunk.seq,
                    sample_rate: chunk.sample_rate(),
                    pcm,
                });
            }
            RelayFrame::Control(control)
                if control.action == ControlAction::End && control.turn == Some(turn) =>
            {
                progress.audio_over = true;
                // The success frame always comes before END.
                if progress.replied {
                    progress.ended = true;
                    self.log.push(Outgoing::Control(ControlAction::End));
                } else {
                    progress.end_held = true;
                }
            }
            RelayFrame::Control(control)
                if control.action == ControlAction::StopAck
                    && control.turn.is_none_or(|acked| acked == turn) =>
            {
                progress.audio_over = true;
                progress.interrupted = true;
                self.log.push(Outgoing::Control(ControlAction::StopAck));
            }
            _ => {}
        }
    }

    /// The task's last frames. A stopped turn: STOP_ACK (if the relay's did not come), the
    /// heard text as the success frame (if none went), `audio_complete`. A spoken reply:
    /// `audio_complete` after END. Either way the original page leaves "processing".
    fn finish(mut self) {
        let progress = &mut self.progress;
        if progress.end_held {
            // A failed turn still ends its audio.
            progress.ended = true;
            self.log.push(Outgoing::Control(ControlAction::End));
        }
        if progress.interrupted {
            if !progress.audio_over {
                // Stopped without the relay (a `COMMAND stop`, shutdown): say so all the same.
                self.log.push(Outgoing::Control(ControlAction::StopAck));
            }
            if !progress.replied && !progress.failed {
                let heard = progress
                    .heard
                    .take()
                    .unwrap_or_else(|| progress.reply.clone());
                self.log.push(Outgoing::Reply {
                    content: Arc::from(heard),
                    audio_present: progress.audio_present(),
                });
                progress.replied = true;
            }
            self.log.push(Outgoing::AudioComplete);
        } else if progress.replied && progress.audio_present() {
            self.log.push(Outgoing::AudioComplete);
        }
        if !progress.replied && !progress.failed && !progress.interrupted {
            self.log.push(Outgoing::Error(WireError::new(
                ErrorCode::Internal,
                "the turn ended without a reply",
            )));
        }
        self.log.end(Instant::now());
        tracing::debug!(task_id = %self.log.id, "legacy task ended");
    }
}

enum Next {
    Frame(Option<LiveFrame>),
    Event(Option<TurnEvent>),
}

async fn next_live(live: &mut Option<LiveClient>) -> Option<LiveFrame> {
    match live {
        Some(client) => client.recv().await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// `/ws/output/{task_id}`.

async fn run_output<S>(mut socket: S, tasks: LegacyTasks, raw_id: String)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin,
{
    let Ok(uuid) = Uuid::parse_str(&raw_id) else {
        let _ = socket
            .send(close(CLOSE_NOT_FOUND, "Invalid task_id format"))
            .await;
        return;
    };
    let task_id = uuid.hyphenated().to_string();
    let Some(log) = tasks.find(&task_id, Instant::now()) else {
        let unknown = Outgoing::Error(WireError::new(
            ErrorCode::NotFound,
            "unknown or expired task_id: open /ws/input for a new task",
        ));
        for message in unknown.messages(&task_id) {
            let _ = socket.send(message).await;
        }
        let _ = socket.send(close(CLOSE_NOT_FOUND, "unknown task_id")).await;
        return;
    };
    // Subscribed before the first read: a push after it wakes us even if the read missed it.
    let mut changes = log.changed.subscribe();
    let mut cursor = 0;
    loop {
        let (entries, ended) = log.read_from(cursor);
        for entry in entries {
            cursor = entry.index + 1;
            for message in entry.item.messages(&task_id) {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
        }
        if ended {
            let _ = socket.send(close(CLOSE_NORMAL, "task finished")).await;
            return;
        }
        let incoming = tokio::select! {
            changed = changes.changed() => {
                // The sender lives in `log`, which we hold: it cannot be gone.
                if changed.is_err() {
                    return;
                }
                continue;
            }
            incoming = socket.next() => incoming,
        };
        match incoming {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Err(error)) => {
                // Too big or not UTF-8: say so with the close code; else the socket is gone.
                if let Some((code, _)) = unreadable(crate::routes::ws::read_error(error)) {
                    let _ = socket.send(close(code, "unreadable message")).await;
                }
                return;
            }
            // The protocol has nothing for the client to say here.
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limits() -> LegacyLimits {
        LegacyLimits {
            max_chunks: 3,
            max_upload_bytes: 10,
            max_text_bytes: 8,
            ..LegacyLimits::default()
        }
    }

    fn reply(text: &str) -> Step {
        Step::Reply(text.to_owned())
    }

    #[test]
    fn inline_text_and_binary_text_are_both_inputs() {
        let mut inline = Upload::new(&LegacyLimits::default());
        let meta = r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":" hi ","meta":{"lang":"en"}}"#;
        assert_eq!(
            inline.on_text(meta),
            Step::Silent,
            "metadata is not answered"
        );
        assert_eq!(
            inline.on_text(r#"{"action":"upload_complete"}"#),
            Step::Complete
        );
        assert_eq!(
            inline.finish(),
            Ok(UploadedText {
                content: "hi".into(),
                lang: Some("en".into())
            }),
            "inline text, trimmed, with its language"
        );

        let mut binary = Upload::new(&LegacyLimits::default());
        binary.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(
            binary.on_binary("今晚".as_bytes()),
            reply(FILE_CHUNK_RECEIVED)
        );
        binary.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#);
        assert_eq!(
            binary.on_binary("玩什么".as_bytes()),
            reply(FILE_CHUNK_RECEIVED)
        );
        assert_eq!(
            binary.finish().map(|text| text.content),
            Ok("今晚玩什么".to_owned()),
            "chunks are joined in order"
        );
    }

    #[test]
    fn chunk_gaps_and_orphan_binaries_are_answered_like_the_original() {
        let mut upload = Upload::new(&LegacyLimits::default());
        assert_eq!(
            upload.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#),
            reply("Chunk ID mismatch: expected 0, got 1")
        );
        assert_eq!(
            upload.on_binary(b"x"),
            reply(NO_METADATA),
            "the mismatched metadata announced nothing"
        );
        upload.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(upload.on_binary(b"ok"), reply(FILE_CHUNK_RECEIVED));
        assert_eq!(
            upload.on_binary(b"again"),
            reply(NO_METADATA),
            "every binary needs its own metadata"
        );
        assert_eq!(upload.finish().map(|t| t.content), Ok("ok".to_owned()));
    }

    #[test]
    fn malformed_frames_get_answers_not_panics() {
        let mut upload = Upload::new(&LegacyLimits::default());
        assert_eq!(upload.on_text("{not json"), reply(INVALID_JSON));
        for bad in [
            "[1,2]",
            "42",
            r#"{"type":"text"}"#,
            r#"{"action":"dance"}"#,
            r#"{"action":"data_chunk","type":"text","chunk_id":-1}"#,
            r#"{"action":"data_chunk","type":"text","chunk_id":"0"}"#,
            r#"{"action":"data_chunk","chunk_id":0}"#,
        ] {
            let step = upload.on_text(bad);
            assert!(
                matches!(&step, Step::Reply(text) if text.starts_with("Error: ")),
                "{bad} gets an error reply, got {step:?}"
            );
        }
        assert_eq!(
            upload.finish().unwrap_err().code,
            ErrorCode::InvalidRequest,
            "nothing valid was uploaded"
        );
    }

    #[test]
    fn audio_is_received_then_refused_for_want_of_asr() {
        let mut upload = Upload::new(&LegacyLimits::default());
        upload.on_text(r#"{"type":"audio","chunk_id":0,"action":"data_chunk"}"#);
        assert_eq!(upload.on_binary(&[0x1a, 0x45]), reply(FILE_CHUNK_RECEIVED));
        assert!(
            matches!(
                upload.on_text(r#"{"type":"text","chunk_id":1,"action":"data_chunk"}"#),
                Step::Reply(text) if text.contains("one type")
            ),
            "types do not mix"
        );
        let error = upload.finish().unwrap_err();
        assert_eq!(error.code, ErrorCode::NotAvailable);
        assert!(error.message.contains("ASR"), "{}", error.message);
    }

    #[test]
    fn bounds_abort_the_upload() {
        let mut chunks = Upload::new(&limits());
        for id in 0..3 {
            chunks.on_text(&format!(
                r#"{{"type":"audio","chunk_id":{id},"action":"data_chunk"}}"#
            ));
            assert_eq!(chunks.on_binary(b"a"), reply(FILE_CHUNK_RECEIVED));
        }
        chunks.on_text(r#"{"type":"audio","chunk_id":3,"action":"data_chunk"}"#);
        assert!(
            matches!(chunks.on_binary(b"a"), Step::Abort(e) if e.code == ErrorCode::PayloadTooLarge),
            "a fourth chunk is over max_chunks"
        );

        let mut bytes = Upload::new(&limits());
        bytes.on_text(r#"{"type":"audio","chunk_id":0,"action":"data_chunk"}"#);
        assert!(
            matches!(bytes.on_binary(&[0; 11]), Step::Abort(_)),
            "over max_upload_bytes"
        );

        let mut text = Upload::new(&limits());
        text.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        assert!(
            matches!(text.on_binary(&[b'a'; 9]), Step::Abort(_)),
            "over max_text_bytes"
        );
        let mut inline = Upload::new(&limits());
        assert!(
            matches!(
                inline.on_text(
                    r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":"123456789"}"#
                ),
                Step::Abort(_)
            ),
            "inline text has the same bound"
        );
    }

    #[test]
    fn empty_or_broken_text_is_refused() {
        let mut blank = Upload::new(&LegacyLimits::default());
        blank.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk","content":"   "}"#);
        assert_eq!(blank.finish().unwrap_err().code, ErrorCode::EmptyContent);
        let mut broken = Upload::new(&LegacyLimits::default());
        broken.on_text(r#"{"type":"text","chunk_id":0,"action":"data_chunk"}"#);
        broken.on_binary(&[0xff, 0xfe]);
        assert_eq!(broken.finish().unwrap_err().code, ErrorCode::InvalidRequest);
    }

    fn audio(chunk_id: u64, n_bytes: usize) -> Outgoing {
        Outgoing::Audio {
            chunk_id,
            sample_rate: 24_000,
            pcm: Bytes::from(vec![0u8; n_bytes]),
        }
    }

    #[test]
    fn the_log_drops_oldest_audio_first_and_readers_skip_the_gap() {
        let log = TaskLog::new("t".into(), 3 * (100 + 64) + 200);
        log.push(audio(0, 100));
        log.push(Outgoing::Reply {
            content: Arc::from("hello"),
            audio_present: true,
        });
        log.push(audio(1, 100));
        log.push(audio(2, 100));
        log.push(audio(3, 100));
        let (entries, ended) = log.read_from(0);
        assert!(!ended);
        let chunk_ids: Vec<Option<u64>> = entries
            .iter()
            .map(|entry| match entry.item {
                Outgoing::Audio { chunk_id, .. } => Some(chunk_id),
                _ => None,
            })
            .collect();
        assert_eq!(
            chunk_ids,
            [None, Some(1), Some(2), Some(3)],
            "chunk 0 went to make room; the reply stayed"
        );
        let (tail, _) = log.read_from(1);
        assert_eq!(
            tail.len(),
            4,
            "a cursor on a dropped entry resumes at the next kept one"
        );
        let (rest, _) = log.read_from(entries[3].index + 1);
        assert!(rest.is_empty(), "nothing after the last entry");
    }

    #[test]
    fn an_ended_log_takes_nothing_more() {
        let log = TaskLog::new("t".into(), 1 << 20);
        log.fail(WireError::new(ErrorCode::Internal, "x"), Instant::now());
        log.push(audio(0, 10));
        let (entries, ended) = log.read_from(0);
        assert!(ended, "fail ends the log");
        assert_eq!(entries.len(), 1, "only the error is kept");
    }

    #[tokio::test]
    async fn ended_tasks_are_kept_for_the_retain_window_and_make_room_when_full() {
        let tasks = LegacyTasks::new(LegacyLimits {
            max_tasks: 2,
            retain: Duration::from_secs(60),
            ..LegacyLimits::default()
        });
        // Explicit instants: the registry takes `now`, so no clock needs to move.
        let t0 = Instant::now();
        let first = tasks.open(t0).expect("room");
        let second = tasks.open(t0).expect("room");
        assert!(tasks.open(t0).is_none(), "two running tasks fill the board");
        first.end(t0);
        let third = tasks.open(t0).expect("the ended task makes room");
        assert!(
            tasks.find(&first.id, t0).is_none(),
            "the oldest ended task was evicted"
        );
        second.end(t0);
        assert!(
            tasks
                .find(&second.id, t0 + Duration::from_secs(59))
                .is_some(),
            "still within the retain window"
        );
        assert!(
            tasks
                .find(&second.id, t0 + Duration::from_secs(60))
                .is_none(),
            "expired after the retain window"
        );
        assert!(
            tasks
                .find(&third.id, t0 + Duration::from_secs(3600))
                .is_some(),
            "a running task never expires"
        );
        assert!(
            Uuid::parse_str(&third.id).is_ok_and(|id| id.get_version_num() == 4),
            "task ids are UUIDv4"
        );
    }

    #[test]
    fn output_frames_have_the_contract_shapes() {
        let text = |message: &Message| match message {
            Message::Text(text) => serde_json::from_str::<Value>(text.as_str()).unwrap(),
            other => panic!("expected text, got {other:?}"),
        };
        let reply = Outgoing::Reply {
            content: Arc::from("hi"),
            audio_present: true,
        }
        .messages("id");
        assert_eq!(
            text(&reply[0]),
            serde_json::json!({"status":"success","task_id":"id","content":"hi","audio_present":true})
        );
        let chunk = audio(7, 4).messages("id");
        assert_eq!(
            text(&chunk[0]),
            serde_json::json!({"type":"audio_chunk","task_id":"id","chunk_id":7,"total_chunks":null,"sample_rate":24000}),
            "total_chunks is present and null"
        );
        assert!(matches!(&chunk[1], Message::Binary(pcm) if pcm.len() == 4));
        assert_eq!(
            text(&Outgoing::Control(ControlAction::End).messages("id")[0]),
            serde_json::json!({"type":"control","action":"END","task_id":"id"})
        );
        assert_eq!(
            text(&Outgoing::Error(WireError::new(ErrorCode::LlmAuth, "no")).messages("id")[0]),
            serde_json::json!({"status":"error","task_id":"id","error":"no","code":"llm_auth"})
        );
    }
}
