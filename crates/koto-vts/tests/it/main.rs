//! koto-vts's one integration-test binary: the client against a loopback fake of VTube Studio's
//! plugin API speaking the real JSON envelope. Real time with bounded waits, never a timing
//! assertion: every wait polls for a state or a frame and only fails after a generous bound.
#![allow(clippy::unwrap_used)]

mod client;
mod fake_vts;
