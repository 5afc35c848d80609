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

/// One 20–40 ms chunk of speech at the stream's rate, ready for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    /// s16le mono at [`Voice::sample_rate`].
    pub samples: Vec<i16>,
    /// 0..1 from the chunk's loudness, for lip-sync (`viseme.mouthOpen`).
    pub mouth_open: f32,
}

pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<AudioChunk, ProviderError>> + Send + 'static>>;

/// A TTS provider behind normalisation: whatever the provider yields (MP3, another rate) comes
/// out as real PCM chunks at one rate. This is what the engine speaks with.
pub trait Voice: Send + Sync + 'static {
    /// The provider's name (`mock`, `espeak`, `piper`, `edge`, `openai`).
    fn name(&self) -> &'static str;
    fn sample_rate(&self) -> u32;
    /// Cancel by drop, like [`TtsProvider::synthesize`].
    fn speak(&self, request: TtsRequest) -> ChunkStream;
    /// A failover chain's voices and their breakers (`tts_chain`); `None` for one voice.
    fn chain(&self) -> Option<Vec<crate::chain_status::ChainLinkStatus>> {
        None
    }
}
