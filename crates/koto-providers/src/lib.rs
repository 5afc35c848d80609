//! Provider clients behind the `koto-core` traits: LLMs (`llm`), TTS engines (`tts`), speech
//! recognition (`asr`), the PCM normalisation every TTS output goes through and the decoding of
//! uploaded audio (`audio`).
//!
//! Architecture invariant: nothing here knows about sessions, turns, SQLite or the relay; a
//! provider turns one request into one stream, and dropping the stream cancels the work.

pub mod asr;
pub mod audio;
pub mod failover;
pub mod llm;
pub mod retry_after;
pub mod tts;
