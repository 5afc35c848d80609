//! PCM normalisation: MP3/WAV decoding, resampling, 20–40 ms chunking with visemes.

pub mod mp3;
