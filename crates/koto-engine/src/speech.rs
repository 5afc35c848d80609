//! The TTS streamer (the ADR's `tts_streamer`): segments in, PCM chunks out to the relay, in
//! order, with one segment of look-ahead (segment n+1 synthesises while n is delivered).
//!
//! Every chunk carries `(sessionId, turn, seq)`, `seq` contiguous from 0; the first chunk of a
//! segment carries its text. Cancelling the turn token drops every synthesis at once (the TTS
//! process is killed, the socket closed). It does not decide what was heard; see [`heard_text`].

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};

use futures_util::StreamExt;
use koto_core::lang::{DefaultLang, speech_lang};
use koto_core::segmenter::Segment;
use koto_core::tts::{AudioChunk, TtsRequest, Voice};
use koto_core::{ProviderError, SessionId, TurnNo};
use koto_protocol::ingest::{RelayFrame, SegmentInfo, SpeechChunk, VetoPendingFrame, Viseme};
use koto_relay::{EndReceipt, Ingested, Producer};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::session::SessionSlot;

/// Segments synthesising at once: the one being delivered and the next.
const LOOKAHEAD: usize = 2;
/// Chunks one synthesis may run ahead of delivery (~1.3 s at 20 ms chunks).
const SYNTH_BUFFER: usize = 64;

/// Where each segment's audio landed, shared with the turn task: it is read after the fence to
/// decide what was heard, even when the speech task ended abnormally.
pub(crate) type SpokenLog = Arc<std::sync::Mutex<Vec<SpokenSegment>>>;

pub(crate) struct Speaker {
    pub spoken: SpokenLog,
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
    /// Speech this reply may last (`MAX_REPLY_SECONDS`); `None`: no cap.
    pub max_spoken: Option<std::time::Duration>,
    /// Cancelled when the cap ended the reply: the turn ends its LLM request on it.
    pub capped: CancellationToken,
    /// `QUICK_ACK_MS`: the filler, and when it plays if no segment came by then.
    pub quick_ack: Option<(Instant, Arc<[AudioChunk]>)>,
    /// `VETO_WINDOW_MS`: how long the first line waits, shown, before it is heard.
    pub veto_window: Option<std::time::Duration>,
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
    /// All audio was released to listeners (the relay sent the turn's `END`).
    pub completed: bool,
    /// When the relay released the `END`.
    pub last_audio_at: Option<Instant>,
    pub error: Option<ProviderError>,
    /// The speech task panicked: a bug, reported as the turn's failure, never as a STOP.
    pub crashed: Option<String>,
    /// `max_spoken` was reached: the reply ended after the segment that reached it.
    pub capped: bool,
    /// When the quick acknowledgment's first chunk went to the relay (it played).
    pub quick_ack_at: Option<Instant>,
    /// The first heard segment: when it reached the speaker (its TTS call), and how long the
    /// TTS took to its first chunk — the provider's share of first audio, turn by turn.
    pub first_segment_at: Option<Instant>,
    pub first_synth: Option<std::time::Duration>,
}

struct Synthesis {
    segment: Segment,
    /// When the segment reached the speaker (its text was already on the panel).
    queued_at: Instant,
    chunks: mpsc::Receiver<Result<AudioChunk, ProviderError>>,
    /// Dropping it aborts the task, which drops the provider's stream: synthesis stops.
    task: AbortOnDropHandle<()>,
}

impl Speaker {
    pub async fn run(self, mut segments: mpsc::Receiver<Segment>) -> SpeechReport {
        let mut report = SpeechReport::default();
        let mut queue: VecDeque<Synthesis> = VecDeque::with_capacity(LOOKAHEAD);
        let mut segments_open = true;
        let mut seq: u64 = 0;
        let mut first_of_segment = true;
        let mut spoken_samples: u64 = 0;
        let max_samples = self
            .max_spoken
            .map(|max| (max.as_secs_f64() * f64::from(self.voice.sample_rate())) as u64);
        if let Some((at, filler)) = &self.quick_ack {
            // The first segment, or the filler if it is late: the filler's chunks come first in
            // the sequence and belong to no segment (never heard text).
            let first = tokio::select! {
                biased;
                _ = self.token.cancelled() => return report,
                next = segments.recv() => Some(next),
                () = tokio::time::sleep_until(*at) => None,
            };
            match first {
                Some(Some(segment)) => queue.push_back(self.synthesise(segment)),
                Some(None) => segments_open = false,
                None => {
                    for chunk in filler.iter() {
                        if !self.deliver(seq, chunk.clone(), None).await {
                            return report;
                        }
                        report.quick_ack_at.get_or_insert_with(Instant::now);
                        seq += 1;
                    }
                    tracing::debug!(chunks = filler.len(), "quick acknowledgment played");
                }
            }
        }
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
                    Some(Ok(_)) if first_of_segment
                        && max_samples.is_some_and(|max| spoken_samples >= max) =>
                    {
                        // The cap falls at this segment boundary: what was said stands, the rest
                        // is never synthesised (dropping the queue stops it) nor written.
                        tracing::info!(spoken_ms = spoken_samples * 1000 / u64::from(self.voice.sample_rate().max(1)), "reply capped by MAX_REPLY_SECONDS");
                        report.capped = true;
                        self.capped.cancel();
                        segments.close();
                        queue.clear();
                        break;
                    }
                    Some(Ok(chunk)) => {
                        let segment_info = first_of_segment.then(|| SegmentInfo {
                            index: current.segment.index,
                            text: current.segment.text.clone(),
                        });
                        if first_of_segment && report.first_audio_at.is_none() {
                            // Read before any veto hold: the hold is not the TTS's time.
                            report.first_segment_at = Some(current.queued_at);
                            report.first_synth = Some(current.queued_at.elapsed());
                        }
                        if first_of_segment
                            && report.first_audio_at.is_none()
                            && let Some(window) = self.veto_window
                            && !self.hold_for_veto(&current.segment, current.queued_at + window).await
                        {
                            // Vetoed (or stopped) before a sound of it was heard.
                            return report;
                        }
                        if first_of_segment {
                            self.log_spoken(|log| log.push(SpokenSegment {
                                text: current.segment.text.clone(),
                                first_seq: seq,
                                n_chunks: 0,
                            }));
                            first_of_segment = false;
                        }
                        spoken_samples += chunk.samples.len() as u64;
                        if !self.deliver(seq, chunk, segment_info).await {
                            return report;
                        }
                        report.first_audio_at.get_or_insert_with(Instant::now);
                        self.log_spoken(|log| {
                            if let Some(spoken) = log.last_mut() {
                                spoken.n_chunks += 1;
                            }
                        });
                        seq += 1;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, segment = current.segment.index, "TTS failed; the rest of the turn is text only");
                        // A fragment of the failed segment's audio is not that segment heard.
                        if !first_of_segment {
                            self.log_spoken(|log| {
                                log.pop();
                            });
                        }
                        report.error = Some(error);
                        return report;
                    }
                    None => {
                        // The stream ended, or its task panicked (a provider bug): only the
                        // task's result tells which.
                        if let Some(done) = queue.pop_front()
                            && let Err(error) = done.task.await
                            && error.is_panic()
                        {
                            let reason = panic_message(error.into_panic());
                            tracing::error!(%reason, segment = done.segment.index, "TTS synthesis panicked");
                            report.crashed = Some(format!("TTS synthesis panicked: {reason}"));
                            return report;
                        }
                        first_of_segment = true;
                    }
                },
            }
        }
        // The turn is spoken when its END leaves the relay behind its last chunk, not when the
        // chunks were handed over: a STOP until then still cuts it and is recorded as such.
        if let Some(played) = self.send_end().await {
            tokio::select! {
                biased;
                _ = self.token.cancelled() => return report,
                played = played.played() => {
                    report.completed = played;
                    if played {
                        report.last_audio_at = Some(Instant::now());
                    }
                }
            }
        }
        report
    }

    /// Shows the first line to the panel (`VETO_PENDING`) and waits until `until`; false when
    /// the turn was stopped meanwhile (a veto is a STOP with reason `vetoed`).
    async fn hold_for_veto(&self, segment: &Segment, until: Instant) -> bool {
        let window_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64;
        let pending = RelayFrame::VetoPending(VetoPendingFrame {
            session_id: self.session.clone(),
            turn: self.turn,
            text: segment.text.clone(),
            window_ms,
        });
        if !self.slot.is_fenced(self.turn) {
            let _ = self.producer.send(pending).await;
        }
        tokio::select! {
            biased;
            _ = self.token.cancelled() => false,
            () = tokio::time::sleep_until(until) => !self.slot.is_fenced(self.turn),
        }
    }

    async fn send_end(&self) -> Option<EndReceipt> {
        if self.slot.is_fenced(self.turn) || self.token.is_cancelled() {
            return None;
        }
        match self.producer.send_end(&self.session, self.turn) {
            Ok(receipt) => Some(receipt),
            Err(error) => {
                tracing::warn!(%error, "the relay refused the turn's END");
                None
            }
        }
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
            queued_at: Instant::now(),
            chunks: rx,
            task: AbortOnDropHandle::new(task),
        }
    }

    fn log_spoken(&self, update: impl FnOnce(&mut Vec<SpokenSegment>)) {
        update(&mut self.spoken.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Hands one chunk to the relay as samples (no base64 inside the process); false once the
    /// turn is stopped (fenced or cancelled).
    async fn deliver(&self, seq: u64, chunk: AudioChunk, segment: Option<SegmentInfo>) -> bool {
        let header = SpeechChunk {
            session_id: self.session.clone(),
            turn: self.turn,
            seq,
            pcm: String::new(),
            sample_rate: Some(self.voice.sample_rate()),
            viseme: Viseme {
                mouth_open: chunk.mouth_open,
            },
            segment,
        };
        let samples: Arc<[i16]> = chunk.samples.into();
        self.guarded(self.producer.send_speech(header, samples))
            .await
    }

    async fn guarded(
        &self,
        send: impl Future<Output = Result<Ingested, koto_relay::IngestError>>,
    ) -> bool {
        // The engine's own fence: once a STOP covered this turn, nothing of it leaves the engine.
        if self.slot.is_fenced(self.turn) {
            return false;
        }
        tokio::select! {
            biased;
            _ = self.token.cancelled() => false,
            sent = send => match sent {
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

/// A panic payload as text (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
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
        let chars: Vec<char> = segment.text.chars().collect();
        let keep = (chars.len() as u64 * played / segment.n_chunks) as usize;
        heard.extend(&chars[..word_boundary(&chars, keep)]);
        break;
    }
    // "Welcome back, " → "Welcome back,": the cut ends on what was said, not a space (also
    // when it falls between two segments).
    heard.truncate(heard.trim_end().len());
    heard
}

/// `keep` moved back so the cut does not split a word: "Welcome back, every|one" keeps
/// "Welcome back, ". In Chinese and Japanese every character is a unit, so a cut between two
/// of them stays where it is.
fn word_boundary(chars: &[char], keep: usize) -> usize {
    let keep = keep.min(chars.len());
    let (Some(before), Some(after)) = (
        keep.checked_sub(1).and_then(|i| chars.get(i)),
        chars.get(keep),
    ) else {
        return keep;
    };
    if !(in_spaced_word(*before) && in_spaced_word(*after)) {
        return keep;
    }
    let mut keep = keep;
    while keep > 0 && chars.get(keep - 1).is_some_and(|c| in_spaced_word(*c)) {
        keep -= 1;
    }
    keep
}

/// A letter or digit of a script that separates words with spaces (Latin, Cyrillic, Hangul…),
/// or an apostrophe inside such a word (`don't`).
fn in_spaced_word(c: char) -> bool {
    (c.is_alphanumeric() && !is_cjk_unit(c)) || c == '\'' || c == '\u{2019}'
}

/// Han ideographs and kana: one character, one unit.
fn is_cjk_unit(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}' // hiragana, katakana
        | '\u{31F0}'..='\u{31FF}' // katakana extensions
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}' // compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}' // half-width katakana
        | '\u{20000}'..='\u{3134F}' // extensions B–G
    )
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

    #[test]
    fn heard_text_never_ends_mid_word() {
        // 23 characters over 23 chunks: one character per chunk.
        let segments = [spoken("Welcome back, everyone.", 0, 23)];
        let at = |chars: u64| heard_text(&segments, Some(chars - 1));
        assert_eq!(
            at(19),
            "Welcome back,",
            "\"every\" of \"everyone\" is dropped"
        );
        assert_eq!(at(14), "Welcome back,", "no trailing space");
        assert_eq!(at(12), "Welcome back", "a whole word is kept");
        assert_eq!(at(3), "", "inside the first word: nothing");
        assert_eq!(at(23), "Welcome back, everyone.", "everything");
        let two = [spoken("Welcome back, ", 0, 2), spoken("everyone.", 2, 2)];
        assert_eq!(
            heard_text(&two, Some(1)),
            "Welcome back,",
            "cut between segments: no trailing space either"
        );
        let apostrophe = [spoken("I don't know", 0, 12)];
        assert_eq!(
            heard_text(&apostrophe, Some(4)),
            "I",
            "an apostrophe does not split a word"
        );
    }

    #[test]
    fn heard_text_cuts_between_any_two_cjk_characters() {
        let segments = [spoken("今日はいい天気", 0, 7)];
        assert_eq!(heard_text(&segments, Some(2)), "今日は");
        let mixed = [spoken("我们玩Minecraft吧", 0, 13)];
        assert_eq!(
            heard_text(&mixed, Some(6)),
            "我们玩",
            "a Latin word inside Chinese is still whole or absent"
        );
    }
}
