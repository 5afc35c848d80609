//! The dialog engine (the ADR's `dialog-engine`): sessions, turns, context assembly, the LLM
//! stream and, later, the TTS streamer; every turn ends in one store transaction with its outbox
//! events.
//!
//! Architecture invariant: the engine names no vendor, no HTTP framework and no SQL. It talks to
//! providers through `koto-core` traits and to storage through `koto-store`'s API. Callers (the
//! axum routes, Tauri commands) are thin adapters over [`Engine`].

mod context;
mod engine;
mod error;
mod events;
mod history;
mod job;
mod metrics;
mod profile;
mod prompt_cache;
mod quick_ack;
mod services;
mod session;
mod speech;
mod speech_turn;
mod store_calls;
mod turn;

pub use engine::{Engine, EngineParts, StopOutcome, Submission, TurnRequest};
pub use error::EngineError;
pub use events::{TurnEvent, TurnHandle};
pub use profile::{EngineConfig, Flags, Profile};
