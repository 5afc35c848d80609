//! PCM normalisation: MP3/WAV decoding, uploaded files to 16 kHz (`decode`), resampling, 20–40 ms chunking with visemes. No IO here:
//! providers feed bytes and blocks in, the caller sends the chunks.
//!
//! The path every TTS output takes: provider bytes → decoder (`mp3`, `wav`) → `PcmBlock` at the
//! provider's rate → [`PcmNormalizer`] (resample with [`resample::StreamResampler`], cut, and
//! compute [`mouth`] openness) → [`AudioChunk`]s at the stream rate.

pub mod decode;
pub mod mouth;
pub mod mp3;
pub mod normalizer;
pub mod resample;
pub mod wav;

pub use normalizer::{AudioChunk, PcmNormalizer};
pub use wav::{WavError, WavFormat, WavStreamDecoder};
