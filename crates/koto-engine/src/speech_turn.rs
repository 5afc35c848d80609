//! One turn's speech: the segmenter fed by LLM deltas and the [`Speaker`] task fed by segments.
//!
//! Owned by the turn task; dropping it aborts the speaker (and with it every synthesis).

use koto_core::segmenter::{Segment, Segmenter};
use koto_protocol::chat::ControlEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::TurnEvent;
use crate::speech::{Speaker, SpeechReport};
use crate::turn::TurnJob;

pub(crate) struct TurnSpeech {
    segmenter: Segmenter,
    /// To the speaker; unbounded because segments are a few bytes of text each and the LLM loop
    /// must never wait on audio. Closed by `finish_text`.
    segments: Option<mpsc::UnboundedSender<Segment>>,
    speaker: Option<AbortOnDropHandle<SpeechReport>>,
    report: Option<SpeechReport>,
    started: bool,
}

impl TurnSpeech {
    pub fn start(segmenter: Segmenter, speaker: Speaker) -> TurnSpeech {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(speaker.run(rx));
        TurnSpeech {
            segmenter,
            segments: Some(tx),
            speaker: Some(AbortOnDropHandle::new(task)),
            report: None,
            started: false,
        }
    }

    /// True once the first segment went to TTS.
    pub fn started(&self) -> bool {
        self.started
    }

    pub async fn push(&mut self, job: &TurnJob, delta: &str) {
        for segment in self.segmenter.push(delta) {
            self.send(job, segment).await;
        }
    }

    /// The first-clause time bound elapsed: send what there is of the first segment.
    pub async fn flush_first_clause(&mut self, job: &TurnJob) {
        if let Some(segment) = self.segmenter.flush_first_clause() {
            self.send(job, segment).await;
        }
    }

    /// The reply text is complete: flush the segmenter and close the segment stream.
    pub async fn finish_text(&mut self, job: &TurnJob) {
        for segment in self.segmenter.finish() {
            self.send(job, segment).await;
        }
        self.segments = None;
    }

    /// Waits until all audio went to the relay (or TTS failed: the turn goes on as text).
    /// False if the turn was cancelled or its output fenced meanwhile.
    pub async fn wait_delivered(&mut self, token: &CancellationToken) -> bool {
        let Some(speaker) = self.speaker.as_mut() else {
            return true;
        };
        let report = tokio::select! {
            biased;
            _ = token.cancelled() => return false,
            joined = speaker => joined.unwrap_or_default(),
        };
        self.speaker = None;
        let delivered = report.completed || report.error.is_some();
        self.report = Some(report);
        delivered
    }

    /// The speaker's report; if it still runs, the turn was cancelled and it ends at once.
    pub async fn finish(mut self) -> SpeechReport {
        self.segments = None;
        if let Some(report) = self.report.take() {
            return report;
        }
        match self.speaker.take() {
            Some(speaker) => speaker.await.unwrap_or_default(),
            None => SpeechReport::default(),
        }
    }

    async fn send(&mut self, job: &TurnJob, segment: Segment) {
        if !self.started {
            self.started = true;
            job.emit(TurnEvent::Control(ControlEvent::hint_tts_start()))
                .await;
        }
        if let Some(segments) = &self.segments {
            // A closed channel means the speaker already stopped (TTS failure): text goes on.
            let _ = segments.send(segment);
        }
    }
}
