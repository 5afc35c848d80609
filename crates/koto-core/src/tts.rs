//! The TTS provider trait: one segment of text in, a stream of PCM blocks out.
//!
//! Cancellation is by drop: dropping the stream must stop the synthesis (kill the process, close
//! the socket). Providers return PCM at whatever rate they produce; normalising to the stream
//! rate and cutting into chunks is the caller's job.

use std::pin::Pin;

use futures_core::Stream;

use crate::ProviderError;

/// Signed 16-bit mono PCM at `sample_rate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcmBlock {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TtsRequest {
    pub text: String,
    /// Language hint (`zh`, `en`, `ja`) used to pick a voice when none is configured.
    pub lang: Option<String>,
    pub correlation_id: String,
}

pub type PcmStream = Pin<Box<dyn Stream<Item = Result<PcmBlock, ProviderError>> + Send + 'static>>;

pub trait TtsProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn synthesize(&self, request: TtsRequest) -> PcmStream;
}
