//! What `/ws/output/{task_id}` sends: the pump turns one task's turn events and relay frames
//! into the original protocol's items (success, audio, END, the STOP sequence, errors) in the
//! task's log, and the socket replays that log and follows it until the task ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use koto_engine::{TurnEvent, TurnHandle};
use koto_protocol::ingest::{ControlAction, RelayFrame};
use koto_protocol::legacy::{AudioChunkFrame, ControlFrame, ErrorFrame, ReplyFrame};
use koto_protocol::{ErrorCode, WireError};
use koto_relay::{LiveClient, LiveFrame};
use tokio::time::Instant;
use uuid::Uuid;

use super::tasks::{LegacyTasks, TaskLog};
use super::{CLOSE_NORMAL, CLOSE_NOT_FOUND, close, json_message, unreadable};

/// One thing an output socket sends (one or two WebSocket frames).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outgoing {
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
    pub(super) fn bytes(&self) -> usize {
        // Audio dominates; the rest is counted roughly so text cannot grow without bound.
        match self {
            Outgoing::Reply { content, .. } => content.len() + 64,
            Outgoing::Audio { pcm, .. } => pcm.len() + 64,
            Outgoing::Error(error) => error.message.len() + 64,
            Outgoing::Control(_) | Outgoing::AudioComplete => 64,
        }
    }

    pub(super) fn is_audio(&self) -> bool {
        matches!(self, Outgoing::Audio { .. })
    }

    pub(super) fn messages(&self, task_id: &str) -> Vec<Message> {
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
                    // Never queued for the original front end (it has no pause); named anyway.
                    ControlAction::Pause => "PAUSE",
                    ControlAction::Resume => "RESUME",
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

/// One task's turn events and relay frames → the task's log.
pub(super) struct Pump {
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
    /// `speaks`: the engine speaks replies (speech on, a voice ready) as the turn starts.
    pub(super) fn new(
        log: Arc<TaskLog>,
        handle: TurnHandle,
        live: Option<LiveClient>,
        linger: Duration,
        speaks: bool,
    ) -> Self {
        Pump {
            log,
            handle,
            live,
            linger,
            progress: Progress {
                speaks,
                ..Progress::default()
            },
        }
    }

    pub(super) async fn run(mut self) {
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
                let pcm = match frame.samples() {
                    Some(samples) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
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

/// Runs one `/ws/output/{task_id}` socket.
pub(super) async fn run<S>(mut socket: S, tasks: LegacyTasks, raw_id: String)
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

    use serde_json::Value;

    use super::*;

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
        let chunk = Outgoing::Audio {
            chunk_id: 7,
            sample_rate: 24_000,
            pcm: Bytes::from(vec![0u8; 4]),
        }
        .messages("id");
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
