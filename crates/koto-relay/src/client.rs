//! Live clients (`/ws/live`: the app window, the OBS overlay): their filters, their bounded
//! outgoing queues, and the frames they receive.
//!
//! A client's queue lives under the relay's lock so a STOP can take buffered audio back out of
//! it; this module does not pace (the session pacer decides *when* a frame is fanned out) and
//! does not speak WebSocket (see `socket`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, OnceLock};

use koto_core::{SessionId, TurnNo};
use koto_protocol::ingest::{RelayFrame, SpeechChunk};
use tokio::sync::Notify;

use crate::framing::encode_binary_chunk;
use crate::metrics::RelayMetrics;
use crate::ws_frame::WsFrame;

/// What a live client wants (`/ws/live?session=…&audio=0|1&binary=0|1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFilter {
    /// Only this session's frames; `None` = every session.
    pub session: Option<SessionId>,
    /// `false`: SPEECH_CHUNKs still arrive (paced, for subtitles and mouth movement) but with
    /// an empty `pcm`.
    pub audio: bool,
    /// `true`: SPEECH_CHUNKs arrive as binary frames (see `encode_binary_chunk`).
    pub binary_audio: bool,
    /// Who the client says it is; only counted (the panel's "overlays" chip), never filtered on.
    pub role: ClientRole,
}

/// What a live client is, as it says itself (`/ws/live?role=…`); internal subscribers
/// (the desktop's playback, the original front end's output) are `Other`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientRole {
    /// An OBS overlay (a browser source showing subtitles or playing the voice).
    Overlay,
    /// A control panel window.
    Panel,
    #[default]
    Other,
}

impl Default for ClientFilter {
    fn default() -> Self {
        ClientFilter {
            session: None,
            audio: true,
            binary_audio: false,
            role: ClientRole::Other,
        }
    }
}

impl ClientFilter {
    fn wants(&self, session: &SessionId) -> bool {
        self.session.as_ref().is_none_or(|wanted| wanted == session)
    }

    /// An overlay shows the chat message being answered: it gets picks and retractions, not
    /// the drops, which in a chat flood are hundreds a second it would only have to discard
    /// (and could fall behind on, and be disconnected for).
    fn wants_frame(&self, frame: &LiveFrame) -> bool {
        if !self.wants(frame.session()) {
            return false;
        }
        match (&frame.0.frame, self.role) {
            (RelayFrame::ChatDecision(decision), ClientRole::Overlay) => {
                decision.decision != "dropped"
            }
            // A line held for the streamer's veto is not for the stream's eyes.
            (RelayFrame::VetoPending(_), ClientRole::Overlay) => false,
            _ => true,
        }
    }
}

/// Why the relay ended a client's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client's queue overflowed `client_drop_limit` times, or a control frame (STOP,
    /// STOP_ACK, END) did not fit: it can no longer be in step and should reconnect.
    TooSlow { dropped: u32 },
    /// The relay shut down.
    ShuttingDown,
}

/// One frame as fanned out to clients: the §2 frame and, for SPEECH_CHUNK, its samples.
///
/// Inside the process audio stays typed: a SPEECH_CHUNK's `frame()` carries an empty `pcm` and
/// the samples sit beside it, shared by every client (`Arc`). JSON (with base64 audio) and the
/// binary framing are made only at a socket edge, once per chunk however many clients get it.
#[derive(Clone)]
pub struct LiveFrame(Arc<FrameBody>);

struct FrameBody {
    frame: RelayFrame,
    samples: Option<Arc<[i16]>>,
    json: OnceLock<String>,
    json_without_audio: OnceLock<String>,
    binary: OnceLock<bytes::Bytes>,
}

impl fmt::Debug for LiveFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the audio: logs must not carry raw PCM.
        match &self.0.frame {
            RelayFrame::SpeechChunk(chunk) => f
                .debug_struct("SpeechChunk")
                .field("session", &chunk.session_id)
                .field("turn", &chunk.turn)
                .field("seq", &chunk.seq)
                .field("samples", &self.0.samples.as_ref().map_or(0, |s| s.len()))
                .finish(),
            other => other.fmt(f),
        }
    }
}

impl LiveFrame {
    pub(crate) fn new(frame: RelayFrame) -> Self {
        LiveFrame(Arc::new(FrameBody {
            frame,
            samples: None,
            json: OnceLock::new(),
            json_without_audio: OnceLock::new(),
            binary: OnceLock::new(),
        }))
    }

    /// `chunk`'s own `pcm` is cleared: the samples are the audio.
    pub(crate) fn speech(mut chunk: SpeechChunk, samples: Arc<[i16]>) -> Self {
        chunk.pcm.clear();
        LiveFrame(Arc::new(FrameBody {
            frame: RelayFrame::SpeechChunk(chunk),
            samples: Some(samples),
            json: OnceLock::new(),
            json_without_audio: OnceLock::new(),
            binary: OnceLock::new(),
        }))
    }

    /// The frame in its §2 shape; a SPEECH_CHUNK's `pcm` is empty here (see [`Self::samples`]).
    pub fn frame(&self) -> &RelayFrame {
        &self.0.frame
    }

    /// The s16le mono samples of a SPEECH_CHUNK (for local playback); `None` for other frames.
    pub fn samples(&self) -> Option<&[i16]> {
        self.0.samples.as_deref()
    }

    /// The frame as JSON text, exactly as `/ws/live` sends it to an audio client (a
    /// SPEECH_CHUNK with its audio as base64). Made on first use, then shared.
    pub fn json(&self) -> &str {
        self.0
            .json
            .get_or_init(|| match (&self.0.frame, &self.0.samples) {
                (RelayFrame::SpeechChunk(chunk), Some(samples)) => {
                    let mut with_audio = chunk.clone();
                    with_audio.pcm = SpeechChunk::encode_pcm(samples);
                    to_json(&RelayFrame::SpeechChunk(with_audio))
                }
                _ => to_json(&self.0.frame),
            })
    }

    /// The WebSocket frame this client gets for it, honouring `audio` and `binary_audio`.
    pub fn to_ws(&self, filter: &ClientFilter) -> WsFrame {
        match (&self.0.frame, &self.0.samples) {
            (RelayFrame::SpeechChunk(_), _) if !filter.audio => {
                // The frame itself has no audio in it.
                let json = self
                    .0
                    .json_without_audio
                    .get_or_init(|| to_json(&self.0.frame));
                WsFrame::Text(json.clone())
            }
            (RelayFrame::SpeechChunk(chunk), Some(samples)) if filter.binary_audio => {
                let binary = self
                    .0
                    .binary
                    .get_or_init(|| encode_binary_chunk(chunk, samples).into());
                WsFrame::Binary(binary.clone())
            }
            _ => WsFrame::Text(self.json().to_owned()),
        }
    }

    pub(crate) fn session(&self) -> &SessionId {
        self.0.frame.session_id()
    }

    /// The turn of a SPEECH_CHUNK; `None` for every other frame.
    pub(crate) fn audio_turn(&self) -> Option<TurnNo> {
        match &self.0.frame {
            RelayFrame::SpeechChunk(chunk) => Some(chunk.turn),
            _ => None,
        }
    }

    fn is_control(&self) -> bool {
        matches!(self.0.frame, RelayFrame::Control(_))
    }
}

fn to_json(frame: &RelayFrame) -> String {
    // Serialising these plain structs cannot fail; if it ever did, the client gets an error
    // frame rather than the relay panicking.
    serde_json::to_string(frame).unwrap_or_else(|error| {
        tracing::error!(%error, "relay frame did not serialise");
        r#"{"type":"ERROR","code":"internal","message":"frame could not be serialised"}"#.into()
    })
}

/// The relay's registry of live clients and their outgoing queues (under the relay's lock).
#[derive(Default)]
pub(crate) struct Clients {
    entries: HashMap<u64, ClientEntry>,
}

struct ClientEntry {
    filter: ClientFilter,
    frames: VecDeque<LiveFrame>,
    dropped: u32,
    closed: Option<DisconnectReason>,
    /// Woken (one stored permit) whenever a frame is queued or the client is closed; the
    /// `LiveClient` waits on it.
    wake: Arc<Notify>,
}

/// What a client's `recv` finds.
pub(crate) enum Delivery {
    Frame(LiveFrame),
    Empty,
    Closed,
}

/// Queue limits, copied from the config so fan-out needs no other borrow.
#[derive(Clone, Copy)]
pub(crate) struct ClientLimits {
    pub(crate) queue_frames: usize,
    pub(crate) drop_limit: u32,
}

impl Clients {
    pub(crate) fn insert(&mut self, id: u64, filter: ClientFilter, closed: bool) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        self.entries.insert(
            id,
            ClientEntry {
                filter,
                frames: VecDeque::new(),
                dropped: 0,
                closed: closed.then_some(DisconnectReason::ShuttingDown),
                wake: Arc::clone(&wake),
            },
        );
        wake
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    pub(crate) fn connected(&self) -> usize {
        self.entries.values().filter(|c| c.closed.is_none()).count()
    }

    pub(crate) fn connected_as(&self, role: ClientRole) -> usize {
        self.entries
            .values()
            .filter(|c| c.closed.is_none() && c.filter.role == role)
            .count()
    }

    pub(crate) fn pop(&mut self, id: u64) -> Delivery {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Delivery::Closed;
        };
        if entry.closed.is_some() {
            return Delivery::Closed;
        }
        match entry.frames.pop_front() {
            Some(frame) => Delivery::Frame(frame),
            None => Delivery::Empty,
        }
    }

    pub(crate) fn disconnect_reason(&self, id: u64) -> Option<DisconnectReason> {
        self.entries.get(&id).and_then(|c| c.closed)
    }

    /// Queue `frame` for every client that wants its session. Never waits: a full queue loses
    /// the frame (audio, text) or, for a control frame, the client.
    pub(crate) fn fan_out(
        &mut self,
        frame: &LiveFrame,
        limits: ClientLimits,
        metrics: &mut RelayMetrics,
    ) {
        for entry in self.entries.values_mut() {
            if entry.closed.is_some() || !entry.filter.wants_frame(frame) {
                continue;
            }
            if entry.frames.len() < limits.queue_frames {
                entry.frames.push_back(frame.clone());
                entry.wake.notify_one();
                continue;
            }
            entry.dropped = entry.dropped.saturating_add(1);
            metrics.client_frames_dropped += 1;
            // A missed STOP/STOP_ACK/END would leave the client playing stale audio or waiting
            // for an END that never comes: it must resync by reconnecting.
            if frame.is_control() || entry.dropped >= limits.drop_limit {
                tracing::warn!(
                    dropped = entry.dropped,
                    "live client too slow, disconnecting"
                );
                metrics.clients_disconnected_slow += 1;
                entry.closed = Some(DisconnectReason::TooSlow {
                    dropped: entry.dropped,
                });
                entry.frames.clear();
                entry.wake.notify_one();
            }
        }
    }

    /// Take `session`'s buffered audio of turns `≤ up_to` (every turn if `None`) back out of
    /// every client queue: what a STOP or a fence makes stale is not sent at all.
    pub(crate) fn purge_audio(&mut self, session: &SessionId, up_to: Option<TurnNo>) {
        for entry in self.entries.values_mut() {
            entry.frames.retain(|frame| {
                let stale = frame.session() == session
                    && frame
                        .audio_turn()
                        .is_some_and(|turn| up_to.is_none_or(|fence| turn <= fence));
                !stale
            });
        }
    }

    pub(crate) fn close_all(&mut self, reason: DisconnectReason) {
        for entry in self.entries.values_mut() {
            if entry.closed.is_none() {
                entry.closed = Some(reason);
            }
            entry.frames.clear();
            entry.wake.notify_one();
        }
    }
}
