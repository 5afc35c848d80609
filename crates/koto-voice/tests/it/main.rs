//! koto-voice on synthetic audio: espeak-ng speech, silence, noise, music, a synthetic echo
//! path, and a fake ASR. No sound card, no network.

mod aec;
mod pipeline;
mod support;
mod vad;
