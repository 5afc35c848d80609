//! `/ws/live`: one client (app window, OBS overlay) per connection. Fan-out frames out (JSON
//! text, or binary SPEECH_CHUNKs), CONTROL STOP in.
//!
//! Anything else a client sends is answered with an error frame and otherwise ignored. The
//! relay may end the subscription (too slow, shutdown); the driver then closes the socket with
//! the reason.

use std::fmt;

use futures_util::{Sink, Stream, StreamExt};
use koto_core::SessionId;
use koto_protocol::ErrorCode;
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::{CLOSE_TIMEOUT, ErrorFrame, ReadError, WsFrame, close, close_code, finish, send_frame};
use crate::client::{ClientFilter, DisconnectReason};
use crate::relay::Relay;

/// A STOP reason longer than this is cut (it is echoed to producers and clients).
const MAX_REASON_CHARS: usize = 64;

/// Serve one `/ws/live` connection until it closes.
pub async fn run_live_socket<Tx, Rx, E>(
    relay: Relay,
    mut sink: Tx,
    mut stream: Rx,
    filter: ClientFilter,
) where
    Tx: Sink<WsFrame> + Unpin,
    Tx::Error: fmt::Display,
    Rx: Stream<Item = Result<WsFrame, E>> + Unpin,
    E: Into<ReadError>,
{
    let config = relay.config().clone();
    let shutdown = relay.shutdown_token();
    let mut client = relay.subscribe(filter.clone());
    let mut heartbeat = interval_at(
        Instant::now() + config.heartbeat_interval,
        config.heartbeat_interval,
    );
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let closing = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break Some(close(close_code::GOING_AWAY, "relay shutting down")),
            frame = client.recv() => {
                let Some(frame) = frame else {
                    break Some(match client.disconnect_reason() {
                        Some(DisconnectReason::TooSlow { dropped }) => close(
                            close_code::POLICY_VIOLATION,
                            format!("client too slow: {dropped} frames dropped"),
                        ),
                        _ => close(close_code::GOING_AWAY, "relay shutting down"),
                    });
                };
                if !send_frame(&mut sink, frame.to_ws(&filter), config.peer_timeout).await {
                    break None;
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                let reply = match incoming {
                    None | Some(Ok(WsFrame::Close(_))) => break None,
                    Some(Err(error)) => {
                        let error: ReadError = error.into();
                        tracing::debug!(%error, "live socket read failed");
                        break error.closing();
                    }
                    Some(Ok(WsFrame::Ping(_) | WsFrame::Pong(_))) => None,
                    Some(Ok(WsFrame::Binary(_))) => Some(ErrorFrame::new(
                        ErrorCode::UnsupportedMediaType,
                        "live clients send JSON text frames only",
                    )),
                    Some(Ok(WsFrame::Text(text))) => match parse_client_stop(&text, &filter) {
                        Ok(_) if !config.client_stops => Some(ErrorFrame::new(
                            ErrorCode::BargeInDisabled,
                            "barge-in is disabled (SYNC_TTS_BARGE_IN=false)",
                        )),
                        Ok((session, reason)) => {
                            // The STOP takes effect now; its outcome reaches this client as
                            // STOP/STOP_ACK frames through the fan-out, so nobody waits here.
                            drop(relay.begin_stop(&session, &reason));
                            None
                        }
                        Err(error) => Some(error),
                    },
                };
                if let Some(error) = reply {
                    relay.count_client_rejected();
                    if !send_frame(&mut sink, error.to_ws(), config.peer_timeout).await {
                        break None;
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= config.peer_timeout {
                    break Some(close(close_code::GOING_AWAY, "no frames within the peer timeout"));
                }
                if !send_frame(&mut sink, WsFrame::Ping(Vec::new()), config.peer_timeout).await {
                    break None;
                }
            }
        }
    };
    // Unsubscribe before the (bounded) close handshake: no more frames pile up for it.
    drop(client);
    finish(&mut sink, closing, CLOSE_TIMEOUT).await;
}

/// `{"type":"CONTROL","action":"STOP","sessionId":"…","reason":"…"}` → (session, reason).
/// `sessionId` may be left out by a client subscribed to one session.
pub(super) fn parse_client_stop(
    text: &str,
    filter: &ClientFilter,
) -> Result<(SessionId, String), ErrorFrame> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| ErrorFrame::new(ErrorCode::InvalidJson, format!("not JSON: {error}")))?;
    let is_stop = value.get("type").and_then(Value::as_str) == Some("CONTROL")
        && value.get("action").and_then(Value::as_str) == Some("STOP");
    if !is_stop {
        return Err(ErrorFrame::new(
            ErrorCode::InvalidType,
            "live clients may only send {\"type\":\"CONTROL\",\"action\":\"STOP\",\"sessionId\":…}",
        ));
    }
    let session = match value.get("sessionId") {
        Some(Value::String(raw)) => SessionId::parse(raw).ok(),
        None | Some(Value::Null) => filter.session.clone(),
        Some(_) => None,
    }
    .ok_or_else(|| {
        ErrorFrame::new(
            ErrorCode::InvalidSessionId,
            "STOP needs a sessionId of 1-64 characters of [A-Za-z0-9._:-]",
        )
    })?;
    let reason = value
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("user_interrupt")
        .chars()
        .take(MAX_REASON_CHARS)
        .collect();
    Ok((session, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_takes_the_session_from_the_frame_or_the_subscription() {
        let everything = ClientFilter::default();
        let (session, reason) = parse_client_stop(
            r#"{"type":"CONTROL","action":"STOP","sessionId":"live-001"}"#,
            &everything,
        )
        .expect("a contract STOP");
        assert_eq!(session.as_str(), "live-001", "the named session");
        assert_eq!(reason, "user_interrupt", "the default reason");
        let one_session = ClientFilter {
            session: Some(SessionId::parse("s2").expect("valid id")),
            ..ClientFilter::default()
        };
        let (session, _) = parse_client_stop(r#"{"type":"CONTROL","action":"STOP"}"#, &one_session)
            .expect("the subscription names the session");
        assert_eq!(session.as_str(), "s2", "taken from the filter");
        let refused = parse_client_stop(r#"{"type":"CONTROL","action":"STOP"}"#, &everything)
            .expect_err("no session anywhere");
        assert_eq!(
            refused.code,
            ErrorCode::InvalidSessionId,
            "a STOP must name its session"
        );
    }

    #[test]
    fn anything_but_stop_is_refused() {
        let filter = ClientFilter::default();
        for (text, code) in [
            ("nope", ErrorCode::InvalidJson),
            (
                r#"{"type":"CONTROL","action":"END","sessionId":"s"}"#,
                ErrorCode::InvalidType,
            ),
            (
                r#"{"type":"SPEECH_CHUNK","sessionId":"s"}"#,
                ErrorCode::InvalidType,
            ),
            (
                r#"{"type":"CONTROL","action":"STOP","sessionId":"../x"}"#,
                ErrorCode::InvalidSessionId,
            ),
        ] {
            let refused = parse_client_stop(text, &filter).expect_err(text);
            assert_eq!(refused.code, code, "{text} is refused with {code:?}");
        }
    }
}
