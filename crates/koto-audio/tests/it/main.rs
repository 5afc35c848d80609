//! Integration tests of local playback: the STOP flush bound, turn fences, the jitter buffer,
//! volume, fallbacks without a sound card, and `play_relay` against a real in-process relay.
//! Time is the recording sink's virtual clock (and tokio's paused clock for the relay), so
//! nothing here needs a sound card or waits on the wall clock to be right.

#![allow(clippy::unwrap_used)]

mod fallback;
mod fence;
mod flush;
mod jitter;
mod relay;
mod support;
mod volume;
