//! WebSocket routes: `/ws/ingest` (+ `/ws/ingest/tts`) for remote producers, `/ws/live` for the
//! app window and the OBS overlay. The relay's drivers do the protocol; this file only adapts
//! axum's messages to `koto_relay::WsFrame` and its read errors to `koto_relay::ReadError` (a
//! message over [`MAX_MESSAGE_BYTES`] closes with 1009, invalid UTF-8 with 1007). Token, Origin
//! and Host were checked by the guard before the upgrade. With `SYNC_TTS_STREAMING=false`
//! `/ws/ingest` refuses producers: the upgrade succeeds, then the socket closes with 4403.
//! Past `MAX_LIVE_CLIENTS` (`/ws/live`) or `MAX_SOCKETS` a socket closes with 1013
//! (`socket_limit`).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use koto_core::SessionId;
use koto_protocol::ErrorCode;
use koto_relay::{
    ClientFilter, ClientRole, ReadError, WsFrame, run_ingest_socket, run_live_socket,
};
use serde::Deserialize;

use crate::AppState;
use crate::error::AppError;

/// Largest WebSocket message accepted (a 40 ms chunk at 48 kHz is ~5 KiB of base64).
/// tungstenite enforces it after reading the whole frame (its frame limit stays at its 16 MiB
/// default), so the socket is still in step and can send the 1009 close.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Close code for a producer while speech is off (the origin system's output handler used it).
const CLOSE_STREAMING_OFF: u16 = 4403;

pub async fn ingest(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let Some(relay) = state.engine.relay().cloned() else {
        return unavailable();
    };
    let Some(slot) = state.sockets.try_open() else {
        return state.sockets.refuse(upgrade);
    };
    if !state.engine.flags().tts_streaming {
        // A WebSocket client sees a close code, not an HTTP status: upgrade, then refuse.
        return upgrade.on_upgrade(|mut socket| async move {
            let refusal = Message::Close(Some(CloseFrame {
                code: CLOSE_STREAMING_OFF,
                reason: "speech streaming is off (SYNC_TTS_STREAMING=false)".into(),
            }));
            let _ = socket.send(refusal).await;
        });
    }
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let (sink, stream) = adapt(socket);
            run_ingest_socket(relay, sink, stream).await;
        })
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    session: Option<String>,
    audio: Option<String>,
    binary: Option<String>,
    /// `overlay` (the OBS page) or `panel`; anything else counts as another client.
    role: Option<String>,
}

pub async fn live(
    State(state): State<AppState>,
    Query(query): Query<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let Some(relay) = state.engine.relay().cloned() else {
        return Ok(unavailable());
    };
    let session = match query.session.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => Some(SessionId::parse(raw).map_err(|error| {
            AppError::bad_request(ErrorCode::InvalidSessionId, error.to_string())
        })?),
        None => None,
    };
    let filter = ClientFilter {
        session,
        audio: flag(query.audio.as_deref(), true),
        binary_audio: flag(query.binary.as_deref(), false),
        role: match query.role.as_deref() {
            Some("overlay") => ClientRole::Overlay,
            Some("panel") => ClientRole::Panel,
            _ => ClientRole::Other,
        },
    };
    let Some(slot) = state.live_clients.try_open() else {
        return Ok(state.live_clients.refuse(upgrade));
    };
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let (sink, stream) = adapt(socket);
            run_live_socket(relay, sink, stream, filter).await;
        }))
}

fn flag(value: Option<&str>, default: bool) -> bool {
    match value {
        Some("1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        _ => default,
    }
}

fn unavailable() -> Response {
    use axum::response::IntoResponse;
    AppError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotAvailable,
        "the output relay is not running",
    )
    .into_response()
}

type FrameSink = std::pin::Pin<Box<dyn futures_util::Sink<WsFrame, Error = axum::Error> + Send>>;
type FrameStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<WsFrame, ReadError>> + Send>>;

fn adapt(socket: WebSocket) -> (FrameSink, FrameStream) {
    let (sink, stream) = socket.split();
    let sink = sink.with(|frame: WsFrame| async move { Ok::<_, axum::Error>(to_axum(frame)) });
    let stream = stream.map(|message| message.map(from_axum).map_err(read_error));
    (Box::pin(sink), Box::pin(stream))
}

/// Names axum's read failure: its source is tungstenite's error (axum 0.8 wraps it as is).
pub(crate) fn read_error(error: axum::Error) -> ReadError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let detail = error.to_string();
    match std::error::Error::source(&error).and_then(|source| source.downcast_ref::<WsError>()) {
        Some(WsError::Capacity(_)) => ReadError::TooBig(detail),
        Some(WsError::Utf8(_)) => ReadError::NotUtf8(detail),
        _ => ReadError::Broken(detail),
    }
}

fn to_axum(frame: WsFrame) -> Message {
    match frame {
        WsFrame::Text(text) => Message::Text(text.into()),
        WsFrame::Binary(bytes) => Message::Binary(bytes),
        WsFrame::Ping(bytes) => Message::Ping(bytes.into()),
        WsFrame::Pong(bytes) => Message::Pong(bytes.into()),
        WsFrame::Close(close) => Message::Close(close.map(|(code, reason)| CloseFrame {
            code,
            reason: reason.into(),
        })),
    }
}

fn from_axum(message: Message) -> WsFrame {
    match message {
        Message::Text(text) => WsFrame::Text(text.to_string()),
        Message::Binary(bytes) => WsFrame::Binary(bytes),
        Message::Ping(bytes) => WsFrame::Ping(bytes.to_vec()),
        Message::Pong(bytes) => WsFrame::Pong(bytes.to_vec()),
        Message::Close(close) => {
            WsFrame::Close(close.map(|frame| (frame.code, frame.reason.to_string())))
        }
    }
}
