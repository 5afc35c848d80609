//! koto-voice on synthetic audio: espeak-ng speech, silence, noise, music, a synthetic echo
//! path, and a fake ASR. No sound card, no network.

#[cfg(feature = "aec")]
mod aec;
mod pipeline;
mod support;
mod vad;
