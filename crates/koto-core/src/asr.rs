//! The ASR provider trait: one utterance of 16 kHz mono PCM in, transcript events out.
//!
//! Cancellation is by drop, as for the other providers. A provider that only returns a final
//! transcript yields one [`AsrEvent::Final`]; one that streams may yield [`AsrEvent::Partial`]s
//! first (shown live in the panel, never answered).

use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::ProviderError;

/// The rate every utterance reaches a provider at (microphone and uploads are resampled to it).
pub const ASR_SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Clone, PartialEq)]
pub struct AsrRequest {
    /// s16le mono at [`ASR_SAMPLE_RATE`]; shared, so a retry does not copy the utterance.
    pub samples: Arc<[i16]>,
    /// ISO 639-1 hint (`zh`, `en`, `ja`); `None` lets the provider detect it.
    pub language: Option<String>,
    pub correlation_id: String,
}

impl AsrRequest {
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(ASR_SAMPLE_RATE)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// The language the provider heard, when it says.
    pub language: Option<String>,
    /// 0..1 when the provider gives one (e.g. from Whisper's average log-probability).
    pub confidence: Option<f32>,
    /// Length of the audio that was transcribed.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AsrEvent {
    Partial { text: String },
    Final(Transcript),
}

pub type AsrStream = Pin<Box<dyn Stream<Item = Result<AsrEvent, ProviderError>> + Send + 'static>>;

pub trait AsrProvider: Send + Sync + 'static {
    /// `mock`, `openai`.
    fn name(&self) -> &'static str;
    /// Ends after exactly one `Final` (or an error).
    fn transcribe(&self, request: AsrRequest) -> AsrStream;
}
