//! Integration tests of the provider clients against loopback fakes speaking the real wire formats.

mod asr_openai;
mod asr_real;
mod decode;
mod llm_openai;
mod tts;
mod tts_piper;
mod tts_remote;
