//! Wire types of `CONTRACTS.md`: request bodies, SSE payloads, relay frames, error bodies, the
//! original front end's frames (`legacy`).
//!
//! Architecture invariant: JSON shapes are defined here and nowhere else; this crate holds no
//! behaviour beyond (de)serialisation and shape-level validation.

pub mod chat;
pub mod error;
pub mod events;
pub mod ingest;
pub mod legacy;
pub mod live_chat;
pub mod voice;

pub use error::{ErrorBody, ErrorCode, WireError};
