//! Live chat's routes (all behind the token): `POST /chat/messages` and `/ws/chat` (the local
//! chat API: Streamer.bot, a Discord bridge, any tool), `GET /chat/queue`, the panel's
//! `POST /chat/queue/{messageId}/{pin|skip|answer}`, and `DELETE /chat/viewers/{platform}/{id}`.
//! Thin adapters over [`crate::live_chat::LiveChat`]; the checks live in `live_chat::intake`.

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use futures_util::{SinkExt, StreamExt};
use koto_protocol::live_chat::{ChatAccepted, ChatMessagesIn, ChatQueueView};
use koto_protocol::{ErrorBody, ErrorCode, WireError};
use serde_json::json;

use crate::AppState;
use crate::error::AppError;
use crate::live_chat::intake::{IntakeError, events_from};
use crate::live_chat::{LiveChat, now_ms};
use crate::routes::read_json;

/// Largest `/ws/chat` frame: a full batch of long messages fits with room to spare.
const MAX_FRAME_BYTES: usize = 1 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chat/messages", post(post_messages))
        .route("/ws/chat", get(chat_socket))
        .route("/chat/queue", get(queue))
        .route("/chat/queue/{message_id}/{action}", post(queue_action))
        .route("/chat/viewers/{platform}/{user_id}", delete(forget_viewer))
}

async fn post_messages(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<ChatAccepted>), AppError> {
    let body: ChatMessagesIn = read_json(request.into_body(), state.max_body_bytes).await?;
    let accepted = accept(&state.live_chat, body).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Checks the whole batch, then hands it to the intake (waiting if the driver is behind).
async fn accept(chat: &LiveChat, body: ChatMessagesIn) -> Result<ChatAccepted, AppError> {
    let events =
        events_from(body.messages, chat.settings().batch_max, now_ms()).map_err(intake_error)?;
    let intake = chat.intake();
    let mut accepted = 0;
    for event in events {
        if intake.send(event).await.is_err() {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "live chat has stopped (shutting down)",
            ));
        }
        accepted += 1;
    }
    Ok(ChatAccepted { accepted })
}

fn intake_error(error: IntakeError) -> AppError {
    AppError::bad_request(ErrorCode::InvalidRequest, error.to_string())
}

/// `/ws/chat`: each text frame is a `{"messages":[…]}` batch, answered `{"accepted":n}` or
/// `{"error":{code,message}}`; a bad frame does not close the socket.
async fn chat_socket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let Some(slot) = state.sockets.try_open() else {
        return state.sockets.refuse(upgrade);
    };
    let chat = state.live_chat.clone();
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            run_chat_socket(chat, socket).await;
        })
}

async fn run_chat_socket(chat: LiveChat, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Binary(_)) => {
                let refusal = error_json(WireError::new(
                    ErrorCode::InvalidRequest,
                    "send chat batches as JSON text frames",
                ));
                if sink.send(Message::Text(refusal.into())).await.is_err() {
                    break;
                }
                continue;
            }
            // Pings are answered by axum itself.
            Ok(_) => continue,
        };
        let reply = match serde_json::from_str::<ChatMessagesIn>(&text) {
            Ok(batch) => match accept(&chat, batch).await {
                Ok(accepted) => json!(accepted).to_string(),
                Err(error) => error_json(error.error),
            },
            Err(error) => error_json(WireError::new(
                ErrorCode::InvalidJson,
                format!("not a {{\"messages\":[…]}} batch: {error}"),
            )),
        };
        if sink.send(Message::Text(reply.into())).await.is_err() {
            break;
        }
    }
}

fn error_json(error: WireError) -> String {
    json!(ErrorBody { error }).to_string()
}

async fn queue(State(state): State<AppState>) -> Json<ChatQueueView> {
    Json(state.live_chat.view())
}

async fn queue_action(
    State(state): State<AppState>,
    Path((message_id, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    let chat = &state.live_chat;
    let found = match action.as_str() {
        "pin" => chat.pin(&message_id).await,
        "skip" => chat.skip(&message_id).await,
        "answer" => chat.answer_now(&message_id).await,
        _ => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such action: use pin, skip or answer",
            ));
        }
    };
    if !found {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("message {message_id:?} is not waiting in the chat queue"),
        ));
    }
    Ok(Json(json!({ "ok": true })))
}

async fn forget_viewer(
    State(state): State<AppState>,
    Path((platform, user_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    let dropped = state.live_chat.forget(&platform, &user_id).await;
    let memories = crate::live_chat::forget_memories(&state, &platform, &user_id).await?;
    Ok(Json(
        json!({ "ok": true, "dropped": dropped, "memories": memories }),
    ))
}
