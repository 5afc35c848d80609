//! The original Vue front end's two-socket protocol (CONTRACTS §4): `WS /ws/input` uploads one
//! input per connection and starts a turn whose sessionId is the task id, `WS /ws/output/{task_id}`
//! streams that turn's reply, audio and control frames. A thin adapter over `Engine::submit`
//! and the relay; recordings go through the same decode → ASR path as `/chat/audio`
//! (`routes::audio::hear`); no image input.
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
//!   are joined in order and read as UTF-8; audio chunks are joined in order into one file
//!   (WebM/Opus as the page's MediaRecorder sends it, OGG/Opus, MP3 or WAV).
//! - `{"action":"upload_complete"}` → `{"type":"system","action":"upload_processed",
//!   "status":"queued","task_id":"…"}` once the turn has started, or `"status":"error"` with
//!   `"error"` (a sentence) and `"code"` (CONTRACTS error code); then the server closes the
//!   socket (1000). An audio upload is decoded and transcribed before that answer; its turn is an
//!   `ASR_FINAL` with `meta.source = mic`. Its errors: `not_available` (`ASR_PROVIDER=off`),
//!   `payload_too_large` (over `ASR_MAX_UPLOAD_BYTES` or `ASR_MAX_SECONDS` as they were at the
//!   upload's first frame: a bound saved while it is under way applies from the next upload),
//!   `unsupported_audio`
//!   (not a format we decode, truncated, broken), `asr_failed` (the ASR failed or timed out),
//!   `empty_content` (nothing was heard); none of them stores a turn.
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
//! The turn belongs to the task, not to a socket: closing `/ws/input` or `/ws/output` does not//!
//! # Modules
//!
//! This module holds the router, [`LegacyLimits`] and the route adapters; the frames' JSON
//! shapes are `koto_protocol::legacy`. `input` runs `/ws/input` and starts the turn, `upload`
//! assembles one upload from metadata and binary frames (no IO), `tasks` is the task board and
//! each task's replayable log, `output` turns the turn's events and relay frames into the
//! original frames (the STOP sequence included) and runs `/ws/output/{task_id}`.

mod input;
mod output;
mod tasks;
mod upload;

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use koto_protocol::{ErrorCode, WireError};
use serde::Serialize;

use crate::AppState;
pub use tasks::LegacyTasks;

/// Largest WebSocket message accepted (one MediaRecorder blob or one text upload).
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Close code for a task id that is not a UUID or not known (the original output handler's).
const CLOSE_NOT_FOUND: u16 = 4004;
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

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
    /// Binary bytes per upload (audio is then bounded again by `ASR_MAX_UPLOAD_BYTES`).
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
    // `MAX_SOCKETS`: a tokenless origin may open these two, so they count like every other.
    let Some(slot) = state.sockets.try_open() else {
        return state.sockets.refuse(upgrade);
    };
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            input::run(socket, state, tasks).await;
        })
}

pub async fn output(
    State(state): State<AppState>,
    Extension(tasks): Extension<LegacyTasks>,
    Path(task_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = state.sockets.try_open() else {
        return state.sockets.refuse(upgrade);
    };
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            output::run(socket, tasks, task_id).await;
        })
}

/// One client frame of an upload, for [`fuzz_upload`].
#[doc(hidden)]
#[derive(Debug)]
pub enum FuzzFrame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What [`fuzz_upload`] assembled: the text, or the audio's length in bytes.
#[doc(hidden)]
#[derive(Debug, PartialEq)]
pub enum FuzzUploaded {
    Text(String),
    Audio(usize),
}

/// Fuzzing and corpus-replay entry (`fuzz/`): `/ws/input`'s upload assembly fed `frames` as the
/// socket feeds it (a bound exceeded ends it, `upload_complete` finishes it), with no IO, no
/// timers and no engine. `None`: the frames ended before either.
#[doc(hidden)]
pub fn fuzz_upload(
    frames: &[FuzzFrame<'_>],
    limits: &LegacyLimits,
) -> Option<Result<FuzzUploaded, WireError>> {
    let mut upload = upload::Upload::new(limits);
    for frame in frames {
        let step = match frame {
            FuzzFrame::Text(text) => upload.on_text(text),
            FuzzFrame::Binary(bytes) => upload.on_binary(bytes),
        };
        match step {
            upload::Step::Silent | upload::Step::Reply(_) => {}
            upload::Step::Abort(error) => return Some(Err(error)),
            upload::Step::Complete => {
                return Some(upload.finish().map(|uploaded| match uploaded {
                    upload::Uploaded::Text(text) => FuzzUploaded::Text(text.content),
                    upload::Uploaded::Audio(audio) => FuzzUploaded::Audio(audio.bytes.len()),
                }));
            }
        }
    }
    None
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

fn too_large(message: String) -> WireError {
    WireError::new(ErrorCode::PayloadTooLarge, message)
}
