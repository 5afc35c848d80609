//! `/ws/input`: assigns the task id, feeds the socket's frames to an [`Upload`], answers
//! `upload_processed`, and starts the task's turn with a pump (`output`) that owns it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use koto_core::SessionId;
use koto_core::turn::{InputKind, InputMeta};
use koto_engine::{Submission, TurnRequest};
use koto_protocol::legacy::SystemFrame;
use koto_protocol::{ErrorCode, WireError};
use koto_providers::audio::decode::DecodeLimits;
use koto_relay::ClientFilter;
use tokio::time::Instant;
use tracing::Instrument;

use super::output::Pump;
use super::tasks::{LegacyTasks, TaskLog};
use super::upload::{Step, Upload, UploadTimer, Uploaded};
use super::{
    CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER, close, json_message,
    unreadable,
};
use crate::AppState;
use crate::error::AppError;

/// Every legacy upload shares this rate-limit bucket (`INPUT_RATE_PER_SEC`/`INPUT_BURST`): each
/// upload is a new session, so a per-session bucket would never fill.
const RATE_KEY: &str = "legacy:ws-input";

/// Runs one `/ws/input` socket: one upload, then its turn.
pub(super) async fn run<S>(mut socket: S, state: AppState, tasks: LegacyTasks)
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
    // The ASR's bounds as they were at the upload's first frame: an upload under way when a
    // lowered ASR_MAX_UPLOAD_BYTES or ASR_MAX_SECONDS is saved keeps the bounds it began with
    // (its client was told nothing else); the next upload gets the new ones.
    let mut asr_limits = None;
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
                asr_limits.get_or_insert_with(|| state.asr.limits());
                upload.on_text(text.as_str())
            }
            Message::Binary(bytes) => {
                timer.frame(&limits);
                asr_limits.get_or_insert_with(|| state.asr.limits());
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
        Ok(uploaded) => {
            let asr_limits = asr_limits.unwrap_or_else(|| state.asr.limits());
            start_turn(&state, &tasks, &log, uploaded, asr_limits).await
        }
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

fn abandoned() -> WireError {
    WireError::new(
        ErrorCode::InvalidRequest,
        "the input socket closed before upload_complete",
    )
}

/// Submits the upload as the task's turn — text as it is, a recording as what the ASR heard in
/// it (`ASR_FINAL`, `meta.source = mic`) — and hands the turn to a pump that writes its output
/// into the task's log. The pump, not a socket, owns the turn. A recording that cannot be decoded
/// or heard starts no turn and stores nothing: the error is the upload's answer.
async fn start_turn(
    state: &AppState,
    tasks: &LegacyTasks,
    log: &Arc<TaskLog>,
    uploaded: Uploaded,
    asr_limits: DecodeLimits,
) -> Result<(), WireError> {
    let received_at = Instant::now();
    // A hyphenated UUID is 36 characters of [0-9a-f-]: always a valid sessionId.
    let session = SessionId::parse(&log.id)
        .map_err(|error| WireError::new(ErrorCode::Internal, error.to_string()))?;
    if let Ok(bucket) = SessionId::parse(RATE_KEY) {
        state.check_rate(&bucket).map_err(|error| error.error)?;
    }
    let request = match uploaded {
        Uploaded::Text(text) => TurnRequest {
            session: session.clone(),
            turn: None,
            kind: InputKind::Text,
            content: text.content,
            lang: text.lang,
            meta: InputMeta::typed(),
            received_at,
        },
        Uploaded::Audio(audio) => {
            let correlation_id = format!("{session}#audio");
            let transcript = crate::routes::audio::hear(
                &state.asr,
                asr_limits,
                audio.bytes.into(),
                audio.lang.clone(),
                correlation_id,
            )
            .await
            .map_err(|error| error.wire())?;
            tracing::info!(task_id = %log.id, chars = transcript.text.chars().count(), duration_ms = transcript.duration_ms, "legacy voice input heard");
            crate::routes::audio::speech_turn(
                session.clone(),
                None,
                &transcript,
                audio.lang,
                received_at,
            )
        }
    };
    // Subscribed before the turn starts, so not one frame of it is missed.
    let live = state.engine.relay().map(|relay| {
        relay.subscribe(ClientFilter {
            session: Some(session.clone()),
            audio: true,
            binary_audio: false,
            ..ClientFilter::default()
        })
    });
    let submission = state
        .engine
        .submit(request)
        .await
        .map_err(|error| AppError::from(error).error)?;
    let Submission::Turn(handle) = submission else {
        // Only COMMAND inputs end without a turn; uploads are TEXT or ASR_FINAL.
        return Err(WireError::new(
            ErrorCode::Internal,
            "the input did not start a turn",
        ));
    };
    let span = tracing::info_span!("legacy_task", correlationId = %handle.correlation_id);
    // Known before the first audio: the success frame can come at the LLM's end, ahead of it.
    let speaks = state.engine.flags().tts_streaming && state.engine.voice().is_some();
    let pump = Pump::new(
        Arc::clone(log),
        handle,
        live,
        tasks.limits().audio_linger,
        speaks,
    );
    tasks.spawn_pump(pump.run().instrument(span));
    Ok(())
}
