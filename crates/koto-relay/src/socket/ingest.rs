//! `/ws/ingest`: one remote producer per connection. JSON text frames in (CONTRACTS §2),
//! CONTROL STOP and error frames out.
//!
//! A refused frame gets an error frame back and the connection stays open; only the peer, a
//! transport error, silence past `peer_timeout` or shutdown end it. Reading pauses while the
//! relay applies backpressure (the remote TTS then waits on TCP), but STOPs are still written.

use std::fmt;

use futures_util::{Sink, Stream, StreamExt};
use koto_core::{SessionId, TurnNo};
use koto_protocol::ErrorCode;
use koto_protocol::ingest::RelayFrame;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

use super::{CLOSE_TIMEOUT, ErrorFrame, ReadError, WsFrame, close, close_code, finish, send_frame};
use crate::config::RelayConfig;
use crate::producer::{IngestError, Producer};
use crate::relay::Relay;

/// Error frames waiting to be written; past this a peer flooding bad frames without reading
/// loses some of its error frames (never the STOPs, which have their own queue).
const REPLY_QUEUE: usize = 32;

/// Serve one `/ws/ingest` connection until it closes. Never panics on input.
pub async fn run_ingest_socket<Tx, Rx, E>(relay: Relay, mut sink: Tx, stream: Rx)
where
    Tx: Sink<WsFrame> + Unpin,
    Tx::Error: fmt::Display,
    Rx: Stream<Item = Result<WsFrame, E>> + Unpin,
    E: Into<ReadError>,
{
    let config = relay.config().clone();
    let shutdown = relay.shutdown_token();
    let (producer, mut controls) = relay.attach_producer(false);
    let (replies, mut pending_replies) = mpsc::channel::<WsFrame>(REPLY_QUEUE);
    let reader = read_frames(&relay, &producer, stream, &replies, &config);
    let writer = async {
        let mut heartbeat = interval_at(
            Instant::now() + config.heartbeat_interval,
            config.heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let frame = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return Some(close(close_code::GOING_AWAY, "relay shutting down"));
                }
                Some(control) = controls.recv() => {
                    let stop = RelayFrame::Control(control);
                    match serde_json::to_string(&stop) {
                        Ok(json) => WsFrame::Text(json),
                        Err(error) => {
                            tracing::error!(%error, "STOP did not serialise");
                            continue;
                        }
                    }
                }
                Some(reply) = pending_replies.recv() => reply,
                _ = heartbeat.tick() => WsFrame::Ping(Vec::new()),
            };
            if !send_frame(&mut sink, frame, config.peer_timeout).await {
                return None;
            }
        }
    };
    let closing = tokio::select! {
        closing = reader => closing,
        closing = writer => closing,
    };
    finish(&mut sink, closing, CLOSE_TIMEOUT).await;
    // Detaches: this connection's sessions route their STOPs to the default producer again.
    drop(producer);
}

/// Read and ingest frames until the peer leaves; the closing frame to send, if any.
async fn read_frames<Rx, E>(
    relay: &Relay,
    producer: &Producer,
    mut stream: Rx,
    replies: &mpsc::Sender<WsFrame>,
    config: &RelayConfig,
) -> Option<WsFrame>
where
    Rx: Stream<Item = Result<WsFrame, E>> + Unpin,
    E: Into<ReadError>,
{
    let reply = |error: ErrorFrame| {
        if replies.try_send(error.to_ws()).is_err() {
            tracing::debug!("ingest peer is not reading its error frames");
        }
    };
    loop {
        let Ok(next) = timeout(config.peer_timeout, stream.next()).await else {
            return Some(close(
                close_code::GOING_AWAY,
                "no frames within the peer timeout",
            ));
        };
        match next {
            None | Some(Ok(WsFrame::Close(_))) => return None,
            Some(Err(error)) => {
                let error: ReadError = error.into();
                tracing::debug!(%error, "ingest socket read failed");
                return error.closing();
            }
            Some(Ok(WsFrame::Ping(_) | WsFrame::Pong(_))) => {}
            Some(Ok(WsFrame::Binary(_))) => {
                relay.count_malformed();
                reply(ErrorFrame::new(
                    ErrorCode::UnsupportedMediaType,
                    "/ws/ingest takes JSON text frames; binary frames are not accepted",
                ));
            }
            Some(Ok(WsFrame::Text(text))) => {
                let frame = match parse_ingest_frame(&text, config.max_ingest_frame_bytes) {
                    Ok(frame) => frame,
                    Err(error) => {
                        relay.count_malformed();
                        reply(*error);
                        continue;
                    }
                };
                let context = FrameContext::of(&frame);
                match producer.send(frame).await {
                    Ok(_) => {}
                    Err(IngestError::ShuttingDown) => {
                        return Some(close(close_code::GOING_AWAY, "relay shutting down"));
                    }
                    Err(error) => reply(context.error(error.code(), error.to_string())),
                }
            }
        }
    }
}

/// What names a frame in an error frame.
struct FrameContext {
    session_id: SessionId,
    turn: Option<TurnNo>,
    seq: Option<u64>,
}

impl FrameContext {
    fn of(frame: &RelayFrame) -> Self {
        let (turn, seq) = match frame {
            RelayFrame::SpeechChunk(chunk) => (Some(chunk.turn), Some(chunk.seq)),
            RelayFrame::Control(control) => (control.turn, None),
            RelayFrame::UserInput(input) => (Some(input.turn), None),
            RelayFrame::TextDelta(delta) => (Some(delta.turn), None),
            RelayFrame::ReasoningDelta(delta) => (Some(delta.turn), None),
            RelayFrame::MicLevel(_) | RelayFrame::AsrPartial(_) | RelayFrame::VoiceDropped(_) => {
                (None, None)
            }
            RelayFrame::ChatDecision(_) => (None, None),
            RelayFrame::VetoPending(pending) => (Some(pending.turn), None),
        };
        FrameContext {
            session_id: frame.session_id().clone(),
            turn,
            seq,
        }
    }

    fn error(self, code: ErrorCode, message: String) -> ErrorFrame {
        ErrorFrame {
            session_id: Some(self.session_id),
            turn: self.turn,
            seq: self.seq,
            ..ErrorFrame::new(code, message)
        }
    }
}

/// Parse one ingest text frame, with a precise error code for each way it can be wrong.
pub(crate) fn parse_ingest_frame(
    text: &str,
    max_bytes: usize,
) -> Result<RelayFrame, Box<ErrorFrame>> {
    let refuse = |code, message: String| Box::new(ErrorFrame::new(code, message));
    if text.len() > max_bytes {
        return Err(refuse(
            ErrorCode::PayloadTooLarge,
            format!("frame of {} bytes exceeds {max_bytes}", text.len()),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|error| refuse(ErrorCode::InvalidJson, format!("not JSON: {error}")))?;
    let Some(object) = value.as_object() else {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            "a frame is a JSON object".into(),
        ));
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err(refuse(ErrorCode::InvalidRequest, "missing \"type\"".into()));
    };
    match kind {
        "SPEECH_CHUNK" | "USER_INPUT" | "TEXT_DELTA" | "REASONING_DELTA" => {}
        "CONTROL" => match object.get("action").and_then(Value::as_str) {
            Some("STOP" | "STOP_ACK" | "END") => {}
            Some(action) => {
                return Err(refuse(
                    ErrorCode::InvalidType,
                    format!("unknown CONTROL action {action:?}"),
                ));
            }
            None => {
                return Err(refuse(
                    ErrorCode::InvalidRequest,
                    "CONTROL without \"action\"".into(),
                ));
            }
        },
        other => {
            return Err(refuse(
                ErrorCode::InvalidType,
                format!("unknown type {other:?}"),
            ));
        }
    }
    if let Some(raw) = object.get("sessionId")
        && raw.as_str().is_none_or(|id| SessionId::parse(id).is_err())
    {
        return Err(refuse(
            ErrorCode::InvalidSessionId,
            "sessionId must be 1-64 characters of [A-Za-z0-9._:-]".into(),
        ));
    }
    let kind = kind.to_owned();
    serde_json::from_value(value).map_err(|error| {
        refuse(
            ErrorCode::InvalidRequest,
            format!("invalid {kind}: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        match parse_ingest_frame(text, 1 << 20) {
            Ok(frame) => panic!("{text} parsed as {frame:?}"),
            Err(error) => error.code,
        }
    }

    #[test]
    fn each_way_of_being_wrong_has_its_code() {
        assert_eq!(code_of("{not json"), ErrorCode::InvalidJson, "broken JSON");
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidRequest, "not an object");
        assert_eq!(
            code_of(r#"{"sessionId":"s"}"#),
            ErrorCode::InvalidRequest,
            "no type"
        );
        assert_eq!(
            code_of(r#"{"type":"AUDIO","sessionId":"s"}"#),
            ErrorCode::InvalidType,
            "unknown type"
        );
        assert_eq!(
            code_of(r#"{"type":"CONTROL","action":"PAUSE","sessionId":"s"}"#),
            ErrorCode::InvalidType,
            "unknown action"
        );
        assert_eq!(
            code_of(r#"{"type":"CONTROL","action":"END","sessionId":"a b","turn":1}"#),
            ErrorCode::InvalidSessionId,
            "session id outside the alphabet"
        );
        assert_eq!(
            code_of(r#"{"type":"SPEECH_CHUNK","sessionId":"s","turn":1,"seq":0}"#),
            ErrorCode::InvalidRequest,
            "missing pcm and viseme"
        );
        assert!(
            matches!(parse_ingest_frame(&"x".repeat(100), 10), Err(e) if e.code == ErrorCode::PayloadTooLarge),
            "oversized frames are refused before parsing"
        );
    }

    #[test]
    fn a_contract_frame_parses() {
        let frame = parse_ingest_frame(
            r#"{"type":"CONTROL","action":"STOP_ACK","sessionId":"live-001","turn":42}"#,
            1 << 20,
        )
        .expect("STOP_ACK of CONTRACTS §2");
        assert_eq!(frame.session_id().as_str(), "live-001", "session kept");
    }
}
