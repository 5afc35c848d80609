//! Loopback fake upstreams speaking the real wire formats, for tests and `kotodama bench`.
//!
//! Architecture invariant: every fake binds 127.0.0.1:0 and stops when its handle is dropped.
//! (A normal dependency of `koto-server` only because `kotodama bench` runs the fake OpenAI.)

pub mod fake_edge;
pub mod fake_openai;
pub mod fake_openai_speech;
pub mod fake_openai_transcription;
pub mod http1;
pub mod scripted;
