//! The TTS streamer (the ADR's `tts_streamer`): segments in, PCM chunks out to the relay, in
//! order, with one segment of look-ahead (segment n+1 synthesises while n is delivered).
//!
//! Every chunk carries `(sessionId, turn, seq)`, `seq` contiguous from 0; the first chunk of a
//! segment carries its text. Cancelling the turn token drops every synthesis at once (the TTS
//! process is killed, the socket closed). It does not decide what was heard; see [`heard_text`].

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use koto_core::lang::{DefaultLang, speech_lang};
use koto_core::segmenter::Segment;
use koto_core::tts::{AudioChunk, TtsRequest, Voice};
use koto_core::{ProviderError, SessionId, TurnNo};
use koto_protocol::ingest::{Control, ControlAction, RelayFrame, SegmentInfo, SpeechChunk, Viseme};
use koto_relay::{Ingested, Producer};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::session::SessionSlot;

/// Segments synthesising at once: the one being delivered and the next.
const LOOKAHEAD: usize = 2;
/// Chunks one synthesis may run ahead of delivery (~1.3 s at 20 ms chunks).
const SYNTH_BUFFER: usize = 64;

pub(crate) struct Speaker {
    pub voice: Arc<dyn Voice>,
    pub producer: Arc<Producer>,
    pub slot: Arc<SessionSlot>,
    pub session: SessionId,
    pub turn: TurnNo,
    /// The input's `meta.lang`.
    pub lang: Option<String>,
    pub default_lang: DefaultLang,
    pub correlation_id: String,
    pub token: CancellationToken,
}

/// Where each segment's audio landed in the turn's chunk sequence.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpokenSegment {
    pub text: String,
    pub first_seq: u64,
    pub n_chunks: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SpeechReport {
    pub first_audio_at: Option<Instant>,
    pub segments: Vec<SpokenSegment>,
    /// All audio was handed to the relay and `END` sent.
    pub completed: bool,
    pub error: Option<ProviderError>,
}

struct Synthesis {
    segment: Segment,
    chunks: mpsc::Receiver<Result<AudioChunk, ProviderError>>,
    /// Dropping it aborts the task, which drops the provider's stream: synthesis stops.
    _task: AbortOnDropHandle<()>,
}

impl Speaker {
    pub async fn run(self, mut segments: mpsc::UnboundedReceiver<Segment>) -> SpeechReport {
        let mut report = SpeechReport::default();
        let mut queue: VecDeque<Synthesis> = VecDeque::with_capacity(LOOKAHEAD);
        let mut segments_open = true;
        let mut seq: u64 = 0;
        let mut first_of_segment = true;
        loop {
            if queue.is_empty() {
                if !segments_open {
                    break;
                }
                let next = tokio::select! {
                    biased;
                    _ = self.token.cancelled() => return report,
                    next = segments.recv() => next,
                };
                match next {
                    Some(segment) => queue.push_back(self.synthesise(segment)),
                    None => segments_open = false,
                }
                continue;
            }
            let lookahead_free = segments_open && queue.len() < LOOKAHEAD;
            let Some(current) = queue.front_mut() else {
                continue;
            };
            tokio::select! {
                biased;
                _ = self.token.cancelled() => return report,
                next = segments.recv(), if lookahead_free => match next {
                    Some(segment) => queue.push_back(self.synthesise(segment)),
                    None => segments_open = false,
                },
                chunk = current.chunks.recv() => match chunk {
                    Some(Ok(chunk)) if chunk.samples.is_empty() => {}
                    Some(Ok(chunk)) => {
                        let segment_info = first_of_segment.then(|| SegmentInfo {
                            index: current.segment.index,
                            text: current.segment.text.clone(),
                        });
                        if first_of_segment {
                            report.segments.push(SpokenSegment {
                                text: current.segment.text.clone(),
                                first_seq: seq,
                                n_chunks: 0,
                            });
                            first_of_segment = false;
                        }
                        if !self.deliver(seq, chunk, segment_info).await {
                            return report;
                        }
                        report.first_audio_at.get_or_insert_with(Instant::now);
                        if let Some(spoken) = report.segments.last_mut() {
                            spoken.n_chunks += 1;
                        }
                        seq += 1;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, segment = current.segment.index, "TTS failed; the rest of the turn is text only");
                        report.error = Some(error);
                        return report;
                    }
                    None => {
                        queue.pop_front();
                        first_of_segment = true;
                    }
                },
            }
        }
        let end = RelayFrame::Control(Control {
            action: ControlAction::End,
            session_id: self.session.clone(),
            turn: Some(self.turn),
            reason: None,
        });
        report.completed = self.send(end).await;
        report
    }

    fn synthesise(&self, segment: Segment) -> Synthesis {
        let (tx, rx) = mpsc::channel(SYNTH_BUFFER);
        let mut stream = self.voice.speak(TtsRequest {
            text: segment.speak.clone(),
            // Each segment in the language of its own text (a Chinese reply to English input).
            lang: speech_lang(&segment.speak, self.lang.as_deref(), &self.default_lang)
                .map(String::from),
            correlation_id: self.correlation_id.clone(),
        });
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Synthesis {
            segment,
            chunks: rx,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// Hands one chunk to the relay; false once the turn is stopped (fenced or cancelled).
    async fn deliver(&self, seq: u64, chunk: AudioChunk, segment: Option<SegmentInfo>) -> bool {
        let frame = RelayFrame::SpeechChunk(SpeechChunk {
            session_id: self.session.clone(),
            turn: self.turn,
            seq,
            pcm: SpeechChunk::encode_pcm(&chunk.samples),
            sample_rate: Some(self.voice.sample_rate()),
            viseme: Viseme {
                mouth_open: chunk.mouth_open,
            },
            segment,
        });
        self.send(frame).await
    }

    async fn send(&self, frame: RelayFrame) -> bool {
        // The engine's own fence: once a STOP covered this turn, nothing of it leaves the engine.
        if self.slot.is_fenced(self.turn) {
            return false;
        }
        tokio::select! {
            biased;
            _ = self.token.cancelled() => false,
            sent = self.producer.send(frame) => match sent {
                Ok(Ingested::Queued | Ingested::Forwarded) => true,
                // The relay already fenced this turn: a STOP is on its way to us.
                Ok(Ingested::Fenced) => false,
                Err(error) => {
                    tracing::warn!(%error, "the relay refused a frame; stopping this turn's audio");
                    false
                }
            },
        }
    }
}

/// The text whose audio reached the listener: whole segments up to the last released chunk, and
/// of the segment cut by the STOP, the share of its characters its released chunks cover.
pub(crate) fn heard_text(segments: &[SpokenSegment], released_through: Option<u64>) -> String {
    let Some(released) = released_through else {
        return String::new();
    };
    let mut heard = String::new();
    for segment in segments {
        if segment.n_chunks == 0 || released < segment.first_seq {
            break;
        }
        let last_seq = segment.first_seq + segment.n_chunks - 1;
        if released >= last_seq {
            heard.push_str(&segment.text);
            continue;
        }
        let played = released - segment.first_seq + 1;
        let n_chars = segment.text.chars().count() as u64;
        let keep = (n_chars * played / segment.n_chunks) as usize;
        heard.extend(segment.text.chars().take(keep));
        break;
    }
    heard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken(text: &str, first_seq: u64, n_chunks: u64) -> SpokenSegment {
        SpokenSegment {
            text: text.into(),
            first_seq,
            n_chunks,
        }
    }

    #[test]
    fn heard_text_cuts_where_the_audio_stopped() {
        let segments = [spoken("你好，", 0, 4), spoken("今天玩什么？", 4, 6)];
        assert_eq!(
            heard_text(&segments, None),
            "",
            "nothing released, nothing heard"
        );
        assert_eq!(
            heard_text(&segments, Some(3)),
            "你好，",
            "first segment complete"
        );
        assert_eq!(
            heard_text(&segments, Some(6)),
            "你好，今天玩",
            "half of the second segment"
        );
        assert_eq!(
            heard_text(&segments, Some(9)),
            "你好，今天玩什么？",
            "everything"
        );
        assert_eq!(
            heard_text(&segments, Some(0)),
            "",
            "a quarter of three characters rounds down"
        );
    }
}
