//! `POST /chat/stream` (CONTRACTS §1): validate, submit to the engine, stream its events as SSE.
//!
//! The SSE body owns the turn handle: when the client disconnects, hyper drops the body, the
//! handle's drop guard cancels the turn, and the LLM request is dropped (closing it upstream).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use koto_core::SessionId;
use koto_engine::{Submission, TurnEvent, TurnHandle, TurnRequest};
use koto_protocol::ErrorCode;
use koto_protocol::chat::{
    ChatStreamRequest, ControlEvent, Done, TextDelta, TurnStats, event, parse_input_kind,
    parse_turn,
};
use tokio::time::Instant;

use crate::AppState;
use crate::error::AppError;
use crate::routes::read_json;

/// Comment lines while the LLM is silent, so proxies and clients keep the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub async fn chat_stream(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let received_at = Instant::now();
    let body: ChatStreamRequest = read_json(request.into_body(), state.max_body_bytes).await?;
    let session = SessionId::parse(&body.session_id)
        .map_err(|error| AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string()))?;
    let turn = parse_turn(body.turn.as_ref())
        .map_err(|message| AppError::bad_request(ErrorCode::InvalidTurn, message))?;
    let kind = parse_input_kind(body.kind.as_ref())
        .map_err(|message| AppError::bad_request(ErrorCode::InvalidType, message))?;
    state.check_rate(&session)?;

    let submission = state
        .engine
        .submit(TurnRequest {
            session,
            turn,
            kind,
            content: body.content,
            lang: body.meta.lang,
            meta: koto_core::turn::InputMeta::typed(),
            received_at,
        })
        .await?;
    let events: Vec<TurnEvent> = match submission {
        Submission::Turn(handle) => return Ok(turn_response(handle)),
        Submission::Stopped { .. } => vec![
            TurnEvent::Control(ControlEvent::stopped("user_interrupt")),
            TurnEvent::Done(TurnStats::default()),
        ],
        Submission::Reset | Submission::Forgot { .. } => {
            vec![TurnEvent::Done(TurnStats::default())]
        }
    };
    Ok(sse(stream::iter(events)))
}

/// The SSE response of a running turn.
pub fn turn_response(handle: TurnHandle) -> Response {
    sse(turn_events(handle))
}

/// The turn's events until `Done`; holding `handle` keeps the turn alive.
pub(crate) fn turn_events(handle: TurnHandle) -> impl Stream<Item = TurnEvent> + Send {
    stream::unfold(handle, |mut handle| async move {
        handle.events.recv().await.map(|event| (event, handle))
    })
}

fn sse(events: impl Stream<Item = TurnEvent> + Send + 'static) -> Response {
    sse_frames(events.map(to_sse))
}

/// An SSE response of ready-made frames (`/chat/audio/stream` puts its `asr-final` first).
pub(crate) fn sse_frames(frames: impl Stream<Item = Event> + Send + 'static) -> Response {
    let frames = frames.map(Ok::<Event, Infallible>);
    let mut response = Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells reverse proxies (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

pub(crate) fn to_sse(turn_event: TurnEvent) -> Event {
    let (name, data) = match turn_event {
        TurnEvent::TextDelta { content, eos } => (
            event::TEXT_DELTA,
            serde_json::to_string(&TextDelta { content, eos }),
        ),
        TurnEvent::Control(control) => (event::CONTROL, serde_json::to_string(&control)),
        TurnEvent::Error(error) => (event::ERROR, serde_json::to_string(&error)),
        TurnEvent::Done(stats) => (event::DONE, serde_json::to_string(&Done { stats })),
    };
    // These are our own plain structs; serialisation cannot fail, but never panic on a stream.
    Event::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".to_owned()))
}
