//! ASR providers: `mock` (deterministic, no audio analysis beyond loudness) and `openai`
//! (OpenAI-compatible `POST /audio/transcriptions`: whisper.cpp's server, faster-whisper servers,
//! OpenAI, Groq).
//!
//! Each implements `koto_core::asr::AsrProvider`: one utterance of 16 kHz mono PCM in, events out,
//! cancelled by dropping the stream. Decoding uploads to that PCM is `crate::audio::decode`'s job.

pub mod mock;
pub mod openai;

pub use mock::MockAsr;
pub use openai::{OpenAiAsr, OpenAiAsrConfig, TranscriptionFormat};
