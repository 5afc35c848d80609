//! Uploaded audio → 16 kHz mono (`koto_providers::audio::decode`) on real files: espeak-ng's WAV,
//! the same speech through opusenc (OGG/Opus, mono and 48 kHz stereo), LAME (MP3), and
//! Chromium's MediaRecorder over a fake microphone playing that WAV (WebM/Opus). Decoded audio
//! is compared with the source WAV by its loudness envelope, so a decoder that emits noise,
//! silence or the wrong speed fails. Then every bound and broken-file error.

#![allow(clippy::unwrap_used)]

use koto_providers::audio::decode::{
    AudioDecodeError, AudioFormat, DecodeLimits, decode_upload, sniff,
};
use rand::{Rng, SeedableRng};

const WAV: &[u8] = include_bytes!("../fixtures/speech-22k-mono.wav");
const OGG_MONO: &[u8] = include_bytes!("../fixtures/speech-opus-mono.ogg");
const OGG_STEREO: &[u8] = include_bytes!("../fixtures/speech-opus-stereo-48k.ogg");
const WEBM: &[u8] = include_bytes!("../fixtures/speech-mediarecorder.webm");
const MP3: &[u8] = include_bytes!("../fixtures/speech-24k-mono.mp3");
/// Samples in the WAV's data chunk (espeak-ng at 22 050 Hz).
const WAV_SAMPLES: u64 = (81_426 - 44) / 2;

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_bytes: 1024 * 1024,
        max_duration_ms: 10_000,
    }
}

/// RMS per 10 ms frame at 16 kHz.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(160)
        .map(|frame| {
            (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64).sqrt()
        })
        .collect()
}

/// The best normalised correlation of `reference` against `signal` shifted by `lag` frames, and
/// that lag, over lags in `lags`.
fn best_match(
    reference: &[f64],
    signal: &[f64],
    lags: std::ops::RangeInclusive<i64>,
) -> (f64, i64) {
    let mut best = (f64::MIN, 0);
    for lag in lags {
        let pairs: Vec<(f64, f64)> = reference
            .iter()
            .enumerate()
            .filter_map(|(i, &r)| {
                let j = i as i64 + lag;
                (j >= 0)
                    .then(|| signal.get(j as usize).map(|&s| (r, s)))
                    .flatten()
            })
            .collect();
        if pairs.len() < reference.len() / 2 {
            continue;
        }
        let n = pairs.len() as f64;
        let (mr, ms) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / n,
            pairs.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let cov: f64 = pairs.iter().map(|(r, s)| (r - mr) * (s - ms)).sum();
        let vr: f64 = pairs.iter().map(|(r, _)| (r - mr).powi(2)).sum();
        let vs: f64 = pairs.iter().map(|(_, s)| (s - ms).powi(2)).sum();
        let corr = cov / (vr.sqrt() * vs.sqrt()).max(1e-9);
        if corr > best.0 {
            best = (corr, lag);
        }
    }
    best
}

fn reference() -> Vec<f64> {
    envelope(&decode_upload(WAV, &limits()).unwrap().samples)
}

#[test]
fn wav_is_resampled_to_16k_with_its_exact_length() {
    let decoded = decode_upload(WAV, &limits()).unwrap();
    assert_eq!(
        (decoded.format, decoded.source_rate),
        (AudioFormat::Wav, 22_050),
        "espeak-ng's WAV"
    );
    let expected = (WAV_SAMPLES * 16_000 + 11_025) / 22_050;
    assert_eq!(
        decoded.samples.len() as u64,
        expected,
        "the same duration at 16 kHz"
    );
    assert!(
        envelope(&decoded.samples).iter().any(|&rms| rms > 1000.0),
        "speech, not silence"
    );
}

#[test]
fn ogg_opus_mono_and_stereo_decode_to_the_source_speech_in_place() {
    let reference = reference();
    for (name, bytes) in [("mono 32 kbit/s", OGG_MONO), ("48 kHz stereo", OGG_STEREO)] {
        let decoded = decode_upload(bytes, &limits()).unwrap();
        assert_eq!(
            (decoded.format, decoded.source_rate),
            (AudioFormat::OggOpus, 48_000),
            "{name}: Opus decodes at 48 kHz"
        );
        let source_ms = WAV_SAMPLES * 1000 / 22_050;
        assert!(
            decoded.duration_ms().abs_diff(source_ms) <= 10,
            "{name}: pre-skip and end trimming give the source's length ({} vs {source_ms} ms)",
            decoded.duration_ms()
        );
        let (corr, lag) = best_match(&reference, &envelope(&decoded.samples), -5..=5);
        assert!(
            corr > 0.9,
            "{name}: the same speech (envelope correlation {corr:.3})"
        );
        assert!(
            lag.abs() <= 1,
            "{name}: not shifted in time (lag {lag} × 10 ms)"
        );
    }
}

#[test]
fn chromium_mediarecorder_webm_decodes_to_the_speech_it_recorded() {
    let decoded = decode_upload(WEBM, &limits()).unwrap();
    assert_eq!(decoded.format, AudioFormat::WebmOpus, "sniffed as WebM");
    // The recorder ran 2.5 s of wall time; the fake microphone played the WAV once inside it.
    assert!(
        (2_000..=3_200).contains(&decoded.duration_ms()),
        "the recording's length, {} ms",
        decoded.duration_ms()
    );
    let signal = envelope(&decoded.samples);
    let (corr, lag) = best_match(&reference(), &signal, 0..=(signal.len() as i64));
    assert!(
        corr > 0.8,
        "the speech the fake microphone played (correlation {corr:.3} at lag {lag})"
    );
}

#[test]
fn mp3_decodes_at_its_own_rate_then_16k() {
    let decoded = decode_upload(MP3, &limits()).unwrap();
    assert_eq!(
        (decoded.format, decoded.source_rate),
        (AudioFormat::Mp3, 24_000),
        "the MP3 fixture"
    );
    assert_eq!(
        decoded.samples.len(),
        128 * 576 * 2 / 3,
        "128 frames of 576 samples at 24 kHz, as 16 kHz"
    );
}

#[test]
fn bounds_give_their_own_errors() {
    assert_eq!(
        decode_upload(b"", &limits()),
        Err(AudioDecodeError::Empty),
        "zero bytes"
    );
    let small = DecodeLimits {
        max_bytes: 1000,
        ..limits()
    };
    let error = decode_upload(WAV, &small).unwrap_err();
    assert_eq!(
        error,
        AudioDecodeError::TooLarge {
            bytes: WAV.len(),
            limit: 1000
        },
        "bytes over the limit"
    );
    assert!(
        error.is_too_big() && error.to_string().contains("ASR_MAX_UPLOAD_BYTES"),
        "names its key: {error}"
    );
    let short = DecodeLimits {
        max_duration_ms: 500,
        ..limits()
    };
    for (name, bytes) in [
        ("wav", WAV),
        ("ogg", OGG_MONO),
        ("webm", WEBM),
        ("mp3", MP3),
    ] {
        let error = decode_upload(bytes, &short).unwrap_err();
        assert_eq!(
            error,
            AudioDecodeError::TooLong { limit_ms: 500 },
            "{name}: longer than the limit"
        );
        assert!(error.is_too_big(), "{name}: a 413, not unreadable");
    }
}

#[test]
fn truncated_lying_and_foreign_files_are_named_errors() {
    let cut_ogg = &OGG_MONO[..OGG_MONO.len() / 2];
    assert!(
        matches!(
            decode_upload(cut_ogg, &limits()),
            Err(AudioDecodeError::Truncated {
                format: "ogg/opus",
                ..
            })
        ),
        "an ogg cut mid-page"
    );
    let cut_webm = &WEBM[..WEBM.len() - 7];
    assert!(
        matches!(
            decode_upload(cut_webm, &limits()),
            Err(AudioDecodeError::Truncated {
                format: "webm/opus",
                ..
            })
        ),
        "a webm cut mid-block"
    );
    let mut lying_wav = WAV.to_vec();
    lying_wav.truncate(WAV.len() / 2);
    assert!(
        matches!(
            decode_upload(&lying_wav, &limits()),
            Err(AudioDecodeError::Truncated { format: "wav", .. })
        ),
        "a wav shorter than its data chunk says"
    );
    let header_only = &WAV[..44];
    assert!(
        matches!(
            decode_upload(header_only, &limits()),
            Err(AudioDecodeError::Truncated { .. })
        ),
        "a wav with no data bytes promised {} of them",
        WAV_SAMPLES * 2
    );

    let mut bad_crc = OGG_MONO.to_vec();
    let last = bad_crc.len() - 10;
    bad_crc[last] ^= 0xFF;
    assert!(
        matches!(
            decode_upload(&bad_crc, &limits()),
            Err(AudioDecodeError::Malformed {
                format: "ogg/opus",
                ..
            })
        ),
        "a corrupted page fails its checksum"
    );

    let mut vorbis = WEBM.to_vec();
    let at = vorbis.windows(6).position(|w| w == b"A_OPUS").unwrap();
    vorbis[at..at + 6].copy_from_slice(b"A_VORB");
    let error = decode_upload(&vorbis, &limits()).unwrap_err();
    assert!(
        matches!(&error, AudioDecodeError::Unsupported(m) if m.contains("A_VORB")),
        "a codec we do not decode is named: {error}"
    );

    let error = decode_upload(b"<html>not audio</html>", &limits()).unwrap_err();
    assert!(
        matches!(&error, AudioDecodeError::Unsupported(m) if m.contains("3c68746d")),
        "unknown bytes are unsupported audio: {error}"
    );
    assert_eq!(sniff(b"fLaC\0\0\0\x22"), None, "FLAC is not claimed");
}

#[test]
fn random_damage_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for (name, original) in [
        ("wav", WAV),
        ("ogg", OGG_MONO),
        ("webm", WEBM),
        ("mp3", MP3),
    ] {
        for _ in 0..40 {
            let mut bytes = original.to_vec();
            for _ in 0..rng.random_range(1..20) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(1..=bytes.len()));
            // Any result is fine; returning at all (no panic, no hang) is the point.
            let result = decode_upload(&bytes, &limits());
            if let Ok(decoded) = result {
                assert!(
                    decoded.duration_ms() <= 10_000,
                    "{name}: within the duration bound"
                );
            }
        }
    }
}

/// Found by `fuzz/`'s `audio` target: a damaged MediaRecorder WebM whose Opus packet makes
/// opus-decoder 0.1.1 shift a `u8` past its width (`celt/vq.rs`, `extract_collapse_mask`), a
/// panic wherever overflow checks are on. The upload is refused as malformed, and the panic
/// stays inside the decoder's guard instead of taking the request task down.
#[test]
fn an_opus_packet_that_panics_the_decoder_is_a_malformed_upload() {
    let file = include_bytes!("../fixtures/fuzz-opus-shift-overflow.webm");
    let result = decode_upload(file, &limits());
    assert!(
        matches!(result, Err(AudioDecodeError::Malformed { .. })),
        "a decoder panic is a malformed file, not a crash: {result:?}"
    );
}
