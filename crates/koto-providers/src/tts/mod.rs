//! TTS providers: mock, espeak-ng, Piper, Edge read-aloud, OpenAI-compatible speech.

pub mod edge;
pub mod openai;
