//! Provider clients behind the `koto-core` traits: LLMs (`llm`), TTS engines (`tts`), and the PCM
//! normalisation every TTS output goes through (`audio`).
//!
//! Architecture invariant: nothing here knows about sessions, turns, SQLite or the relay; a
//! provider turns one request into one stream, and dropping the stream cancels the work.

pub mod audio;
pub mod llm;
pub mod retry_after;
pub mod tts;
