//! Integration tests of the relay: pacing, STOP and fences, clients, ingest validation, the
//! socket drivers (fake channel sockets and real loopback WebSockets), and a property test of
//! the fence invariant. Timing is checked on tokio's paused clock, never the wall clock.

#![allow(clippy::unwrap_used)]

mod clients;
mod fence_prop;
mod ingest;
mod pacing;
mod pause;
mod sockets;
mod stop;
mod support;
