//! Audio decoding (koto-providers `audio`): an uploaded file through `decode_upload` (WAV, MP3,
//! OGG/Opus, WebM/Opus, sniffed) under small bounds, and the streaming WAV and MP3 decoders TTS
//! output goes through, in any chunking. Refusals are fine; a panic is a bug even where
//! `decode_upload` would catch it (libFuzzer's hook aborts first), and a decoded upload stays
//! within its duration bound.

use koto_providers::audio::decode::{DecodeLimits, decode_upload};
use koto_providers::audio::mp3::Mp3StreamDecoder;
use koto_providers::audio::wav::WavStreamDecoder;

use super::split;

const LIMITS: DecodeLimits = DecodeLimits {
    max_bytes: 256 << 10,
    max_duration_ms: 3_000,
};

pub fn run(data: &[u8]) {
    let ([seed_a, seed_b], file) = split::header(data);
    if let Ok(decoded) = decode_upload(file, &LIMITS) {
        assert!(!decoded.samples.is_empty(), "a decoded upload has samples");
        // The resampler's filter may add a few ms at the end.
        assert!(
            decoded.duration_ms() <= LIMITS.max_duration_ms + 50,
            "{} ms decoded past the {} ms bound",
            decoded.duration_ms(),
            LIMITS.max_duration_ms
        );
    }
    let pieces = split::pieces(file, &[seed_a, seed_b]);
    let mut wav = WavStreamDecoder::new();
    for piece in &pieces {
        if wav.push(piece).is_err() {
            break;
        }
    }
    let _ = wav.finish();
    let mut mp3 = Mp3StreamDecoder::new();
    for piece in &pieces {
        if mp3.push(piece).is_err() {
            break;
        }
    }
    let _ = mp3.finish();
}
