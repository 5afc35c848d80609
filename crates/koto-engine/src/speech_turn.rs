//! One turn's speech: the segmenter fed by LLM deltas and the [`Speaker`] task fed by segments.
//!
//! Owned by the turn task; dropping it aborts the speaker (and with it every synthesis).

use std::sync::Arc;

use koto_core::output_filter::{FilterAction, FilterVerdict, OutputFilter};
use koto_core::segmenter::{Segment, Segmenter, SegmenterConfig};
use koto_protocol::chat::ControlEvent;
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::TurnEvent;
use crate::speech::{Speaker, SpeechReport, SpokenLog, panic_message};

/// Segments written and not yet taken by the speaker: the bounded text buffer between the LLM
/// (read at its own pace) and synthesis (paced by the audio). A segment is a clause, so this
/// holds far more than any reply; only a runaway LLM ever waits on it.
const SEGMENT_BUFFER: usize = 512;

pub(crate) struct TurnSpeech {
    segmenter: Segmenter,
    segmenter_config: SegmenterConfig,
    /// Segments sent to the speaker so far (the next one's index).
    sent: u32,
    /// What the speaker delivered, segment by segment (read after the fence).
    pub spoken: SpokenLog,
    /// To the speaker; closed by `finish_text`.
    segments: Option<mpsc::Sender<Segment>>,
    speaker: Option<AbortOnDropHandle<SpeechReport>>,
    report: Option<SpeechReport>,
    started: bool,
    /// The turn's caller (the TTS-start hint goes there); its receiver may be gone.
    events: mpsc::Sender<TurnEvent>,
    /// The turn's token: a cancelled turn stops waiting on the segment buffer.
    token: CancellationToken,
    /// Cancelled by the speaker when `MAX_REPLY_SECONDS` ended the reply.
    capped: CancellationToken,
    /// `OUTPUT_FILTER_WORDS` and its action, checked on every segment before synthesis.
    filter: Option<(Arc<OutputFilter>, FilterAction)>,
    /// What the filter did, one line per hit (`masked: 傻逼`), for the transcript and outbox.
    pub filtered: Vec<String>,
    /// Cancelled when a hit with `stop` ended the reply (the turn ends its LLM request on it).
    filter_stopped: CancellationToken,
}

impl TurnSpeech {
    pub fn start(
        segmenter_config: SegmenterConfig,
        speaker: Speaker,
        events: mpsc::Sender<TurnEvent>,
        token: CancellationToken,
        filter: Option<(Arc<OutputFilter>, FilterAction)>,
    ) -> TurnSpeech {
        let (tx, rx) = mpsc::channel(SEGMENT_BUFFER);
        let spoken = speaker.spoken.clone();
        let capped = speaker.capped.clone();
        let task = tokio::spawn(speaker.run(rx));
        TurnSpeech {
            segmenter: Segmenter::new(segmenter_config.clone()),
            segmenter_config,
            sent: 0,
            spoken,
            segments: Some(tx),
            speaker: Some(AbortOnDropHandle::new(task)),
            report: None,
            started: false,
            events,
            token,
            capped,
            filter,
            filtered: Vec::new(),
            filter_stopped: CancellationToken::new(),
        }
    }

    /// Cancelled when the output filter stopped the reply (`OUTPUT_FILTER_ACTION=stop`).
    pub fn filter_stopped(&self) -> CancellationToken {
        self.filter_stopped.clone()
    }

    /// The segment as it may be spoken: masked, or `None` (skipped, or the reply stopped here).
    fn filter(&mut self, mut segment: Segment) -> Option<Segment> {
        let Some((filter, action)) = &self.filter else {
            return Some(segment);
        };
        let verdict = filter.check(&segment.text);
        let FilterVerdict::Hit { entries, masked } = verdict else {
            return Some(segment);
        };
        let entries = entries.join(", ");
        tracing::info!(action = action.as_str(), segment = segment.index, %entries, "output filter hit");
        self.filtered
            .push(format!("{}: {entries}", action.as_str()));
        match action {
            FilterAction::Mask => {
                // The voice reads its own form of the text (`speak`); it is masked on its own.
                segment.speak = match filter.check(&segment.speak) {
                    FilterVerdict::Hit { masked, .. } => masked,
                    FilterVerdict::Clean => segment.speak,
                };
                segment.text = masked;
                Some(segment)
            }
            FilterAction::Skip => None,
            FilterAction::Stop => {
                // Nothing from here on is said: the segments already sent play to their end.
                self.segments = None;
                self.filter_stopped.cancel();
                None
            }
        }
    }

    /// Cancelled when the reply's speech reached `MAX_REPLY_SECONDS` (the turn stops its LLM).
    pub fn capped(&self) -> CancellationToken {
        self.capped.clone()
    }

    /// The LLM's token cap ended the reply: what is left is said up to its last complete
    /// sentence; the clause it was in the middle of is neither spoken nor kept. Returns the
    /// bytes of reply text dropped from the end. With nothing said yet, the unfinished text is
    /// spoken after all (better than silence) and nothing is dropped.
    pub async fn finish_text_at_cap(&mut self) -> usize {
        let pending = self.segmenter.pending_text().to_owned();
        let keep = koto_core::segmenter::end_of_last_sentence(&pending);
        if !self.started && keep == 0 {
            self.finish_text().await;
            return 0;
        }
        // The kept sentences are cut by a segmenter of their own, numbered on from the reply's.
        let mut tail = Segmenter::new(self.segmenter_config.clone());
        let mut segments = tail.push(&pending[..keep]);
        segments.extend(tail.finish());
        for mut segment in segments {
            segment.index = self.sent;
            self.send(segment).await;
        }
        self.segments = None;
        pending.len() - keep
    }

    /// True once the first segment went to TTS.
    pub fn started(&self) -> bool {
        self.started
    }

    pub async fn push(&mut self, delta: &str) {
        for segment in self.segmenter.push(delta) {
            self.send(segment).await;
        }
    }

    /// The first-clause time bound elapsed: send what there is of the first segment.
    pub async fn flush_first_clause(&mut self) {
        if let Some(segment) = self.segmenter.flush_first_clause() {
            self.send(segment).await;
        }
    }

    /// The reply text is complete: flush the segmenter and close the segment stream. Once
    /// closed (here or by `finish_text_at_cap`) there is nothing left to flush.
    pub async fn finish_text(&mut self) {
        if self.segments.is_none() {
            return;
        }
        for segment in self.segmenter.finish() {
            self.send(segment).await;
        }
        self.segments = None;
    }

    /// Waits until all audio was released to listeners (or TTS failed: the turn goes on as
    /// text; or the speech task crashed: the report says so). False if the turn was cancelled
    /// or its output fenced meanwhile.
    pub async fn wait_played(&mut self, token: &CancellationToken) -> bool {
        let Some(speaker) = self.speaker.as_mut() else {
            return true;
        };
        let report = tokio::select! {
            biased;
            _ = token.cancelled() => return false,
            joined = speaker => report_of(joined),
        };
        self.speaker = None;
        // A TTS error or a crash is the turn's to report (`run_turn` reads the report); an END
        // that never played was dropped by a STOP or fence, even before the token is cancelled.
        let played = report.completed || report.error.is_some() || report.crashed.is_some();
        self.report = Some(report);
        played
    }

    /// The speaker's report. If it still runs, it ends at once when the turn was cancelled;
    /// otherwise (a failed LLM) it speaks what it was given first.
    pub async fn finish(mut self) -> SpeechReport {
        self.segments = None;
        if let Some(report) = self.report.take() {
            return report;
        }
        match self.speaker.take() {
            Some(speaker) => report_of(speaker.await),
            None => SpeechReport::default(),
        }
    }

    async fn send(&mut self, segment: Segment) {
        self.sent = segment.index + 1;
        let Some(segment) = self.filter(segment) else {
            return;
        };
        if !self.started {
            self.started = true;
            // The caller may be gone (disconnect); the turn still speaks.
            let _ = self
                .events
                .send(TurnEvent::Control(ControlEvent::hint_tts_start()))
                .await;
        }
        if let Some(segments) = &self.segments {
            // A closed channel means the speaker already stopped (TTS failure): text goes on.
            tokio::select! {
                biased;
                _ = self.token.cancelled() => {}
                _ = segments.send(segment) => {}
            }
        }
    }
}

/// A panicked speech task is a bug: it becomes a report saying so (never a silent "stopped").
fn report_of(joined: Result<SpeechReport, JoinError>) -> SpeechReport {
    match joined {
        Ok(report) => report,
        Err(error) => {
            let reason = if error.is_panic() {
                format!(
                    "the speech task panicked: {}",
                    panic_message(error.into_panic())
                )
            } else {
                "the speech task was cancelled".to_owned()
            };
            tracing::error!(%reason, "the speech task crashed");
            SpeechReport {
                crashed: Some(reason),
                ..SpeechReport::default()
            }
        }
    }
}
