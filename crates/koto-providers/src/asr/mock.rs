//! The `mock` ASR: a deterministic transcript without a model, for tests and for trying the app.
//!
//! What it returns, in this order:
//! - audio whose peak is below [`SILENCE_PEAK`] (silence, or nothing) → an empty transcript, so
//!   the "nothing was said" path can be exercised;
//! - a configured text (`ASR_MOCK_TEXT` in the server) → that text;
//! - otherwise a description of the audio: `"mock transcript of 1250 ms of audio"`.
//!
//! Language: the request's hint (else `None`); confidence: `None` (it heard nothing).

use futures_util::stream;
use koto_core::asr::{AsrEvent, AsrProvider, AsrRequest, AsrStream, Transcript};

/// Peak magnitude (of 32 767) below which the mock calls the audio silent: about −50 dBFS.
pub const SILENCE_PEAK: i16 = 100;

#[derive(Debug, Clone, Default)]
pub struct MockAsr {
    text: Option<String>,
}

impl MockAsr {
    /// `text`: what every non-silent utterance transcribes to; `None` describes the audio instead.
    pub fn new(text: Option<String>) -> Self {
        Self {
            text: text.filter(|t| !t.trim().is_empty()),
        }
    }

    /// The transcript of `request`, as documented above.
    pub fn transcript(&self, request: &AsrRequest) -> Transcript {
        let peak = request
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        let duration_ms = request.duration_ms();
        let text = if peak < SILENCE_PEAK.unsigned_abs() {
            String::new()
        } else {
            match &self.text {
                Some(text) => text.clone(),
                None => format!("mock transcript of {duration_ms} ms of audio"),
            }
        };
        Transcript {
            text,
            language: request.language.clone(),
            confidence: None,
            duration_ms,
        }
    }
}

impl AsrProvider for MockAsr {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn transcribe(&self, request: AsrRequest) -> AsrStream {
        let transcript = self.transcript(&request);
        Box::pin(stream::iter([Ok(AsrEvent::Final(transcript))]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use futures_util::StreamExt;

    use super::*;

    fn request(samples: Vec<i16>) -> AsrRequest {
        AsrRequest {
            samples: Arc::from(samples),
            language: Some("en".into()),
            correlation_id: "live-001#1".into(),
        }
    }

    #[tokio::test]
    async fn describes_the_audio_or_says_the_configured_text_and_hears_silence_as_nothing() {
        // 0.75 s at 16 kHz: a tone, then silence.
        let tone: Vec<i16> = (0..12_000)
            .map(|i| if i % 20 < 10 { 3000 } else { -3000 })
            .collect();
        let described = MockAsr::new(None).transcript(&request(tone.clone()));
        assert_eq!(
            described.text, "mock transcript of 750 ms of audio",
            "the documented description"
        );
        assert_eq!(described.duration_ms, 750, "the request's own length");
        assert_eq!(
            described.language.as_deref(),
            Some("en"),
            "the hint comes back"
        );

        let configured = MockAsr::new(Some("hello there".into()));
        let mut events = configured.transcribe(request(tone));
        let first = events.next().await.unwrap().unwrap();
        assert!(
            matches!(&first, AsrEvent::Final(t) if t.text == "hello there"),
            "the configured text, as the one final event: {first:?}"
        );
        assert!(events.next().await.is_none(), "exactly one event");

        let silent = configured.transcript(&request(vec![5; 16_000]));
        assert_eq!(
            silent.text, "",
            "silence transcribes to nothing, even with a text configured"
        );
        assert_eq!(
            MockAsr::new(None).transcript(&request(Vec::new())).text,
            "",
            "no audio, no words"
        );
    }
}
